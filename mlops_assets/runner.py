"""Run the pipeline over a range of days through Dagster, as the demo and the benchmark do.

A range of days is one in-process Dagster run (single-run backfill) of the assets whose inputs
exist by then (outcomes only after they land), recorded in the environment's Dagster instance,
so the UI shows every run. The instance itself, the tags naming this process and the clean-up
of runs whose process died are in :mod:`mlops_assets.run_instance`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import cast

import dagster as dg
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from mlops_assets.environments import Settings
from mlops_assets.run_instance import execute_run

ALL_DAILY = ("raw_events", "raw_outcomes", "outcome_stats", "features", "labeled_examples")
BEFORE_OUTCOMES = ("raw_events", "features")

LANDED_ASSETS = ("raw_outcomes", "outcome_stats", "labeled_examples")


@dataclass
class RunSummary:
    runs: int = 0
    failed_runs: list[str] = field(default_factory=list)
    partitions: dict[str, int] = field(default_factory=dict)
    checks_passed: int = 0
    checks_failed: list[str] = field(default_factory=list)
    # Days a source asset refused (ISO day -> reason); the other days of their ranges ran.
    failed_days: dict[str, str] = field(default_factory=dict)

    def add(self, result: dg.ExecuteInProcessResult, label: str) -> None:
        self.runs += 1
        if not result.success:
            self.failed_runs.append(label)
        for event in result.get_asset_materialization_events():
            # A materialization event always names its asset.
            key = cast(dg.AssetKey, event.asset_key).to_user_string()
            self.partitions[key] = self.partitions.get(key, 0) + 1
        for evaluation in result.get_asset_check_evaluations():
            if evaluation.passed:
                self.checks_passed += 1
            else:
                self.checks_failed.append(
                    f"{evaluation.check_name} [{evaluation.partition or '-'}] ({label})"
                )


def _contiguous(days: list[date]) -> list[tuple[date, date]]:
    ranges: list[tuple[date, date]] = []
    for day in sorted(set(days)):
        if ranges and day == ranges[-1][1] + timedelta(days=1):
            ranges[-1] = (ranges[-1][0], day)
        else:
            ranges.append((day, day))
    return ranges


def failed_days(result: dg.ExecuteInProcessResult) -> dict[str, str]:
    """The days a range run's source assets refused (ISO day -> reason), from its failures."""
    from mlops_assets.defs.sources.assets import FAILED_DAYS

    days: dict[str, str] = {}
    for event in result.get_step_failure_events():
        data = event.step_failure_data.user_failure_data
        entry = (data.metadata or {}).get(FAILED_DAYS) if data is not None else None
        if entry is not None:
            # The source assets record their failed days as a JSON mapping (day -> reason).
            for day, reason in cast("dict[str, str]", entry.value).items():
                days.setdefault(day, reason)
    return days


def range_tags(first: date, last: date) -> dict[str, str]:
    return {
        ASSET_PARTITION_RANGE_START_TAG: first.isoformat(),
        ASSET_PARTITION_RANGE_END_TAG: last.isoformat(),
    }


def day_batches(
    settings: Settings, days: Iterable[date]
) -> list[tuple[tuple[date, date], tuple[str, ...]]]:
    """The runs :func:`run_days` starts for ``days`` (before the online store's): one per
    contiguous range and outcome state, with the assets each materializes."""
    from mlops_assets.defs.common import project

    days = list(days)
    today = settings.today()
    lag = timedelta(days=project().spec.label_lag_days)
    landed = [d for d in days if today >= d + lag]
    pending = [d for d in days if today < d + lag]
    batches = [(r, ALL_DAILY) for r in _contiguous(landed)]
    return batches + [(r, BEFORE_OUTCOMES) for r in _contiguous(pending)]


def scoring_batches(days: Iterable[date], drift_days: int | None = None) -> int:
    """How many runs :func:`run_scoring` starts for ``days``."""
    days = sorted(days)
    watched = days if drift_days is None else days[-drift_days:]
    return len(_contiguous(days)) + len(_contiguous(watched))


def metric_batches(settings: Settings, days: Iterable[date]) -> int:
    """How many runs :func:`run_metrics` starts for ``days``."""
    from mlops_assets.defs.common import project

    lag = timedelta(days=project().spec.label_lag_days)
    return len(_contiguous([d for d in days if settings.today() >= d + lag]))


def days_for_first_champion(settings: Settings) -> int | None:
    """The fewest past days (``mlops-assets demo --days N``) whose data covers the window of the
    latest training date that has ended by today: its ``train_days`` of training, then its
    ``holdout_days`` of holdout, ending ``label_lag_days`` (at least one) before the training
    date (see ``ml.training``). None when no training date has ended yet."""
    from mlops_assets.defs.common import project
    from mlops_assets.ml.training import training_windows

    p = project()
    today = settings.today()
    ended = [
        p.training.time_window_for_partition_key(k).end.date()
        for k in p.training.get_partition_keys()
    ]
    ended = [cutoff for cutoff in ended if cutoff <= today]
    if not ended:
        return None
    return (today - training_windows(p.spec, max(ended)).train_start).days


