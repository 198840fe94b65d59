"""`mlops-assets reproduce` on the deployment story's warehouse: 50 random batch predictions of
the scored window are predicted again from the features snapshot their run recorded and the model
version on their row, after those days' features were recomputed from another dataset (the
no-signal step), so today's features differ and only the snapshot gives the recorded value. The
command prints the chain (features partition and snapshot, the candidate's MLflow run, the
champion decision) and exits 0 on a match; with the version's artifact gone it exits 1 naming
the artifact."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import polars as pl

from mlops_assets.ml import registry
from mlops_assets.reproduce import reproduce_batch
from mlops_assets_tests.deployment.scenario import NoSignal, Scored, World
from mlops_assets_tests.helpers import clean_env

MLOPS_ASSETS = str(Path(sys.executable).with_name("mlops-assets"))


def cli(world: World, *args: str) -> subprocess.CompletedProcess:
    env = clean_env(**world.pipeline.env, DAGSTER_HOME=str(world.instance.root_directory))
    return subprocess.run(
        [MLOPS_ASSETS, "reproduce", *args], env=env, capture_output=True, text=True, timeout=300
    )


def test_fifty_predictions_reproduce_from_their_snapshots_after_a_recompute(
    scored: Scored, no_signal: NoSignal, world: World
) -> None:
    world.bind()
    settings, spec = world.pipeline.settings, world.pipeline.spec
    original = scored.predictions
    sample = random.Random(16).sample(range(original.height), 50)
    today = world.read("features")
    changed = 0
    for i in sample:
        row = original.row(i, named=True)
        day, key = row[spec.date_column], str(row[spec.event_key])
        answer = reproduce_batch(settings, spec, world.instance, day, key)
        assert answer["match"], answer
        assert answer["recorded"] == row["prediction"]
        assert answer["chain"]["model"]["version"] == row["model_version"]
        now = today.filter(
            (pl.col(spec.date_column) == day) & (pl.col(spec.event_key).cast(pl.String) == key)
        )
        model = registry.load_model_version(
            settings.registered_model_name, row["model_version"], settings.mlflow_tracking_uri
        )
        if not now.height or abs(float(model.predict(now)[0]) - row["prediction"]) > 1e-6:
            changed += 1
    # Today's rows of those days come from the noise dataset: they would not give the values.
    assert changed >= 45


def test_the_command_prints_the_chain_and_names_a_missing_artifact(
    scored: Scored, no_signal: NoSignal, world: World
) -> None:
    world.bind()
    spec = world.pipeline.spec
    row = scored.predictions.row(0, named=True)
    day, key = row[spec.date_column].isoformat(), str(row[spec.event_key])
    done = cli(world, "--date", day, "--event-key", key)
    assert done.returncode == 0, done.stderr[-3000:]
    answer = json.loads(done.stdout)
    assert answer["match"] is True and answer["recorded"] == row["prediction"]
    chain = answer["chain"]
    assert chain["features"]["partition"] == day and chain["features"]["snapshot"] > 0
    assert chain["model"]["version"] == row["model_version"] and chain["model"]["mlflow_run_id"]
    assert chain["decision"]["action"] in ("first", "promote")

    settings = world.pipeline.settings
    uri = registry.version_artifact_uri(
        settings.registered_model_name, row["model_version"], settings.mlflow_tracking_uri
    )
    folder = Path(uri.removeprefix("file://"))
    aside = folder.with_name(folder.name + ".aside")
    folder.rename(aside)
    try:
        done = cli(world, "--date", day, "--event-key", key)
    finally:
        aside.rename(folder)
    assert done.returncode == 1
    assert f"artifact {uri} is missing" in done.stderr, done.stderr[-2000:]
