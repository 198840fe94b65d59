"""The pipeline the fault tests break: one dev environment under a temporary folder with a real
DuckDB warehouse, a real MLflow SQLite registry holding a champion, and predictions made by it.

Timeline (clock fixed at ``AS_OF``; outcomes land two days after their day):

1. ``BASE_DAYS`` (2025-01-01 .. 2025-02-02) of simulated daily assets, 100 airings a day;
2. the training job of ``P1`` (train 2025-01-07..01-20, holdout 01-21..01-25): the first
   champion, effective from ``CUTOFF`` (2025-01-27);
3. predictions of ``SCORED_DAYS`` (2025-01-27 .. 2025-02-02) by that champion.

Days after 2025-02-02 are free for the incidents each test feeds. :meth:`World.snapshot` records
what must never be lost (registry aliases, champion history, predictions, rows per day), so a
test compares before and after.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import pytest

from mlops_assets.storage.warehouse import Warehouse
from mlops_assets_tests.helpers import Pipeline, day_range, simulator_spec

AS_OF = "2025-02-20T06:00"
START = date(2025, 1, 1)
AIRINGS_PER_DAY = 100
TRAIN_DAYS = 14
HOLDOUT_DAYS = 5
SEED = 7
P1 = "2025-01-20"
P2 = "2025-01-27"
CUTOFF = date(2025, 1, 27)
BASE_DAYS = day_range(START, 33)
SCORED_DAYS = day_range(CUTOFF, 7)
MODEL_NAME = "mlops_assets_dev"
ALIASES = ("champion", "larva")
DAILY_ASSETS = ("raw_events", "raw_outcomes", "outcome_stats", "features", "labeled_examples")
EXPERIMENT = "mlops_assets"


def small_spec(**overrides: Any) -> dict[str, Any]:
    """The default TV-ad spec at 100 airings a day with a 14-day train and 5-day holdout."""
    raw = simulator_spec(
        airings_per_day=AIRINGS_PER_DAY, start_date=START.isoformat(), seed=SEED, **overrides
    )
    raw["training"].update(train_days=TRAIN_DAYS, holdout_days=HOLDOUT_DAYS)
    return raw


def simulated_source(days: Iterable[date]) -> pl.DataFrame:
    """The simulator's airings of ``days`` with their visits, one row each: what a user's CSV
    export of the same business would hold (same columns, same values)."""
    from mlops_assets.simulator import SimulatorConfig, simulate_day

    config = SimulatorConfig(seed=SEED, airings_per_day=AIRINGS_PER_DAY, label_lag_days=2)
    parts = []
    for day in days:
        events, outcomes = simulate_day(day, config)
        parts.append(events.join(outcomes.select("airing_id", "visits"), on="airing_id"))
    return pl.concat(parts)


def csv_spec(csv_path: Path) -> dict[str, Any]:
    """The small spec reading ``csv_path`` instead of the simulator."""
    raw = small_spec()
    raw["source"] = {"kind": "csv", "path": str(csv_path)}
    return raw


def mlflow_client(uri: str):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def read_aliases(uri: str) -> dict[str, str | None]:
    """Where ``champion`` and the dev stage alias point in the registry at ``uri``."""
    model = mlflow_client(uri).get_registered_model(MODEL_NAME)
    return {a: str(model.aliases[a]) if a in model.aliases else None for a in ALIASES}


@dataclass(frozen=True)
class Snapshot:
    """What a fault must leave as it was."""

    aliases: dict[str, str | None]
    versions: int
    history: pl.DataFrame
    predictions: pl.DataFrame
    rows_per_day: dict[str, dict[date, int]]


class World:
    """The pipeline of one data folder, with readers of its warehouse and registry."""

    def __init__(self, pipeline: Pipeline):
        self.pipeline = pipeline

    @property
    def data_dir(self) -> Path:
        return self.pipeline.data_dir

    @property
    def env_dir(self) -> Path:
        return self.data_dir / "dev"

    @property
    def tracking_uri(self) -> str:
        return f"sqlite:///{self.env_dir / 'mlflow.db'}"

    @property
    def warehouse(self) -> Warehouse:
        return Warehouse(self.env_dir / "warehouse")

    def bind(self, monkeypatch: pytest.MonkeyPatch) -> World:
        self.pipeline.bind(monkeypatch)
        return self

    def read(self, table: str, day: date | None = None) -> pl.DataFrame:
        """A table (or one day of it) sorted on every column, so frames compare exactly."""
        wh = self.warehouse
        if day is None:
            frame = wh.read(table)
        else:
            column = "day" if table == "outcome_stats" else "air_date"
            frame = wh.read(table, column, day, day + timedelta(days=1))
        return frame.sort(frame.columns) if frame.height else frame

    def rows_per_day(self, table: str) -> dict[date, int]:
        if not self.warehouse.table_exists(table):
            return {}
        column = "day" if table == "outcome_stats" else "air_date"
        frame = self.warehouse.query(
            f'SELECT "{column}" AS d, count(*) AS n FROM mlops."{table}" GROUP BY 1 ORDER BY 1'
        )
        return dict(zip(frame["d"].to_list(), frame["n"].to_list(), strict=True))

    def aliases(self) -> dict[str, str | None]:
        return read_aliases(self.tracking_uri)

    def snapshot(self) -> Snapshot:
        client = mlflow_client(self.tracking_uri)
        return Snapshot(
            aliases=self.aliases(),
            versions=len(client.search_model_versions(f"name = '{MODEL_NAME}'")),
            history=self.read("champion_history"),
            predictions=self.read("predictions"),
            rows_per_day={t: self.rows_per_day(t) for t in (*DAILY_ASSETS, "predictions")},
        )

    def materialize(self, day: date, assets: Iterable[str] = DAILY_ASSETS):
        return self.pipeline.materialize(day, assets)

    def repoint_mlflow(self) -> None:
        """Point this process's MLflow client at this world's store: the resource configures
        MLflow once per store and process, and another test may have pointed it elsewhere."""
        from mlops_assets.ml import registry

        registry.configure(self.tracking_uri, self.env_dir / "mlflow_artifacts", EXPERIMENT)

    def train(
        self, partition: str, repoint: bool = True, **kwargs: Any
    ) -> dg.ExecuteInProcessResult:
        """One run of the training job (with ``repoint``, MLflow is pointed here first)."""
        from mlops_assets.definitions import TRAINING_JOB

        if repoint:
            self.repoint_mlflow()
        job = self.pipeline.definitions().resolve_job_def(TRAINING_JOB)
        return job.execute_in_process(
            instance=self.pipeline.instance, partition_key=partition, raise_on_error=False, **kwargs
        )

    def score(self, days: list[date]) -> dg.ExecuteInProcessResult:
        from mlops_assets.definitions import SCORING_JOB
        from mlops_assets.runner import range_tags

        self.repoint_mlflow()
        job = self.pipeline.definitions().resolve_job_def(SCORING_JOB)
        return job.execute_in_process(
            instance=self.pipeline.instance,
            tags=range_tags(days[0], days[-1]),
            asset_selection=[dg.AssetKey("predictions")],
            raise_on_error=False,
        )


def error_text(result: dg.ExecuteInProcessResult) -> str:
    """Every step failure of a run: its description and the messages of its whole error chain
    (Dagster wraps an exception of user code in "Error occurred while executing op ...")."""
    parts = []
    for event in result.get_step_failure_events():
        data = event.step_failure_data
        if data.user_failure_data is not None and data.user_failure_data.description:
            parts.append(data.user_failure_data.description)
        error = data.error
        while error is not None:
            parts.append(error.message.strip())
            error = error.cause
    return "\n".join(parts)


def rewrite_store_paths(db: Path, old: Path, new: Path) -> int:
    """Make a copied MLflow SQLite store point at its own artifact folder: every artifact URI
    under ``old`` is rewritten to lie under ``new``. Returns how many values changed."""
    columns = {
        "experiments": ("artifact_location",),
        "runs": ("artifact_uri",),
        "model_versions": ("source", "storage_location"),
        "logged_models": ("artifact_location",),
    }
    changed = 0
    with sqlite3.connect(db) as con:
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        for table, names in columns.items():
            if table not in tables:
                continue
            for name in names:
                cursor = con.execute(
                    f"UPDATE {table} SET {name} = replace({name}, ?, ?) WHERE instr({name}, ?) > 0",
                    [str(old), str(new), str(old)],
                )
                changed += cursor.rowcount
    return changed
