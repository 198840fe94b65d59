"""What a training partition leaves in MLflow and Dagster, read back from the stores rather than
from the writer's return values: one run per candidate with its params (windows, row counts),
metrics (mae, rmse, wape, bias), tags (role, partition, Dagster run id, data fingerprint), the two
plots and the logged model, all under one parent run of the partition, each with one registered
model version; the candidate materializations carry the metrics as floats and a link to the
run, and the champion materialization carries the model card."""

from __future__ import annotations

import math
from pathlib import Path

import dagster as dg
import pytest

from mlops_assets_tests.deployment.scenario import (
    CANDIDATES,
    CHAMPION,
    HOLDOUT_DAYS,
    METRICS,
    MODEL_NAME,
    MODELS,
    P1,
    TRAIN_DAYS,
    Corruption,
    Step,
    World,
)
from mlops_assets_tests.helpers import SMALL_AIRINGS_PER_DAY

WINDOWS = {
    "train_start": "2025-01-07",
    "train_end": "2025-01-20",
    "holdout_start": "2025-01-21",
    "holdout_end": "2025-01-25",
}
PLOTS = {"plots/feature_importance.png", "plots/predicted_vs_actual.png"}
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def runs(world: World, corruption: Corruption) -> dict:
    """P1's candidate runs as the store has them, by candidate name."""
    client = world.client()
    experiment = client.get_experiment_by_name("mlops_assets")
    found = client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.partition = '{P1}'", max_results=100
    )
    by_candidate = {}
    for run in found:
        name = run.data.tags.get("candidate")
        if name is not None:
            assert name not in by_candidate, f"two runs of {name} for {P1}"
            by_candidate[name] = run
    return by_candidate


def test_one_run_per_candidate_with_params_metrics_and_tags(
    runs: dict, corruption: Corruption, world: World
):
    assert sorted(runs) == sorted(CANDIDATES)
    fingerprints = set()
    for name, run in runs.items():
        params, metrics, tags = run.data.params, run.data.metrics, run.data.tags
        assert {k: params[k] for k in WINDOWS} == WINDOWS, name
        assert params["train_rows"] == str(TRAIN_DAYS * SMALL_AIRINGS_PER_DAY)
        assert params["holdout_rows"] == str(HOLDOUT_DAYS * SMALL_AIRINGS_PER_DAY)
        assert params["seed"] == "7"
        for metric in METRICS:
            assert math.isfinite(metrics[metric]), (name, metric)
        assert metrics["wape"] > 0
        assert tags["role"] == ("model" if name in MODELS else "baseline")
        assert tags["partition"] == P1
        assert tags["dagster_run_id"] == corruption.candidates.run_id
        assert len(tags["data_fingerprint"]) == 16
        fingerprints.add(tags["data_fingerprint"])
        assert run.info.status == "FINISHED"
    # Every candidate of a partition trains on the same rows.
    assert len(fingerprints) == 1
    assert world.instance.get_run_by_id(corruption.candidates.run_id) is not None


def test_each_run_has_its_plots_and_model(runs: dict, world: World, tmp_path: Path):
    client = world.client()
    for name, run in runs.items():
        run_id = run.info.run_id
        listed = {a.path for a in client.list_artifacts(run_id, "plots")}
        assert listed == PLOTS, name
        for plot in PLOTS:
            local = Path(client.download_artifacts(run_id, plot, str(tmp_path)))
            assert local.read_bytes()[:8] == PNG, (name, plot)
        (output,) = run.outputs.model_outputs
        model = client.get_logged_model(output.model_id)
        assert model.source_run_id == run_id
        files = {a.path for a in client.list_logged_model_artifacts(output.model_id)}
        assert {"MLmodel", "requirements.txt"} <= files
        stored = {
            a.path
            for a in client.list_logged_model_artifacts(output.model_id, "artifacts/tabular_model")
        }
        expected = {"artifacts/tabular_model/tabular_model.json"}
        if name in MODELS:
            expected.add("artifacts/tabular_model/model.txt")
        assert stored == expected, name


def test_each_run_has_a_parent_and_a_registered_version(
    runs: dict, world: World, corruption: Corruption
):
    client = world.client()
    parents = {run.data.tags["mlflow.parentRunId"] for run in runs.values()}
    assert len(parents) == 1
    parent = client.get_run(parents.pop())
    assert parent.data.tags["mlops.kind"] == "training_date"
    assert parent.data.tags["partition"] == P1

    for name, run in runs.items():
        (version,) = client.search_model_versions(f"run_id = '{run.info.run_id}'")
        assert version.name == MODEL_NAME
        assert version.tags["candidate"] == name
        assert version.tags["partition"] == P1
        (output,) = run.outputs.model_outputs
        assert version.source == f"models:/{output.model_id}"
        meta = corruption.candidates.metadata(dg.AssetKey(f"candidate_{name}"))
        assert meta["model_version"].value == str(version.version)


def test_candidate_materializations_carry_float_metrics_and_the_run_url(
    runs: dict, corruption: Corruption
):
    for name, run in runs.items():
        meta = corruption.candidates.metadata(dg.AssetKey(f"candidate_{name}"))
        for metric in METRICS:
            assert isinstance(meta[metric], dg.FloatMetadataValue), (name, metric)
            assert meta[metric].value == run.data.metrics[metric]
        link = meta["mlflow_run"]
        assert isinstance(link, dg.UrlMetadataValue)
        experiment_id = run.info.experiment_id
        assert link.url.endswith(f"/#/experiments/{experiment_id}/runs/{run.info.run_id}")
        assert meta["train_rows"].value == TRAIN_DAYS * SMALL_AIRINGS_PER_DAY


def test_the_champion_materialization_carries_the_model_card(first_champion: Step, runs: dict):
    card = first_champion.metadata(CHAMPION)["model_card"]
    assert isinstance(card, dg.MarkdownMetadataValue)
    text = card.value
    assert text.startswith(f"# Model card: tv_ad_response, training date {P1}")
    assert "## Leaderboard" in text
    assert "| rank | candidate | role | version | wape |" in text
    for name in CANDIDATES:
        assert f"| {name} |" in text
    assert "**Decision: first**" in text
    chosen = first_champion.decision()["candidate"]
    run_id = runs[chosen].info.run_id
    assert f"MLflow run [`{run_id}`](" in text
    # The plots are images the MLflow UI serves from the run's artifacts.
    for plot in PLOTS:
        assert f"/get-artifact?path={plot}&run_uuid={run_id})" in text
