"""The segment guardrail and the business benchmark end to end (real Dagster runs, DuckDB
warehouse, MLflow store), each on simulated data whose outcome shifts on chosen days:

- in staging, the visits of every airing rise by 80% from the first holdout day on, so every
  model trained before under-predicts the holdout: the business benchmark refuses the
  proposal, nothing becomes champion, and one alert names the gate;
- in dev, the visits rise by 60% everywhere from one day on (the incumbent, trained before, under-
  predicts; the next candidate, trained partly after, wins overall), while one large network's
  visits are tripled for the week that ends the candidate's training window only (the candidate
  over-predicts that network on its holdout): the segment guardrail refuses it with a reason that
  names the network, the incumbent stays champion, and one alert names the gate."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import date
from typing import Any

import dagster as dg
import polars as pl
import pytest

from mlops_assets.defs.alerts import alert_on_failed_checks
from mlops_assets.defs.resources import AlertSinkResource
from mlops_assets.ml import registry
from mlops_assets.runner import RunSummary, ensure_instance, run_days, run_training
from mlops_assets_tests.helpers import Pipeline, day_range, simulator_spec

os.environ.setdefault("OMP_WAIT_POLICY", "passive")

FIRST, SECOND = "2025-01-20", "2025-01-27"
# FIRST trains on 01-08..01-21 and holds out 01-22..01-26; SECOND trains on 01-15..01-28 and
# holds out 01-29..02-02.
SHIFT_DAY = "2025-01-22"
RESTORE_DAY = "2025-01-29"
SEGMENT = "TLC"  # a fifth of the holdout's spend


def _play(
    tmp_path_factory: pytest.TempPathFactory,
    env: str,
    drifts: list[dict[str, Any]],
    as_of: str,
    days: int,
    training: list[str],
) -> Iterator[tuple[Pipeline, list[RunSummary]]]:
    patch = pytest.MonkeyPatch()
    pipeline = Pipeline(patch, tmp_path_factory.mktemp(f"gates-{env}"), as_of=as_of)
    try:
        pipeline.set_env(env)
        raw = simulator_spec(airings_per_day=150, drifts=drifts)
        raw["training"].update(train_days=14, holdout_days=5)
        pipeline.use_spec(raw)
        patch.setenv("DAGSTER_HOME", str(pipeline.settings.dagster_home))
        pipeline.use_instance(ensure_instance(pipeline.settings))
        defs = pipeline.definitions()
        ran = run_days(
            defs, pipeline.instance, pipeline.settings, day_range(date(2025, 1, 1), days)
        )
        assert not ran.failed_runs, ran.failed_runs
        summaries = []
        for partition in training:
            trained = run_training(defs, pipeline.instance, [partition])
            assert not trained.failed_runs, trained.failed_runs
            summaries.append(trained)
        yield pipeline, summaries
    finally:
        pipeline.close()
        patch.undo()


@pytest.fixture(scope="module")
def biased(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Pipeline, list]]:
    drifts = [{"kind": "response_shift", "date": SHIFT_DAY, "factor": 1.8}]
    yield from _play(tmp_path_factory, "staging", drifts, "2025-01-28T06:00", 26, [FIRST])


@pytest.fixture(scope="module")
def segment_loser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Pipeline, list]]:
    drifts = [
        {"kind": "response_shift", "date": SHIFT_DAY, "factor": 1.6},
        {"kind": "response_shift", "date": SHIFT_DAY, "network": SEGMENT, "factor": 3.0},
        {"kind": "response_shift", "date": RESTORE_DAY, "network": SEGMENT, "factor": 1 / 3},
    ]
    yield from _play(tmp_path_factory, "dev", drifts, "2025-02-05T06:00", 33, [FIRST, SECOND])


def _gate_alerts(pipeline: Pipeline) -> list[dict[str, Any]]:
    """The alerts file after the alert sensor ticked once (as the daemon would), gate alerts
    only; the sensor must not add a second alert for a gate the decision already alerted."""
    settings = pipeline.settings
    sink = AlertSinkResource(env=settings.env, path=str(settings.alerts_path))
    context = dg.build_sensor_context(
        instance=pipeline.instance, resources={"alerts": sink}, definitions=pipeline.definitions()
    )
    alert_on_failed_checks(context)
    alerts = [json.loads(x) for x in settings.alerts_path.read_text().splitlines()]
    return [a for a in alerts if a["kind"] == "gate"]


def _decision(pipeline: Pipeline, partition: str) -> dict[str, Any]:
    history = pipeline.warehouse.read("champion_history").filter(
        (pl.col("kind") == "training") & (pl.col("training_date") == date.fromisoformat(partition))
    )
    assert history.height == 1, history
    return history.row(0, named=True)


def test_a_biased_candidate_is_refused_by_the_business_benchmark_in_staging(
    biased: tuple[Pipeline, list[RunSummary]], monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline, (trained,) = biased
    pipeline.bind(monkeypatch)
    board = pipeline.warehouse.read("champion")
    proposed = board.filter(pl.col("proposed"))
    assert proposed.height == 1
    assert proposed["role"][0] == "model"
    assert proposed["refused_by"][0] == "business_benchmark"
    assert "refused by gate business_benchmark: under-predicts by -" in proposed["evaluation"][0]

    decision = _decision(pipeline, FIRST)
    assert decision["action"] == "refused" and decision["to_version"] is None
    assert "refused by gate business_benchmark" in decision["reason"]
    settings = pipeline.settings
    model = settings.registered_model_name
    assert registry.get_alias_version(model, "champion", settings.mlflow_tracking_uri) is None
    assert any(c.startswith("business_benchmark [-]") for c in trained.checks_failed), trained

    gate_alerts = _gate_alerts(pipeline)
    assert len(gate_alerts) == 1, gate_alerts
    assert gate_alerts[0]["cause"] == "promotion refused by business_benchmark"


def test_a_candidate_that_loses_one_large_segment_is_refused_and_the_incumbent_stays(
    segment_loser: tuple[Pipeline, list[RunSummary]], monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline, (_, second) = segment_loser
    pipeline.bind(monkeypatch)
    first = _decision(pipeline, FIRST)
    assert first["action"] == "first", first
    incumbent = first["to_version"]

    decision = _decision(pipeline, SECOND)
    assert decision["action"] == "refused", decision["reason"]
    # It won overall: better than the incumbent on the same holdout.
    assert decision["chosen_score"] < decision["incumbent_score"], decision
    assert "refused by gate segment_guardrail" in decision["reason"]
    assert f"segment {SEGMENT} (" in decision["reason"]
    assert decision["to_version"] in (None, incumbent)
    settings = pipeline.settings
    model = settings.registered_model_name
    champion = registry.get_alias_version(model, "champion", settings.mlflow_tracking_uri)
    assert str(champion) == str(incumbent)
    assert any(c.startswith("segment_guardrail [-]") for c in second.checks_failed), second

    gate_alerts = _gate_alerts(pipeline)
    assert len(gate_alerts) == 1, gate_alerts
    assert gate_alerts[0]["cause"] == "promotion refused by segment_guardrail"
    assert SEGMENT in gate_alerts[0]["message"]
