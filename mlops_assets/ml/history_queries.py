"""What a decision history (:mod:`mlops_assets.ml.decision_history`) says: the champion in force
on a day or now, the version each training date hands to monitoring, what a rollback restores,
the gates each decision recorded, and the history as markdown.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any, cast

import polars as pl

from mlops_assets.ml import gates
from mlops_assets.ml.promotion import RELEASE, ROLLBACK, TRAINING, PromotionError


def gate_results(row: dict[str, Any]) -> dict[str, gates.GateResult]:
    """The gate results a training decision recorded, by gate name."""
    found = gates.loads(row.get("gates")) + gates.loads(row.get("serving_gate"))
    return {r.gate: r for r in found}


def champion_in_force(history: pl.DataFrame, day: date) -> str | None:
    """The champion version in force on ``day``: after the last decision effective on or
    before it."""
    if history.is_empty():
        return None
    rows = history.filter(pl.col("effective_from") <= day).sort("seq")
    return rows["to_version"][-1] if rows.height else None


def watched_versions(history: pl.DataFrame) -> pl.DataFrame:
    """(training_date, version) of the model each training date hands to monitoring: its
    proposal while it awaits approval, else the champion in force after it."""
    training = history.filter(pl.col("kind") == TRAINING)
    return training.select(
        "training_date",
        pl.when(pl.col("action") == "propose")
        .then(pl.col("proposed_version"))
        .otherwise(pl.col("to_version"))
        .alias("version"),
    ).filter(pl.col("version").is_not_null())


def current(history: pl.DataFrame) -> str | None:
    """The champion in force after the last decision."""
    return history.sort("seq")["to_version"][-1] if history.height else None


def first_day_in_force(history: pl.DataFrame) -> date | None:
    served = history.filter(pl.col("to_version").is_not_null())
    return cast(date, served["effective_from"].min()) if served.height else None


def plan_rollback(history: pl.DataFrame) -> tuple[str | None, str]:
    """What rollback restores: the champion the current one replaced (rollbacks are not
    replacements, so rolling back twice walks further back). Undoing the first approved release
    into an environment leaves it without a champion. Returns (version or None, reason)."""
    rows = history.sort("seq").to_dicts()
    now = rows[-1]["to_version"] if rows else None
    if now is None:
        raise PromotionError("there is no champion to roll back from")
    made = [
        r
        for r in rows
        if r["to_version"] == now and r["from_version"] != now and r["action"] != ROLLBACK
    ]
    if made and (made[-1]["from_version"] is not None or made[-1]["kind"] == RELEASE):
        change = made[-1]
        when = change["training_date"] or change["effective_from"]
        return change["from_version"], f"rollback of the {change['action']} of {when}"
    raise PromotionError(
        f"champion v{now} has no previous champion in the history: nothing to roll back to"
    )


def history_markdown(history: pl.DataFrame) -> str:
    cols = ["effective_from", "kind", "training_date", "action", "from_version", "to_version"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in history.sort("seq").iter_rows(named=True):
        lines.append("| " + " | ".join(str(row[c] or "-") for c in cols) + " |")
    return "\n".join(lines)


def baseline_in_force(history: pl.DataFrame) -> Sequence[dict[str, Any]]:
    """Decisions after which a baseline was in force (must be none)."""
    return history.filter(pl.col("role") == "baseline").to_dicts()


def latest_training(history: pl.DataFrame) -> dict[str, Any] | None:
    training = history.filter(pl.col("kind") == TRAINING).sort("seq")
    return training.row(-1, named=True) if training.height else None


def gates_markdown(history: pl.DataFrame) -> str:
    """The gates of every training decision, latest first: gate, verdict, observed, threshold."""
    lines = []
    for row in history.filter(pl.col("kind") == TRAINING).sort("seq", descending=True).to_dicts():
        results = list(gate_results(row).values())
        if results:
            lines += [
                f"**{row['training_date']}: {row['action']}**",
                "",
                gates.markdown(results),
                "",
            ]
    return "\n".join(lines) or "no gate was evaluated (no proposal)"
