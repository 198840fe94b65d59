"""MLflow access: experiments, candidate runs, the model registry and its aliases.

MLflow is imported inside each function (about 2 s), so importing this module is cheap and the
online endpoint never pays for it. Call :func:`configure` once per process before logging; the
read functions also take an explicit ``tracking_uri``.

Each candidate of each training date is one MLflow run: params (candidate params, windows, row
counts), metrics (mae, rmse, wape, bias), tags (role, candidate, Dagster run id, partition, data
fingerprint, windows), two PNG plots and the model, registered as a new version of the
environment's registered model. Logging the same candidate, data, params and seed again returns
the existing run and version instead of a duplicate (re-materialization is idempotent).
Promotion moves aliases; registry stages are not used. The plots and the UI links are drawn in
:mod:`mlops_assets.ml.run_artifacts`; whether a version serves is
:mod:`mlops_assets.ml.serve_check`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.metadata import version as dist_version
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops_assets.ml.candidates import Candidate
from mlops_assets.ml.model import FORMAT_VERSION, PYFUNC_ARTIFACT, TabularModel
from mlops_assets.ml.run_artifacts import (
    DEFAULT_UI,
    IMPORTANCE_PLOT,
    PREDICTED_PLOT,
    importance_figure,
    predicted_figure,
    run_url,
)
from mlops_assets.ml.training import TrainResult, Windows

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.types.schema import TensorSpec

MODEL_NAME = "model"
PIP_PACKAGES = ("lightgbm", "pandas", "numpy", "polars", "mlflow")
RUN_KEY_TAG = "mlops.run_key"
VERSION_TAG = "mlops.model_version"
PARTITION_RUN_KIND = "training_date"


class RegistryError(LookupError):
    """A registered model, version or alias the caller asked for does not exist."""


class StoreUnavailable(RuntimeError):
    """The MLflow tracking store cannot be opened or read; the message names it."""


@dataclass(frozen=True)
class LoggedCandidate:
    """Where a candidate's run and model version live."""

    run_id: str
    version: str
    run_url: str
    model_uri: str
    reused: bool = False


def pip_requirements() -> list[str]:
    """Exact pins of the packages the logged model needs (as installed here)."""
    return [f"{name}=={dist_version(name)}" for name in PIP_PACKAGES]


def _client(tracking_uri: str | None = None) -> MlflowClient:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def check_store(tracking_uri: str) -> None:
    """Refuse at once a SQLite store whose database path is taken by something other than a
    file (MLflow itself retries such a store for about 100 s before giving up)."""
    if not tracking_uri.startswith("sqlite:///"):
        return
    path = Path(tracking_uri.removeprefix("sqlite:///"))
    if path.exists() and not path.is_file():
        raise StoreUnavailable(
            f"the MLflow tracking store {tracking_uri} cannot be used: {path} is not a file"
        )


