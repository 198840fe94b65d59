"""MLflow access against a real SQLite store under a temporary folder: each candidate's run read
back (params, metrics, tags, both plots), its registered version with pinned requirements,
idempotent re-logging, aliases that move and load (also through mlflow.pyfunc), and the
fresh-process serving check on a good and on a corrupted version, and what it measures (latency
through the endpoint's path, load time, size): a candidate of many more trees is over prod's
serving budget and only warns in dev."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from mlops_assets.dataset import DatasetSpec
from mlops_assets.ml import registry, run_artifacts, serve_check
from mlops_assets.ml.candidates import candidate_by_name
from mlops_assets.ml.model import BOOSTER_FILE
from mlops_assets.ml.training import TrainResult, Windows, data_fingerprint

MODEL_NAME = "mlops_assets_test"
PARTITION = "2025-03-31"
PLOTS = {run_artifacts.IMPORTANCE_PLOT, run_artifacts.PREDICTED_PLOT}


@dataclass(frozen=True)
class Store:
    uri: str
    experiment_id: str
    parent_run_id: str
    fingerprint: str
    logged: dict[str, registry.LoggedCandidate]


def _log(
    experiment_id: str, name: str, result: TrainResult, windows: Windows, **kw: str
) -> registry.LoggedCandidate:
    return registry.log_candidate(
        experiment_id=experiment_id,
        candidate=candidate_by_name(name),
        result=result,
        windows=windows,
        registered_model_name=MODEL_NAME,
        dagster_run_id="dagster-run-1",
        **kw,
    )


@pytest.fixture(scope="module")
def store(
    tmp_path_factory: pytest.TempPathFactory,
    fitted: dict[str, TrainResult],
    windows: Windows,
    train: pl.DataFrame,
) -> Iterator[Store]:
    import mlflow

    saved = {k: v for k, v in os.environ.items() if k.startswith("MLFLOW_")}
    root = tmp_path_factory.mktemp("mlflow").resolve()
    uri = f"sqlite:///{root / 'mlflow.db'}"
    experiment_id = registry.configure(uri, root / "artifacts", "tests")
    parent = registry.ensure_partition_run(experiment_id, PARTITION, "dagster-run-1")
    fingerprint = data_fingerprint(train)
    logged = {
        name: _log(
            experiment_id,
            name,
            result,
            windows,
            partition=PARTITION,
            data_fingerprint=fingerprint,
            parent_run_id=parent,
        )
        for name, result in fitted.items()
    }
    yield Store(uri, experiment_id, parent, fingerprint, logged)
    mlflow.set_tracking_uri(None)
    mlflow.set_registry_uri(None)
    for key in [k for k in os.environ if k.startswith("MLFLOW_")]:
        del os.environ[key]
    os.environ.update(saved)


def test_importing_registry_does_not_import_mlflow() -> None:
    code = "import sys, mlops_assets.ml.registry; sys.exit('mlflow' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_store_uri_is_absolute_sqlite(store: Store) -> None:
    assert store.uri.startswith("sqlite:////")


def test_run_has_params_metrics_tags_and_plots(
    store: Store, fitted: dict[str, TrainResult], windows: Windows, tmp_path: Path
) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(store.uri)
    for name, result in fitted.items():
        run = client.get_run(store.logged[name].run_id)
        params, tags = run.data.params, run.data.tags
        for key, value in candidate_by_name(name).params.items():
            assert params[key] == str(value)
        assert params["train_start"] == windows.train_start.isoformat()
        assert params["holdout_end"] == windows.holdout_end.isoformat()
        assert params["train_rows"] == str(result.train_rows)
        assert params["holdout_rows"] == str(result.holdout_rows)
        for metric in ("mae", "rmse", "wape", "bias"):
            assert run.data.metrics[metric] == pytest.approx(result.metrics[metric])
        assert tags["role"] == candidate_by_name(name).role
        assert tags["candidate"] == name
        assert tags["dagster_run_id"] == "dagster-run-1"
        assert tags["partition"] == PARTITION
        assert tags["data_fingerprint"] == store.fingerprint
        assert tags["train_window"] == windows.train_label
        assert tags["holdout_window"] == windows.holdout_label
        assert tags["mlflow.parentRunId"] == store.parent_run_id
        listed = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
        assert listed == PLOTS
        local = Path(client.download_artifacts(run.info.run_id, "plots", str(tmp_path / name)))
        for png in local.iterdir():
            assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


def test_each_candidate_is_a_registered_version_with_pinned_requirements(
    store: Store, fitted: dict[str, TrainResult]
) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(store.uri)
    versions = {v.version: v for v in client.search_model_versions(f"name = '{MODEL_NAME}'")}
    assert len(versions) == len(fitted)
    for name, logged in store.logged.items():
        version = versions[int(logged.version)]
        assert version.run_id == logged.run_id
        assert registry.version_tags(MODEL_NAME, logged.version)["candidate"] == name
        assert logged.model_uri == f"models:/{MODEL_NAME}/{logged.version}"
        assert logged.run_url.endswith(f"/#/experiments/{store.experiment_id}/runs/{logged.run_id}")
    folder = registry.version_artifacts_dir(MODEL_NAME, store.logged["lgbm_small"].version)
    assert (folder / "MLmodel").is_file()
    assert (folder / "artifacts" / "tabular_model" / BOOSTER_FILE).is_file()
    pins = (folder / "requirements.txt").read_text().split()
    assert pins == registry.pip_requirements()
    assert {p.split("==")[0] for p in pins} == {"lightgbm", "pandas", "numpy", "polars", "mlflow"}


def test_logging_the_same_candidate_again_reuses_run_and_version(
    store: Store, fitted: dict[str, TrainResult], windows: Windows
) -> None:
    from mlflow import MlflowClient

    again = _log(
        store.experiment_id,
        "lgbm_small",
        fitted["lgbm_small"],
        windows,
        partition=PARTITION,
        data_fingerprint=store.fingerprint,
    )
    first = store.logged["lgbm_small"]
    assert again.reused and (again.run_id, again.version) == (first.run_id, first.version)
    versions = MlflowClient(store.uri).search_model_versions(f"name = '{MODEL_NAME}'")
    assert len(versions) == len(store.logged)


def test_aliases_move_and_load_by_alias(
    store: Store, fitted: dict[str, TrainResult], holdout: pl.DataFrame, spec: DatasetSpec
) -> None:
    import mlflow

    small, large = store.logged["lgbm_small"].version, store.logged["lgbm_large"].version
    registry.set_aliases(MODEL_NAME, small, ["champion", "larva"])
    assert registry.get_alias_version(MODEL_NAME, "champion") == small
    loaded = registry.load_model_by_alias(MODEL_NAME, "champion")
    expected = fitted["lgbm_small"].model.predict(holdout)
    np.testing.assert_array_equal(loaded.predict(holdout), expected)
    features = holdout.select(spec.model_feature_columns).to_pandas()
    served = mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}@champion").predict(features)
    np.testing.assert_allclose(np.asarray(served, dtype=float), expected, rtol=1e-12)

    registry.set_aliases(MODEL_NAME, large, ["champion"])
    assert registry.get_alias_version(MODEL_NAME, "champion") == large
    assert registry.get_alias_version(MODEL_NAME, "larva", store.uri) == small
    np.testing.assert_array_equal(
        registry.load_model_by_alias(MODEL_NAME, "champion", store.uri).predict(holdout),
        fitted["lgbm_large"].model.predict(holdout),
    )
    assert registry.get_alias_version(MODEL_NAME, "butterfly") is None
    assert registry.get_alias_version("no_such_model", "champion") is None
    with pytest.raises(registry.RegistryError, match="butterfly"):
        registry.load_model_by_alias(MODEL_NAME, "butterfly")
    with pytest.raises(registry.RegistryError, match="999"):
        registry.load_model_version(MODEL_NAME, "999")


def test_check_serves_passes_on_a_good_version(
    store: Store, holdout: pl.DataFrame, spec: DatasetSpec, tmp_path: Path
) -> None:
    sample = serve_check.write_sample_csv(holdout, spec.model_feature_columns, tmp_path / "s.csv")
    ok, detail = serve_check.check_serves(
        store.uri, MODEL_NAME, store.logged["lgbm_large"].version, sample
    )
    assert ok, detail
    assert '"rows": 20' in detail
    measured = serve_check.serve_measurements(detail)
    assert 0 < measured["p50_ms"] <= measured["p99_ms"]
    assert measured["load_seconds"] > 0 and measured["model_bytes"] > 10_000


def test_a_slow_candidate_is_over_prods_serving_budget_and_warns_in_dev(
    store: Store,
    train: pl.DataFrame,
    holdout: pl.DataFrame,
    spec: DatasetSpec,
    windows: Windows,
    tmp_path: Path,
) -> None:
    from mlops_assets.environments import load_settings
    from mlops_assets.ml import gates
    from mlops_assets.ml.candidates import lightgbm_candidate
    from mlops_assets.ml.training import train_and_score

    slow = lightgbm_candidate("lgbm_slow", num_leaves=31, min_data_in_leaf=5, num_boost_round=800)
    result = train_and_score(slow, train, holdout, spec, seed=7)
    logged = registry.log_candidate(
        experiment_id=store.experiment_id,
        candidate=slow,
        result=result,
        windows=windows,
        registered_model_name=MODEL_NAME,
        partition=PARTITION,
        data_fingerprint=store.fingerprint,
    )
    sample = serve_check.write_sample_csv(holdout, spec.model_feature_columns, tmp_path / "s.csv")
    measured = {}
    for name, version in (("small", store.logged["lgbm_small"].version), ("slow", logged.version)):
        ok, detail = serve_check.check_serves(store.uri, MODEL_NAME, version, sample, calls=200)
        assert ok, detail
        measured[name] = serve_check.serve_measurements(detail)
    assert measured["slow"]["model_bytes"] > 5 * measured["small"]["model_bytes"]
    prod = load_settings("prod").thresholds.gates
    dev = load_settings("dev").thresholds.gates
    refused = gates.serving_budget(measured["slow"], measured["small"], prod)
    assert refused.verdict == gates.REFUSE, refused
    assert "the incumbent's" in refused.reason
    assert gates.serving_budget(measured["slow"], measured["small"], dev).verdict == gates.WARN


def test_check_serves_fails_on_a_corrupted_artifact(
    store: Store,
    fitted: dict[str, TrainResult],
    windows: Windows,
    holdout: pl.DataFrame,
    spec: DatasetSpec,
    tmp_path: Path,
) -> None:
    logged = _log(
        store.experiment_id,
        "lgbm_small",
        fitted["lgbm_small"],
        windows,
        partition=date(2025, 4, 7).isoformat(),
        data_fingerprint=store.fingerprint,
    )
    assert not logged.reused and logged.version not in {v.version for v in store.logged.values()}
    folder = registry.version_artifacts_dir(MODEL_NAME, logged.version)
    (folder / "artifacts" / "tabular_model" / BOOSTER_FILE).write_text("garbage\n")
    sample = serve_check.write_sample_csv(holdout, spec.model_feature_columns, tmp_path / "s.csv")
    ok, detail = serve_check.check_serves(store.uri, MODEL_NAME, logged.version, sample)
    assert not ok
    assert BOOSTER_FILE in detail


def _fit_v1(train, spec, seed):
    from mlops_assets.ml.candidates import fit_global_mean

    return fit_global_mean(train, spec, seed)


def _fit_v2(train, spec, seed):
    # The same model, computed by code that was edited: a new code version.
    from mlops_assets.ml.candidates import fit_global_mean

    model = fit_global_mean(train, spec, seed)
    return model


def test_changed_training_code_trains_anew_and_unchanged_code_reuses(
    store: Store, fitted: dict[str, TrainResult], windows: Windows
) -> None:
    from dataclasses import replace

    from mlops_assets.defs.model_training.assets import candidate_code_version

    base = candidate_by_name("global_mean")
    v1, v2 = replace(base, fit=_fit_v1), replace(base, fit=_fit_v2)
    assert candidate_code_version(v1) == candidate_code_version(replace(base, fit=_fit_v1))
    assert candidate_code_version(v1) != candidate_code_version(v2)
    assert candidate_code_version(base) != candidate_code_version(replace(base, params={"x": 1}))

    def log(candidate):
        return registry.log_candidate(
            experiment_id=store.experiment_id,
            candidate=candidate,
            result=fitted["global_mean"],
            windows=windows,
            registered_model_name=MODEL_NAME,
            partition=PARTITION,
            data_fingerprint=store.fingerprint,
            code_version=candidate_code_version(candidate),
        )

    first = log(v1)
    again = log(v1)
    assert again.reused and (again.run_id, again.version) == (first.run_id, first.version)
    edited = log(v2)
    assert not edited.reused
    assert edited.run_id != first.run_id and edited.version != first.version


def _log_then_die(uri: str, experiment_id: str, result: TrainResult, windows: Windows) -> None:
    """In a child process: log a candidate and die by SIGKILL right after its version is
    registered, before the run is tagged and ended."""
    import signal

    import mlflow

    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    real = mlflow.set_tag

    def set_tag(key, value):
        if key == registry.VERSION_TAG:
            os.kill(os.getpid(), signal.SIGKILL)
        real(key, value)

    mlflow.set_tag = set_tag
    registry.log_candidate(
        experiment_id=experiment_id,
        candidate=candidate_by_name("segment_mean"),
        result=result,
        windows=windows,
        registered_model_name=MODEL_NAME,
        partition="2025-04-07",
        data_fingerprint="killed",
    )


def test_a_run_killed_after_registering_is_recovered_not_duplicated(
    store: Store, fitted: dict[str, TrainResult], windows: Windows
) -> None:
    import multiprocessing

    from mlflow import MlflowClient

    client = MlflowClient(store.uri)
    before = len(client.search_model_versions(f"name = '{MODEL_NAME}'"))
    child = multiprocessing.get_context("spawn").Process(
        target=_log_then_die,
        args=(store.uri, store.experiment_id, fitted["segment_mean"], windows),
    )
    child.start()
    child.join(timeout=240)
    assert child.exitcode == -9, child.exitcode
    versions = client.search_model_versions(f"name = '{MODEL_NAME}'")
    assert len(versions) == before + 1  # the killed run did register its version
    stuck = client.search_runs([store.experiment_id], "attributes.status = 'RUNNING'")
    assert len(stuck) == 1

    again = registry.log_candidate(
        experiment_id=store.experiment_id,
        candidate=candidate_by_name("segment_mean"),
        result=fitted["segment_mean"],
        windows=windows,
        registered_model_name=MODEL_NAME,
        partition="2025-04-07",
        data_fingerprint="killed",
    )
    assert again.reused and again.run_id == stuck[0].info.run_id
    assert len(client.search_model_versions(f"name = '{MODEL_NAME}'")) == before + 1
    assert client.search_runs([store.experiment_id], "attributes.status = 'RUNNING'") == []
    referenced = {
        r.data.tags.get(registry.VERSION_TAG)
        for r in client.search_runs([store.experiment_id], max_results=1000)
    }
    registered = {str(v.version) for v in client.search_model_versions(f"name = '{MODEL_NAME}'")}
    assert registered <= referenced, registered - referenced
