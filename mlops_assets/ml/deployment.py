"""The model deployment stage as pure functions, one per asset, on the rules of
:mod:`mlops_assets.ml.promotion`:

- :func:`champion_stage` (``champion``): one training date's evaluation of its candidates'
  model cards on their holdout, with the model card that also compares every candidate with the
  other stages' models this registry holds;
- :func:`history_stage` (``champion_history``): the decision history, the champion in force
  after it against the one the aliases name now, and the notices (proposals awaiting approval,
  promotions refused by a gate) the stored history did not hold yet.

Reading the warehouse and the registry is the caller's, passed in as functions; moving aliases
and sending alerts too."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import polars as pl

from mlops_assets.dataset import DatasetSpec
from mlops_assets.environments import GateThresholds, Thresholds
from mlops_assets.ml import decision_history, gates, history_queries, promotion
from mlops_assets.ml.model import TabularModel
from mlops_assets.ml.training import PREDICTION, score, training_windows

# The columns of the champion table the decision history reads.
EVALUATION_COLUMNS = (
    "training_date",
    "effective_from",
    "candidate",
    "role",
    "model_version",
    "proposed",
    "serves",
    "evaluation",
    "holdout_start",
    "holdout_end",
)
RELEASE_COLUMNS = ("seq", "effective_from", "action", "version", "candidate", "reason")
ReadExamples = Callable[[date, date], pl.DataFrame]


class DeploymentInputError(ValueError):
    """The stage cannot decide on what it was given; the message names what is missing."""


def score_version(
    spec: DatasetSpec, examples: pl.DataFrame, load: Callable[[], TabularModel]
) -> dict[str, Any] | str:
    """The metrics of a registered model on ``examples`` with its scores per segment (under
    ``segments``), or why it could not be loaded or scored: a decision records the reason, and
    an incumbent that no longer scores is treated as the worst."""
    try:
        metrics, rows = score(load(), examples, spec)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"[:500]
    ordered = examples.sort([spec.date_column, spec.event_key])
    segments = gates.segment_scores(ordered, rows[PREDICTION].to_numpy(), spec)
    return {**metrics, "segments": segments}


@dataclass(frozen=True)
class ChampionResult:
    """What the ``champion`` asset stores and reports for one training date."""

    evaluation: promotion.Evaluation
    frame: pl.DataFrame
    model_card: str

    @property
    def proposal(self) -> str | None:
        """The version this training date proposes as champion, if any."""
        chosen = self.evaluation.proposal
        return chosen.version if chosen is not None else None

    @property
    def gates_markdown(self) -> str:
        return gates.markdown(self.evaluation.gates)

    def metadata(self) -> dict[str, Any]:
        refused = self.evaluation.refused_by
        return {
            **self.evaluation.decision.metadata(),
            "proposal": self.proposal or "none",
            "refused_by": refused.gate if refused else "none",
        }


def champion_stage(
    spec: DatasetSpec,
    cards: Sequence[pl.DataFrame],
    cutoff: date,
    *,
    read_examples: ReadExamples,
    score: decision_history.ScoreFn,
    registry: promotion.Registry,
    training_date: str,
    limits: GateThresholds,
    mlflow_url: str | None = None,
    other_stages: Mapping[str, str] | None = None,
) -> ChampionResult:
    """Evaluate the candidates' model cards (one frame per candidate) of the training date
    whose window ends at ``cutoff`` on its holdout (``read_examples(start, end)``, inclusive),
    with :func:`promotion.evaluate`. ``other_stages`` (alias -> version) are the other stages'
    models this registry holds: each is scored with ``score(version, start, end)`` on the same
    holdout and compared on the model card (informational, it decides nothing).

    DeploymentInputError when there is no model card or the holdout has no labeled examples."""
    board = pl.concat(cards, how="diagonal_relaxed") if cards else None
    if board is None or not board.height:
        raise DeploymentInputError(f"training date {training_date} has no candidate model card")
    windows = training_windows(spec, cutoff)
    holdout = read_examples(windows.holdout_start, windows.holdout_end)
    if holdout.is_empty():
        raise DeploymentInputError(
            f"the holdout {windows.holdout_label} of training date {training_date} has no "
            "labeled examples: nothing to evaluate the candidates on"
        )
    evaluation = promotion.evaluate(
        spec=spec,
        registry=registry,
        cards=board,
        holdout=holdout,
        training_date=training_date,
        mlflow_url=mlflow_url,
        limits=limits,
    )
    comparisons = []
    for alias, version in (other_stages or {}).items():
        scored = score(version, windows.holdout_start, windows.holdout_end)
        if isinstance(scored, dict):
            scored = {k: v for k, v in scored.items() if k != "segments"}
        comparisons.append(
            promotion.reference_comparison(
                evaluation.leaderboard, alias, version, scored, spec.training.metric
            )
        )
    card = "\n\n".join([evaluation.model_card, *comparisons])
    return ChampionResult(evaluation, evaluation.frame(board, cutoff), card)


@dataclass(frozen=True)
class Notice:
    """Something people must hear about a training decision (an alert)."""

    kind: str
    partition: str
    cause: str
    message: str


@dataclass(frozen=True)
class HistoryResult:
    """The decision history, the champion in force after it (``after``) and the one the
    registry's champion alias named before (``before``), and the notices to send."""

    history: pl.DataFrame
    before: str | None
    after: str | None
    notices: list[Notice]

    @property
    def moves_aliases(self) -> bool:
        return self.after != self.before

    def metadata(self) -> dict[str, Any]:
        return {
            "decisions": self.history.height,
            "champion_in_force": self.after or "none",
            "aliases_before": self.before or "none",
        }