def configure(tracking_uri: str, artifacts_dir: str | Path, experiment_name: str) -> str:
    """Point MLflow at the environment's store and return the experiment id (created if new,
    with its artifacts under ``artifacts_dir``)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    # Artifact downloads otherwise draw tqdm progress bars into every Dagster step log.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    check_store(tracking_uri)
    try:
        client = _client(tracking_uri)
        experiment = client.get_experiment_by_name(experiment_name)
    except Exception as exc:
        reason = (str(exc).strip().splitlines() or [""])[0]
        raise StoreUnavailable(
            f"the MLflow tracking store {tracking_uri} cannot be used: "
            f"{type(exc).__name__}: {reason}"
        ) from exc
    if experiment is None:
        location = Path(artifacts_dir).resolve()
        location.mkdir(parents=True, exist_ok=True)
        try:
            experiment_id = client.create_experiment(
                experiment_name, artifact_location=location.as_uri()
            )
        except MlflowException:
            # Another process created it between our lookup and create.
            existing = client.get_experiment_by_name(experiment_name)
            if existing is None:
                raise
            experiment_id = existing.experiment_id
    else:
        experiment_id = experiment.experiment_id
        if experiment.lifecycle_stage == "deleted":
            client.restore_experiment(experiment_id)
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


def run_key(
    candidate: Candidate,
    partition: str,
    windows: Windows,
    data_fingerprint: str,
    seed: int,
    code_version: str = "",
) -> str:
    """What makes two candidate runs the same: candidate, params, partition, windows, data,
    seed and code version."""
    identity = {
        "candidate": candidate.name,
        "partition": partition,
        "params": candidate.params,
        "windows": windows.as_dict(),
        "data": data_fingerprint,
        "seed": seed,
        "format": FORMAT_VERSION,
        "code": code_version,
    }
    text = json.dumps(identity, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def model_version_uri(name: str, version: str) -> str:
    return f"models:/{name}/{version}"


def find_logged_candidate(
    experiment_id: str, key: str, registered_model_name: str, ui_base: str = DEFAULT_UI
) -> LoggedCandidate | None:
    """The registered run logged under ``key`` (see :func:`run_key`), if any.

    A run whose process died (killed after its version was registered, before the run ended)
    is recovered rather than duplicated: its version holds the same model for the same inputs
    and code, so the run is tagged with it and marked FINISHED. A run that died before
    registering anything is marked FAILED and a new one is logged."""
    client = _client()
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{RUN_KEY_TAG}` = '{key}'",
        order_by=["attributes.start_time DESC"],
        max_results=20,
    )
    found = None
    for run in runs:
        version = run.data.tags.get(VERSION_TAG)
        if version is None and run.info.status != "FINISHED":
            registered = client.search_model_versions(f"run_id = '{run.info.run_id}'")
            mine = [mv for mv in registered if mv.name == registered_model_name]
            if mine:
                version = str(mine[0].version)
                client.set_tag(run.info.run_id, VERSION_TAG, version)
                client.set_terminated(run.info.run_id, "FINISHED")
            elif run.info.status == "RUNNING":
                client.set_terminated(run.info.run_id, "FAILED")
        if version and found is None:
            found = LoggedCandidate(
                run_id=run.info.run_id,
                version=version,
                run_url=run_url(experiment_id, run.info.run_id, ui_base),
                model_uri=model_version_uri(registered_model_name, version),
                reused=True,
            )
    return found


def ensure_partition_run(
    experiment_id: str, partition: str, dagster_run_id: str | None = None
) -> str:
    """The parent run grouping a training date's candidate runs (created once, then found)."""
    client = _client()
    runs = client.search_runs(
        [experiment_id],
        filter_string=(
            f"tags.`mlops.kind` = '{PARTITION_RUN_KIND}' and tags.partition = '{partition}'"
        ),
        max_results=1,
    )
    if runs:
        return runs[0].info.run_id
    tags = {"mlops.kind": PARTITION_RUN_KIND, "partition": partition}
    if dagster_run_id:
        tags["dagster_run_id"] = dagster_run_id
    run = client.create_run(experiment_id, run_name=f"training {partition}", tags=tags)
    client.set_terminated(run.info.run_id)
    return run.info.run_id


@contextmanager
def _quiet(logger_name: str) -> Iterator[None]:
    """Silence a logger's warnings for a block.

    Used around ``log_model``, which warns that a Python object is cloudpickled. Here the pickle
    is 191 bytes naming ``mlops_assets.ml.model.PyfuncTabularModel`` (a reference, no code); the
    model itself is the Booster text file and a JSON file.
    """
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def model_signature(model: TabularModel) -> Any:
    """The MLflow signature of a model's input: categoricals as strings, the rest doubles."""
    from mlflow.models.signature import ModelSignature
    from mlflow.types.schema import ColSpec, Schema

    inputs: list[ColSpec | TensorSpec] = [
        ColSpec("string" if col in model.categories else "double", col)
        for col in model.feature_columns
    ]
    return ModelSignature(inputs=Schema(inputs), outputs=Schema([ColSpec("double")]))


