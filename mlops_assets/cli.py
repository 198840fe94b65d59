"""The `mlops-assets` command: its parser, and the small commands (``spec init``, ``serve``,
``bench``). The demo is :mod:`mlops_assets.cli_demo`; ``promote`` and ``rollback`` are
:mod:`mlops_assets.cli_release`; ``sql`` and ``maintain`` are :mod:`mlops_assets.cli_warehouse`.
"""

from __future__ import annotations

import argparse
import os
import sys

from mlops_assets.cli_demo import cmd_demo
from mlops_assets.cli_release import cmd_promote, cmd_rollback


def cmd_spec_init(args: argparse.Namespace) -> int:
    from pathlib import Path

    from mlops_assets.scaffold import ScaffoldError, draft, render

    out = Path(args.out) if args.out else None
    try:
        text = render(draft(Path(args.source), args.target), out.parent if out else None)
    except ScaffoldError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if out is None:
        sys.stdout.write(text)
        return 0
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(f"wrote {out}; check it, then: MLOPS_DATASET={out} mlops-assets demo")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from mlops_assets.serving.server import serve_from_args

    serve_from_args(args)
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    """``python -m benchmarks`` from the repository root (the benchmark is not part of the
    package: it needs a source checkout)."""
    import subprocess
    from pathlib import Path

    from mlops_assets.environments import REPO_ROOT

    if not (REPO_ROOT / "benchmarks" / "__main__.py").exists():
        print(f"error: no benchmarks/ folder in {REPO_ROOT}; run from a source checkout")
        return 2
    command = [sys.executable, "-m", "benchmarks", "--out", str(Path(args.out).resolve())]
    command += ["--quick"] if args.quick else []
    for group in args.only or ():
        command += ["--only", group]
    return subprocess.call(command, cwd=REPO_ROOT)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mlops-assets", description="Run and operate the mlops_assets pipeline."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run the pipeline on the embedded data and summarize it")
    demo.add_argument("--days", type=int, default=56, help="how many past days (default 56)")
    demo.add_argument("--env", choices=("dev", "staging", "prod"), help="environment (MLOPS_ENV)")
    demo.add_argument(
        "--drift-days", type=int, default=7, help="days with a drift report (default 7)"
    )
    demo.add_argument(
        "--verbose",
        action="store_true",
        help="print Dagster's event log of every run (it is always kept in the instance)",
    )
    demo.add_argument(
        "--training-dates",
        type=int,
        default=2,
        help="latest training dates to train and decide (default 2: a first champion, then a "
        "challenge)",
    )
    demo.set_defaults(func=cmd_demo, env_flag=True)
    spec = sub.add_parser("spec", help="dataset spec tools").add_subparsers(
        dest="spec_command", required=True
    )
    init = spec.add_parser("init", help="write a draft dataset spec from a CSV or Parquet file")
    init.add_argument("--source", required=True, help="the CSV or Parquet file")
    init.add_argument("--target", help="the numeric column to predict")
    init.add_argument("--out", help="where to write the spec (default: standard output)")
    init.set_defaults(func=cmd_spec_init)
    from mlops_assets.serving.server import add_arguments

    serve = add_arguments(
        sub.add_parser("serve", help="serve the champion online (POST /predict on 127.0.0.1)")
    )
    serve.set_defaults(func=cmd_serve)
    rollback = sub.add_parser(
        "rollback", help="move the champion aliases back to the previous champion"
    )
    rollback.add_argument("--env", choices=("dev", "staging", "prod"), help="environment")
    rollback.add_argument("--by", help="who decides the rollback (default: the current user)")
    rollback.add_argument("--reason", help="why, for the decision history")
    rollback.set_defaults(func=cmd_rollback, env_flag=True)
    promote = sub.add_parser(
        "promote", help="copy the staging champion into prod (needs passing checks and approver)"
    )
    promote.add_argument("--from", dest="source", default="staging", help="source environment")
    promote.add_argument("--to", dest="target", default="prod", help="target environment")
    promote.add_argument("--approved-by", help="who approves this promotion (required)")
    promote.add_argument("--reason", default="scheduled release", help="why, for the log")
    promote.add_argument("--dry-run", action="store_true", help="show what would happen")
    promote.add_argument(
        "--training-date",
        help="approve what this training date of --env proposed (instead of copying staging's)",
    )
    promote.add_argument("--env", choices=("dev", "staging", "prod"), help="with --training-date")
    promote.set_defaults(func=cmd_promote)
    from mlops_assets.cli_warehouse import add_parsers

    add_parsers(sub)
    bench = sub.add_parser(
        "bench", help="benchmark the endpoint, batch path, orchestration, backfill and scale"
    )
    bench.add_argument("--out", required=True, help="JSON results (a .md table goes next to it)")
    bench.add_argument("--quick", action="store_true", help="small sizes, about two minutes")
    bench.add_argument(
        "--only",
        action="append",
        choices=("serving", "pipeline", "definitions", "scale"),
        help="run only this group of sections (repeatable): serving = endpoint and batch, "
        "pipeline = orchestration and backfill",
    )
    bench.set_defaults(func=cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from mlops_assets.dataset import SpecError
    from mlops_assets.environments import SettingsError

    if getattr(args, "env_flag", False) and args.env:
        # The command's --env chooses the environment, as MLOPS_ENV would.
        os.environ["MLOPS_ENV"] = args.env
    try:
        return args.func(args)
    except (SettingsError, SpecError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
