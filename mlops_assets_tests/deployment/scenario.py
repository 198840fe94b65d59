"""The deployment story the tests of this folder share, and the driver that plays it.

One dev environment under a temporary folder (real DuckDB warehouse, real MLflow SQLite store,
real Dagster instance in its own DAGSTER_HOME), driven through real Dagster runs in a fixed
order by the session fixtures of ``conftest.py``:

1. ``BASE_DAYS`` of simulated daily assets (150 airings a day, 14 train + 5 holdout days);
2. training partition ``P1``: candidates only, then the champion step with the LightGBM
   artifacts corrupted (nothing may be promoted), then, repaired, the whole training job
   (first champion);
3. ``P2``: candidates, a dry-run champion step, the whole job (promotion), the whole job again;
4. predictions of ``SCORED_DAYS``, which straddle ``P2``'s cut-off;
5. ``P3`` on a CSV dataset of the same columns whose target is noise (a baseline tops).

Each step snapshots what it left behind (run result, registry aliases before and after, the
decision the run recorded for its training date), so a test reads a step's outcome whichever
later steps ran.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np
import polars as pl

from mlops_assets.ml.decision_history import HISTORY_SCHEMA
from mlops_assets.storage.warehouse import Warehouse
from mlops_assets_tests.helpers import (
    SMALL_AIRINGS_PER_DAY,
    Pipeline,
    day_range,
    simulator_spec,
)

AS_OF = "2025-02-11T06:00"
TODAY = date(2025, 2, 11)
START = date(2025, 1, 1)
TRAIN_DAYS = 14
HOLDOUT_DAYS = 5
LABEL_LAG_DAYS = 2
SEED = 7
# Weekly training partitions start on Mondays; a partition trains on data before its window's
# end (the cut-off), which is also the first day its champion serves.
P1, P2, P3 = "2025-01-20", "2025-01-27", "2025-02-03"
CUTOFF = {P1: date(2025, 1, 27), P2: date(2025, 2, 3), P3: date(2025, 2, 10)}
BASE_DAYS = day_range(START, 34)  # 2025-01-01 .. 2025-02-03
SCORED_DAYS = day_range(CUTOFF[P1], 8)  # 2025-01-27 .. 2025-02-03
NOISE_DAYS = day_range(date(2025, 1, 21), 19)  # P3's train and holdout windows

MODEL_NAME = "mlops_assets_dev"
ALIASES = ("champion", "larva")
BASELINES = ("global_mean", "segment_mean")
MODELS = ("lgbm_small", "lgbm_large")
CANDIDATES = (*BASELINES, *MODELS)
CANDIDATE_KEYS = [dg.AssetKey(f"candidate_{name}") for name in CANDIDATES]
CHAMPION = dg.AssetKey("champion")
HISTORY = dg.AssetKey("champion_history")
DECISIONS = (dg.AssetKey("release_decisions"), HISTORY)
DRIFT_REFERENCE = dg.AssetKey("drift_reference")
PREDICTIONS = dg.AssetKey("predictions")
METRICS = ("mae", "rmse", "wape", "bias")
NOISE_MEAN_VISITS = 20.0


def small_spec(**overrides: Any) -> dict[str, Any]:
    """The default TV-ad spec at 150 airings a day with a 14-day train and 5-day holdout."""
    raw = simulator_spec(start_date=START.isoformat(), seed=SEED, **overrides)
    raw["training"].update(train_days=TRAIN_DAYS, holdout_days=HOLDOUT_DAYS)
    return raw


def write_noise_csv(path: Path, days: Iterable[date], seed: int = 3) -> Path:
    """The simulator's airings of ``days`` with the same columns, but with visits drawn from one
    Poisson distribution independent of every feature: nothing to learn beyond the average."""
    from mlops_assets.simulator import SimulatorConfig, simulate_events

    config = SimulatorConfig(
        seed=SEED, airings_per_day=SMALL_AIRINGS_PER_DAY, label_lag_days=LABEL_LAG_DAYS
    )
    events = pl.concat([simulate_events(day, config) for day in days])
    rng = np.random.default_rng(seed)
    visits = rng.poisson(NOISE_MEAN_VISITS, size=events.height).astype(float)
    path.parent.mkdir(parents=True, exist_ok=True)
    events.with_columns(pl.Series("visits", visits)).write_csv(path)
    return path


def noise_spec(csv_path: Path) -> dict[str, Any]:
    raw = small_spec()
    raw["name"] = "tv_ad_response_noise"
    raw["source"] = {"kind": "csv", "path": str(csv_path)}
    return raw


@dataclass(frozen=True)
class Step:
    """What one Dagster run of the story did and left behind."""

    result: dg.ExecuteInProcessResult
    aliases_before: dict[str, str | None]
    aliases_after: dict[str, str | None]
    history: pl.DataFrame  # the decision of the run's training date, if the run decided

    @property
    def run_id(self) -> str:
        return self.result.run_id

    def checks(self) -> dict[str, dg.AssetCheckEvaluation]:
        return {e.check_name: e for e in self.result.get_asset_check_evaluations()}

    def materialized(self) -> dict[dg.AssetKey, dg.AssetMaterialization]:
        return {
            e.asset_key: e.materialization for e in self.result.get_asset_materialization_events()
        }

    def metadata(self, key: dg.AssetKey) -> Mapping[str, Any]:
        return self.materialized()[key].metadata

    def decision(self) -> dict[str, Any]:
        """The decision this run recorded for its training date."""
        assert self.history.height == 1, self.history
        return self.history.row(0, named=True)


@dataclass(frozen=True)
class Corruption:
    candidates: Step  # P1, candidate assets only
    champion: Step  # P1 champion step with the LightGBM model files overwritten
    files: dict[str, Path]  # model version -> the model.txt that was overwritten


@dataclass(frozen=True)
class DryRun:
    candidates: Step  # P2, candidate assets only
    champion: Step  # P2 champion step with dry_run


@dataclass(frozen=True)
class Rerun:
    step: Step
    board_before: pl.DataFrame
    board_after: pl.DataFrame
    versions_before: int
    versions_after: int


@dataclass(frozen=True)
class Scored:
    step: Step
    predictions: pl.DataFrame
    history: pl.DataFrame
    data_copy: Path  # the data folder as it was after scoring, for the rollback tests


@dataclass(frozen=True)
class NoSignal:
    csv: Path  # the noise dataset
    before: dict[str, str | None]  # aliases before the noise days were materialized
    step: Step
    board: pl.DataFrame
    drift_reference: pl.DataFrame


class World:
    """The environment of the story: its pipeline (env vars, spec, definitions), its Dagster
    instance and direct readers of the warehouse and the MLflow store."""

    def __init__(self, pipeline: Pipeline, instance: dg.DagsterInstance):
        self.pipeline = pipeline
        self.instance = instance
        pipeline.use_instance(instance)

    @property
    def tracking_uri(self) -> str:
        return tracking_uri(self.pipeline.data_dir)

    def bind(self) -> World:
        """Re-apply this world's MLOPS_* variables (a test may have cleared them since)."""
        self.pipeline.bind(self.pipeline.monkeypatch)
        return self

    def client(self):
        return mlflow_client(self.tracking_uri)

    def aliases(self) -> dict[str, str | None]:
        return read_aliases(self.tracking_uri)

    def version_count(self) -> int:
        return len(self.client().search_model_versions(f"name = '{MODEL_NAME}'"))

    def read(self, table: str) -> pl.DataFrame:
        """A warehouse table, read from this world's file whatever MLOPS_* currently say."""
        return Warehouse(self.pipeline.data_dir / "dev" / "warehouse").read(table)

    def history(self) -> pl.DataFrame:
        return self.read("champion_history")

    def _step(self, run, partition: str | None = None) -> Step:
        before = self.aliases()
        result = run()
        decided = any(e.asset_key == HISTORY for e in result.get_asset_materialization_events())
        history = self.history()
        if history.is_empty() or not decided:
            history = pl.DataFrame(schema=HISTORY_SCHEMA)
        if partition is not None:
            history = history.filter(pl.col("training_date") == date.fromisoformat(partition))
        return Step(result, before, self.aliases(), history)

    def train(
        self,
        partition: str,
        assets: Iterable[dg.AssetKey] | None = None,
        run_config: dict[str, Any] | None = None,
    ) -> Step:
        """One run of the training job for ``partition`` (every asset, or only ``assets``)."""
        from mlops_assets.definitions import TRAINING_JOB

        self.bind()
        job = self.pipeline.definitions().resolve_job_def(TRAINING_JOB)
        selection = list(assets) if assets is not None else None
        return self._step(
            lambda: job.execute_in_process(
                instance=self.instance,
                partition_key=partition,
                asset_selection=selection,
                run_config=run_config,
                raise_on_error=False,
            ),
            partition,
        )

    def score(self, days: list[date]) -> Step:
        """Predictions (only) of the contiguous ``days``, in one run of the scoring job (a
        single-run backfill)."""
        from mlops_assets.definitions import SCORING_JOB
        from mlops_assets.runner import range_tags

        self.bind()
        job = self.pipeline.definitions().resolve_job_def(SCORING_JOB)
        return self._step(
            lambda: job.execute_in_process(
                instance=self.instance,
                tags=range_tags(days[0], days[-1]),
                asset_selection=[PREDICTIONS],
                raise_on_error=False,
            )
        )

    def run_days(self, days: list[date]) -> None:
        self.bind()
        summary = self.pipeline.run_days(days)
        assert summary.failed_runs == [], summary
        assert summary.checks_failed == [], summary

    def use_spec(self, raw: dict[str, Any]) -> Path:
        path = self.pipeline.use_spec(raw)
        self.bind()
        return path

    def model_file(self, version: str) -> Path:
        """The LightGBM booster file of a registered version, in the local artifact store."""
        from mlops_assets.ml import registry

        folder = registry.version_artifacts_dir(MODEL_NAME, version, self.tracking_uri)
        return folder / "artifacts" / "tabular_model" / "model.txt"

    def copy_data(self, target: Path) -> Path:
        """A copy of the environment's data folder (not its Dagster home) at ``target``."""
        shutil.copytree(
            self.pipeline.data_dir, target, ignore=shutil.ignore_patterns("dagster_home")
        )
        return target


def tracking_uri(data_dir: Path) -> str:
    return f"sqlite:///{data_dir / 'dev' / 'mlflow.db'}"


def mlflow_client(uri: str):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def read_aliases(uri: str) -> dict[str, str | None]:
    """Where ``champion`` and the dev stage alias point, read from the registry at ``uri``."""
    from mlflow.exceptions import MlflowException

    try:
        model = mlflow_client(uri).get_registered_model(MODEL_NAME)
    except MlflowException:
        return dict.fromkeys(ALIASES)
    return {a: str(model.aliases[a]) if a in model.aliases else None for a in ALIASES}


def board(frame: pl.DataFrame, partition: str) -> pl.DataFrame:
    """One training date's leaderboard rows of the champion table, in candidate order."""
    day = date.fromisoformat(partition)
    return frame.filter(pl.col("training_date") == day).sort("candidate")
