"""Model deployment: pick the champion of a training date and move the registry aliases.

Order of operations, so that a bad model never reaches an alias:
1. the leaderboard of the date's candidates plus the incumbent re-scored on the same holdout;
2. the promotion rule (`selection.decide`): a baseline never becomes champion;
3. the chosen version is loaded from its registry URI in a fresh process and predicts sample
   rows (`champion_serves`); if it fails, the incumbent stays;
4. only then, and only outside dry-run, the aliases `champion` and the stage alias move.
Every decision becomes a row of the champion history.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import polars as pl

from mlops_assets.dataset import DatasetSpec
from mlops_assets.ml.selection import MODEL, Decision, Entry, decide, leaderboard_markdown

CHAMPION_ALIAS = "champion"
HISTORY_TABLE = "champion_history"
METRIC_COLUMNS = ("mae", "rmse", "wape", "bias")


class PromotionError(RuntimeError):
    """Promotion or rollback refused, with the reason."""


@dataclass(frozen=True)
class Registry:
    """Where the environment's models live."""

    tracking_uri: str
    model_name: str
    stage_alias: str

    @property
    def aliases(self) -> list[str]:
        return [CHAMPION_ALIAS, self.stage_alias]


@dataclass(frozen=True)
class PromotionOutcome:
    decision: Decision
    leaderboard: list[Entry]
    incumbent: Entry | None
    serves_ok: bool
    serves_detail: str
    serves_version: str | None
    from_version: str | None
    champion_version: str | None
    aliases_moved: bool
    dry_run: bool
    history_row: dict[str, Any]
    model_card: str

    @property
    def champion_entry(self) -> Entry | None:
        """The champion after this decision (the chosen one if it moved, else the incumbent)."""
        if self.aliases_moved or (self.dry_run and self.decision.promoted and self.serves_ok):
            return self.decision.chosen
        return self.incumbent


def entries_from_cards(cards: pl.DataFrame) -> list[Entry]:
    return [
        Entry(
            name=row["candidate"],
            role=row["role"],
            version=str(row["model_version"]),
            metrics={m: float(row[m]) for m in METRIC_COLUMNS if row.get(m) is not None},
            run_id=row.get("run_id"),
            extra={"run_url": row.get("run_url", "")},
        )
        for row in cards.iter_rows(named=True)
    ]


def score_incumbent(registry: Registry, holdout: pl.DataFrame, spec: DatasetSpec) -> Entry | None:
    """The current champion re-scored on this holdout, or None when there is none yet."""
    from mlops_assets.ml import registry as mlreg
    from mlops_assets.ml.training import score

    version = mlreg.get_alias_version(registry.model_name, CHAMPION_ALIAS, registry.tracking_uri)
    if version is None:
        return None
    try:
        model = mlreg.load_model_version(registry.model_name, version, registry.tracking_uri)
        metrics, _ = score(model, holdout, spec)
    except Exception as exc:
        # An incumbent that no longer loads scores worst (a broken champion must not block
        # its replacement); the chosen candidate still has to pass champion_serves.
        return Entry(
            name="incumbent:unloadable",
            role=MODEL,
            version=version,
            metrics={},
            extra={"error": f"{type(exc).__name__}: {exc}"[:500]},
        )
    tags = mlreg.version_tags(registry.model_name, version, registry.tracking_uri)
    return Entry(
        name=f"incumbent:{tags.get('candidate', model.candidate)}",
        role=MODEL,
        version=version,
        metrics=metrics,
        run_id=mlreg.version_run_id(registry.model_name, version, registry.tracking_uri),
    )


def model_card(
    spec: DatasetSpec,
    training_date: str,
    windows: dict[str, str],
    leaderboard: list[Entry],
    incumbent: Entry | None,
    decision: Decision,
) -> str:
    chosen = decision.chosen
    lines = [
        f"# Model card: {spec.name}, training date {training_date}",
        "",
        f"Predicts **{spec.target}** ({spec.outcome_noun}) for each {spec.event_noun}.",
        f"Train window {windows['train_start']}..{windows['train_end']}, holdout "
        f"{windows['holdout_start']}..{windows['holdout_end']}; metric: "
        f"**{spec.training.metric}** (lower is better).",
        "",
        "## Leaderboard",
        "",
        leaderboard_markdown(leaderboard, incumbent, spec.training.metric, decision),
        "",
        "## Features",
        "",
        ", ".join(f"`{c}`" for c in spec.model_feature_columns),
    ]
    if chosen is not None and chosen.run_id:
        lines += [
            "",
            "## Plots",
            "",
            f"MLflow run `{chosen.run_id}`: artifacts `plots/feature_importance.png` and "
            "`plots/predicted_vs_actual.png`.",
        ]
    return "\n".join(lines)