def _require(frame: pl.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if frame.width and missing:
        raise DeploymentInputError(f"the {what} lack the columns {', '.join(missing)}")


def history_stage(
    spec: DatasetSpec,
    evaluations: pl.DataFrame,
    releases: pl.DataFrame,
    previous: pl.DataFrame,
    *,
    thresholds: Thresholds,
    limits: GateThresholds,
    score: decision_history.ScoreFn,
    champion_before: str | None,
) -> HistoryResult:
    """Every decision in order (:func:`decision_history.decide_history`) from the stored evaluations
    of every training date and the release decisions (either may be empty, or have no columns
    when never stored), re-using the incumbent scores of the ``previous`` history.

    DeploymentInputError when the evaluations or releases lack a column the rules read."""
    _require(evaluations, (*EVALUATION_COLUMNS, spec.training.metric), "champion evaluations")
    _require(releases, RELEASE_COLUMNS, "release decisions")
    history = decision_history.decide_history(
        evaluations,
        releases if releases.width else decision_history.empty_releases(),
        metric=spec.training.metric,
        promotion_margin=thresholds.promotion_margin,
        gated=thresholds.approval_gated,
        score=score,
        previous=previous if previous.width else None,
        limits=limits,
    )
    notices = [_proposal_notice(r) for r in new_proposals(history, previous)]
    notices += [_refusal_notice(r) for r in new_refusals(history, previous)]
    return HistoryResult(history, champion_before, history_queries.current(history), notices)


def _proposal_notice(row: dict[str, Any]) -> Notice:
    return Notice(
        kind="proposal",
        partition=str(row["training_date"]),
        cause="promotion awaiting approval",
        message=f"training date {row['training_date']} proposes "
        f"{row['proposed_candidate']} v{row['proposed_version']}: {row['reason']}",
    )


def _refusal_notice(row: dict[str, Any]) -> Notice:
    gate = row["refused_gate"]
    return Notice(
        kind="gate",
        partition=str(row["training_date"]),
        cause=f"promotion refused by {gate}",
        message=f"training date {row['training_date']}: {row['proposed_candidate']} "
        f"v{row['proposed_version']} refused by gate {gate}: {row['reason']}",
    )


def new_refusals(history: pl.DataFrame, previous: pl.DataFrame) -> list[dict[str, Any]]:
    """Training decisions refused by a gate that the stored history did not hold yet, each with
    the gate that refused it (under ``refused_gate``)."""

    def refused(frame: pl.DataFrame) -> list[dict[str, Any]]:
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


def new_proposals(history: pl.DataFrame, previous: pl.DataFrame) -> list[dict[str, Any]]:
    """Proposals awaiting approval that the stored history did not hold yet."""
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
