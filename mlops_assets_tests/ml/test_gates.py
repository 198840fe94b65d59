"""The promotion gates as pure functions (``mlops_assets.ml.gates``): the segment guardrail names
the large segment a candidate loses on and ignores small ones; the business benchmark's bias
band differs over and under, uses the cost-per-outcome band only with a cost column; the serving
budget refuses a candidate over the factor of the incumbent; the target-leak guard flags an
injected leaking column and an implausibly good proposal, and the honest simulated data never
trips it; the verdict (refuse or warn) follows the environment's thresholds and the spec's
overrides."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import polars as pl
import pytest

from mlops_assets.dataset import SpecError, gate_overrides
from mlops_assets.dataset_load import parse_spec
from mlops_assets.environments import GateThresholds, load_settings
from mlops_assets.ml import gates
from mlops_assets.ml.training import TrainResult
from mlops_assets_tests.helpers import simulator_spec

DEV = GateThresholds()
REFUSING = replace(DEV, blocking=gates.GATE_NAMES)


def _frame(spec, segments: list[str], actual: list[float], cost: list[float]) -> pl.DataFrame:
    return pl.DataFrame(
        {spec.segment_column: segments, spec.target: actual, spec.cost_column: cost}
    )


def _segments(scores: dict[str, tuple[float, float]]) -> list[dict]:
    return [
        {"segment": name, "share": share, "rows": 10, "score": score}
        for name, (share, score) in scores.items()
    ]


def test_segment_guardrail_names_the_large_segment_lost() -> None:
    incumbent = _segments({"ESPN": (0.3, 0.40), "CNN": (0.6, 0.50), "FOX": (0.1, 0.3)})
    candidate = _segments({"ESPN": (0.3, 0.70), "CNN": (0.6, 0.30), "FOX": (0.1, 0.3)})
    result = gates.segment_guardrail(candidate, incumbent, DEV, "wape")
    assert result.verdict == gates.REFUSE
    assert "segment ESPN (30% of the holdout)" in result.reason
    assert "0.7000" in result.reason and "0.4000" in result.reason
    assert result.observed == pytest.approx(0.75)
    assert result.threshold == DEV.segment_margin


def test_segment_guardrail_ignores_small_segments_and_warns_where_not_blocking() -> None:
    incumbent = _segments({"ESPN": (0.05, 0.40), "CNN": (0.95, 0.50)})
    small_loss = _segments({"ESPN": (0.05, 0.90), "CNN": (0.95, 0.45)})
    assert gates.segment_guardrail(small_loss, incumbent, DEV, "wape").verdict == gates.PASS
    warn_only = replace(DEV, blocking=())
    big_loss = _segments({"ESPN": (0.05, 0.40), "CNN": (0.95, 0.90)})
    assert gates.segment_guardrail(big_loss, incumbent, warn_only, "wape").verdict == gates.WARN
    assert gates.segment_guardrail(big_loss, None, DEV, "wape").verdict == gates.NOT_APPLICABLE


def test_segment_scores_weigh_by_cost(spec) -> None:
    frame = _frame(spec, ["A", "A", "B"], [10.0, 10.0, 10.0], [1.0, 1.0, 8.0])
    scores = {s["segment"]: s for s in gates.segment_scores(frame, np.array([10, 10, 5.0]), spec)}
    assert scores["B"]["share"] == pytest.approx(0.8)
    assert scores["A"]["score"] == 0.0 and scores["B"]["score"] == pytest.approx(0.5)


def test_business_benchmark_bias_bands_differ_over_and_under(spec) -> None:
    limits = replace(REFUSING, bias_over_max=0.10, bias_under_max=0.30, cost_per_outcome_band=9)
    frame = _frame(spec, ["A"] * 4, [10.0] * 4, [5.0] * 4)
    over = gates.business_benchmark(frame, np.full(4, 12.0), spec, limits)
    under = gates.business_benchmark(frame, np.full(4, 8.0), spec, limits)
    assert over.verdict == gates.REFUSE and "over-predicts by +20.0%" in over.reason
    assert under.verdict == gates.PASS, under.reason
    assert over.counts["bias"] == pytest.approx(0.2)


def test_business_benchmark_cost_per_outcome_band_and_bias_alone_without_cost(spec) -> None:
    # Right in total, wrong per segment: A over by half, B under by half.
    frame = _frame(spec, ["A", "B"], [10.0, 10.0], [5.0, 5.0])
    predicted = np.array([15.0, 5.0])
    with_cost = gates.business_benchmark(frame, predicted, spec, REFUSING)
    assert with_cost.verdict == gates.REFUSE
    assert "cost per outcome" in with_cost.reason
    assert with_cost.counts["cost_per_outcome_deviation"] > REFUSING.cost_per_outcome_band
    no_cost = replace(spec, cost_column=None)
    alone = gates.business_benchmark(frame.drop(spec.cost_column), predicted, no_cost, REFUSING)
    assert alone.verdict == gates.PASS and "cost_per_outcome_deviation" not in alone.counts


def test_serving_budget_refuses_over_the_factor_of_the_incumbent() -> None:
    incumbent = {"p99_ms": 0.1, "model_bytes": 1000.0, "p50_ms": 0.05, "load_seconds": 1.0}
    slow = {**incumbent, "p99_ms": 0.5}
    big = {**incumbent, "model_bytes": 9000.0}
    result = gates.serving_budget(slow, incumbent, REFUSING)
    assert result.verdict == gates.REFUSE and "5.0x the incumbent" in result.reason
    assert result.observed == pytest.approx(5.0)
    too_big = gates.serving_budget(big, incumbent, REFUSING)
    assert too_big.verdict == gates.REFUSE
    assert "model size 9,000 bytes is 9.0x the incumbent's 1,000 bytes" in too_big.reason
    assert gates.serving_budget(slow, incumbent, DEV).verdict == gates.WARN
    assert gates.serving_budget(incumbent, incumbent, REFUSING).verdict == gates.PASS
    assert gates.serving_budget(slow, None, REFUSING).verdict == gates.NOT_APPLICABLE


def test_target_leak_flags_an_injected_column_not_the_honest_data(
    spec, holdout: pl.DataFrame, fitted: dict[str, TrainResult]
) -> None:
    baseline = min(fitted[n].metrics[spec.training.metric] for n in ("global_mean", "segment_mean"))
    best = min(fitted[n].metrics[spec.training.metric] for n in ("lgbm_small", "lgbm_large"))
    honest = gates.target_leak(
        gates.feature_leak_scores(holdout, spec), best, baseline, REFUSING, "wape"
    )
    assert honest.verdict == gates.PASS, honest.reason
    assert honest.counts["lowest_feature_ratio"] > 2 * REFUSING.leak_feature_ratio

    rng = np.random.default_rng(0)
    leaking = holdout.with_columns(
        (pl.col(spec.target) + pl.Series(rng.normal(0, 0.5, holdout.height))).alias("tally")
    )
    leaky_spec = replace(spec, numeric_features=(*spec.numeric_features, "tally"))
    flagged = gates.target_leak(
        gates.feature_leak_scores(leaking, leaky_spec), best, baseline, REFUSING, "wape"
    )
    assert flagged.verdict == gates.REFUSE
    assert "feature tally" in flagged.reason
    implausible = gates.target_leak([], baseline * 0.05, baseline, DEV, "wape")
    assert implausible.verdict == gates.WARN and "implausibly good" in implausible.reason


def test_gate_results_round_trip_and_environments_tighten() -> None:
    result = gates.serving_budget({"p99_ms": 1.0, "model_bytes": 1.0}, None, DEV)
    assert gates.loads(gates.dumps([result])) == [result]
    dev, staging, prod = (load_settings(e).thresholds.gates for e in ("dev", "staging", "prod"))
    assert not dev.blocks("target_leak") and staging.blocks("target_leak")
    assert not staging.blocks("serving_budget") and prod.blocks("serving_budget")
    assert prod.segment_margin < dev.segment_margin


def test_spec_overrides_gates_per_environment(tmp_path) -> None:
    raw = simulator_spec(gates={"segment_margin": 0.5, "prod": {"blocking": ["target_leak"]}})
    spec = parse_spec(raw, tmp_path)
    assert gate_overrides(spec, "dev") == {"segment_margin": 0.5}
    prod = GateThresholds().with_overrides(gate_overrides(spec, "prod"))
    assert prod.blocking == ("target_leak",) and prod.segment_margin == 0.5
    with pytest.raises(SpecError, match=r"'gates.segment_marg' is not a gate setting"):
        parse_spec(simulator_spec(gates={"segment_marg": 0.5}), tmp_path)
    with pytest.raises(SpecError, match=r"unknown gates \['speed'\]"):
        parse_spec(simulator_spec(gates={"blocking": ["speed"]}), tmp_path)


# ---------------------------------------------------------------------------------------------
# The gates that need the incumbent, as the decision history applies them


def _evaluation(day, version: str, wape: float, segments, p99: float, size: float):
    """One training date's champion rows: a baseline and the proposed model ``version``."""
    from datetime import timedelta

    from mlops_assets.ml import promotion

    base = {
        "training_date": day,
        "effective_from": day + timedelta(days=7),
        "holdout_start": str(day - timedelta(days=7)),
        "holdout_end": str(day - timedelta(days=2)),
        "baseline_topped": False,
        "serves": True,
        "evaluation": f"v{version} beats the baselines",
        "gates": gates.dumps([]),
        "refused_by": None,
        "mae": 1.0,
        "rmse": 1.0,
        "bias": 0.0,
    }
    rows = [
        {
            **base,
            "candidate": "segment_mean",
            "role": "baseline",
            "model_version": f"b{version}",
            "wape": 0.9,
            "proposed": False,
            "segment_scores": None,
            "serve_p99_ms": None,
            "model_bytes": None,
        },
        {
            **base,
            "candidate": "lgbm",
            "role": "model",
            "model_version": version,
            "wape": wape,
            "proposed": True,
            "segment_scores": __import__("json").dumps(segments),
            "serve_p99_ms": p99,
            "model_bytes": size,
        },
    ]
    frame = pl.DataFrame(rows)
    return frame.with_columns(
        pl.lit(None, dtype=pl.Float64).alias(c)
        for c in promotion.SERVE_COLUMNS.values()
        if c not in frame.columns
    )