def promote(
    *,
    spec: DatasetSpec,
    registry: Registry,
    cards: pl.DataFrame,
    holdout: pl.DataFrame,
    training_date: str,
    effective_from: date,
    promotion_margin: float,
    dry_run: bool,
    dagster_run_id: str = "",
    now: datetime | None = None,
) -> PromotionOutcome:
    """Decide the champion of one training date and, if it changes, move the aliases."""
    from mlops_assets.ml import registry as mlreg

    leaderboard = entries_from_cards(cards)
    incumbent = score_incumbent(registry, holdout, spec)
    decision = decide(
        leaderboard,
        incumbent,
        spec.training.metric,
        promotion_margin,
        spec.training.baseline_margin,
    )
    from_version = incumbent.version if incumbent else None
    serves_ok, serves_detail, serves_version = True, "no new champion to load", None
    if decision.promoted and decision.chosen is not None:
        serves_version = decision.chosen.version
        with tempfile.TemporaryDirectory(prefix="mlops_serves_") as tmp:
            sample = mlreg.write_sample_csv(
                holdout, spec.model_feature_columns, Path(tmp) / "sample.csv"
            )
            serves_ok, serves_detail = mlreg.check_serves(
                registry.tracking_uri, registry.model_name, serves_version, sample
            )
    moved = decision.promoted and serves_ok and not dry_run
    if moved:
        mlreg.set_aliases(
            registry.model_name, serves_version, registry.aliases, registry.tracking_uri
        )
    champion_version = serves_version if moved else from_version
    action = decision.action
    if decision.promoted and not serves_ok:
        action = "keep_not_serving"
    elif dry_run and decision.promoted:
        action = f"dry_run_{decision.action}"
    card = model_card(spec, training_date, _windows(cards), leaderboard, incumbent, decision)
    if moved:
        mlreg.set_version_description(
            registry.model_name, serves_version, card, registry.tracking_uri
        )
    metric = spec.training.metric
    history_row = {
        "training_date": date.fromisoformat(training_date[:10]),
        "effective_from": effective_from,
        "decided_at": now or datetime.now(),
        "action": action,
        "from_version": from_version,
        "to_version": champion_version,
        "candidate": decision.chosen.name if decision.chosen else None,
        "metric": metric,
        "chosen_score": decision.chosen.value(metric) if decision.chosen else None,
        "incumbent_score": incumbent.value(metric) if incumbent else None,
        "best_baseline_score": (
            decision.best_baseline.value(metric) if decision.best_baseline else None
        ),
        "baseline_topped": decision.baseline_topped,
        "reason": decision.reason
        if serves_ok
        else f"{decision.reason}; not serving: " + serves_detail[-300:],
        "dry_run": dry_run,
        "dagster_run_id": dagster_run_id,
    }
    return PromotionOutcome(
        decision=decision,
        leaderboard=leaderboard,
        incumbent=incumbent,
        serves_ok=serves_ok,
        serves_detail=serves_detail,
        serves_version=serves_version,
        from_version=from_version,
        champion_version=champion_version,
        aliases_moved=moved,
        dry_run=dry_run,
        history_row=history_row,
        model_card=card,
    )


def _windows(cards: pl.DataFrame) -> dict[str, str]:
    first = cards.row(0, named=True)
    return {k: str(first[k]) for k in ("train_start", "train_end", "holdout_start", "holdout_end")}


HISTORY_SCHEMA = {
    "training_date": pl.Date,
    "effective_from": pl.Date,
    "decided_at": pl.Datetime("us"),
    "action": pl.String,
    "from_version": pl.String,
    "to_version": pl.String,
    "candidate": pl.String,
    "metric": pl.String,
    "chosen_score": pl.Float64,
    "incumbent_score": pl.Float64,
    "best_baseline_score": pl.Float64,
    "baseline_topped": pl.Boolean,
    "reason": pl.String,
    "dry_run": pl.Boolean,
    "dagster_run_id": pl.String,
}


def history_frame(row: dict[str, Any]) -> pl.DataFrame:
    return pl.DataFrame([row], schema=HISTORY_SCHEMA)


def champion_in_force(history: pl.DataFrame, day: date) -> str | None:
    """The champion version in force on ``day``: the latest decision effective on or before it."""
    if history.is_empty():
        return None
    rows = history.filter(
        (pl.col("effective_from") <= day) & pl.col("to_version").is_not_null()
    ).sort("effective_from", "decided_at")
    return rows["to_version"][-1] if rows.height else None


def plan_rollback(history: pl.DataFrame, current: str | None) -> str:
    """The version to roll back to: the one whose promotion the current champion replaced
    (rollback rows are not promotions, so rolling back twice walks further back)."""
    if current is None:
        raise PromotionError("there is no champion to roll back from")
    made = history.filter(
        (pl.col("to_version") == current)
        & pl.col("from_version").is_not_null()
        & (pl.col("from_version") != current)
        & (pl.col("action") == "promote")
    ).sort("decided_at")
    if made.is_empty():
        raise PromotionError(
            f"champion v{current} has no previous champion in the history: nothing to roll back to"
        )
    return made["from_version"][-1]


def rollback(
    registry: Registry, history: pl.DataFrame, today: date, now: datetime | None = None
) -> dict[str, Any]:
    """Move the aliases back to the previous champion; return the history row to record."""
    from mlops_assets.ml import registry as mlreg

    current = mlreg.get_alias_version(registry.model_name, CHAMPION_ALIAS, registry.tracking_uri)
    previous = plan_rollback(history, current)
    mlreg.set_aliases(registry.model_name, previous, registry.aliases, registry.tracking_uri)
    return {
        "training_date": today,
        "effective_from": today,
        "decided_at": now or datetime.now(),
        "action": "rollback",
        "from_version": current,
        "to_version": previous,
        "candidate": mlreg.version_tags(registry.model_name, previous, registry.tracking_uri).get(
            "candidate"
        ),
        "metric": None,
        "chosen_score": None,
        "incumbent_score": None,
        "best_baseline_score": None,
        "baseline_topped": False,
        "reason": f"rollback from v{current} to v{previous}",
        "dry_run": False,
        "dagster_run_id": "",
    }
