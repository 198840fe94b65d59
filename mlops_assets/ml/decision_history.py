"""Step 2 of promotion: the decision history (the ``champion_history`` asset) and the release
decisions it interleaves.

:func:`decide_history` takes every evaluated training date (the stored ``champion`` rows that
:func:`mlops_assets.ml.promotion.evaluate` produced) and the people's release decisions, and
returns every decision in order, each against the champion in force at its cut-off. The same
evaluations and releases give the same history whatever order produced them.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any, cast

import polars as pl

from mlops_assets.environments import GateThresholds
from mlops_assets.ml import gates
from mlops_assets.ml.promotion import (
    METRIC_COLUMNS,
    PROMOTE,
    RELEASE,
    ROLLBACK,
    SERVE_COLUMNS,
    TRAINING,
    PromotionError,
    entries_from_cards,
)
from mlops_assets.ml.selection import beats, relative_improvement

HISTORY_SCHEMA: dict[str, Any] = {
    "seq": pl.Int64,
    "kind": pl.String,
    "training_date": pl.Date,
    "effective_from": pl.Date,
    "action": pl.String,
    "from_version": pl.String,
    "to_version": pl.String,
    "candidate": pl.String,
    "role": pl.String,
    "proposed_version": pl.String,
    "proposed_candidate": pl.String,
    "metric": pl.String,
    "chosen_score": pl.Float64,
    "incumbent_score": pl.Float64,
    "best_baseline_score": pl.Float64,
    "baseline_topped": pl.Boolean,
    "reason": pl.String,
    "approved_by": pl.String,
    "evaluation_key": pl.String,
    "gates": pl.String,
    "serving_gate": pl.String,
    "incumbent_segments": pl.String,
}

RELEASE_SCHEMA: dict[str, Any] = {
    "seq": pl.Int64,
    "effective_from": pl.Date,
    "action": pl.String,
    "version": pl.String,
    "candidate": pl.String,
    "approved_by": pl.String,
    "reason": pl.String,
    "source": pl.String,
    "recorded_at": pl.Datetime("us"),
}

# Scores the version ``v`` on the holdout window ``[start, end]``: its metrics (and, under
# ``"segments"``, its :func:`gates.segment_scores`), or an error text.
ScoreFn = Callable[[str, date, date], "dict[str, Any] | str"]


def empty_history() -> pl.DataFrame:
    return pl.DataFrame(schema=HISTORY_SCHEMA)


def empty_releases() -> pl.DataFrame:
    return pl.DataFrame(schema=RELEASE_SCHEMA)


def evaluation_key(rows: pl.DataFrame) -> str:
    """What a training date's decision depends on besides the incumbent: its candidates'
    versions, scores and proposal."""
    cols = [
        "candidate",
        "model_version",
        "proposed",
        "serves",
        "refused_by",
        "segment_scores",
        *METRIC_COLUMNS,
    ]
    present = [c for c in cols if c in rows.columns]
    body = rows.select(present).sort("candidate").to_dicts()
    return hashlib.sha256(json.dumps(body, default=str).encode()).hexdigest()[:16]


@dataclass
class _InForce:
    version: str | None = None
    candidate: str | None = None
    role: str | None = None


def decide_history(
    evaluations: pl.DataFrame,
    releases: pl.DataFrame,
    *,
    metric: str,
    promotion_margin: float,
    gated: bool,
    score: ScoreFn,
    previous: pl.DataFrame | None = None,
    limits: GateThresholds | None = None,
) -> pl.DataFrame:
    """Every decision in order: one per evaluated training date (at its cut-off) and one per
    release decision (at its effective day, after the training decisions of that day).

    ``score`` re-scores an incumbent on a date's holdout; a score already in ``previous`` for
    the same date, incumbent and evaluation is reused (scores are a function of those). A
    proposal that would replace the incumbent must also pass the gates that compare it with
    the incumbent (``segment_guardrail``, ``serving_budget``; ``limits``); a refusal keeps
    the incumbent (action ``refused``)."""
    limits = limits or GateThresholds()
    memo: dict[tuple[date, str, str], tuple[float, str | None]] = {}
    if previous is not None and previous.height:
        has_segments = "incumbent_segments" in previous.columns
        for row in previous.filter(pl.col("kind") == TRAINING).iter_rows(named=True):
            if row["from_version"] and row["incumbent_score"] is not None:
                key = (row["training_date"], row["from_version"], row["evaluation_key"])
                segs = row["incumbent_segments"] if has_segments else None
                if segs is not None or not has_segments:
                    memo[key] = (row["incumbent_score"], segs)
    measured = _measured(evaluations)
    roles = {
        str(r["model_version"]): (r["candidate"], r["role"])
        for r in evaluations.iter_rows(named=True)
    }
    events: list[tuple[date, int, int, Any]] = []
    if evaluations.height:
        for (day,), rows in evaluations.group_by(["training_date"]):
            events.append((rows["effective_from"][0], 0, 0, (day, rows.sort("candidate"))))
    for row in releases.iter_rows(named=True):
        events.append((row["effective_from"], 1, row["seq"], row))
    events.sort(key=lambda e: (e[0], e[1], e[2]))

    state = _InForce()
    out: list[dict[str, Any]] = []
    for effective, kind, _, payload in events:
        before = state.version
        if kind == 0:
            day, rows = payload
            row = _training_decision(
                day,
                rows,
                state,
                metric,
                promotion_margin,
                gated,
                score,
                memo,
                limits,
                measured,
            )
        else:
            row = _release_decision(payload, state, roles)
        row.update(seq=len(out) + 1, effective_from=effective, from_version=before)
        row["to_version"] = state.version
        row["candidate"], row["role"] = state.candidate, state.role
        out.append(row)
    return pl.DataFrame(out, schema=HISTORY_SCHEMA) if out else empty_history()


def _training_decision(
    day: date,
    rows: pl.DataFrame,
    state: _InForce,
    metric: str,
    promotion_margin: float,
    gated: bool,
    score: ScoreFn,
    memo: dict[tuple[date, str, str], tuple[float, str | None]],
    limits: GateThresholds,
    measured: dict[str, dict[str, float | None]],
) -> dict[str, Any]:
    """One training date against the champion in force: its evaluation already applied the
    baseline rule and the candidate's own gates with the settings of its own run; here the
    incumbent is compared, on the metric and by the gates that need it."""
    key = evaluation_key(rows)
    proposal = rows.filter(pl.col("proposed"))
    chosen = entries_from_cards(proposal)[0] if proposal.height else None
    keeping = f"keeping {state.candidate} (v{state.version})" if state.version else "no champion"
    topped = bool(rows["baseline_topped"][0]) if "baseline_topped" in rows.columns else False
    results = gates.loads(rows["gates"][0]) if "gates" in rows.columns else []
    incumbent_score, incumbent_segments = None, None
    if state.version is not None:
        incumbent_score, incumbent_segments = memo.get((day, state.version, key), (None, None))
        if incumbent_score is None:
            first = rows.row(0, named=True)
            scored = score(
                state.version,
                date.fromisoformat(str(first["holdout_start"])),
                date.fromisoformat(str(first["holdout_end"])),
            )
            # An incumbent that no longer loads scores worst: a broken champion must not block
            # its replacement (which has passed its own serve check).
            incumbent_score = (
                float(scored.get(metric, math.inf)) if isinstance(scored, dict) else math.inf
            )
            segs = scored.get("segments") if isinstance(scored, dict) else None
            incumbent_segments = json.dumps(segs, sort_keys=True) if segs else None
    serving_gate = None
    refused_by = (
        proposal["refused_by"][0] if proposal.height and "refused_by" in proposal.columns else None
    )
    if chosen is None:
        evaluated = str(rows["evaluation"][0]).removesuffix("; no champion yet")
        action, reason = "keep", f"{evaluated}; {keeping}"
    elif not bool(proposal["serves"][0]):
        action, reason = "keep_not_serving", f"{proposal['evaluation'][0]}; {keeping}"
    elif refused_by:
        action, reason = "refused", f"{proposal['evaluation'][0]}; {keeping}"
    elif incumbent_score is None:
        action, reason = "first", str(proposal["evaluation"][0])
    else:
        value = chosen.value(metric)
        label = f"{chosen.name} (v{chosen.version}) {metric} {value:.4f}"
        against = f"the incumbent {state.candidate} (v{state.version}, {incumbent_score:.4f})"
        if beats(value, incumbent_score, promotion_margin):
            gain = relative_improvement(value, incumbent_score)
            action, reason = "promote", f"promote {label}: beats {against} by {gain:.1%}"
        else:
            action = "keep"
            reason = f"{label} does not beat {against} by {promotion_margin:.1%}; {keeping}"
    if action in ("first", "promote") and chosen is not None:
        segs = proposal["segment_scores"][0] if "segment_scores" in proposal.columns else None
        guard = gates.segment_guardrail(
            json.loads(segs) if segs else None,
            json.loads(incumbent_segments) if incumbent_segments else None,
            limits,
            metric,
        )
        budget = gates.serving_budget(
            measured.get(str(chosen.version)),
            measured.get(str(state.version)) if state.version else None,
            limits,
        )
        results.append(guard)
        serving_gate = gates.dumps([budget])
        refusal = gates.first_refusal([guard, budget])
        if refusal is not None:
            action = "refused"
            reason = f"{reason}; refused by gate {refusal.gate}: {refusal.reason}; {keeping}"
    if action in ("first", "promote") and chosen is not None:
        if gated:
            action = "propose"
            reason = (
                f"{reason}; approval needed: `mlops-assets promote --env prod --training-date "
                f"{day} --approved-by NAME` makes it champion"
            )
        else:
            state.version, state.candidate, state.role = chosen.version, chosen.name, chosen.role
    baselines = rows.filter(pl.col("role") == "baseline")[metric]
    return {
        "kind": TRAINING,
        "training_date": day,
        "action": action,
        "proposed_version": chosen.version if chosen else None,
        "proposed_candidate": chosen.name if chosen else None,
        "metric": metric,
        "chosen_score": _finite(chosen.value(metric)) if chosen else None,
        "incumbent_score": _finite(incumbent_score) if incumbent_score is not None else None,
        "best_baseline_score": float(cast(float, baselines.min())) if baselines.len() else None,
        "baseline_topped": topped,
        "reason": reason,
        "approved_by": None,
        "evaluation_key": key,
        "gates": gates.dumps(results) if results else None,
        "serving_gate": serving_gate,
        "incumbent_segments": incumbent_segments,
    }


def _measured(evaluations: pl.DataFrame) -> dict[str, dict[str, float | None]]:
    """What the serve check measured for each proposed version (its latest evaluation)."""
    if "serve_p99_ms" not in evaluations.columns:
        return {}
    rows = evaluations.filter(pl.col("serve_p99_ms").is_not_null()).sort("training_date")
    return {
        str(r["model_version"]): {key: r[column] for key, column in SERVE_COLUMNS.items()}
        for r in rows.iter_rows(named=True)
    }


def _release_decision(
    row: dict[str, Any], state: _InForce, roles: dict[str, tuple[str, str]]
) -> dict[str, Any]:
    version = row["version"]
    candidate, role = roles.get(str(version), (row["candidate"], "model"))
    state.version = version
    state.candidate = (row["candidate"] or candidate) if version else None
    state.role = role if version else None
    return {
        "kind": RELEASE,
        "training_date": None,
        "action": row["action"],
        "proposed_version": version,
        "proposed_candidate": state.candidate,
        "metric": None,
        "chosen_score": None,
        "incumbent_score": None,
        "best_baseline_score": None,
        "baseline_topped": False,
        "reason": row["reason"],
        "approved_by": row["approved_by"],
        "evaluation_key": None,
        "gates": None,
        "serving_gate": None,
        "incumbent_segments": None,
    }


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def release_row(
    releases: pl.DataFrame,
    *,
    action: str,
    version: str | None,
    candidate: str | None,
    approved_by: str,
    reason: str,
    source: str,
    effective_from: date,
    recorded_at: Any,
) -> pl.DataFrame:
    """``releases`` with one more release decision appended."""
    if action not in (PROMOTE, ROLLBACK):
        raise PromotionError(f"release action {action!r} is not {PROMOTE} or {ROLLBACK}")
    if not approved_by or not approved_by.strip():
        raise PromotionError(f"a {action} needs a named person (--approved-by NAME)")
    if action == PROMOTE and not version:
        raise PromotionError("promote needs the model version to make champion")
    seq = int(cast(int, releases["seq"].max() or 0)) + 1 if releases.height else 1
    row = {
        "seq": seq,
        "effective_from": effective_from,
        "action": action,
        "version": version,
        "candidate": candidate,
        "approved_by": approved_by.strip(),
        "reason": reason,
        "source": source,
        "recorded_at": recorded_at,
    }
    return pl.concat([releases, pl.DataFrame([row], schema=RELEASE_SCHEMA)])
