"""``mlops-assets rollback`` and ``mlops-assets promote``: a person's release decision, recorded
through the pipeline (``release_decisions``, then the decision history, which moves the aliases).
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys


def _record_release(settings, release: dict[str, str]) -> str | None:
    """Record a person's decision through the pipeline (release_decisions, then the decision
    history, which moves the aliases); the champion in force after it, or an error text."""
    import dagster as dg

    from mlops_assets.run_instance import ensure_instance
    from mlops_assets.runner import run_decisions

    os.environ["MLOPS_ENV"] = settings.env
    from mlops_assets.definitions import defs

    result = run_decisions(defs, ensure_instance(settings), release=release)
    if not result.success:
        failures = [
            # Dagster types event_specific_data as the union of every event's data: a
            # STEP_FAILURE event's is a StepFailureData, whose error is set.
            e.event_specific_data.error.message.strip()  # type: ignore[union-attr]
            for e in result.all_events
            if e.event_type == dg.DagsterEventType.STEP_FAILURE
        ]
        return "error: " + ("; ".join(failures) or "the decision history run failed")
    return None


def _history(settings):
    from mlops_assets.ml import decision_history, promotion
    from mlops_assets.storage.warehouse import Warehouse

    history = Warehouse.for_settings(settings).read(promotion.HISTORY_TABLE)
    return history if history.width else decision_history.empty_history()


def cmd_rollback(args: argparse.Namespace) -> int:
    import polars as pl

    from mlops_assets.environments import load_settings
    from mlops_assets.ml import history_queries, promotion

    settings = load_settings()
    if not settings.mlflow_db_path.exists():
        print(
            f"error: no model registry in {settings.env_dir}: nothing to roll back", file=sys.stderr
        )
        return 2
    history = _history(settings)
    try:
        version, reason = history_queries.plan_rollback(history)
    except promotion.PromotionError as exc:
        print(f"error: rollback refused: {exc}", file=sys.stderr)
        return 2
    current = history_queries.current(history)
    release = {
        "action": promotion.ROLLBACK,
        "version": version or "",
        "approved_by": args.by or getpass.getuser(),
        "reason": args.reason or f"rollback from v{current} to v{version or '-'} ({reason})",
        "source": f"rollback from v{current}",
    }
    error = _record_release(settings, release)
    if error:
        print(error, file=sys.stderr)
        return 1
    aliases = f"champion, {settings.stage_alias}"
    named = history.filter(pl.col("to_version") == version)["candidate"]
    target = f"v{version} ({named[-1]})" if version else "no champion (aliases removed)"
    print(
        f"rolled back {settings.registered_model_name} ({settings.env}): aliases {aliases} "
        f"moved from v{current} to {target}; recorded in release_decisions and "
        f"{promotion.HISTORY_TABLE}"
    )
    return 0


def cmd_promote(args: argparse.Namespace) -> int:
    from mlops_assets.environments import load_settings
    from mlops_assets.ml import promotion, release
    from mlops_assets.ml.promotion import PromotionError
    from mlops_assets.release_checks import champion_checks

    if args.training_date:
        return _promote_proposal(args)
    if (args.source, args.target) != ("staging", "prod"):
        print("error: promotion goes from staging to prod only", file=sys.stderr)
        return 2
    source, target = load_settings(args.source), load_settings(args.target)
    try:
        plan = release.plan(source, target, args.approved_by, args.reason, champion_checks)
    except PromotionError as exc:
        print(f"error: promotion refused: {exc}", file=sys.stderr)
        return 2
    checks = ", ".join(f"{name} {'passed' if ok else 'FAILED'}" for name, ok in plan.checks.items())
    print(
        f"{'would promote' if args.dry_run else 'promoting'} {plan.source_model} "
        f"v{plan.source_version} ({source.env}) into {plan.target_model} ({target.env}), "
        f"aliases {', '.join(plan.aliases)}; approved by {plan.approved_by}; checks: {checks}"
    )
    if args.dry_run:
        print("dry run: nothing copied, no alias moved, nothing logged")
        return 0
    version = release.execute(plan, source, target)
    error = _record_release(
        target,
        {
            "action": promotion.PROMOTE,
            "version": version,
            "candidate": release.version_candidate(target, version),
            "approved_by": plan.approved_by,
            "reason": plan.reason,
            "source": f"{source.env} v{plan.source_version}",
        },
    )
    if error:
        print(error, file=sys.stderr)
        return 1
    release.record(plan, target, version)
    release.mark_in_source(plan, source, target)
    print(
        f"promoted: {plan.target_model} v{version} now holds {', '.join(plan.aliases)}; "
        f"{plan.source_model} v{plan.source_version} holds {target.stage_alias} in "
        f"{source.env}; logged in {release.promotion_log_path(target)} and release_decisions"
    )
    return 0


def _promote_proposal(args: argparse.Namespace) -> int:
    """Approve what a training date of the environment proposed (prod's own proposals)."""
    import polars as pl

    from mlops_assets.environments import load_settings
    from mlops_assets.ml import promotion

    settings = load_settings(args.env or args.target)
    if not args.approved_by or not args.approved_by.strip():
        print(
            "error: promotion refused: it needs a named approver (--approved-by NAME)",
            file=sys.stderr,
        )
        return 2
    rows = _history(settings).filter(
        (pl.col("training_date").cast(pl.String) == args.training_date)
        & pl.col("proposed_version").is_not_null()
    )
    if rows.is_empty():
        print(
            f"error: promotion refused: training date {args.training_date} of {settings.env} "
            "proposed no model (see the champion_history asset)",
            file=sys.stderr,
        )
        return 2
    row = rows.row(-1, named=True)
    summary = (
        f"{row['proposed_candidate']} v{row['proposed_version']} of training date "
        f"{args.training_date} ({settings.env}), approved by {args.approved_by.strip()}"
    )
    if args.dry_run:
        print(f"would promote {summary}\ndry run: no alias moved, nothing recorded")
        return 0
    error = _record_release(
        settings,
        {
            "action": promotion.PROMOTE,
            "version": row["proposed_version"],
            "candidate": row["proposed_candidate"],
            "approved_by": args.approved_by,
            "reason": args.reason,
            "source": f"proposal of training date {args.training_date}",
        },
    )
    if error:
        print(error, file=sys.stderr)
        return 1
    print(f"promoted {summary}: aliases champion, {settings.stage_alias} moved")
    return 0
