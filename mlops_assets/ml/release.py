"""Promotion across environments: copy the staging champion into the prod registry.

Prod is promoted into only here. The copy carries the artifact, parameters, metrics, model card and
lineage tags back to the staging run; it needs the staging champion's blocking checks to have
passed and a named approver, and it refuses a version that is already in prod. Every promotion
is appended to prod's promotion log.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mlops_assets.environments import Settings
from mlops_assets.ml.promotion import CHAMPION_ALIAS, PromotionError

SOURCE_VERSION_TAG = "source_version"
SOURCE_ENV_TAG = "source_env"


@dataclass(frozen=True)
class ReleasePlan:
    source_env: str
    target_env: str
    source_model: str
    source_version: str
    source_run_id: str
    target_model: str
    aliases: tuple[str, ...]
    approved_by: str
    reason: str
    checks: dict[str, bool]


def version_candidate(settings: Settings, version: str) -> str:
    """The candidate a registered version was trained as."""
    from mlops_assets.ml import registry

    tags = registry.version_tags(
        settings.registered_model_name, version, settings.mlflow_tracking_uri
    )
    return tags.get("candidate", "")


def _client(uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def plan(
    source: Settings,
    target: Settings,
    approved_by: str | None,
    reason: str,
    champion_checks: Callable[[Settings], tuple[str, dict[str, bool]]],
) -> ReleasePlan:
    """Everything promotion will do, or PromotionError naming why it refuses.
    ``champion_checks(source)`` gives the source's latest training date and the results of the
    checks that vouch for its champion (read from the Dagster instance by the caller:
    :func:`mlops_assets.release_checks.champion_checks`)."""
    from mlops_assets.ml import registry

    if not approved_by or not approved_by.strip():
        raise PromotionError("promotion to prod needs a named approver (--approved-by NAME)")
    if not source.mlflow_db_path.exists():
        raise PromotionError(f"{source.env} has no model registry at {source.mlflow_db_path}")
    name = source.registered_model_name
    version = registry.get_alias_version(name, CHAMPION_ALIAS, source.mlflow_tracking_uri)
    if version is None:
        raise PromotionError(f"{source.env} has no champion to promote")
    decided, checks = champion_checks(source)
    failed = sorted(c for c, ok in checks.items() if not ok)
    if failed:
        raise PromotionError(
            f"{source.env}'s latest champion decision (training date {decided}) did not pass "
            f"its blocking checks: {', '.join(failed)}; champion v{version} is not promoted"
        )
    source_run = registry.version_run_id(name, version, source.mlflow_tracking_uri)
    if target.mlflow_db_path.exists():
        existing = _client(target.mlflow_tracking_uri).search_model_versions(
            f"name = '{target.registered_model_name}'"
        )
        for mv in existing:
            tags = mv.tags or {}
            if tags.get(SOURCE_ENV_TAG) == source.env and tags.get(SOURCE_VERSION_TAG) == version:
                raise PromotionError(
                    f"{source.env} v{version} is already in {target.env} as "
                    f"{target.registered_model_name} v{mv.version}"
                )
    return ReleasePlan(
        source_env=source.env,
        target_env=target.env,
        source_model=name,
        source_version=version,
        source_run_id=source_run or "",
        target_model=target.registered_model_name,
        aliases=(CHAMPION_ALIAS, target.stage_alias),
        approved_by=approved_by.strip(),
        reason=reason,
        checks=checks,
    )


def execute(p: ReleasePlan, source: Settings, target: Settings) -> str:
    """Copy the version into the target registry (the decision history then moves its
    aliases, once the release decision is recorded)."""
    import mlflow

    from mlops_assets.ml import registry
    from mlops_assets.ml.model import PYFUNC_ARTIFACT, PyfuncTabularModel

    model = registry.load_model_version(
        p.source_model, p.source_version, source.mlflow_tracking_uri
    )
    src = _client(source.mlflow_tracking_uri)
    src_version = src.get_model_version(p.source_model, p.source_version)
    src_run = src.get_run(p.source_run_id) if p.source_run_id else None
    target.ensure_dirs()
    experiment_id = registry.configure(
        target.mlflow_tracking_uri, target.mlflow_artifacts_dir, target.mlflow_experiment
    )
    lineage = {
        SOURCE_ENV_TAG: p.source_env,
        SOURCE_VERSION_TAG: p.source_version,
        "source_model": p.source_model,
        "source_run_id": p.source_run_id,
        "source_tracking_uri": source.mlflow_tracking_uri,
        "approved_by": p.approved_by,
        "candidate": dict(src_version.tags or {}).get("candidate", model.candidate),
    }
    with tempfile.TemporaryDirectory(prefix="mlops_release_") as tmp:
        model_dir = model.save(Path(tmp) / PYFUNC_ARTIFACT)
        plots = Path(tmp) / "plots"
        if src_run is not None:
            mlflow.artifacts.download_artifacts(
                run_id=p.source_run_id,
                artifact_path="plots",
                dst_path=tmp,
                tracking_uri=source.mlflow_tracking_uri,
            )
        with mlflow.start_run(
            experiment_id=experiment_id,
            run_name=f"promotion {p.source_env} v{p.source_version}",
            tags={**lineage, "role": "model"},
        ):
            if src_run is not None:
                mlflow.log_params(src_run.data.params)
                mlflow.log_metrics(src_run.data.metrics)
            if plots.exists():
                mlflow.log_artifacts(str(plots), "plots")
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=PyfuncTabularModel(),
                artifacts={PYFUNC_ARTIFACT: str(model_dir)},
                pip_requirements=registry.pip_requirements(),
                signature=registry.model_signature(model),
            )
        tags = {**dict(src_version.tags or {}), **lineage}
        registered = mlflow.register_model(info.model_uri, p.target_model, tags=tags)
    version = str(registered.version)
    description = (src_version.description or "") + (
        f"\n\nPromoted from {p.source_env} v{p.source_version} by {p.approved_by}: {p.reason}"
    )
    registry.set_version_description(
        p.target_model, version, description, target.mlflow_tracking_uri
    )
    return version


def promotion_log_path(target: Settings) -> Path:
    return target.env_dir / "promotions.jsonl"


def record(p: ReleasePlan, target: Settings, version: str, now: datetime | None = None) -> dict:
    entry: dict[str, Any] = {
        "ts": (now or datetime.now(UTC)).isoformat(),
        "who": p.approved_by,
        "what": f"{p.source_model} v{p.source_version} -> {p.target_model} v{version}",
        "why": p.reason,
        **asdict(p),
        "target_version": version,
    }
    path = promotion_log_path(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fh.write(json.dumps(entry, default=str) + "\n")
    return entry


def mark_in_source(p: ReleasePlan, source: Settings, target: Settings) -> None:
    """Record the new champion of ``target`` in the source registry under the target's stage
    alias (staging's registry then holds prod's `butterfly`). Only promotion moves it there:
    the source environment's own decision history moves its own aliases only."""
    from mlops_assets.ml import registry
    from mlops_assets.storage import champion_pointer

    registry.set_aliases(
        p.source_model, p.source_version, [target.stage_alias], source.mlflow_tracking_uri
    )
    champion_pointer.publish_aliases(
        source.champion_pointer_path, p.source_model, {target.stage_alias: p.source_version}
    )
