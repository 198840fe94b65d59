"""Model deployment: each training date's evaluation (`champion`), the people's release
decisions (`release_decisions`) and the decision history they add up to (`champion_history`),
which names the champion in force on every day and moves the registry aliases."""

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg

from mlops_assets.defs.common import (
    REGISTRY_POOL,
    Frame,
    Project,
    Stage,
    project,
    when_decided,
)
from mlops_assets.defs.model_deployment.checks import (
    champion_check_results,
    champion_check_specs,
    gate_limits,
    history_check_results,
    history_check_specs,
)
from mlops_assets.defs.model_training.assets import training_cutoff
from mlops_assets.defs.resources import AlertSinkResource, MlflowResource, WarehouseResource
from mlops_assets.ml.candidates import CANDIDATES
from mlops_assets.storage.warehouse import Warehouse

if TYPE_CHECKING:
    import polars as pl

    from mlops_assets.ml.deployment import HistoryResult
    from mlops_assets.ml.promotion import Registry

GROUP = "model_deployment"
OWNERS = ["team:ml-engineering"]
# The modules whose rules decide a training date's proposal and the champion in force.
DECISION_CODE = (
    "mlops_assets.ml.deployment",
    "mlops_assets.ml.promotion",
    "mlops_assets.ml.selection",
    "mlops_assets.ml.gates",
)


class HistoryConfig(dg.Config):
    """Launch-time settings of the decision history."""

    dry_run: bool = False


class ReleaseConfig(dg.Config):
    """A person's release decision, recorded by `mlops-assets promote` and `rollback`."""

    action: str = ""
    version: str = ""
    candidate: str = ""
    approved_by: str = ""
    reason: str = ""
    source: str = ""


def build_assets(p: Project) -> list[dg.AssetsDefinition]:
    return [build_champion(p), build_releases(p), build_history(p)]


def build_champion(p: Project) -> dg.AssetsDefinition:
    spec, settings = p.spec, p.settings

    @Stage(p, GROUP, OWNERS, REGISTRY_POOL).asset(
        "champion",
        partitions="training",
        code=(*DECISION_CODE,),
        kinds={"mlflow", "duckdb"},
        automation_condition=dg.AutomationCondition.eager(),
        ins={c.asset_name: dg.AssetIn() for c in CANDIDATES},
        deps=["labeled_examples"],
        check_specs=champion_check_specs(p),
        description=p.words(
            "Which model this training date proposes to predict {outcome}: the leaderboard of "
            "every candidate on the same holdout, the best non-baseline that beats the "
            "baselines by the margin, loaded from the registry in a fresh process. A baseline "
            "is never proposed. The decision against the champion in force is made by "
            "`champion_history`; the model card is in the metadata."
        ),
    )
    def champion(
        context: dg.AssetExecutionContext,
        mlflow: MlflowResource,
        warehouse: WarehouseResource,
        **cards: Frame,
    ):
        from mlops_assets.ml import deployment, registry

        mlflow.experiment_id()
        wh = warehouse.get()
        try:
            result = deployment.champion_stage(
                spec,
                [cards[c.asset_name] for c in CANDIDATES],
                training_cutoff(context),
                read_examples=lambda start, end: _examples(wh, start, end),
                score=lambda v, start, end: _score(mlflow, wh, v, start, end),
                registry=mlflow.registry(settings.stage_alias),
                training_date=context.partition_key,
                limits=gate_limits(p),
                mlflow_url=mlflow.ui_base,
                other_stages=_other_stages(mlflow, settings.stage_alias),
            )
        except deployment.DeploymentInputError as exc:
            raise dg.Failure(description=str(exc), allow_retries=False) from exc
        if result.proposal is not None:
            registry.set_version_description(
                mlflow.registered_model, result.proposal, result.model_card, mlflow.tracking_uri
            )
        md = dg.MetadataValue.md
        metadata = {"gates": md(result.gates_markdown), "model_card": md(result.model_card)}
        yield dg.Output(result.frame, metadata={**result.metadata(), **metadata})
        yield from champion_check_results(p, result.evaluation)

    return champion


def build_releases(p: Project) -> dg.AssetsDefinition:
    settings = p.settings

    @Stage(p, GROUP, OWNERS, REGISTRY_POOL).asset(
        "release_decisions",
        code=("mlops_assets.ml.promotion", "mlops_assets.ml.decision_history"),
        kinds={"duckdb"},
        automation_condition=dg.AutomationCondition.on_missing(),
        description="What people decided: every `mlops-assets promote` (with its approver) and "
        "`mlops-assets rollback`, in the order they were made, with the day from which "
        "each takes effect. Append-only: materialized without a decision it keeps its rows.",
    )
    def release_decisions(config: ReleaseConfig, warehouse: WarehouseResource) -> Frame:
        from mlops_assets.ml import decision_history, promotion

        stored = warehouse.get().read(promotion.RELEASES_TABLE)
        releases = stored if stored.width else decision_history.empty_releases()
        if not config.action:
            return releases
        try:
            return decision_history.release_row(
                releases,
                action=config.action,
                version=config.version or None,
                candidate=config.candidate or None,
                approved_by=config.approved_by,
                reason=config.reason,
                source=config.source,
                effective_from=settings.today(),
                recorded_at=datetime.now(UTC).replace(tzinfo=None),
            )
        except promotion.PromotionError as exc:
            raise dg.Failure(description=str(exc), allow_retries=False) from exc

    return release_decisions