def run_days(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    settings: Settings,
    days: Iterable[date],
    progress: Callable[[str], None] = lambda _: None,
    summary: RunSummary | None = None,
) -> RunSummary:
    """Materialize the daily assets over ``days`` (one run per contiguous range and outcome
    state: days whose outcomes have landed get every daily asset, later days only events and
    features), then publish the online store."""
    from mlops_assets.definitions import DAILY_JOB

    summary = summary or RunSummary()
    job = defs.resolve_job_def(DAILY_JOB)
    pending = list(day_batches(settings, days))
    while pending:
        (first, last), names = pending.pop(0)
        result = execute_run(
            job, instance, range_tags(first, last), asset_selection=[dg.AssetKey(n) for n in names]
        )
        label = f"{first}..{last}"
        summary.add(result, label)
        bad = failed_days(result)
        if bad:
            summary.failed_days.update(bad)
            for day, reason in sorted(bad.items()):
                progress(f"daily assets {day}: FAILED ({reason})")
            span = [first + timedelta(days=i) for i in range((last - first).days + 1)]
            rest = [d for d in span if d.isoformat() not in bad]
            # One bad day costs one day: the other days of the range run again without it.
            if first != last:
                pending[:0] = [(r, names) for r in _contiguous(rest)]
            continue
        state = "ok" if result.success else "FAILED"
        progress(f"daily assets {label}: {state} ({', '.join(names)})")
    online = defs.resolve_implicit_job_def_def_for_assets([dg.AssetKey("online_features")])
    result = execute_run(online, instance, asset_selection=[dg.AssetKey("online_features")])
    summary.add(result, "online_features")
    progress(f"online store published: {'ok' if result.success else 'FAILED'}")
    return summary


def run_cycle(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    settings: Settings,
    day: date,
    summary: RunSummary | None = None,
) -> RunSummary:
    """One day end to end in one run of the ``daily_cycle`` job, once its outcomes have landed
    (ValueError before). Predictions need a champion in force on ``day``."""
    from mlops_assets.definitions import CYCLE_JOB
    from mlops_assets.defs.common import project

    lands = day + timedelta(days=project().spec.label_lag_days)
    if settings.today() < lands:
        raise ValueError(
            f"the daily cycle of {day} needs its outcomes, which land on {lands} "
            f"(today is {settings.today()})"
        )
    summary = summary or RunSummary()
    result = execute_run(defs.resolve_job_def(CYCLE_JOB), instance, partition_key=day.isoformat())
    summary.add(result, f"cycle {day}")
    return summary


def training_partitions(first_day: date, today: date) -> list[str]:
    """Training partitions whose whole train window lies in [first_day, today) and whose window
    has ended by today."""
    from mlops_assets.defs.common import project
    from mlops_assets.ml.training import training_windows

    p = project()
    keys = []
    for key in p.training.get_partition_keys():
        window = p.training.time_window_for_partition_key(key)
        cutoff = window.end.date()
        if cutoff <= today and training_windows(p.spec, cutoff).train_start >= first_day:
            keys.append(key)
    return keys


DECISION_ASSETS = ("release_decisions", "champion_history")


def run_training(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    partitions: Iterable[str],
    progress: Callable[[str], None] = lambda _: None,
    summary: RunSummary | None = None,
) -> RunSummary:
    """Train and evaluate every candidate of each training partition (one run each, in the
    order given), then decide the history once and build the drift references it needs."""
    from mlops_assets.definitions import TRAINING_JOB
    from mlops_assets.ml.candidates import CANDIDATES

    summary = summary or RunSummary()
    job = defs.resolve_job_def(TRAINING_JOB)
    selection = [dg.AssetKey(c.asset_name) for c in CANDIDATES] + [dg.AssetKey("champion")]
    for key in partitions:
        result = execute_run(job, instance, partition_key=key, asset_selection=selection)
        summary.add(result, f"training {key}")
        state = "ok" if result.success else "FAILED"
        meta = _materialized_metadata(result, "champion")
        proposal = f"proposes v{meta['proposal'].value} ({meta['reason'].value})" if meta else ""
        progress(f"training {key}: {state} {proposal}")
    run_decisions(defs, instance, progress, summary)
    return summary


def _materialized_metadata(result: dg.ExecuteInProcessResult, asset: str):
    """The metadata of ``asset``'s last materialization in ``result``, or None."""
    events = [
        e for e in result.get_asset_materialization_events() if e.asset_key == dg.AssetKey(asset)
    ]
    return events[-1].materialization.metadata if events else None


