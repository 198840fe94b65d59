"""The `mlops-assets` command."""

from __future__ import annotations

import argparse
import contextlib
import getpass
import os
import sys
import time
from datetime import timedelta


def _set_env(args: argparse.Namespace) -> None:
    if getattr(args, "env", None):
        os.environ["MLOPS_ENV"] = args.env


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
    _set_env(args)
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
    wh = Warehouse(settings.warehouse_path, settings.schema)
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
    print(f"  warehouse: {settings.warehouse_path}")
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


def _record_release(settings, release: dict[str, str]) -> str | None:
    """Record a person's decision through the pipeline (release_decisions, then the decision
    history, which moves the aliases); the champion in force after it, or an error text."""
    import dagster as dg

    from mlops_assets.run_instance import ensure_instance
    from mlops_assets.runner import run_decisions

    os.environ["MLOPS_ENV"] = settings.env
    from mlops_assets.definitions import defs

    result = run_decisions(defs, ensure_instance(settings), release=release)
    if not result.success:
        failures = [
            e.event_specific_data.error.message.strip()
            for e in result.all_events
            if e.event_type == dg.DagsterEventType.STEP_FAILURE
        ]
        return "error: " + ("; ".join(failures) or "the decision history run failed")
    return None


def _history(settings):
    from mlops_assets.ml import decision_history, promotion
    from mlops_assets.storage.warehouse import Warehouse

    history = Warehouse(settings.warehouse_path, settings.schema).read(promotion.HISTORY_TABLE)
    return history if history.width else decision_history.empty_history()


def cmd_rollback(args: argparse.Namespace) -> int:
    _set_env(args)
    import polars as pl

    from mlops_assets.environments import load_settings
    from mlops_assets.ml import history_queries, promotion

    settings = load_settings()
    if not settings.mlflow_db_path.exists():
        print(
            f"error: no model registry in {settings.env_dir}: nothing to roll back", file=sys.stderr
        )
        return 2
    history = _history(settings)
    try:
        version, reason = history_queries.plan_rollback(history)
    except promotion.PromotionError as exc:
        print(f"error: rollback refused: {exc}", file=sys.stderr)
        return 2
    current = history_queries.current(history)
    release = {
        "action": promotion.ROLLBACK,
        "version": version or "",
        "approved_by": args.by or getpass.getuser(),
        "reason": args.reason or f"rollback from v{current} to v{version or '-'} ({reason})",
        "source": f"rollback from v{current}",
    }
    error = _record_release(settings, release)
    if error:
        print(error, file=sys.stderr)
        return 1
    aliases = f"champion, {settings.stage_alias}"
    named = history.filter(pl.col("to_version") == version)["candidate"]
    target = f"v{version} ({named[-1]})" if version else "no champion (aliases removed)"
    print(
        f"rolled back {settings.registered_model_name} ({settings.env}): aliases {aliases} "
        f"moved from v{current} to {target}; recorded in release_decisions and "
        f"{promotion.HISTORY_TABLE}"
    )
    return 0


def cmd_promote(args: argparse.Namespace) -> int:
    from mlops_assets.environments import load_settings
    from mlops_assets.ml import promotion, release
    from mlops_assets.ml.promotion import PromotionError
    from mlops_assets.release_checks import champion_checks

    if args.training_date:
        return _promote_proposal(args)
    if (args.source, args.target) != ("staging", "prod"):
        print("error: promotion goes from staging to prod only", file=sys.stderr)
        return 2
    source, target = load_settings(args.source), load_settings(args.target)
    try:
        plan = release.plan(source, target, args.approved_by, args.reason, champion_checks)
    except PromotionError as exc:
        print(f"error: promotion refused: {exc}", file=sys.stderr)
        return 2
    checks = ", ".join(f"{name} {'passed' if ok else 'FAILED'}" for name, ok in plan.checks.items())
    print(
        f"{'would promote' if args.dry_run else 'promoting'} {plan.source_model} "
        f"v{plan.source_version} ({source.env}) into {plan.target_model} ({target.env}), "
        f"aliases {', '.join(plan.aliases)}; approved by {plan.approved_by}; checks: {checks}"
    )
    if args.dry_run:
        print("dry run: nothing copied, no alias moved, nothing logged")
        return 0
    version = release.execute(plan, source, target)
    error = _record_release(
        target,
        {
            "action": promotion.PROMOTE,
            "version": version,
            "candidate": release.version_candidate(target, version),
            "approved_by": plan.approved_by,
            "reason": plan.reason,
            "source": f"{source.env} v{plan.source_version}",
        },
    )
    if error:
        print(error, file=sys.stderr)
        return 1
    release.record(plan, target, version)
    release.mark_in_source(plan, source, target)
    print(
        f"promoted: {plan.target_model} v{version} now holds {', '.join(plan.aliases)}; "
        f"{plan.source_model} v{plan.source_version} holds {target.stage_alias} in "
        f"{source.env}; logged in {release.promotion_log_path(target)} and release_decisions"
    )
    return 0


def _promote_proposal(args: argparse.Namespace) -> int:
    """Approve what a training date of the environment proposed (prod's own proposals)."""
    import polars as pl

    from mlops_assets.environments import load_settings
    from mlops_assets.ml import promotion

    settings = load_settings(args.env or args.target)
    if not args.approved_by or not args.approved_by.strip():
        print(
            "error: promotion refused: it needs a named approver (--approved-by NAME)",
            file=sys.stderr,
        )
        return 2
    rows = _history(settings).filter(
        (pl.col("training_date").cast(pl.String) == args.training_date)
        & pl.col("proposed_version").is_not_null()
    )
    if rows.is_empty():
        print(
            f"error: promotion refused: training date {args.training_date} of {settings.env} "
            "proposed no model (see the champion_history asset)",
            file=sys.stderr,
        )
        return 2
    row = rows.row(-1, named=True)
    summary = (
        f"{row['proposed_candidate']} v{row['proposed_version']} of training date "
        f"{args.training_date} ({settings.env}), approved by {args.approved_by.strip()}"
    )
    if args.dry_run:
        print(f"would promote {summary}\ndry run: no alias moved, nothing recorded")
        return 0
    error = _record_release(
        settings,
        {
            "action": promotion.PROMOTE,
            "version": row["proposed_version"],
            "candidate": row["proposed_candidate"],
            "approved_by": args.approved_by,
            "reason": args.reason,
            "source": f"proposal of training date {args.training_date}",
        },
    )
    if error:
        print(error, file=sys.stderr)
        return 1
    print(f"promoted {summary}: aliases champion, {settings.stage_alias} moved")
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
    demo.set_defaults(func=cmd_demo)
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
    rollback.set_defaults(func=cmd_rollback)
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

    try:
        return args.func(args)
    except (SettingsError, SpecError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