def _history(limits, segments_v2, p99_v2=0.1, size_v2=1000.0, gated=False):
    from datetime import date

    from mlops_assets.ml import decision_history, promotion

    first = _evaluation(date(2025, 1, 13), "1", 0.50, _segments({"ESPN": (0.4, 0.5)}), 0.1, 1e3)
    second = _evaluation(date(2025, 1, 27), "2", 0.40, segments_v2, p99_v2, size_v2)
    incumbent_segments = _segments({"ESPN": (0.4, 0.40), "CNN": (0.6, 0.60)})
    releases = decision_history.empty_releases()
    if gated:
        # Prod: a person approves the first proposal before the second training date's cut-off.
        releases = decision_history.release_row(
            releases,
            action=promotion.PROMOTE,
            version="1",
            candidate="lgbm",
            approved_by="ana",
            reason="first release",
            source="proposal",
            effective_from=date(2025, 1, 28),
            recorded_at=None,
        )
    return decision_history.decide_history(
        pl.concat([first, second], how="diagonal_relaxed"),
        releases,
        metric="wape",
        promotion_margin=0.0,
        gated=gated,
        score=lambda v, s, e: {"wape": 0.5, "segments": incumbent_segments},
        limits=limits,
    )


def test_the_history_refuses_a_model_that_loses_a_large_segment_and_keeps_the_incumbent() -> None:
    from mlops_assets.ml import history_queries

    loses_espn = _segments({"ESPN": (0.4, 0.80), "CNN": (0.6, 0.20)})
    history = _history(DEV, loses_espn)
    last = history.sort("seq").row(-1, named=True)
    assert last["action"] == "refused"
    assert last["to_version"] == "1" and last["proposed_version"] == "2"
    assert "refused by gate segment_guardrail: segment ESPN (40% of the holdout)" in last["reason"]
    recorded = history_queries.gate_results(last)
    assert recorded["segment_guardrail"].refused
    assert recorded["serving_budget"].verdict == gates.PASS

    fair = _segments({"ESPN": (0.4, 0.42), "CNN": (0.6, 0.40)})
    assert _history(DEV, fair).sort("seq")["to_version"][-1] == "2"


