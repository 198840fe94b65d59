"""Promotion from staging to prod: refused without an approver, refused for a version already in
prod, refused when staging's latest champion decision failed a blocking check; in the good case
prod's registry holds a copy with lineage under `champion` and `butterfly`, prod loads and serves
it, and the promotion log names the approver; staging's registry then holds prod's `butterfly`
on the promoted version (its own history never moves it) and staging's next evaluation compares
every candidate with it. Staging work writes nothing under prod before."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import date

import polars as pl
import pytest

from mlops_assets.run_instance import ensure_instance
from mlops_assets.runner import run_days, run_training
from mlops_assets_tests.helpers import REPO_ROOT, Pipeline, clean_env, day_range, simulator_spec

os.environ.setdefault("OMP_WAIT_POLICY", "passive")

AS_OF = "2025-02-10T06:00"
FIRST = "2025-01-20"
SECOND = "2025-01-27"


def _spec(baseline_margin: float = 0.05) -> dict:
    raw = simulator_spec(airings_per_day=150)
    raw["training"].update(train_days=14, holdout_days=5, baseline_margin=baseline_margin)
    return raw


@pytest.fixture(scope="module")
def staging(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    """Staging with a first champion (training date 2025-01-20)."""
    patch = pytest.MonkeyPatch()
    pipeline = Pipeline(patch, tmp_path_factory.mktemp("promotion"), as_of=AS_OF)
    try:
        pipeline.set_env("staging")
        pipeline.use_spec(_spec())
        patch.setenv("DAGSTER_HOME", str(pipeline.settings.dagster_home))
        pipeline.use_instance(ensure_instance(pipeline.settings))
        defs = pipeline.definitions()
        days = run_days(defs, pipeline.instance, pipeline.settings, day_range(date(2025, 1, 1), 38))
        assert not days.failed_runs, days.failed_runs
        trained = run_training(defs, pipeline.instance, [FIRST])
        assert not trained.failed_runs, trained.failed_runs
        yield pipeline
    finally:
        pipeline.close()
        patch.undo()


def _promote(pipeline: Pipeline, *args: str) -> subprocess.CompletedProcess:
    env = clean_env(**{k: v for k, v in pipeline.env.items() if k != "MLOPS_ENV"})
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "mlops_assets.cli",
            "promote",
            "--from",
            "staging",
            "--to",
            "prod",
            *args,
        ],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _pointer(pipeline: Pipeline, env: str):
    from mlops_assets.environments import load_settings
    from mlops_assets.storage import champion_pointer

    return champion_pointer.read(load_settings(env, pipeline.data_dir).champion_pointer_path)


def _alias(pipeline: Pipeline, env: str, alias: str) -> str | None:
    from mlops_assets.environments import load_settings
    from mlops_assets.ml import registry

    settings = load_settings(env, pipeline.data_dir)
    if not settings.mlflow_db_path.exists():
        return None
    return registry.get_alias_version(
        settings.registered_model_name, alias, settings.mlflow_tracking_uri
    )


def test_promotion_story(staging: Pipeline, monkeypatch: pytest.MonkeyPatch) -> None:
    pipeline = staging.bind(monkeypatch)
    prod_dir = pipeline.data_dir / "prod"
    assert not prod_dir.exists(), "staging work must write nothing under prod"
    staged = _alias(pipeline, "staging", "champion")
    assert staged is not None and _alias(pipeline, "staging", "chrysalis") == staged

    refused = _promote(pipeline)
    assert refused.returncode == 2
    assert "needs a named approver" in refused.stderr
    assert not (prod_dir / "mlflow.db").exists()

    dry = _promote(pipeline, "--approved-by", "ana", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert f"would promote mlops_assets_staging v{staged}" in dry.stdout
    assert not (prod_dir / "promotions.jsonl").exists()

    done = _promote(pipeline, "--approved-by", "ana", "--reason", "weekly release")
    assert done.returncode == 0, done.stderr
    prod_version = _alias(pipeline, "prod", "butterfly")
    assert prod_version is not None
    assert _alias(pipeline, "prod", "champion") == prod_version
    # Staging's registry now holds prod's stage too, on the promoted staging version, and so
    # does the pointer staging's endpoint follows (beside staging's own aliases).
    assert _alias(pipeline, "staging", "butterfly") == staged
    assert _alias(pipeline, "staging", "chrysalis") == staged
    pointer = _pointer(pipeline, "staging")
    assert pointer.version("butterfly") == staged and pointer.version("chrysalis") == staged

    from mlops_assets.environments import load_settings
    from mlops_assets.ml import registry

    prod = load_settings("prod", pipeline.data_dir)
    tags = registry.version_tags(prod.registered_model_name, prod_version, prod.mlflow_tracking_uri)
    assert tags["source_env"] == "staging" and tags["source_version"] == staged
    assert tags["approved_by"] == "ana"
    staging_settings = load_settings("staging", pipeline.data_dir)
    assert tags["source_run_id"] == registry.version_run_id(
        staging_settings.registered_model_name, staged, staging_settings.mlflow_tracking_uri
    )
    log = [json.loads(x) for x in (prod_dir / "promotions.jsonl").read_text().splitlines()]
    assert len(log) == 1
    assert log[0]["who"] == "ana" and log[0]["why"] == "weekly release"
    assert log[0]["source_version"] == staged and log[0]["target_version"] == prod_version

    # Prod serves the promoted version: loaded by its stage alias, it predicts exactly as the
    # staging original on the same rows.
    rows = pipeline.warehouse.read("labeled_examples").head(50)
    served = registry.load_model_by_alias(
        prod.registered_model_name, "butterfly", prod.mlflow_tracking_uri
    )
    original = registry.load_model_version(
        staging_settings.registered_model_name, staged, staging_settings.mlflow_tracking_uri
    )
    assert (served.predict(rows) == original.predict(rows)).all()

    again = _promote(pipeline, "--approved-by", "ana")
    assert again.returncode == 2
    assert f"staging v{staged} is already in prod" in again.stderr

    # Staging's next training date cannot beat the baselines by 99%: its champion checks fail,
    # and prod refuses whatever staging holds.
    pipeline.use_spec(_spec(baseline_margin=0.99))
    second = run_training(pipeline.definitions(), pipeline.instance, [SECOND])
    assert second.checks_failed
    failing = _promote(pipeline, "--approved-by", "ana")
    assert failing.returncode == 2
    assert "did not pass its blocking checks: champion_beats_baselines" in failing.stderr
    assert _alias(pipeline, "prod", "butterfly") == prod_version
    # Staging's decision history moves its own aliases only; its next evaluation compares every
    # candidate with prod's model on the same holdout, on the model card.
    assert _alias(pipeline, "staging", "butterfly") == staged
    import dagster as dg

    card = (
        pipeline.instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey("champion"), asset_partitions=[SECOND]),
            limit=1,
        )
        .records[0]
        .asset_materialization.metadata["model_card"]
        .value
    )
    assert f"## Against `butterfly` (v{staged}) on the same holdout" in card
    assert "| lgbm_large | model |" in card
    history = pipeline.warehouse.read("champion_history")
    assert history.filter(pl.col("training_date") == date(2025, 1, 27)).height == 1
