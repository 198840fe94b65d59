"""Helpers shared by the test modules: small dataset specs and a pipeline driver that runs real
Dagster (in process) against a real DuckDB warehouse under a temporary folder."""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable
from datetime import date, timedelta
from pathlib import Path
from typing import Any, NamedTuple

import dagster as dg
import polars as pl
import pytest
import yaml
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from mlops_assets.environments import DEFAULT_DATASET, REPO_ROOT, Settings
from mlops_assets.storage.warehouse import Warehouse

FIXED_AS_OF = "2025-03-15T06:00"
SMALL_AIRINGS_PER_DAY = 150
START_DATE = "2025-01-01"
DAILY_TABLES = ("raw_events", "raw_outcomes", "outcome_stats", "features", "labeled_examples")
URL_VARS = ("MLOPS_DAGSTER_URL", "MLOPS_MLFLOW_URL", "MLOPS_REPORTS_URL")
MLOPS_VARS = (
    "MLOPS_ENV",
    "MLOPS_DATA_DIR",
    "MLOPS_DATASET",
    "MLOPS_AS_OF",
    "MLOPS_SCHEMA",
    *URL_VARS,
)


def day_range(first: date, n: int) -> list[date]:
    return [first + timedelta(days=i) for i in range(n)]


def default_spec_dict() -> dict[str, Any]:
    return yaml.safe_load(DEFAULT_DATASET.read_text())


def simulator_spec(
    *,
    airings_per_day: int = SMALL_AIRINGS_PER_DAY,
    start_date: str = START_DATE,
    incidents: Iterable[dict[str, Any]] = (),
    drifts: Iterable[dict[str, Any]] = (),
    seed: int = 7,
    **top_level: Any,
) -> dict[str, Any]:
    """The default spec, made small, with optional incidents, drifts and top-level overrides."""
    raw = copy.deepcopy(default_spec_dict())
    raw["start_date"] = start_date
    options = raw["source"].setdefault("options", {})
    options.update(seed=seed, airings_per_day=airings_per_day)
    if incidents:
        options["incidents"] = [dict(i) for i in incidents]
    if drifts:
        options["drifts"] = [dict(d) for d in drifts]
    raw.update(top_level)
    return raw


