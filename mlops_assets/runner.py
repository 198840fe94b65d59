"""Run the pipeline over a range of days through Dagster, as the demo and the benchmark do.

Each day is one in-process Dagster run of the assets whose inputs exist by then (outcomes only
after they land), recorded in the environment's Dagster instance, so the UI shows every run.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta

import dagster as dg

from mlops_assets.environments import REPO_ROOT, Settings
from mlops_assets.storage.sources import outcomes_land_on

LANDED_ASSETS = ("raw_outcomes", "outcome_stats", "labeled_examples")


@dataclass
class RunSummary:
    runs: int = 0
    failed_runs: list[str] = field(default_factory=list)
    partitions: dict[str, int] = field(default_factory=dict)
    checks_passed: int = 0
    checks_failed: list[str] = field(default_factory=list)

    def add(self, result: dg.ExecuteInProcessResult, label: str) -> None:
        self.runs += 1
        if not result.success:
            self.failed_runs.append(label)
        for event in result.get_asset_materialization_events():
            key = event.asset_key.to_user_string()
            self.partitions[key] = self.partitions.get(key, 0) + 1
        for evaluation in result.get_asset_check_evaluations():
            if evaluation.passed:
                self.checks_passed += 1
            else:
                self.checks_failed.append(
                    f"{evaluation.check_name} [{evaluation.partition or '-'}] ({label})"
                )


def ensure_instance(settings: Settings) -> dg.DagsterInstance:
    """The environment's own Dagster instance (DAGSTER_HOME under its data folder)."""
    settings.ensure_dirs()
    home = settings.dagster_home
    if not (home / "dagster.yaml").exists():
        shutil.copy(REPO_ROOT / "dagster.yaml", home / "dagster.yaml")
    os.environ["DAGSTER_HOME"] = str(home)
    return dg.DagsterInstance.get()


def daily_selection(settings: Settings, label_lag_days: int, day: date) -> list[dg.AssetKey]:
    landed = settings.today() >= day + timedelta(days=label_lag_days)
    names = ["raw_events", "features"]
    if landed:
        names += list(LANDED_ASSETS)
    return [dg.AssetKey(n) for n in names]


def run_days(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    settings: Settings,
    days: Iterable[date],
    progress: Callable[[str], None] = lambda _: None,
    summary: RunSummary | None = None,
) -> RunSummary:
    """Materialize the daily assets for each day in order, then publish the online store."""
    from mlops_assets.definitions import DAILY_JOB
    from mlops_assets.defs.common import project

    spec = project().spec
    summary = summary or RunSummary()
    job = defs.resolve_job_def(DAILY_JOB)
    days = list(days)
    for i, day in enumerate(days, 1):
        selection = daily_selection(settings, spec.label_lag_days, day)
        result = job.execute_in_process(
            instance=instance,
            partition_key=day.isoformat(),
            asset_selection=selection,
            raise_on_error=False,
        )
        summary.add(result, day.isoformat())
        landed = "outcomes landed" if dg.AssetKey("raw_outcomes") in selection else (
            f"outcomes land {outcomes_land_on(spec, day)}"
        )
        state = "ok" if result.success else "FAILED"
        progress(f"[{i:>3}/{len(days)}] {day}  {state:6}  {landed}")
    online = defs.resolve_implicit_job_def_def_for_assets([dg.AssetKey("online_features")])
    result = online.execute_in_process(
        instance=instance, asset_selection=[dg.AssetKey("online_features")], raise_on_error=False
    )
    summary.add(result, "online_features")
    progress(f"online store published: {'ok' if result.success else 'FAILED'}")
    return summary