def test_the_history_applies_the_serving_budget_by_environment() -> None:
    fair = _segments({"ESPN": (0.4, 0.40), "CNN": (0.6, 0.50)})
    prod = load_settings("prod").thresholds.gates
    refused = _history(prod, fair, p99_v2=1.0, gated=True).sort("seq").row(-1, named=True)
    assert refused["action"] == "refused", refused["reason"]
    assert "refused by gate serving_budget" in refused["reason"]
    warned = _history(DEV, fair, p99_v2=1.0).sort("seq").row(-1, named=True)
    assert warned["action"] == "promote"
    assert gates.loads(warned["serving_gate"])[0].verdict == gates.WARN


def test_a_biased_candidate_is_refused_by_stagings_business_benchmark(
    spec, holdout: pl.DataFrame, fitted: dict[str, TrainResult]
) -> None:
    staging = load_settings("staging").thresholds.gates
    model = fitted["lgbm_small"].model
    honest = gates.business_benchmark(holdout, model.predict(holdout), spec, staging)
    assert honest.verdict == gates.PASS, honest.reason
    biased = gates.business_benchmark(holdout, model.predict(holdout) * 1.4, spec, staging)
    assert biased.verdict == gates.REFUSE
    assert "over-predicts" in biased.reason
    assert biased.threshold == staging.bias_over_max
