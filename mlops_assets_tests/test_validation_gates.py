"""The segment guardrail, the business benchmark and the serving budget end to end (real Dagster
runs, DuckDB warehouse, MLflow store), each on simulated data whose outcome shifts on chosen days:

- in staging, the visits of every airing rise by 80% from the first holdout day on, so every
  model trained before under-predicts the holdout: the business benchmark refuses the
  proposal, nothing becomes champion, and one alert names the gate;
- in dev, the visits rise by 60% everywhere from one day on (the incumbent, trained before, under-
  predicts; the next candidate, trained partly after, wins overall), while one large network's
  visits are tripled for the week that ends the candidate's training window only (the candidate
  over-predicts that network on its holdout): the segment guardrail refuses it with a reason that
  names the network, the incumbent stays champion, and one alert names the gate;
- in prod and in dev, the visits rise by 50% from one day on, a first training date with the
  default candidates gives the champion (approved in prod), and for the next one the dataset
  spec makes `lgbm_small` many times slower to serve (25x the trees at a 25th of the learning
  rate, the same accuracy): it wins, and prod's serving budget refuses it with a reason naming
  the p99 latency or size and both figures, the incumbent staying champion, while dev promotes
  it with the serving_budget check and gate as warnings."""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator
from datetime import date
from typing import Any, NamedTuple

import dagster as dg
import polars as pl
import pytest

from mlops_assets.run_instance import ensure_instance
from mlops_assets.runner import RunSummary, run_days, run_training
from mlops_assets_tests.helpers import (
    Pipeline,
    approve,
    assert_aliases_on,
    assert_refused_by,
    day_range,
    gate_alerts,
    latest_check,
    simulator_spec,
    training_decision,
)

os.environ.setdefault("OMP_WAIT_POLICY", "passive")

FIRST, SECOND = "2025-01-20", "2025-01-27"
# FIRST trains on 01-08..01-21 and holds out 01-22..01-26; SECOND trains on 01-15..01-28 and
# holds out 01-29..02-02.
SHIFT_DAY = "2025-01-22"
RESTORE_DAY = "2025-01-29"
SEGMENT = "TLC"  # a fifth of the holdout's spend
# SLOW_FIRST trains on 01-01..01-13 and holds out 01-14..01-18; SLOW_SECOND trains on
# 01-14..01-27 and holds out 01-28..02-01.
SLOW_FIRST, SLOW_SECOND = "2025-01-13", "2025-01-27"
SLOW_SHIFT_DAY = "2025-01-19"
SLOW = "lgbm_small"
# 25 times the trees at a 25th of the learning rate (the default is 200 trees at 0.05).
SLOW_PARAMS = {"num_boost_round": 5000, "learning_rate": 0.002}


class Phase(NamedTuple):
    """Part of a world's history: by the clock ``as_of``, with the spec ``raw``, the daily
    assets of ``days`` days from ``first_day``, then each training date of ``training``, and,
    with ``approved_by``, that person's approval of the last one's proposal."""

    as_of: str
    raw: dict[str, Any]
    first_day: date
    days: int
    training: list[str]
    approved_by: str | None = None


def _spec(drifts: list[dict[str, Any]]) -> dict[str, Any]:
    raw = simulator_spec(airings_per_day=150, drifts=drifts)
    raw["training"].update(train_days=14, holdout_days=5)
    return raw


