"""Model deployment as a history of decisions that any replay re-derives.

Two steps, so that the answer never depends on the order in which training dates were run:

1. :func:`evaluate` (the ``champion`` asset, one training date T): the leaderboard of T's
   candidates on T's holdout, the promotion rule applied without an incumbent (which candidate
   T *proposes*), and the proposal loaded from its registry URI in a fresh process. It moves
   nothing.
2. :func:`decide_history` (the ``champion_history`` asset): the decisions of every evaluated
   training date in the order of their cut-offs, each against the champion *in force at that
   cut-off* (the incumbent, re-scored on that date's holdout), interleaved with the people's
   release decisions (``promote`` with an approver, ``rollback``) at their effective day. The
   same evaluations and releases give the same history whatever order produced them, and a
   re-evaluated date replaces its decision. Only that asset moves the registry aliases, to the
   champion in force after the last decision.

In an approval-gated environment (prod) a training date never changes the champion: a decision
that would promote is recorded as ``propose``, and only a release decision moves it.
"""

from __future__ import annotations

import hashlib
import json
import math
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl

from mlops_assets.dataset import DatasetSpec
from mlops_assets.environments import GateThresholds
from mlops_assets.ml import gates
from mlops_assets.ml.selection import (
    Decision,
    Entry,
    beats,
    decide,
    leaderboard_markdown,
    relative_improvement,
)

CHAMPION_ALIAS = "champion"
HISTORY_TABLE = "champion_history"
RELEASES_TABLE = "release_decisions"
METRIC_COLUMNS = ("mae", "rmse", "wape", "bias")
# The serve check's measurements, as columns of the proposal's row of ``champion``.
SERVE_COLUMNS = {
    "p50_ms": "serve_p50_ms",
    "p99_ms": "serve_p99_ms",
    "load_seconds": "serve_load_s",
    "model_bytes": "model_bytes",
}
TRAINING, RELEASE = "training", "release"
PROMOTE, ROLLBACK = "promote", "rollback"


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


# ---------------------------------------------------------------------------------------------
# Step 1: one training date's evaluation


@dataclass(frozen=True)
class Evaluation:
    """What one training date proposes, before any incumbent is considered."""

    decision: Decision
    leaderboard: list[Entry]
    serves_ok: bool
    serves_detail: str
    model_card: str
    # The gates decided on the candidate alone (business benchmark, target leak), and the
    # proposal's evidence for the gates the decision history decides against the incumbent.
    gates: list[gates.GateResult] = dataclass_field(default_factory=list)
    segments: list[dict[str, Any]] | None = None
    serving: dict[str, float | None] = dataclass_field(default_factory=dict)

    @property
    def refused_by(self) -> gates.GateResult | None:
        return gates.first_refusal(self.gates) if self.decision.promoted else None

    @property
    def proposal(self) -> Entry | None:
        """The candidate this date proposes as champion (never a baseline), if any."""
        ok = self.decision.promoted and self.serves_ok and self.refused_by is None
        return self.decision.chosen if ok else None

    @property
    def reason(self) -> str:
        if not self.serves_ok:
            return f"{self.decision.reason}; not serving: {self.serves_detail[-300:]}"
        refused = self.refused_by
        if refused is not None:
            return f"{self.decision.reason}; refused by gate {refused.gate}: {refused.reason}"
        return self.decision.reason

    def frame(self, cards: pl.DataFrame, effective_from: date) -> pl.DataFrame:
        """The leaderboard rows with the evaluation's columns: the stored ``champion`` value."""
        proposed = self.decision.chosen.version if self.decision.promoted else None
        mine = pl.col("model_version") == (proposed or "")
        refused = self.refused_by

        def on_proposal(value: Any, dtype: Any) -> pl.Expr:
            return pl.when(mine).then(pl.lit(value, dtype=dtype)).otherwise(None)

        return cards.with_columns(
            pl.lit(effective_from, dtype=pl.Date).alias("effective_from"),
            pl.lit(self.decision.baseline_topped).alias("baseline_topped"),
            mine.alias("proposed"),
            pl.lit(self.serves_ok if proposed else None, dtype=pl.Boolean).alias("serves"),
            pl.lit(self.reason).alias("evaluation"),
            pl.lit(gates.dumps(self.gates)).alias("gates"),
            pl.lit(refused.gate if refused else None, dtype=pl.String).alias("refused_by"),
            on_proposal(
                json.dumps(self.segments, sort_keys=True) if self.segments else None, pl.String
            ).alias("segment_scores"),
            *(
                on_proposal(self.serving.get(key), pl.Float64).alias(column)
                for key, column in SERVE_COLUMNS.items()
            ),
        )


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