def log_candidate(
    *,
    experiment_id: str,
    candidate: Candidate,
    result: TrainResult,
    windows: Windows,
    registered_model_name: str,
    partition: str,
    data_fingerprint: str,
    dagster_run_id: str | None = None,
    parent_run_id: str | None = None,
    code_version: str = "",
    extra_tags: Mapping[str, str] | None = None,
    ui_base: str = DEFAULT_UI,
) -> LoggedCandidate:
    """Log one candidate of one training date as an MLflow run and register its model.

    If a finished run with the same :func:`run_key` exists, it is returned (``reused=True``)
    and nothing new is logged or registered.
    """
    import mlflow

    from mlops_assets.ml.model import PyfuncTabularModel

    key = run_key(candidate, partition, windows, data_fingerprint, result.seed, code_version)
    existing = find_logged_candidate(experiment_id, key, registered_model_name, ui_base)
    if existing is not None:
        return existing

    tags = {
        "role": candidate.role,
        "candidate": candidate.name,
        "partition": partition,
        "data_fingerprint": data_fingerprint,
        "train_window": windows.train_label,
        "holdout_window": windows.holdout_label,
        "dagster_run_id": dagster_run_id or "",
        "model_kind": result.model.kind,
        RUN_KEY_TAG: key,
        **dict(extra_tags or {}),
    }
    if parent_run_id:
        tags["mlflow.parentRunId"] = parent_run_id
    params = {
        **candidate.params,
        **windows.as_dict(),
        "seed": result.seed,
        "train_rows": result.train_rows,
        "train_rows_available": result.train_rows_available,
        "holdout_rows": result.holdout_rows,
        "n_features": result.model.n_features,
    }
    with tempfile.TemporaryDirectory(prefix="mlops_model_") as tmp:
        model_dir = result.model.save(Path(tmp) / PYFUNC_ARTIFACT)
        with mlflow.start_run(
            experiment_id=experiment_id,
            run_name=f"{candidate.name} {partition}",
            tags=tags,
            description=candidate.description or None,
        ) as run:
            run_id = run.info.run_id
            mlflow.log_params(params)
            mlflow.log_metrics({**result.metrics, "fit_seconds": result.fit_seconds})
            mlflow.log_figure(importance_figure(result.model), IMPORTANCE_PLOT)
            mlflow.log_figure(predicted_figure(result, result.model.target), PREDICTED_PLOT)
            with _quiet("mlflow.pyfunc"):
                info = mlflow.pyfunc.log_model(
                    name=MODEL_NAME,
                    python_model=PyfuncTabularModel(),
                    artifacts={PYFUNC_ARTIFACT: str(model_dir)},
                    pip_requirements=pip_requirements(),
                    signature=model_signature(result.model),
                    input_example=result.input_sample.head(5).to_pandas(),
                )
            version_tags = {
                "candidate": candidate.name,
                "role": candidate.role,
                "partition": partition,
                "data_fingerprint": data_fingerprint,
                "train_window": windows.train_label,
                "holdout_window": windows.holdout_label,
                **{k: f"{v:.6g}" for k, v in result.metrics.items()},
            }
            registered = mlflow.register_model(
                info.model_uri, registered_model_name, tags=version_tags
            )
            version = str(registered.version)
            if candidate.description:
                set_version_description(registered_model_name, version, candidate.description)
            mlflow.set_tag(VERSION_TAG, version)
    return LoggedCandidate(
        run_id=run_id,
        version=version,
        run_url=run_url(experiment_id, run_id, ui_base),
        model_uri=model_version_uri(registered_model_name, version),
    )


def _missing(exc: Exception) -> bool:
    code = getattr(exc, "error_code", "")
    return code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND")