def _play(
    tmp_path_factory: pytest.TempPathFactory, env: str, phases: list[Phase]
) -> Iterator[tuple[Pipeline, list[RunSummary]]]:
    """The pipeline of ``env`` after ``phases``, with the summary of each training date."""
    patch = pytest.MonkeyPatch()
    pipeline = Pipeline(patch, tmp_path_factory.mktemp(f"gates-{env}"), as_of=phases[0].as_of)
    try:
        pipeline.set_env(env)
        patch.setenv("DAGSTER_HOME", str(pipeline.settings.dagster_home))
        pipeline.use_instance(ensure_instance(pipeline.settings))
        summaries = []
        for phase in phases:
            pipeline.set_var("MLOPS_AS_OF", phase.as_of)
            pipeline.use_spec(phase.raw)
            defs = pipeline.definitions()
            days = day_range(phase.first_day, phase.days)
            ran = run_days(defs, pipeline.instance, pipeline.settings, days)
            assert not ran.failed_runs, ran.failed_runs
            for partition in phase.training:
                trained = run_training(defs, pipeline.instance, [partition])
                assert not trained.failed_runs, trained.failed_runs
                summaries.append(trained)
            if phase.approved_by:
                approve(pipeline, phase.training[-1], phase.approved_by)
        yield pipeline, summaries
    finally:
        pipeline.close()
        patch.undo()


@pytest.fixture(scope="module")
def biased(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Pipeline, list]]:
    raw = _spec([{"kind": "response_shift", "date": SHIFT_DAY, "factor": 1.8}])
    phase = Phase("2025-01-28T06:00", raw, date(2025, 1, 1), 26, [FIRST])
    yield from _play(tmp_path_factory, "staging", [phase])


@pytest.fixture(scope="module")
def segment_loser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Pipeline, list]]:
    raw = _spec(
        [
            {"kind": "response_shift", "date": SHIFT_DAY, "factor": 1.6},
            {"kind": "response_shift", "date": SHIFT_DAY, "network": SEGMENT, "factor": 3.0},
            {"kind": "response_shift", "date": RESTORE_DAY, "network": SEGMENT, "factor": 1 / 3},
        ]
    )
    phase = Phase("2025-02-05T06:00", raw, date(2025, 1, 1), 33, [FIRST, SECOND])
    yield from _play(tmp_path_factory, "dev", [phase])


def _slow_world(
    tmp_path_factory: pytest.TempPathFactory, env: str
) -> Iterator[tuple[Pipeline, list]]:
    """The default candidates for SLOW_FIRST (approved in prod on the morning after its
    cut-off), then the spec's slow lgbm_small for SLOW_SECOND."""
    raw = _spec([{"kind": "response_shift", "date": SLOW_SHIFT_DAY, "factor": 1.5}])
    slow = copy.deepcopy(raw)
    slow["training"]["candidate_params"] = {SLOW: SLOW_PARAMS}
    approver = "ana" if env == "prod" else None
    phases = [
        Phase("2025-01-21T06:00", raw, date(2025, 1, 1), 19, [SLOW_FIRST], approver),
        Phase("2025-02-04T06:00", slow, date(2025, 1, 20), 13, [SLOW_SECOND]),
    ]
    yield from _play(tmp_path_factory, env, phases)


@pytest.fixture(scope="module")
def slow_in_prod(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Pipeline, list]]:
    yield from _slow_world(tmp_path_factory, "prod")


@pytest.fixture(scope="module")
def slow_in_dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Pipeline, list]]:
    yield from _slow_world(tmp_path_factory, "dev")


