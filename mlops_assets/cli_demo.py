"""``mlops-assets demo``: run the pipeline on the last days of the dataset through Dagster, with
a progress bar per stage, then print the leaderboard, the decision and the monitoring summary.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from datetime import timedelta


class _Stage:
    """One stage of the demo on the terminal: a progress bar (a single line when the output is
    not a terminal) that advances with each run the runner reports."""

    def __init__(self, console, title: str, total: int | None):
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self.failed = 0
        self.progress = Progress(
            TextColumn("{task.description:<16}"),
            BarColumn(bar_width=24),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[last]}"),
            console=console,
        )
        self.task = self.progress.add_task(title, total=total, last="")

    def __enter__(self) -> _Stage:
        self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.stop()

    def __call__(self, message: str) -> None:
        self.failed += "FAILED" in message
        self.progress.update(self.task, advance=1, last=message)


def cmd_demo(args: argparse.Namespace) -> int:
    from rich.console import Console

    from mlops_assets.defs.common import project
    from mlops_assets.run_instance import ensure_instance, reporting
    from mlops_assets.runner import (
        day_batches,
        days_for_first_champion,
        first_champion_day,
        metric_batches,
        run_days,
        run_health,
        run_metrics,
        run_scoring,
        run_training,
        scoring_batches,
        training_partitions,
    )
    from mlops_assets.storage.warehouse import Warehouse

    started = time.monotonic()
    p = project()
    settings = p.settings
    instance = ensure_instance(settings)
    from mlops_assets.dataset_load import source_days
    from mlops_assets.definitions import defs

    console = Console(highlight=False, soft_wrap=True)
    today = settings.today()
    days = [today - timedelta(days=n) for n in range(args.days, 0, -1)]
    held = source_days(p.spec)
    if held is not None:
        days = [d for d in days if held[0] <= d <= held[1]]
        if not days:
            print(
                f"error: the source holds {held[0]}..{held[1]}, none of the {args.days} days "
                f"before the clock ({today}); unset MLOPS_AS_OF or set it inside that range",
                file=sys.stderr,
            )
            return 2
    print(
        f"mlops-assets demo: env={settings.env} dataset={p.spec.name} "
        f"days={days[0]}..{days[-1]} data={settings.env_dir}",
        flush=True,
    )
    if held is not None:
        print(
            f"  source: {p.spec.source.path} holds {held[0]}..{held[1]} "
            f"({(held[1] - held[0]).days + 1} days); clock {settings.now():%Y-%m-%d %H:%M}"
            + ("" if len(days) == args.days else f"; running its {len(days)} days before it"),
            flush=True,
        )

    def stage(title: str, total: int | None):
        if args.verbose:
            return _Plain(title)
        return _Stage(console, title, total)

    def notice(message: str) -> None:
        console.print(f"  {message}")

    # Quiet: what libraries print (MLflow's registry messages, warnings) goes to a log file; the
    # runs' event logs stay in the Dagster instance.
    library_log = settings.env_dir / "demo.log"
    quiet = (
        contextlib.nullcontext()
        if args.verbose
        else contextlib.redirect_stderr(library_log.open("w"))
    )
    with quiet, reporting(notice=notice, console_log_level=None if args.verbose else "ERROR"):
        with stage("daily assets", len(day_batches(settings, days)) + 1) as progress:
            summary = run_days(defs, instance, settings, days, progress=progress)
        dates = training_partitions(days[0], today)[-max(args.training_dates, 1) :]
        if dates:
            # One line per training date, then the decision history and drift references.
            with stage("training", None) as progress:
                run_training(defs, instance, dates, progress, summary)
        else:
            needed = days_for_first_champion(settings)
            holds = (
                f"the source holds {(held[1] - held[0]).days + 1} days ({held[0]}..{held[1]})"
                if held is not None
                else ""
            )
            if needed is None:
                advice = "no training date has ended yet" + (f"; {holds}" if holds else "")
            elif holds and needed > len(days):
                advice = (
                    f"the training window needs {needed} days of data; {holds}, so shorten "
                    "training.train_days or training.holdout_days in the spec, or add days to "
                    "the source"
                )
            else:
                advice = (
                    f"the training window needs {needed} days of data; "
                    f"try `mlops-assets demo --days {needed}`"
                )
            print(f"  no training: {len(days)} days are too few for a champion ({advice})")
        served_from = first_champion_day(settings)
        if served_from is not None:
            # A day a source refused has nothing to score: its neighbours run without it.
            served = [
                d for d in days if d >= served_from and d.isoformat() not in summary.failed_days
            ]
            with stage("scoring", scoring_batches(served, args.drift_days)) as progress:
                run_scoring(defs, instance, served, progress, summary, drift_days=args.drift_days)
            with stage("business metrics", metric_batches(settings, served)) as progress:
                run_metrics(defs, instance, settings, served, progress, summary)
        with stage("pipeline health", 1) as progress:
            summary.add(run_health(defs, instance, progress), "pipeline_health")
    wh = Warehouse.for_settings(settings)
    print("\nSummary")
    print(f"  runs: {summary.runs}, failed: {len(summary.failed_runs)}")
    for label in summary.failed_runs[:10]:
        print(f"    failed run: {label} (its event log is in the Dagster UI; or use --verbose)")
    for asset, count in sorted(summary.partitions.items()):
        rows = wh.query(f'SELECT count(*) AS n FROM "{settings.schema}"."{asset}"')["n"][0]
        print(f"  {asset:<22} {count:>4} partitions materialized, {rows:>9,} rows in warehouse")
    for day, reason in sorted(summary.failed_days.items())[:10]:
        print(f"    failed day: {day}: {reason}")
    print(f"  checks: {summary.checks_passed} passed, {len(summary.checks_failed)} failed")
    for failed in summary.checks_failed[:10]:
        print(f"    failed: {failed}")
    _print_leaderboard(wh, settings.schema, p.spec.training.metric)
    _print_monitoring(wh, settings)
    print(f"  warehouse: {wh.describe()}")
    print(f"  online store: {settings.online_store_path}")
    print(f"  Dagster home: {settings.dagster_home} (browse with `make dev`)")
    if not args.verbose and library_log.exists() and library_log.stat().st_size:
        print(f"  library messages: {library_log}")
    print(f"  took {time.monotonic() - started:.1f}s")
    return 1 if summary.failed_runs else 0


class _Plain:
    """A stage with ``--verbose``: Dagster's event log goes to the terminal, and each run the
    runner reports is one plain line between it."""

    def __init__(self, title: str):
        self.title = title

    def __enter__(self) -> _Plain:
        print(f"{self.title} ...", flush=True)
        return self

    def __exit__(self, *exc) -> None:
        return None

    def __call__(self, message: str) -> None:
        print(f"  {message}", flush=True)


def _print_leaderboard(wh, schema: str, metric: str) -> None:
    if not wh.table_exists("champion"):
        print("  no champion yet: not enough labeled days for a training window")
        return
    board = wh.query(
        f'SELECT * FROM "{schema}"."champion" WHERE training_date = '
        f'(SELECT max(training_date) FROM "{schema}"."champion") ORDER BY {metric}'
    )
    if board.is_empty():
        print("  no champion yet: not enough labeled days for a training window")
        return
    row0 = board.row(0, named=True)
    print(
        f"\n  Leaderboard of training date {row0['training_date']} "
        f"(holdout {row0['holdout_start']}..{row0['holdout_end']}, lower {metric} is better)"
    )
    print(f"  {'candidate':<16} {'role':<9} {'version':>7} {metric:>8} {'mae':>8} {'bias':>8}")
    for r in board.iter_rows(named=True):
        mark = "  <- proposed" if r["proposed"] else ""
        print(
            f"  {r['candidate']:<16} {r['role']:<9} {r['model_version']:>7} "
            f"{r[metric]:>8.4f} {r['mae']:>8.3f} {r['bias']:>+8.3f}{mark}"
        )
    history = wh.read("champion_history")
    if history.width and history.height:
        last = history.sort("seq").row(-1, named=True)
        in_force = f"v{last['to_version']}" if last["to_version"] else "none"
        print(f"  decision: {last['action']}, champion {in_force} (in force after it)")
        print(f"  why: {last['reason']}\n")


def _print_monitoring(wh, settings) -> None:
    import json

    schema = settings.schema
    if wh.table_exists("drift_report"):
        drift = wh.query(
            f'SELECT day, score AS drift_share, drifted FROM "{schema}"."drift_report" '
            "WHERE \"column\" = '__drifted__' ORDER BY day DESC LIMIT 7"
        )
        print("  Drift (share of feature columns drifted, last 7 days):")
        for r in drift.iter_rows(named=True):
            print(f"    {r['day']}  {r['drift_share']:.0%}{'  DRIFT' if r['drifted'] else ''}")
        print(f"    reports: {settings.reports_dir}")
    if wh.table_exists("business_metrics"):
        spec_segment = wh.query(f'SELECT * FROM "{schema}"."business_metrics" LIMIT 0').columns[1]
        rows = wh.query(
            f'SELECT * FROM "{schema}"."business_metrics" WHERE "{spec_segment}" = \'ALL\' '
            "ORDER BY 1 DESC LIMIT 5"
        )
        print("  Business metrics (latest days with actuals):")
        for r in rows.iter_rows(named=True):
            day = next(iter(r.values()))
            print(
                f"    {day}  actual {r['actual']:>9,.0f}  predicted {r['predicted']:>9,.0f}  "
                f"cost/outcome {r['cost_per_outcome_actual']:>7.2f}  WAPE {r['wape']:.3f}  "
                f"bias {r['bias']:+.3f}"
            )
    alerts = []
    if settings.alerts_path.exists():
        alerts = [json.loads(x) for x in settings.alerts_path.read_text().splitlines() if x]
    print(f"  Alerts raised: {len(alerts)} (log: {settings.alerts_path})")
    for a in alerts[-5:]:
        print(f"    {a['kind']}: {a['asset']} [{a['partition']}] {a['message'][:100]}")
