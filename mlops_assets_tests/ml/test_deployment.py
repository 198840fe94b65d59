"""The model deployment stage functions (``ml/deployment.py``) on small frames, without Dagster
or MLflow:

- ``champion_stage``: a training date whose leaderboard a baseline tops proposes nothing (so
  nothing is loaded from the registry), stores every card with the evaluation's columns, and
  compares the candidates with the other stages' models on its model card, saying so when one
  could not be scored; no card, or a holdout without labeled examples, is refused;
- ``history_stage``: the decisions of the stored evaluations and the release decisions, the
  champion in force after them against the one the aliases named, and a notice for a proposal
  awaiting approval only the first time it is seen; evaluations or releases lacking a column
  the rules read are refused, naming it;
- ``score_version``: a model's metrics and segment scores, or why it could not be scored."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from mlops_assets.dataset import DatasetSpec
from mlops_assets.environments import load_settings
from mlops_assets.ml import decision_history, deployment, promotion
from mlops_assets.ml.model import TabularModel
from mlops_assets.ml.training import Windows

THRESHOLDS = load_settings("dev").thresholds
# Never opened: a leaderboard topped by a baseline proposes nothing to load.
REGISTRY = promotion.Registry("sqlite:////nonexistent/mlflow.db", "model", "larva")
LIMITS = THRESHOLDS.gates


def card(windows: Windows, training_date: date, name: str, role: str, version: str, wape: float):
    return pl.DataFrame(
        [
            {
                "training_date": training_date,
                "candidate": name,
                "role": role,
                "model_version": version,
                "run_id": f"run-{version}",
                "run_url": f"http://mlflow/run-{version}",
                "mae": wape * 10,
                "rmse": wape * 12,
                "wape": wape,
                "bias": 0.01,
                **windows.as_dict(),
                "train_rows": 100,
                "holdout_rows": 50,
                "metric": "wape",
            }
        ]
    )


@pytest.fixture
def cards(windows: Windows, training_date: date) -> list[pl.DataFrame]:
    return [
        card(windows, training_date, "global_mean", "baseline", "1", 0.30),
        card(windows, training_date, "lgbm_small", "model", "2", 0.50),
    ]


def constant(value: float) -> TabularModel:
    return TabularModel(
        kind="global_mean", feature_columns=("spend",), categories={}, table=np.array(value)
    )


def champion(spec, examples, training_date, cards, read=None, score=None, other_stages=None):
    def read_window(start: date, end: date) -> pl.DataFrame:
        return examples.filter(pl.col(spec.date_column).is_between(start, end))

    return deployment.champion_stage(
        spec,
        cards,
        training_date,
        read_examples=read or read_window,
        score=score or (lambda version, start, end: "not asked"),
        registry=REGISTRY,
        training_date=str(training_date),
        limits=LIMITS,
        mlflow_url="http://mlflow",
        other_stages=other_stages,
    )


def test_a_leaderboard_topped_by_a_baseline_proposes_nothing_and_compares_other_stages(
    spec: DatasetSpec, examples: pl.DataFrame, training_date: date, windows: Windows, cards
) -> None:
    asked: list[tuple[str, date, date]] = []

    def score(version: str, start: date, end: date) -> dict[str, object] | str:
        asked.append((version, start, end))
        return {"wape": 0.4, "segments": []} if version == "7" else "OSError: gone"

    result = champion(
        spec, examples, training_date, cards, score=score, other_stages={"butterfly": "7", "x": "8"}
    )
    assert result.proposal is None and result.evaluation.decision.baseline_topped
    meta = result.metadata()
    assert meta["proposal"] == "none" and meta["refused_by"] == "none"
    frame = result.frame
    assert frame["candidate"].to_list() == ["global_mean", "lgbm_small"]
    assert not frame["proposed"].any() and frame["baseline_topped"].all()
    assert set(frame["effective_from"]) == {training_date}
    assert asked == [(v, windows.holdout_start, windows.holdout_end) for v in ("7", "8")]
    assert result.model_card.startswith(result.evaluation.model_card)
    assert "## Against `butterfly` (v7) on the same holdout" in result.model_card
    assert "`x` could not be scored: OSError: gone" in result.model_card


def test_no_card_or_an_empty_holdout_is_refused(
    spec: DatasetSpec, examples: pl.DataFrame, training_date: date, cards
) -> None:
    with pytest.raises(deployment.DeploymentInputError, match="no candidate model card"):
        champion(spec, examples, training_date, [])
    with pytest.raises(deployment.DeploymentInputError, match="has no labeled examples"):
        champion(spec, examples, training_date, cards, read=lambda start, end: examples.head(0))


@pytest.fixture
def evaluations(spec, examples, training_date, cards) -> pl.DataFrame:
    return champion(spec, examples, training_date, cards).frame


def history(spec, evaluations, releases, previous, thresholds=THRESHOLDS, before=None):
    return deployment.history_stage(
        spec,
        evaluations,
        releases,
        previous,
        thresholds=thresholds,
        limits=LIMITS,
        score=lambda version, start, end: "not stored",
        champion_before=before,
    )


def test_a_release_after_a_kept_training_date_is_in_force_and_moves_the_aliases(
    spec: DatasetSpec, evaluations: pl.DataFrame, training_date: date
) -> None:
    releases = decision_history.release_row(
        decision_history.empty_releases(),
        action=promotion.PROMOTE,
        version="2",
        candidate="lgbm_small",
        approved_by="ana",
        reason="by hand",
        source="cli",
        effective_from=training_date + timedelta(days=1),
        recorded_at=datetime(2025, 4, 1),
    )
    result = history(spec, evaluations, releases, pl.DataFrame())
    assert result.history["action"].to_list() == ["keep", promotion.PROMOTE]
    assert (result.before, result.after, result.moves_aliases) == (None, "2", True)
    assert result.metadata() == {
        "decisions": 2,
        "champion_in_force": "2",
        "aliases_before": "none",
    }
    assert result.notices == []
    again = history(spec, evaluations, releases, result.history, before="2")
    assert not again.moves_aliases


def test_a_proposal_awaiting_approval_is_noticed_once(
    spec: DatasetSpec, evaluations: pl.DataFrame, training_date: date
) -> None:
    proposing = evaluations.with_columns(
        (pl.col("candidate") == "lgbm_small").alias("proposed"),
        pl.lit(True).alias("serves"),
    )
    gated = replace(THRESHOLDS, approval_gated=True)
    result = history(spec, proposing, pl.DataFrame(), pl.DataFrame(), gated)
    assert result.history["action"].to_list() == ["propose"] and result.after is None
    (notice,) = result.notices
    assert notice.kind == "proposal" and notice.partition == str(training_date)
    assert "proposes lgbm_small v2" in notice.message
    assert history(spec, proposing, pl.DataFrame(), result.history, gated).notices == []


def test_evaluations_or_releases_lacking_a_column_are_refused_naming_it(
    spec: DatasetSpec, evaluations: pl.DataFrame
) -> None:
    with pytest.raises(
        deployment.DeploymentInputError,
        match="champion evaluations lack the columns proposed, serves",
    ):
        history(spec, evaluations.drop("proposed", "serves"), pl.DataFrame(), pl.DataFrame())
    releases = decision_history.empty_releases().drop("action")
    with pytest.raises(
        deployment.DeploymentInputError, match="release decisions lack the columns action"
    ):
        history(spec, evaluations, releases, pl.DataFrame())


def test_score_version_scores_or_says_why_not(spec: DatasetSpec, examples: pl.DataFrame) -> None:
    scored = deployment.score_version(spec, examples, lambda: constant(3.0))
    assert isinstance(scored, dict)
    assert set(scored) >= {"mae", "rmse", "wape", "bias", "segments"}
    assert scored["mae"] == pytest.approx(float(np.abs(examples[spec.target] - 3.0).mean()))

    def gone() -> TabularModel:
        raise RuntimeError("model file missing")

    assert deployment.score_version(spec, examples, gone) == "RuntimeError: model file missing"
