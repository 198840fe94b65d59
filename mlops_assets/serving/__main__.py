"""``python -m mlops_assets.serving [--host H] [--port P] [--env E] [...]``: run the endpoint."""

from __future__ import annotations

import argparse
import sys

from mlops_assets.serving.server import add_arguments, serve_from_args


def main(argv: list[str] | None = None) -> int:
    parser = add_arguments(
        argparse.ArgumentParser(
            prog="python -m mlops_assets.serving", description="Serve the champion online."
        )
    )
    args = parser.parse_args(argv)
    from mlops_assets.dataset import SpecError
    from mlops_assets.environments import SettingsError

    try:
        serve_from_args(args)
    except (SettingsError, SpecError, ValueError) as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
