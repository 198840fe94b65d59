"""The `mlops-assets` command."""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import timedelta


def _set_env(args: argparse.Namespace) -> None:
    if getattr(args, "env", None):
        os.environ["MLOPS_ENV"] = args.env


def cmd_demo(args: argparse.Namespace) -> int:
    _set_env(args)
    from mlops_assets.defs.common import project
    from mlops_assets.runner import (
        ensure_instance,
        first_champion_day,
        run_days,
        run_scoring,
        run_training,
        training_partitions,
    )
    from mlops_assets.storage.warehouse import Warehouse

    started = time.monotonic()
    p = project()
    settings = p.settings
    instance = ensure_instance(settings)
    from mlops_assets.definitions import defs

    today = settings.today()
    days = [today - timedelta(days=n) for n in range(args.days, 0, -1)]
    print(
        f"mlops-assets demo: env={settings.env} dataset={p.spec.name} "
        f"days={days[0]}..{days[-1]} data={settings.env_dir}"
    )
    summary = run_days(defs, instance, settings, days, progress=print)
    run_training(defs, instance, training_partitions(days[0], today), print, summary)
    served_from = first_champion_day(settings)
    if served_from is not None:
        run_scoring(defs, instance, [d for d in days if d >= served_from], print, summary)
    wh = Warehouse(settings.warehouse_path, settings.schema)
    print("\nSummary")
    print(f"  runs: {summary.runs}, failed: {len(summary.failed_runs)}")
    for asset, count in sorted(summary.partitions.items()):
        rows = wh.query(f'SELECT count(*) AS n FROM "{settings.schema}"."{asset}"')["n"][0]
        print(f"  {asset:<18} {count:>4} partitions materialized, {rows:>9,} rows in warehouse")
    print(f"  checks: {summary.checks_passed} passed, {len(summary.checks_failed)} failed")
    for failed in summary.checks_failed[:10]:
        print(f"    failed: {failed}")
    print(f"  warehouse: {settings.warehouse_path}")
    print(f"  online store: {settings.online_store_path}")
    print(f"  Dagster home: {settings.dagster_home} (browse with `make dev`)")
    print(f"  took {time.monotonic() - started:.1f}s")
    return 1 if summary.failed_runs else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mlops-assets", description="Run and operate the mlops_assets pipeline."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run the pipeline on the embedded data and summarize it")
    demo.add_argument("--days", type=int, default=56, help="how many past days (default 56)")
    demo.add_argument("--env", choices=("dev", "staging", "prod"), help="environment (MLOPS_ENV)")
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from mlops_assets.environments import SettingsError

    try:
        return args.func(args)
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