def write_yaml(path: Path, raw: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def clean_env(**extra: str) -> dict[str, str]:
    """The current environment without MLOPS_* or DAGSTER_HOME, plus ``extra``. Subprocesses
    import the package from the same checkout as the tests (PYTHONPATH), even through the
    console script."""
    env = {k: v for k, v in os.environ.items() if k not in MLOPS_VARS and k != "DAGSTER_HOME"}
    env["PYTHONPATH"] = str(REPO_ROOT)
    env.update(extra)
    return env


def run_python(code: str, env: dict[str, str], timeout: float = 240) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter of this venv, from the repository root."""
    return subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


class Pipeline:
    """Drives the project in one temporary folder: env vars, specs, definitions, Dagster runs.

    Specs are written to ``<root>/specs`` (outside the data folder, so isolation tests can list
    everything the pipeline wrote). Each spec gets its own file, because the project is cached per
    (env, data dir, dataset path, clock) and a rewritten file at the same path would be ignored.
    """

    def __init__(self, monkeypatch: pytest.MonkeyPatch, root: Path, as_of: str = FIXED_AS_OF):
        self.monkeypatch = monkeypatch
        self.root = root
        self.data_dir = root / "data"
        self.spec_dir = root / "specs"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.env: dict[str, str] = {}
        self._spec_count = 0
        self._defs: dict[tuple, dg.Definitions] = {}
        self._instance: dg.DagsterInstance | None = None
        for var in ("MLOPS_ENV", "MLOPS_SCHEMA", *URL_VARS):
            monkeypatch.delenv(var, raising=False)
        self.set_var("MLOPS_DATA_DIR", str(self.data_dir))
        self.set_var("MLOPS_AS_OF", as_of)

    def set_var(self, var: str, value: str) -> None:
        self.env[var] = value
        self.monkeypatch.setenv(var, value)

    def bind(self, monkeypatch: pytest.MonkeyPatch) -> Pipeline:
        """Re-apply this pipeline's variables through ``monkeypatch`` (for module-scoped runs
        used by function-scoped tests)."""
        self.monkeypatch = monkeypatch
        for var in MLOPS_VARS:
            if var in self.env:
                monkeypatch.setenv(var, self.env[var])
            else:
                monkeypatch.delenv(var, raising=False)
        return self

    def clone(self, monkeypatch: pytest.MonkeyPatch, root: Path) -> Pipeline:
        """A copy of this pipeline's data folder under ``root``, same spec and clock, with a new
        Dagster instance: for tests that tamper with the stored rows."""
        shutil.copytree(self.data_dir, root / "data")
        other = Pipeline(monkeypatch, root, self.env["MLOPS_AS_OF"])
        for var, value in self.env.items():
            if var != "MLOPS_DATA_DIR":
                other.set_var(var, value)
        return other

    def use_spec(self, raw: dict[str, Any] | None = None, **simulator_kwargs: Any) -> Path:
        """Write a new spec file (``raw``, or a small simulator spec) for MLOPS_DATASET."""
        self._spec_count += 1
        raw = raw if raw is not None else simulator_spec(**simulator_kwargs)
        path = write_yaml(self.spec_dir / f"spec_v{self._spec_count}.yaml", raw)
        self.set_var("MLOPS_DATASET", str(path))
        return path

    def set_env(self, name: str) -> None:
        self.set_var("MLOPS_ENV", name)

    def use_urls(self, dagster: str, mlflow: str, reports: str) -> None:
        """Where the links this pipeline writes point: the Dagster UI, MLflow UI, reports."""
        for var, url in zip(URL_VARS, (dagster, mlflow, reports), strict=True):
            self.set_var(var, url)

    @property
    def project(self):
        from mlops_assets.defs.common import project

        return project()

    @property
    def settings(self) -> Settings:
        return self.project.settings

    @property
    def spec(self):
        return self.project.spec

    def definitions(self) -> dg.Definitions:
        """Definitions of the current environment (built once per distinct environment)."""
        from mlops_assets.definitions import build_definitions

        key = tuple(os.environ.get(v) for v in MLOPS_VARS)
        if key not in self._defs:
            self._defs[key] = build_definitions()
        return self._defs[key]

    @property
    def instance(self) -> dg.DagsterInstance:
        if self._instance is None:
            self._instance = dg.DagsterInstance.ephemeral()
        return self._instance

    def use_instance(self, instance: dg.DagsterInstance) -> None:
        self._instance = instance

    def run_days(self, days: Iterable[date]):
        from mlops_assets.runner import run_days

        return run_days(self.definitions(), self.instance, self.settings, days)

    def materialize(
        self, day: date, assets: Iterable[str], last: date | None = None
    ) -> dg.ExecuteInProcessResult:
        """One run of the daily job with only ``assets`` selected, for ``day`` or, with ``last``,
        for the partition range ``day..last`` (a single-run backfill)."""
        from mlops_assets.definitions import DAILY_JOB

        job = self.definitions().resolve_job_def(DAILY_JOB)
        if last is None:
            target: dict[str, Any] = {"partition_key": day.isoformat()}
        else:
            target = {
                "tags": {
                    ASSET_PARTITION_RANGE_START_TAG: day.isoformat(),
                    ASSET_PARTITION_RANGE_END_TAG: last.isoformat(),
                }
            }
        return job.execute_in_process(
            instance=self.instance,
            asset_selection=[dg.AssetKey(a) for a in assets],
            raise_on_error=False,
            **target,
        )

    @property
    def warehouse(self) -> Warehouse:
        return Warehouse.for_settings(self.settings)

    def rows(self, table: str, day: date | None = None, column: str | None = None) -> pl.DataFrame:
        """A table (or one day of it), sorted on every column so frames compare exactly."""
        wh = self.warehouse
        if day is None:
            frame = wh.read(table)
        else:
            column = column or ("day" if table == "outcome_stats" else self.spec.date_column)
            frame = wh.read(table, column, day, day + timedelta(days=1))
        return frame.sort(frame.columns) if frame.height else frame

    def execute(self, sql: str, params: list | None = None) -> None:
        """Run a writing statement against the warehouse (to tamper with stored rows)."""
        with self.warehouse.connect() as con:
            con.execute(sql, params)

    def close(self) -> None:
        if self._instance is not None:
            self._instance.dispose()
            self._instance = None


def copy_dagster_yaml(home: Path) -> Path:
    home.mkdir(parents=True, exist_ok=True)
    target = home / "dagster.yaml"
    target.write_text((REPO_ROOT / "dagster.yaml").read_text())
    return target


def failure_messages(result: dg.ExecuteInProcessResult) -> str:
    """Every step failure's description and error message of a run, joined."""
    parts = []
    for event in result.get_step_failure_events():
        data = event.step_failure_data
        if data.user_failure_data is not None and data.user_failure_data.description:
            parts.append(data.user_failure_data.description)
        if data.error is not None:
            parts.append(data.error.message)
    return "\n".join(parts)


def check_evaluations(result: dg.ExecuteInProcessResult) -> dict[str, Any]:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def training_decision(pipeline: Pipeline, partition: str) -> dict[str, Any]:
    """The one decision the history holds for training date ``partition``."""
    history = pipeline.warehouse.read("champion_history").filter(
        (pl.col("kind") == "training") & (pl.col("training_date") == date.fromisoformat(partition))
    )
    assert history.height == 1, history
    return history.row(0, named=True)


