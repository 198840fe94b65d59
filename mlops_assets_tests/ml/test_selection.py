"""The promotion rule: a baseline never becomes champion, a baseline on top keeps the incumbent
and raises the flag, the baseline and promotion margins (relative and strict), the first
champion, missing scores, and the markdown leaderboard."""

from __future__ import annotations

import math

import pytest

from mlops_assets.ml.selection import (
    Entry,
    SelectionError,
    decide,
    leaderboard_markdown,
    rank,
    relative_improvement,
)

METRIC = "wape"


def entry(name: str, wape: float, role: str = "model", version: str | None = None) -> Entry:
    return Entry(name=name, role=role, version=version or name, metrics={METRIC: wape})


def board(model: float = 0.40, other: float = 0.45, seg: float = 0.60) -> list[Entry]:
    return [
        entry("global_mean", 1.10, "baseline", "1"),
        entry("segment_mean", seg, "baseline", "2"),
        entry("lgbm_small", other, version="3"),
        entry("lgbm_large", model, version="4"),
    ]


def test_first_champion_when_the_best_model_beats_the_baselines() -> None:
    d = decide(board(), None, METRIC, promotion_margin=0.02, baseline_margin=0.05)
    assert d.action == "first" and d.promoted
    assert d.chosen is not None and d.chosen.name == "lgbm_large"
    assert d.best_baseline is not None and d.best_baseline.name == "segment_mean"
    assert d.improvement_vs_baseline == pytest.approx((0.60 - 0.40) / 0.60)
    assert not d.baseline_topped


def test_no_first_champion_without_the_baseline_margin() -> None:
    # 3% better than the best baseline, 5% required.
    d = decide(board(model=0.582, other=0.59), None, METRIC, 0.0, baseline_margin=0.05)
    assert d.action == "keep" and d.chosen is None and not d.promoted
    assert not d.baseline_topped
    assert "does not beat baseline segment_mean" in d.reason


def test_baseline_on_top_keeps_the_incumbent_and_raises_the_flag() -> None:
    incumbent = entry("lgbm_small", 0.70, version="1")
    d = decide(board(model=0.65, other=0.66), incumbent, METRIC, 0.0, 0.05)
    assert d.baseline_topped
    assert d.action == "keep" and d.chosen is incumbent
    assert "baseline segment_mean tops the leaderboard" in d.reason
    none_yet = decide(board(model=0.65, other=0.66), None, METRIC, 0.0, 0.05)
    assert none_yet.baseline_topped and none_yet.chosen is None


def test_a_tie_with_a_baseline_counts_as_the_baseline_on_top() -> None:
    d = decide(board(model=0.60, other=0.70), None, METRIC, 0.0, 0.0)
    assert d.baseline_topped and d.chosen is None


def test_the_incumbent_on_top_is_not_a_baseline_alarm() -> None:
    # New candidates lose to a baseline, but the incumbent still beats it.
    incumbent = entry("lgbm_large", 0.50, version="1")
    d = decide(board(model=0.65, other=0.66), incumbent, METRIC, 0.0, 0.05)
    assert not d.baseline_topped
    assert d.action == "keep" and d.chosen is incumbent


def test_only_baselines_never_make_a_champion() -> None:
    baselines = [entry("global_mean", 1.0, "baseline"), entry("segment_mean", 0.1, "baseline")]
    d = decide(baselines, None, METRIC, 0.0, 0.0)
    assert d.chosen is None and d.action == "keep" and d.baseline_topped


@pytest.mark.parametrize(
    ("new", "action"),
    [(0.495, "keep"), (0.49, "keep"), (0.485, "promote")],
)
def test_promotion_margin_is_relative_and_strict(new: float, action: str) -> None:
    # Incumbent 0.50, margin 2%: the new model must score below 0.49.
    incumbent = entry("lgbm_large", 0.50, version="1")
    d = decide(board(model=new, other=0.7), incumbent, METRIC, 0.02, 0.05)
    assert d.action == action
    assert d.chosen is (d.best_model if action == "promote" else incumbent)
    assert d.improvement_vs_incumbent == pytest.approx((0.50 - new) / 0.50)


def test_promotion_needs_the_baseline_margin_too() -> None:
    incumbent = entry("lgbm_large", 0.90, version="1")
    d = decide(board(model=0.58, other=0.7), incumbent, METRIC, 0.0, baseline_margin=0.05)
    assert d.action == "keep" and d.chosen is incumbent
    assert not d.baseline_topped


def test_missing_or_nan_scores_rank_last_and_never_win() -> None:
    broken = Entry("lgbm_large", "model", "4", {METRIC: math.nan})
    missing = Entry("lgbm_small", "model", "3", {"mae": 1.0})
    leaderboard = [entry("segment_mean", 0.6, "baseline", "2"), broken, missing]
    assert rank(leaderboard, METRIC)[0].name == "segment_mean"
    d = decide(leaderboard, None, METRIC, 0.0, 0.0)
    assert d.chosen is None and d.baseline_topped


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(SelectionError, match="empty"):
        decide([], None, METRIC, 0.0, 0.0)
    with pytest.raises(SelectionError, match="baseline"):
        decide(board(), entry("segment_mean", 0.1, "baseline"), METRIC, 0.0, 0.0)
    with pytest.raises(SelectionError, match="role"):
        entry("x", 0.1, "champion")


def test_relative_improvement() -> None:
    assert relative_improvement(0.45, 0.50) == pytest.approx(0.10)
    assert relative_improvement(0.55, 0.50) == pytest.approx(-0.10)
    assert relative_improvement(0.0, 0.0) == 0.0


def test_markdown_leaderboard_is_ranked_and_marks_the_champion() -> None:
    incumbent = entry("lgbm_small", 0.50, version="1")
    leaderboard = board()
    d = decide(leaderboard, incumbent, METRIC, 0.02, 0.05)
    text = leaderboard_markdown(leaderboard, incumbent, METRIC, d)
    lines = text.splitlines()
    assert lines[0] == "| rank | candidate | role | version | wape | note |"
    rows = [line for line in lines[2:] if line.startswith("| ")]
    assert [r.split(" | ")[1] for r in rows] == [
        "lgbm_large",
        "lgbm_small",
        "lgbm_small",
        "segment_mean",
        "global_mean",
    ]
    assert "**champion**" in rows[0] and "| 0.4000 |" in rows[0]
    assert "| incumbent | 1 |" in rows[2]
    assert f"**Decision: promote** — {d.reason}" in text
