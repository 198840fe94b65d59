"""Model deployment: each training date's evaluation (`champion`), the people's release
decisions (`release_decisions`) and the decision history they add up to (`champion_history`),
which names the champion in force on every day and moves the registry aliases."""

from datetime import UTC, date, datetime, timedelta

import dagster as dg

from mlops_assets.defs.catalog import schema_metadata
from mlops_assets.defs.common import (
    WAREHOUSE_POOL,
    Frame,
    Project,
    code_version,
    project,
    table_metadata,
    when_decided,
)
from mlops_assets.defs.model_deployment.checks import (
    champion_check_results,
    champion_check_specs,
    gate_limits,
    history_check_results,
    history_check_specs,
)
from mlops_assets.defs.model_training.assets import TRAINING_DATE, training_cutoff
from mlops_assets.defs.resources import AlertSinkResource, MlflowResource, WarehouseResource
from mlops_assets.ml.candidates import CANDIDATES

OWNERS = ["team:ml-engineering"]


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

    @dg.asset(
        name="champion",
        group_name="model_deployment",
        automation_condition=dg.AutomationCondition.eager(),
        partitions_def=p.training,
        pool=WAREHOUSE_POOL,
        owners=OWNERS,
        kinds={"mlflow", "duckdb"},
        code_version=code_version(
            "mlops_assets.ml.promotion", "mlops_assets.ml.selection", "mlops_assets.ml.gates"
        ),
        metadata=table_metadata(TRAINING_DATE, **schema_metadata(spec, "champion")),
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
        import polars as pl

        from mlops_assets.ml import gates, promotion, registry, training

        cutoff = training_cutoff(context)
        mlflow.experiment_id()
        w = training.training_windows(spec, cutoff)
        holdout = warehouse.get().read(
            "labeled_examples", spec.date_column, w.holdout_start, w.holdout_end + timedelta(1)
        )
        board = pl.concat([cards[c.asset_name] for c in CANDIDATES], how="diagonal_relaxed")
        evaluation = promotion.evaluate(
            spec=spec,
            registry=mlflow.registry(settings.stage_alias),
            cards=board,
            holdout=holdout,
            training_date=context.partition_key,
            mlflow_url=mlflow.ui_base,
            limits=gate_limits(p),
        )
        comparisons = _stage_comparisons(mlflow, warehouse.get(), evaluation, w)
        card = "\n\n".join([evaluation.model_card, *comparisons])
        if evaluation.proposal is not None:
            registry.set_version_description(
                mlflow.registered_model,
                evaluation.proposal.version,
                card,
                mlflow.tracking_uri,
            )
        yield dg.Output(
            evaluation.frame(board, cutoff),
            metadata={
                **evaluation.decision.metadata(),
                "proposal": evaluation.proposal.version if evaluation.proposal else "none",
                "refused_by": evaluation.refused_by.gate if evaluation.refused_by else "none",
                "gates": dg.MetadataValue.md(gates.markdown(evaluation.gates)),
                "model_card": dg.MetadataValue.md(card),
            },
        )
        yield from champion_check_results(p, evaluation)

    return champion


def build_releases(p: Project) -> dg.AssetsDefinition:
    settings = p.settings

    @dg.asset(
        name="release_decisions",
        group_name="model_deployment",
        automation_condition=dg.AutomationCondition.on_missing(),
        pool=WAREHOUSE_POOL,
        owners=OWNERS,
        kinds={"duckdb"},
        code_version=code_version("mlops_assets.ml.promotion", "mlops_assets.ml.decision_history"),
        metadata=schema_metadata(p.spec, "release_decisions"),
        description=(
            "What people decided: every `mlops-assets promote` (with its approver) and "
            "`mlops-assets rollback`, in the order they were made, with the day from which "
            "each takes effect. Append-only: materialized without a decision it keeps its rows."
        ),
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

    @dg.asset(
        name="champion_history",
        group_name="model_deployment",
        automation_condition=when_decided(),
        pool=WAREHOUSE_POOL,
        owners=OWNERS,
        kinds={"mlflow", "duckdb"},
        code_version=code_version(
            "mlops_assets.ml.promotion",
            "mlops_assets.ml.decision_history",
            "mlops_assets.ml.history_queries",
            "mlops_assets.ml.selection",
            "mlops_assets.ml.gates",
        ),
        metadata=schema_metadata(spec, "champion_history"),
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
        from mlops_assets.ml import decision_history, history_queries, promotion, registry
        from mlops_assets.storage import champion_pointer

        mlflow.experiment_id()
        wh = warehouse.get()
        previous = wh.read(promotion.HISTORY_TABLE)
        history = decision_history.decide_history(
            champion,
            release_decisions if release_decisions.width else decision_history.empty_releases(),
            metric=spec.training.metric,
            promotion_margin=limits.promotion_margin,
            gated=limits.approval_gated,
            score=lambda v, start, end: _score(mlflow, wh, v, start, end),
            previous=previous if previous.width else None,
            limits=gate_limits(p),
        )
        target = mlflow.registry(settings.stage_alias)
        before = registry.get_alias_version(target.model_name, "champion", target.tracking_uri)
        after = history_queries.current(history)
        metadata = {
            "decisions": history.height,
            "champion_in_force": after or "none",
            "aliases_before": before or "none",
            "dry_run": config.dry_run,
            "history": dg.MetadataValue.md(history_queries.history_markdown(history)),
            "gates": dg.MetadataValue.md(history_queries.gates_markdown(history)),
        }
        if config.dry_run:
            context.log_event(dg.AssetObservation("champion_history", metadata=metadata))
            yield from history_check_results(p, history)
            return
        if after != before:
            if after is None:
                registry.delete_aliases(target.model_name, target.aliases, target.tracking_uri)
            else:
                registry.set_aliases(target.model_name, after, target.aliases, target.tracking_uri)
        champion_pointer.publish(
            settings.champion_pointer_path, target.model_name, after, target.aliases
        )
        for row in _new_proposals(history, previous):
            alerts.send(
                kind="proposal",
                asset="champion_history",
                partition=str(row["training_date"]),
                cause="promotion awaiting approval",
                message=f"training date {row['training_date']} proposes "
                f"{row['proposed_candidate']} v{row['proposed_version']}: {row['reason']}",
                run_id=context.run_id,
            )
        for row in _new_refusals(history, previous):
            gate = row["refused_gate"]
            alerts.send(
                kind="gate",
                asset="champion_history",
                partition=str(row["training_date"]),
                cause=f"promotion refused by {gate}",
                message=f"training date {row['training_date']}: {row['proposed_candidate']} "
                f"v{row['proposed_version']} refused by gate {gate}: {row['reason']}",
                run_id=context.run_id,
            )
        yield dg.Output(history, metadata={**metadata, "aliases_moved": after != before})
        yield from history_check_results(p, history)

    return champion_history


def _score(mlflow: MlflowResource, wh, version: str, start: date, end: date, name=None):
    """The metrics of ``version`` on the labeled examples of ``[start, end]`` and its scores per
    segment (under ``segments``), or why not."""
    from mlops_assets.ml import gates, registry
    from mlops_assets.ml.training import PREDICTION, score

    spec = project().spec
    holdout = wh.read("labeled_examples", spec.date_column, start, end + timedelta(1))
    try:
        model = registry.load_model_version(
            name or mlflow.registered_model, version, mlflow.tracking_uri
        )
        metrics, rows = score(model, holdout, spec)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"[:500]
    ordered = holdout.sort([spec.date_column, spec.event_key])
    segments = gates.segment_scores(ordered, rows[PREDICTION].to_numpy(), spec)
    return {**metrics, "segments": segments}


# Other stages' aliases an environment's registry may hold (read-only there): staging holds
# prod's `butterfly` once a promotion has copied its champion into prod.
def _stage_comparisons(mlflow: MlflowResource, wh, evaluation, windows) -> list[str]:
    """Markdown: every candidate against each other stage's model this registry holds, on the
    same holdout (informational, on the model card)."""
    from mlops_assets.environments import STAGE_ALIASES
    from mlops_assets.ml import promotion, registry

    out = []
    for alias in STAGE_ALIASES.values():
        if alias == project().settings.stage_alias:
            continue
        version = registry.get_alias_version(mlflow.registered_model, alias, mlflow.tracking_uri)
        if version is None:
            continue
        scored = _score(mlflow, wh, version, windows.holdout_start, windows.holdout_end)
        if isinstance(scored, dict):
            scored = {k: v for k, v in scored.items() if k != "segments"}
        out.append(
            promotion.reference_comparison(
                evaluation.leaderboard, alias, version, scored, project().spec.training.metric
            )
        )
    return out


def _new_refusals(history, previous) -> list[dict]:
    """Training decisions refused by a gate that the stored history did not hold yet, each with
    the gate that refused it."""
    import polars as pl

    from mlops_assets.ml import history_queries

    def refused(frame) -> list[dict]:
        if not frame.width or "gates" not in frame.columns:
            return []
        out = []
        for row in frame.filter(pl.col("action") == "refused").iter_rows(named=True):
            gate = next(
                (r.gate for r in history_queries.gate_results(row).values() if r.refused), "unknown"
            )
            out.append({**row, "refused_gate": gate})
        return out

    known = {(r["training_date"], r["proposed_version"]) for r in refused(previous)}
    return [r for r in refused(history) if (r["training_date"], r["proposed_version"]) not in known]


def _new_proposals(history, previous) -> list[dict]:
    """Proposals awaiting approval that the stored history did not hold yet."""
    import polars as pl

    rows = history.filter(pl.col("action") == "propose")
    if not previous.width:
        return rows.to_dicts()
    known = {
        (r["training_date"], r["proposed_version"])
        for r in previous.filter(pl.col("action") == "propose").iter_rows(named=True)
    }
    return [
        r
        for r in rows.iter_rows(named=True)
        if (r["training_date"], r["proposed_version"]) not in known
    ]


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions(assets=build_assets(project()))
