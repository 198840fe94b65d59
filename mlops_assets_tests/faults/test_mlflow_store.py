"""The MLflow store is unavailable or corrupt when a training date runs: on a private copy of the
champion world (its own warehouse, registry and artifact folder), the tracking database is
overwritten with garbage, replaced by a directory (a store that cannot be created), or the
artifact folder is replaced by a file. The training job of the next date fails with a message
naming the problem, the run-failure alert sensor writes one alert saying so, and once the store
is put back no alias has moved, no model version was registered and the champion history and
leaderboard gained no row."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from mlops_assets.defs.alerts import RUN_FAILURE_SENSOR, alert_on_run_failure
from mlops_assets.defs.resources import AlertSinkResource
from mlops_assets_tests.faults.world import (
    AS_OF,
    P2,
    World,
    error_text,
    mlflow_client,
    read_aliases,
    rewrite_store_paths,
    small_spec,
)
from mlops_assets_tests.helpers import Pipeline

MODEL_NAME = "mlops_assets_dev"


@pytest.fixture
def clone(
    built_world: tuple[World, Path, Path],
    pristine_data: Path,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> Iterator[World]:
    """The pristine world copied under ``tmp_path``, its store pointing at its own artifacts."""
    original = built_world[0].data_dir
    shutil.copytree(pristine_data, tmp_path / "data")
    db = tmp_path / "data" / "dev" / "mlflow.db"
    assert rewrite_store_paths(db, original, tmp_path / "data") > 0
    pipeline = Pipeline(monkeypatch, tmp_path, as_of=AS_OF)
    pipeline.use_spec(small_spec())
    yield World(pipeline)
    pipeline.close()


def version_count(uri: str) -> int:
    return len(mlflow_client(uri).search_model_versions(f"name = '{MODEL_NAME}'"))


def garbage_database(env_dir: Path) -> Callable[[], None]:
    db = env_dir / "mlflow.db"
    content = db.read_bytes()
    db.write_bytes(b"this is not an SQLite database\n" * 512)
    return lambda: db.write_bytes(content)


def database_cannot_be_created(env_dir: Path) -> Callable[[], None]:
    db = env_dir / "mlflow.db"
    aside = db.rename(env_dir / "mlflow.db.aside")
    db.mkdir()
    (db / "occupied").write_text("a directory where the database file should be\n")

    def restore() -> None:
        shutil.rmtree(db)
        aside.rename(db)

    return restore


def artifact_folder_is_a_file(env_dir: Path) -> Callable[[], None]:
    folder = env_dir / "mlflow_artifacts"
    aside = folder.rename(env_dir / "mlflow_artifacts.aside")
    folder.write_text("a file where the artifact folder should be\n")

    def restore() -> None:
        folder.unlink()
        aside.rename(folder)

    return restore


STORE = "the MLflow tracking store sqlite:///{db} cannot be used"
BREAKS = {
    "garbage_database": (garbage_database, [STORE, "file is not a database"]),
    "database_cannot_be_created": (
        database_cannot_be_created,
        [STORE, "mlflow.db is not a file"],
    ),
    "artifact_folder_is_a_file": (artifact_folder_is_a_file, ["Not a directory", "{artifacts}"]),
}


def run_failure_alert(world: World, result: dg.ExecuteInProcessResult) -> list[dict]:
    """Evaluate the run-failure sensor on ``result``'s run; the alert log's lines."""
    instance = world.pipeline.instance
    failure = next(e for e in result.all_events if e.event_type_value == "PIPELINE_FAILURE")
    path = world.env_dir / "alerts" / "alerts.jsonl"
    context = dg.build_run_status_sensor_context(
        sensor_name=RUN_FAILURE_SENSOR,
        dagster_event=failure,
        dagster_instance=instance,
        dagster_run=instance.get_run_by_id(result.run_id),
        resources={"alerts": AlertSinkResource(env="dev", path=str(path))},
    ).for_run_failure()
    alert_on_run_failure(context)
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.mark.parametrize("case", list(BREAKS))
def test_training_fails_clearly_alerts_and_moves_no_alias(
    clone: World, pristine_data: Path, case: str
) -> None:
    make_break, templates = BREAKS[case]
    problems = [
        t.format(db=clone.env_dir / "mlflow.db", artifacts=clone.env_dir / "mlflow_artifacts")
        for t in templates
    ]
    # What the copy's registry holds, read from the store it was copied from: this process
    # must not hold a connection to the copy's database before it breaks (a run process opens
    # the store afresh).
    source_uri = f"sqlite:///{pristine_data / 'dev' / 'mlflow.db'}"
    aliases = read_aliases(source_uri)
    assert aliases["champion"] is not None
    versions = version_count(source_uri)
    history = clone.read("champion_history")
    board = clone.read("champion")

    restore = make_break(clone.env_dir)
    try:
        result = clone.train(P2, repoint=False)
    finally:
        restore()

    assert not result.success
    failed = result.get_failed_step_keys()
    assert failed and failed <= {
        "candidate_global_mean",
        "candidate_segment_mean",
        "candidate_lgbm_small",
        "candidate_lgbm_large",
        "champion",
    }
    text = error_text(result)
    for problem in problems:
        assert problem in text, text
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert "champion" not in materialized

    alerts = run_failure_alert(clone, result)
    assert len(alerts) == 1
    alert = alerts[0]
    assert alert["kind"] == "run_failure"
    assert alert["run_id"] == result.run_id
    assert alert["partition"] == P2
    for problem in problems:
        assert problem in alert["message"], alert["message"]
    assert any(step in alert["asset"] for step in failed)

    # The store is back: nothing moved and nothing was added.
    assert clone.aliases() == aliases
    assert version_count(clone.tracking_uri) == versions
    assert clone.read("champion_history").equals(history)
    assert clone.read("champion").equals(board)
    assert board.filter(pl.col("training_date").cast(pl.String) == P2).is_empty()