def test_a_biased_candidate_is_refused_by_the_business_benchmark_in_staging(
    biased: tuple[Pipeline, list[RunSummary]], monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline, _ = biased
    pipeline.bind(monkeypatch)
    board = pipeline.warehouse.read("champion")
    proposed = board.filter(pl.col("proposed"))
    assert proposed.height == 1
    assert proposed["role"][0] == "model"
    assert proposed["refused_by"][0] == "business_benchmark"
    assert "refused by gate business_benchmark: under-predicts by -" in proposed["evaluation"][0]

    assert_refused_by(pipeline, FIRST, "business_benchmark", incumbent=None)


def test_a_candidate_that_loses_one_large_segment_is_refused_and_the_incumbent_stays(
    segment_loser: tuple[Pipeline, list[RunSummary]], monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline, _ = segment_loser
    pipeline.bind(monkeypatch)
    first = training_decision(pipeline, FIRST)
    assert first["action"] == "first", first

    decision, _, alert = assert_refused_by(
        pipeline, SECOND, "segment_guardrail", incumbent=first["to_version"]
    )
    # It won overall: better than the incumbent on the same holdout.
    assert decision["chosen_score"] < decision["incumbent_score"], decision
    assert f"segment {SEGMENT} (" in decision["reason"]
    assert SEGMENT in alert["message"]


def _slow_proposal(
    world: tuple[Pipeline, list[RunSummary]], monkeypatch: pytest.MonkeyPatch, first_action: str
) -> tuple[Pipeline, dict[str, Any], dict[str, Any]]:
    """The slow world's pipeline, SLOW_FIRST's decision (``first_action``) and SLOW_SECOND's
    proposal's model card row: the slow candidate, trained with the spec's parameters, better
    than the incumbent on the same holdout."""
    from mlflow import MlflowClient

    pipeline = world[0].bind(monkeypatch)
    first = training_decision(pipeline, SLOW_FIRST)
    assert first["action"] == first_action, first["reason"]

    decision = training_decision(pipeline, SLOW_SECOND)
    assert decision["proposed_candidate"] == SLOW, decision
    assert decision["chosen_score"] < decision["incumbent_score"], decision
    card = (
        pipeline.warehouse.read("champion")
        .filter((pl.col("training_date") == date.fromisoformat(SLOW_SECOND)) & pl.col("proposed"))
        .row(0, named=True)
    )
    settings = pipeline.settings
    run = MlflowClient(settings.mlflow_tracking_uri).get_run(card["run_id"])
    assert {k: run.data.params[k] for k in SLOW_PARAMS} == {
        k: str(v) for k, v in SLOW_PARAMS.items()
    }
    return pipeline, first, card


def test_a_slow_candidate_is_refused_by_the_serving_budget_in_prod(
    slow_in_prod: tuple[Pipeline, list[RunSummary]], monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline, first, card = _slow_proposal(slow_in_prod, monkeypatch, "propose")

    decision, check, _ = assert_refused_by(
        pipeline, SLOW_SECOND, "serving_budget", incumbent=first["proposed_version"]
    )
    counts = {k.removeprefix("count_"): v.value for k, v in check.metadata.items()}
    assert counts["p99_ms"] == pytest.approx(card["serve_p99_ms"])
    over = []
    if counts["p99_factor"] > check.metadata["threshold"].value:
        over.append(
            f"p99 {counts['p99_ms']:.3f} ms is {counts['p99_factor']:.1f}x the incumbent's "
            f"{counts['incumbent_p99_ms']:.3f} ms"
        )
    if counts["size_factor"] > counts["size_factor_max"]:
        over.append(
            f"model size {counts['model_bytes']:,.0f} bytes is {counts['size_factor']:.1f}x the "
            f"incumbent's {counts['incumbent_model_bytes']:,.0f} bytes"
        )
    assert over, counts
    assert all(text in decision["reason"] for text in over), decision["reason"]


def test_the_same_slow_candidate_is_promoted_in_dev_with_a_serving_budget_warning(
    slow_in_dev: tuple[Pipeline, list[RunSummary]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlops_assets.ml import history_queries

    pipeline, first, card = _slow_proposal(slow_in_dev, monkeypatch, "first")

    decision = training_decision(pipeline, SLOW_SECOND)
    assert decision["action"] == "promote", decision["reason"]
    assert decision["from_version"] == first["to_version"]
    assert decision["to_version"] == str(card["model_version"])
    budget = history_queries.gate_results(decision)["serving_budget"]
    assert budget.verdict == "warn", budget
    over_size = budget.counts["size_factor"] > budget.counts["size_factor_max"]
    assert budget.observed > budget.threshold or over_size, budget
    assert_aliases_on(pipeline, decision["to_version"])

    check = latest_check(pipeline, "champion_history", "serving_budget")
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN, check
    assert check.metadata["verdict"].value == "warn"
    assert check.metadata["blocking_here"].value is False
    assert check.metadata["reason"].value == budget.reason
    assert gate_alerts(pipeline) == []