def run_decisions(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    progress: Callable[[str], None] = lambda _: None,
    summary: RunSummary | None = None,
    release: dict[str, str] | None = None,
) -> dg.ExecuteInProcessResult:
    """Record ``release`` (a person's decision) if given, re-derive the decision history (which
    moves the aliases), then build the drift reference of every training date whose champion
    in force has none yet."""
    summary = summary or RunSummary()
    keys = [dg.AssetKey(n) for n in DECISION_ASSETS]
    job = defs.resolve_implicit_job_def_def_for_assets(keys)
    config = {"ops": {"release_decisions": {"config": release}}} if release else None
    result = execute_run(job, instance, asset_selection=keys, run_config=config)
    summary.add(result, "decisions")
    meta = _materialized_metadata(result, "champion_history")
    in_force = meta["champion_in_force"].value if meta else "none"
    progress(f"decisions: {'ok' if result.success else 'FAILED'}, champion in force v{in_force}")
    if result.success:
        refresh_drift_references(defs, instance, progress, summary)
    return result


def refresh_drift_references(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    progress: Callable[[str], None] = lambda _: None,
    summary: RunSummary | None = None,
) -> None:
    """Materialize ``drift_reference`` for each training date whose stored reference is
    missing or belongs to another version than the champion in force after that date."""

    from mlops_assets.definitions import TRAINING_JOB
    from mlops_assets.defs.common import project
    from mlops_assets.ml.history_queries import watched_versions
    from mlops_assets.ml.promotion import HISTORY_TABLE
    from mlops_assets.storage.warehouse import Warehouse

    settings = project().settings
    wh = Warehouse.for_settings(settings)
    history = wh.read(HISTORY_TABLE)
    if not history.width:
        return
    stored = wh.read("drift_reference")
    have = (
        set(stored.select("training_date", "model_version").unique().iter_rows())
        if stored.width
        else set()
    )
    wanted = watched_versions(history)
    job = defs.resolve_job_def(TRAINING_JOB)
    for day, version in wanted.iter_rows():
        if (day, version) in have:
            continue
        key = str(day)
        result = execute_run(
            job, instance, partition_key=key, asset_selection=[dg.AssetKey("drift_reference")]
        )
        (summary or RunSummary()).add(result, f"drift reference {key}")
        progress(f"drift reference {key}: {'ok' if result.success else 'FAILED'} (v{version})")


def run_scoring(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    days: Iterable[date],
    progress: Callable[[str], None] = lambda _: None,
    summary: RunSummary | None = None,
    drift_days: int | None = None,
) -> RunSummary:
    """Predictions over each contiguous range of ``days``, and drift reports and data profiles
    of the last ``drift_days`` of them (all when None)."""
    from mlops_assets.definitions import SCORING_JOB

    summary = summary or RunSummary()
    job = defs.resolve_job_def(SCORING_JOB)
    days = sorted(days)
    watched = days if drift_days is None else days[-drift_days:]
    batches = [(r, ["predictions"]) for r in _contiguous(days)]
    batches += [(r, ["drift_report", "data_profile"]) for r in _contiguous(watched)]
    for (first, last), names in batches:
        result = execute_run(
            job, instance, range_tags(first, last), asset_selection=[dg.AssetKey(n) for n in names]
        )
        label = f"{first}..{last}"
        summary.add(result, f"{names[0]} {label}")
        progress(f"{names[0]} {label}: {'ok' if result.success else 'FAILED'}")
    return summary


def run_health(
    defs: dg.Definitions, instance: dg.DagsterInstance, progress: Callable[[str], None]
) -> dg.ExecuteInProcessResult:
    """Refresh ``pipeline_health`` from what the instance now records (the demo's last run)."""
    keys = [dg.AssetKey("pipeline_health")]
    result = execute_run(
        defs.resolve_implicit_job_def_def_for_assets(keys), instance, asset_selection=keys
    )
    progress(f"pipeline_health: {'ok' if result.success else 'FAILED'}")
    return result


def run_metrics(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    settings: Settings,
    days: Iterable[date],
    progress: Callable[[str], None] = lambda _: None,
    summary: RunSummary | None = None,
) -> RunSummary:
    """Serving log and business metrics of the days whose actuals have landed."""
    from mlops_assets.definitions import METRICS_JOB
    from mlops_assets.defs.common import project

    lag = timedelta(days=project().spec.label_lag_days)
    summary = summary or RunSummary()
    job = defs.resolve_job_def(METRICS_JOB)
    landed = [d for d in days if settings.today() >= d + lag]
    for first, last in _contiguous(landed):
        result = execute_run(job, instance, range_tags(first, last))
        label = f"{first}..{last}"
        summary.add(result, f"metrics {label}")
        progress(f"business metrics {label}: {'ok' if result.success else 'FAILED'}")
    return summary


def first_champion_day(settings: Settings) -> date | None:
    """The first day a champion was in force, from the decision history."""
    from mlops_assets.ml.history_queries import first_day_in_force
    from mlops_assets.ml.promotion import HISTORY_TABLE
    from mlops_assets.storage.warehouse import Warehouse

    history = Warehouse.for_settings(settings).read(HISTORY_TABLE)
    return first_day_in_force(history) if history.width else None