def model_card(
    spec: DatasetSpec,
    training_date: str,
    windows: dict[str, str],
    leaderboard: list[Entry],
    decision: Decision,
    plot_links: dict[str, str] | None = None,
    gate_results: Sequence[gates.GateResult] = (),
    serving: dict[str, float | None] | None = None,
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
        leaderboard_markdown(leaderboard, None, spec.training.metric, decision),
        "",
        "## Features",
        "",
        ", ".join(f"`{c}`" for c in spec.model_feature_columns),
    ]
    if gate_results:
        lines += ["", "## Gates", "", gates.markdown(gate_results)]
    if serving and serving.get("p99_ms") is not None:
        lines += [
            "",
            "## Serving",
            "",
            f"Single-row latency p50 {serving['p50_ms']:.3f} ms, p99 {serving['p99_ms']:.3f} ms "
            f"(endpoint prediction path, fresh process); load {serving['load_seconds']:.2f} s; "
            f"size {serving['model_bytes'] or 0:,.0f} bytes.",
        ]
    if chosen is not None and chosen.run_id:
        lines += ["", "## Plots", ""]
        for name, url in (plot_links or {}).items():
            lines += [f"**{name}**", "", f"![{name}]({url})", ""]
        run_url = chosen.extra.get("run_url")
        run = f"[`{chosen.run_id}`]({run_url})" if run_url else f"`{chosen.run_id}`"
        lines.append(f"MLflow run {run}: the plots and the model are its artifacts.")
    return "\n".join(lines)


def evaluate(
    *,
    spec: DatasetSpec,
    registry: Registry,
    cards: pl.DataFrame,
    holdout: pl.DataFrame,
    training_date: str,
    limits: GateThresholds | None = None,
    mlflow_url: str | None = None,
) -> Evaluation:
    """The leaderboard of one training date, its proposal, whether the proposal serves (and
    what serving it costs), and the gates decided on the proposal alone.

    With ``mlflow_url`` (the MLflow UI's base URL) the model card shows the proposal's plots."""
    from mlops_assets.ml import registry as mlreg

    limits = limits or GateThresholds()
    metric = spec.training.metric
    leaderboard = entries_from_cards(cards)
    decision = decide(leaderboard, None, metric, 0.0, spec.training.baseline_margin)
    serves_ok, serves_detail = True, "no proposal to load"
    results: list[gates.GateResult] = []
    segments, serving = None, {}
    chosen = decision.chosen if decision.promoted else None
    if chosen is not None:
        with tempfile.TemporaryDirectory(prefix="mlops_serves_") as tmp:
            sample = mlreg.write_sample_csv(
                holdout, spec.model_feature_columns, Path(tmp) / "sample.csv"
            )
            serves_ok, serves_detail = mlreg.check_serves(
                registry.tracking_uri,
                registry.model_name,
                chosen.version,
                sample,
                calls=limits.serving_calls,
            )
    if chosen is not None and serves_ok:
        serving = mlreg.serve_measurements(serves_detail)
        model = mlreg.load_model_version(registry.model_name, chosen.version, registry.tracking_uri)
        predicted = model.predict(holdout)
        segments = gates.segment_scores(holdout, predicted, spec)
        baseline = decision.best_baseline
        results = [
            gates.business_benchmark(holdout, predicted, spec, limits),
            gates.target_leak(
                gates.feature_leak_scores(holdout, spec),
                chosen.value(metric),
                baseline.value(metric) if baseline is not None else None,
                limits,
                metric,
            ),
        ]
    leader = decision.chosen
    plots = (
        mlreg.plot_urls(leader.run_id, mlflow_url)
        if mlflow_url and leader and leader.run_id
        else None
    )
    card = model_card(
        spec,
        training_date,
        _windows(cards),
        leaderboard,
        decision,
        plots,
        gate_results=results,
        serving=serving,
    )
    return Evaluation(
        decision, leaderboard, serves_ok, serves_detail, card, results, segments, serving
    )


def reference_comparison(
    leaderboard: Sequence[Entry],
    alias: str,
    version: str,
    scored: dict[str, float] | str,
    metric: str,
) -> str:
    """Markdown: every candidate against another stage's model (e.g. prod's ``butterfly`` held
    in staging's registry) on the same holdout. Informational: it decides nothing."""
    lines = [f"## Against `{alias}` (v{version}) on the same holdout", ""]
    if isinstance(scored, str):
        return "\n".join([*lines, f"`{alias}` could not be scored: {scored}"])
    reference = float(scored.get(metric, math.inf))
    lines += [
        f"`{alias}` scores {metric} {reference:.4f}.",
        "",
        f"| candidate | role | {metric} | vs {alias} |",
        "|---|---|---|---|",
    ]
    for entry in sorted(leaderboard, key=lambda e: e.value(metric)):
        gain = relative_improvement(entry.value(metric), reference)
        lines.append(
            f"| {entry.name} | {entry.role} | {entry.value(metric):.4f} | {gain:+.1%} better |"
        )
    return "\n".join(lines)


def _windows(cards: pl.DataFrame) -> dict[str, str]:
    first = cards.row(0, named=True)
    return {k: str(first[k]) for k in ("train_start", "train_end", "holdout_start", "holdout_end")}


# ---------------------------------------------------------------------------------------------
# Step 2: the decision history

HISTORY_SCHEMA = {
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

RELEASE_SCHEMA = {
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

    state, out = _InForce(), []
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
        "best_baseline_score": float(baselines.min()) if baselines.len() else None,
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


def gate_results(row: dict[str, Any]) -> dict[str, gates.GateResult]:
    """The gate results a training decision recorded, by gate name."""
    found = gates.loads(row.get("gates")) + gates.loads(row.get("serving_gate"))
    return {r.gate: r for r in found}


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
    return served["effective_from"].min() if served.height else None


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
    seq = int(releases["seq"].max() or 0) + 1 if releases.height else 1
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
