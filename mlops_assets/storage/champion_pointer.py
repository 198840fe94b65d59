"""The champion pointer: which registered model version each alias names, as a small JSON file
beside the online store.

The decision history publishes it (atomically) whenever it moves or checks the registry aliases
(promotion, rollback, a training date's decision), and the endpoint watches it: a change of the
file is the signal to load another version, so serving never depends on how MLflow stores its
registry. ::

    {"model_name": "mlops_assets_dev", "aliases": {"champion": "7", "larva": "7"},
     "published_at": "2025-06-07T06:00:00+00:00"}

An alias whose value is ``null`` names no version (the environment has no champion).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from mlops_assets.atomic import write_text_atomic


class PointerError(ValueError):
    """The pointer file cannot be read; the message names the file and the problem."""


@dataclass(frozen=True)
class Pointer:
    model_name: str
    aliases: dict[str, str | None]
    published_at: str

    def version(self, alias: str) -> str | None:
        return self.aliases.get(alias)


def publish(path: str | Path, model_name: str, version: str | None, aliases: Iterable[str]) -> Path:
    """Point every alias in ``aliases`` at ``version`` (None: no version) and publish the file."""
    return publish_aliases(path, model_name, dict.fromkeys(aliases, version))


def publish_aliases(path: str | Path, model_name: str, aliases: Mapping[str, str | None]) -> Path:
    """Set ``aliases`` in the pointer and publish it. Aliases it held for the same model and not
    named here stay (the decision history moves its own aliases; a promotion from this
    environment records the target's stage alias beside them)."""
    try:
        existing = read(path)
    except PointerError:
        existing = None
    kept = existing.aliases if existing and existing.model_name == model_name else {}
    merged = {**kept, **{a: None if v is None else str(v) for a, v in aliases.items()}}
    document = {
        "model_name": model_name,
        "aliases": merged,
        "published_at": datetime.now(UTC).isoformat(),
    }
    return write_text_atomic(path, json.dumps(document, indent=1) + "\n")


def read(path: str | Path) -> Pointer | None:
    """The published pointer; None when the file does not exist; PointerError when it is not a
    pointer (the message says what is wrong)."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (ValueError, UnicodeDecodeError) as exc:
        raise PointerError(f"champion pointer {path} is not JSON: {exc}") from exc
    aliases = raw.get("aliases") if isinstance(raw, dict) else None
    name = raw.get("model_name") if isinstance(raw, dict) else None
    if not isinstance(name, str) or not isinstance(aliases, dict):
        raise PointerError(
            f"champion pointer {path} lacks 'model_name' (a string) or 'aliases' (an object of "
            "alias -> version); republish it by materializing champion_history"
        )
    return Pointer(
        model_name=name,
        aliases={str(a): None if v is None else str(v) for a, v in aliases.items()},
        published_at=str(raw.get("published_at", "")),
    )