def build_history(p: Project) -> dg.AssetsDefinition:
    spec, settings = p.spec, p.settings
    limits = settings.thresholds

    @Stage(p, GROUP, OWNERS, REGISTRY_POOL).asset(
        "champion_history",
        code=(
            *DECISION_CODE,
            "mlops_assets.ml.decision_history",
            "mlops_assets.ml.history_queries",
        ),
        kinds={"mlflow", "duckdb"},
        automation_condition=when_decided(),
        ins={
            "champion": dg.AssetIn(partition_mapping=dg.AllPartitionMapping()),
            "release_decisions": dg.AssetIn(),
        },
        deps=["labeled_examples"],
        check_specs=history_check_specs(p),
        output_required=False,
        description=p.words(
            "Which model predicts {outcome} on each day, and why: one decision per training "
            "date (against the champion in force at its cut-off, re-scored on its holdout) "
            "and one per release decision, in order. Batch predictions and the drift "
            "reference read the champion in force from here; materializing it moves the "
            f"registry aliases `champion` and `{settings.stage_alias}` to the champion in "
            "force after the last decision"
            + (
                " (in this environment only an approved release changes it)."
                if limits.approval_gated
                else "."
            )
            + " Launch with config `dry_run: true` to see the decisions without storing or "
            "moving anything."
        ),
    )
    def champion_history(
        context: dg.AssetExecutionContext,
        config: HistoryConfig,
        champion: Frame,
        release_decisions: Frame,
        mlflow: MlflowResource,
        warehouse: WarehouseResource,
        alerts: AlertSinkResource,
    ):
        from mlops_assets.ml import deployment, promotion

        mlflow.experiment_id()
        wh = warehouse.get()
        target = mlflow.registry(settings.stage_alias)
        try:
            result = deployment.history_stage(
                spec,
                champion,
                release_decisions,
                wh.read(promotion.HISTORY_TABLE),
                thresholds=limits,
                limits=gate_limits(p),
                score=lambda v, start, end: _score(mlflow, wh, v, start, end),
                champion_before=mlflow.alias_version(promotion.CHAMPION_ALIAS),
            )
        except deployment.DeploymentInputError as exc:
            raise dg.Failure(description=str(exc), allow_retries=False) from exc
        metadata = {**result.metadata(), "dry_run": config.dry_run, **_history_markdown(result)}
        if config.dry_run:
            context.log_event(dg.AssetObservation("champion_history", metadata=metadata))
        else:
            _release(target, result, settings.champion_pointer_path)
            for notice in result.notices:
                alerts.send(asset="champion_history", run_id=context.run_id, **vars(notice))
            metadata["aliases_moved"] = result.moves_aliases
            yield dg.Output(result.history, metadata=metadata)
        yield from history_check_results(p, result.history)

    return champion_history


def _examples(wh: Warehouse, start: date, end: date) -> "pl.DataFrame":
    """The labeled examples of the days ``[start, end]``."""
    return wh.read("labeled_examples", project().spec.date_column, start, end + timedelta(1))


def _score(
    mlflow: MlflowResource, wh: Warehouse, version: str, start: date, end: date
) -> dict | str:
    """The metrics of ``version`` on the labeled examples of ``[start, end]`` and its scores per
    segment (under ``segments``), or why not."""
    from mlops_assets.ml import deployment

    examples = _examples(wh, start, end)
    return deployment.score_version(project().spec, examples, lambda: mlflow.load_version(version))


def _other_stages(mlflow: MlflowResource, stage_alias: str) -> dict[str, str]:
    """The version of each other stage's model this registry holds (alias -> version): staging
    holds prod's `butterfly` once a promotion has copied its champion into prod."""
    from mlops_assets.environments import STAGE_ALIASES

    found = {}
    for alias in STAGE_ALIASES.values():
        if alias != stage_alias and (version := mlflow.alias_version(alias)) is not None:
            found[alias] = version
    return found


def _history_markdown(result: "HistoryResult") -> dict[str, dg.MetadataValue]:
    """The decisions and the gates of a decision history, as markdown tables."""
    from mlops_assets.ml import history_queries

    return {
        "history": dg.MetadataValue.md(history_queries.history_markdown(result.history)),
        "gates": dg.MetadataValue.md(history_queries.gates_markdown(result.history)),
    }


def _release(target: "Registry", result: "HistoryResult", pointer_path: Path) -> None:
    """Move the registry aliases to the champion in force after the history (or remove them
    when none is), and publish the champion pointer the endpoint watches."""
    from mlops_assets.ml import registry
    from mlops_assets.storage import champion_pointer

    if result.moves_aliases:
        if result.after is None:
            registry.delete_aliases(target.model_name, target.aliases, target.tracking_uri)
        else:
            registry.set_aliases(
                target.model_name, result.after, target.aliases, target.tracking_uri
            )
    champion_pointer.publish(pointer_path, target.model_name, result.after, target.aliases)


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions(assets=build_assets(project()))