def set_aliases(
    name: str, version: str, aliases: Iterable[str], tracking_uri: str | None = None
) -> None:
    """Point every alias in ``aliases`` at ``version`` (moving it from any other version)."""
    client = _client(tracking_uri)
    for alias in aliases:
        client.set_registered_model_alias(name, alias, str(version))


def delete_aliases(name: str, aliases: Iterable[str], tracking_uri: str | None = None) -> None:
    """Remove every alias in ``aliases`` (the environment then has no champion)."""
    from mlflow.exceptions import MlflowException

    client = _client(tracking_uri)
    for alias in aliases:
        try:
            client.delete_registered_model_alias(name, alias)
        except MlflowException as exc:
            if not _missing(exc):
                raise


def get_alias_version(name: str, alias: str, tracking_uri: str | None = None) -> str | None:
    """The version ``alias`` points at, or None if the model or the alias does not exist."""
    from mlflow.exceptions import MlflowException

    try:
        return str(_client(tracking_uri).get_model_version_by_alias(name, alias).version)
    except MlflowException as exc:
        if _missing(exc):
            return None
        raise


def version_tags(name: str, version: str, tracking_uri: str | None = None) -> dict[str, str]:
    """The tags of a model version (candidate, role, partition, metrics, ...)."""
    return dict(_model_version(name, version, tracking_uri).tags)


def version_run_id(name: str, version: str, tracking_uri: str | None = None) -> str | None:
    """The MLflow run that produced a model version."""
    return _model_version(name, version, tracking_uri).run_id


def set_version_description(
    name: str, version: str, description: str, tracking_uri: str | None = None
) -> None:
    _client(tracking_uri).update_model_version(name, str(version), description=description)


def _model_version(name: str, version: str, tracking_uri: str | None) -> Any:
    from mlflow.exceptions import MlflowException

    try:
        return _client(tracking_uri).get_model_version(name, str(version))
    except MlflowException as exc:
        if _missing(exc):
            raise RegistryError(f"model {name!r} has no version {version!r}") from exc
        raise


def version_artifact_uri(name: str, version: str, tracking_uri: str | None = None) -> str:
    """Where a registered version's artifacts are stored."""
    _model_version(name, version, tracking_uri)
    return _client(tracking_uri).get_model_version_download_uri(name, str(version))


def load_model_version(name: str, version: str, tracking_uri: str | None = None) -> TabularModel:
    """Download a registered version's artifacts and load its TabularModel."""
    import mlflow.artifacts

    _model_version(name, version, tracking_uri)
    # Resolve through this registry's client: a models:/ URI would go through the process-wide
    # registry URI, which may point at another environment's store.
    source = _client(tracking_uri).get_model_version_download_uri(name, str(version))
    with tempfile.TemporaryDirectory(prefix="mlops_load_") as tmp:
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=source, dst_path=tmp, tracking_uri=tracking_uri
        )
        return TabularModel.load(Path(local) / "artifacts" / PYFUNC_ARTIFACT)


def load_model_by_alias(name: str, alias: str, tracking_uri: str | None = None) -> TabularModel:
    """The TabularModel the alias points at; RegistryError if the alias is not set."""
    version = get_alias_version(name, alias, tracking_uri)
    if version is None:
        raise RegistryError(f"model {name!r} has no alias {alias!r}")
    return load_model_version(name, version, tracking_uri)


def version_artifacts_dir(name: str, version: str, tracking_uri: str | None = None) -> Path:
    """The local folder holding a version's model files (local artifact stores only)."""
    from urllib.parse import urlparse
    from urllib.request import url2pathname

    uri = _client(tracking_uri).get_model_version_download_uri(name, str(version))
    parsed = urlparse(uri)
    if parsed.scheme not in ("", "file"):
        raise RegistryError(f"model {name!r} v{version} is stored at {uri}, not on this machine")
    return Path(url2pathname(parsed.path))