def latest_check(pipeline: Pipeline, asset: str, check: str) -> Any:
    """The evaluation of ``check`` in the latest run that materialized ``asset``."""
    records = pipeline.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset)), limit=1
    ).records
    assert records, f"{asset} was never materialized"
    evaluations = [
        e.dagster_event.event_specific_data
        for e in pipeline.instance.all_logs(
            records[0].run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION
        )
    ]
    found = [e for e in evaluations if e.check_name == check]
    assert len(found) == 1, (check, [e.check_name for e in evaluations])
    return found[0]


def assert_aliases_on(pipeline: Pipeline, version: str | None) -> None:
    """The registry's ``champion`` and stage alias are both on ``version`` (None: unset)."""
    from mlops_assets.ml import registry

    settings = pipeline.settings
    for alias in ("champion", settings.stage_alias):
        found = registry.get_alias_version(
            settings.registered_model_name, alias, settings.mlflow_tracking_uri
        )
        assert (None if found is None else str(found)) == version, (alias, found, version)


class Refusal(NamedTuple):
    decision: dict[str, Any]
    check: Any
    alert: dict[str, Any]


def assert_refused_by(
    pipeline: Pipeline, partition: str, gate: str, incumbent: str | None = None
) -> Refusal:
    """Assert that gate ``gate`` refused the proposal of training date ``partition``: the
    decision is ``refused`` and names the gate and its reason, the champion in force stays
    ``incumbent`` (None: no champion) with neither the ``champion`` nor the stage alias moved
    off it, the gate's check on the decision history failed with ERROR severity and its
    evidence (verdict, observed value, threshold, the refusal counted), and one alert names the
    gate. Returns the decision row, the check evaluation and the alert, for the assertions
    particular to the gate."""
    decision = training_decision(pipeline, partition)
    assert decision["action"] == "refused", decision["reason"]
    assert f"refused by gate {gate}: " in decision["reason"], decision["reason"]
    assert decision["proposed_version"] is not None, decision
    assert decision["to_version"] == incumbent, decision
    assert decision["from_version"] == incumbent, decision
    assert_aliases_on(pipeline, incumbent)

    check = latest_check(pipeline, "champion_history", gate)
    assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR, check
    metadata = {k: v.value for k, v in check.metadata.items()}
    assert metadata["training_date"] == partition, metadata
    assert metadata["verdict"] == "refuse" and metadata["blocking_here"] is True, metadata
    for evidence in ("observed", "threshold"):
        assert isinstance(metadata[evidence], float), metadata
        assert metadata[evidence] == metadata[evidence], (evidence, metadata)  # not NaN
    assert metadata["reason"] and metadata["reason"] in decision["reason"], metadata
    assert metadata["decisions_refused_by_gate"] >= 1, metadata

    alerts = gate_alerts(pipeline)
    assert len(alerts) == 1, alerts
    assert alerts[0]["cause"] == f"promotion refused by {gate}", alerts
    return Refusal(decision, check, alerts[0])


def gate_alerts(pipeline: Pipeline) -> list[dict[str, Any]]:
    """The gate alerts of the alerts file after the alert sensor ticked once (as the daemon
    would), asserting that the sensor added no second alert (of another kind) for a gate whose
    refusal the decision history already alerted."""
    import json

    from mlops_assets.defs.alerts import alert_on_failed_checks
    from mlops_assets.defs.resources import AlertSinkResource
    from mlops_assets.environments import GATE_NAMES

    settings = pipeline.settings
    sink = AlertSinkResource(env=settings.env, path=str(settings.alerts_path))
    context = dg.build_sensor_context(
        instance=pipeline.instance, resources={"alerts": sink}, definitions=pipeline.definitions()
    )
    alert_on_failed_checks(context)
    if not settings.alerts_path.exists():
        return []
    alerts = [json.loads(x) for x in settings.alerts_path.read_text().splitlines()]
    gates = [a for a in alerts if a["kind"] == "gate"]
    naming = [a for a in alerts if any(g in a["cause"] for g in GATE_NAMES)]
    assert naming == gates, alerts
    return gates


def approve(pipeline: Pipeline, partition: str, approved_by: str) -> None:
    """Approve what training date ``partition`` proposed, as `mlops-assets promote
    --training-date PARTITION --approved-by NAME` does: a release decision recorded through the
    pipeline, effective today by the pipeline's clock."""
    from mlops_assets.runner import run_decisions

    decision = training_decision(pipeline, partition)
    assert decision["action"] == "propose", decision["reason"]
    release = {
        "action": "promote",
        "version": decision["proposed_version"],
        "candidate": decision["proposed_candidate"],
        "approved_by": approved_by,
        "reason": "approved in a test",
        "source": f"proposal of training date {partition}",
    }
    result = run_decisions(pipeline.definitions(), pipeline.instance, release=release)
    assert result.success, failure_messages(result)
