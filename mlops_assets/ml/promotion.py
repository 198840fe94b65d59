"""Model deployment as a history of decisions that any replay re-derives.

Two steps, so that the answer never depends on the order in which training dates were run:

1. :func:`evaluate` (this module; the ``champion`` asset, one training date T): the leaderboard of
   T's candidates on T's holdout, the promotion rule applied without an incumbent (which
   candidate T *proposes*), and the proposal loaded from its registry URI in a fresh process. It
   moves nothing.
2. :func:`~mlops_assets.ml.decision_history.decide_history` (the ``champion_history`` asset): the
   decisions of every evaluated training date in the order of their cut-offs, each against the
   champion *in force at that cut-off* (the incumbent, re-scored on that date's holdout),
   interleaved with the people's release decisions (``promote`` with an approver, ``rollback``)
   at their effective day. The same evaluations and releases give the same history whatever
   order produced them, and a re-evaluated date replaces its decision. Only that asset moves the
   registry aliases, to the champion in force after the last decision.
   :mod:`mlops_assets.ml.history_queries` reads a history: the champion in force on a day, what
   a rollback restores, the gates each decision recorded.

This module also holds the names both steps share: the aliases, the tables, the actions.
"""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from datetime import date
from pathlib import Path
from typing import Any, cast

import polars as pl

from mlops_assets.dataset import DatasetSpec
from mlops_assets.environments import GateThresholds
from mlops_assets.ml import gates
from mlops_assets.ml.gates import GateResult
from mlops_assets.ml.selection import (
    Decision,
    Entry,
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
    gates: list[GateResult] = dataclass_field(default_factory=list)
    segments: list[dict[str, Any]] | None = None
    serving: dict[str, float | None] = dataclass_field(default_factory=dict)

    @property
    def refused_by(self) -> GateResult | None:
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
        # A promoting decision always chose an entry.
        proposed = cast(Entry, self.decision.chosen).version if self.decision.promoted else None
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
    from mlops_assets.ml import run_artifacts, serve_check

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
            sample = serve_check.write_sample_csv(
                holdout, spec.model_feature_columns, Path(tmp) / "sample.csv"
            )
            serves_ok, serves_detail = serve_check.check_serves(
                registry.tracking_uri,
                registry.model_name,
                cast(str, chosen.version),  # entries_from_cards gives every entry a version
                sample,
                calls=limits.serving_calls,
            )
    if chosen is not None and serves_ok:
        serving = serve_check.serve_measurements(serves_detail)
        version = cast(str, chosen.version)
        model = mlreg.load_model_version(registry.model_name, version, registry.tracking_uri)
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
        run_artifacts.plot_urls(leader.run_id, mlflow_url)
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
