"""The compile trigger under the real daemon: `dagster-daemon run` on the project's definitions
with a Dagster home holding the repository's dagster.yaml, and a registry of two LightGBM
versions with no champion. A promotion (the registry alias moved and the champion pointer
published, as the decision history does it) makes the `compile_champion` sensor, running by
default, launch the `compile_model` job for that version; its verified library lands beside the
registry's artifacts, and batch inference's loader then predicts through it. Nothing is launched
by hand. The dataset starts tomorrow, so the automation sensor has no partition to request."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import numpy as np

from mlops_assets.defs.model_deployment.sensors import COMPILE_JOB, COMPILE_SENSOR
from mlops_assets.ml import compiled
from mlops_assets_tests.automation.test_daemon import (
    SENSOR_NAME_TAG,
    start_daemon,
    stop_group,
    tail,
)
from mlops_assets_tests.helpers import clean_env, copy_dagster_yaml, simulator_spec, write_yaml
from mlops_assets_tests.serving.harness import build_world, move_champion, wait_until

COMPILE_DEADLINE_S = 240


def test_a_promotion_gets_its_version_compiled_by_the_daemon(tmp_path: Path) -> None:
    world = build_world(tmp_path / "data")
    settings = world.settings
    move_champion(settings, None)
    version = world.versions[0]  # lgbm_small: compiles in seconds
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    spec = write_yaml(tmp_path / "specs" / "future.yaml", simulator_spec(start_date=tomorrow))
    home = tmp_path / "dagster_home"
    copy_dagster_yaml(home)
    env = clean_env(
        MLOPS_DATA_DIR=str(settings.data_dir), MLOPS_DATASET=str(spec), DAGSTER_HOME=str(home)
    )
    instance = dg.DagsterInstance.from_config(str(home))
    library = settings.compiled_models_dir / f"v{version}" / "model.so"
    sidecar = compiled.sidecar_path(version, settings.compiled_models_dir)

    proc = start_daemon(env, tmp_path / "daemon.log")
    try:
        move_champion(settings, version)

        def compiled_by_a_run() -> list[dg.DagsterRun]:
            assert proc.poll() is None, f"the daemon exited early:\n{tail(tmp_path / 'daemon.log')}"
            runs = instance.get_runs()
            failed = [r.run_id for r in runs if r.status == dg.DagsterRunStatus.FAILURE]
            assert failed == [], f"runs {failed} failed:\n{tail(tmp_path / 'daemon.log')}"
            done = [r for r in runs if r.status == dg.DagsterRunStatus.SUCCESS]
            return done if done and sidecar.exists() else []

        runs = wait_until(compiled_by_a_run, COMPILE_DEADLINE_S, f"v{version} compiled")
    finally:
        assert stop_group(proc), tail(tmp_path / "daemon.log")

    [run] = instance.get_runs()
    assert run.job_name == COMPILE_JOB and run.tags[SENSOR_NAME_TAG] == COMPILE_SENSOR
    assert run.tags["mlops/model_version"] == version and runs == [run]
    assert library.is_file() and library.is_relative_to(settings.mlflow_artifacts_dir)
    model = compiled.load_version(
        world.model_name, version, settings.mlflow_tracking_uri, settings.compiled_models_dir
    )
    assert model.predictor == "compiled"
    matrix = model.encode(world.store)
    want = world.models[version].predict_matrix(matrix)
    assert np.max(np.abs(model.predict_matrix(matrix) - want)) <= 1e-9
