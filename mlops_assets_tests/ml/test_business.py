"""Business metrics (``ml/business.py``) on hand-computed fixtures.

Covers: cost, actual and predicted outcomes, cost per outcome, WAPE and bias in total, per
segment and per day and segment (the warehouse table) on a 5-row fixture whose numbers are worked
out below; zero actuals and missing costs give NaN, not an exception; a spec without a cost
column; duplicate keys refused; the segment table as markdown; the serving summary of a small
request log and of an empty one; the usual-band rule; when actuals have landed; the
``business_metrics`` stage function (rows per segment plus a total per day, per-day numbers, the
band verdicts, days whose actuals have not landed refused by name).
"""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import date, datetime

import polars as pl
import pytest

from mlops_assets.dataset import DatasetSpec
from mlops_assets.ml.business import (
    TOTAL,
    ActualsNotLandedError,
    actuals_landed,
    business_metrics,
    business_metrics_stage,
    serving_summary,
    within_band,
)

D1, D2 = date(2025, 3, 10), date(2025, 3, 11)

# a5 has no outcome yet; a4 has no spend; CBS drove no visits.
PREDICTIONS = pl.DataFrame(
    {
        "air_date": [D1, D1, D1, D2, D2],
        "airing_id": ["a1", "a2", "a3", "a4", "a5"],
        "network": ["ABC", "ABC", "CBS", "CBS", "NBC"],
        "prediction": [10.0, 30.0, 5.0, 0.0, 8.0],
        "model_version": ["3"] * 5,
    }
)
OUTCOMES = pl.DataFrame(
    {
        "air_date": [D1, D1, D1, D2],
        "airing_id": ["a1", "a2", "a3", "a4"],
        "visits": [20.0, 20.0, 0.0, 0.0],
    }
)
EVENTS = pl.DataFrame(
    {
        "air_date": [D1, D1, D1, D2, D2],
        "airing_id": ["a1", "a2", "a3", "a4", "a5"],
        "network": ["ABC", "ABC", "CBS", "CBS", "NBC"],
        "spend": [100.0, 300.0, 50.0, None, 70.0],
    }
)


def nan(value: float) -> bool:
    return isinstance(value, float) and math.isnan(value)


def test_totals_match_hand_computed_values(spec: DatasetSpec) -> None:
    result = business_metrics(PREDICTIONS, OUTCOMES, EVENTS, spec)
    # Matched a1..a4: spend 100 + 300 + 50 (a4 none) = 450; visits 40; predicted 45;
    # |10-20| + |30-20| + |5-0| + |0-0| = 25.
    assert result.totals() == {
        "events": 4.0,
        "cost_missing": 1.0,
        "cost": 450.0,
        "actual": 40.0,
        "predicted": 45.0,
        "abs_error": 25.0,
        "cost_per_outcome_actual": 450 / 40,
        "cost_per_outcome_predicted": 450 / 45,
        "wape": 25 / 40,
        "bias": (45 - 40) / 40,
        "unmatched_predictions": 1.0,
    }


def test_segments_and_days(spec: DatasetSpec) -> None:
    result = business_metrics(PREDICTIONS, OUTCOMES, EVENTS, spec)
    abc, cbs = result.segments.sort("network").iter_rows(named=True)
    assert abc["network"] == "ABC" and abc["cost"] == 400.0 and abc["actual"] == 40.0
    assert abc["cost_per_outcome_actual"] == 10.0 and abc["cost_per_outcome_predicted"] == 10.0
    assert abc["wape"] == 0.5 and abc["bias"] == 0.0
    # CBS: no visits, so every ratio over visits is NaN; spend 50 over 5 predicted visits.
    assert cbs["events"] == 2 and cbs["cost_missing"] == 1 and cbs["cost"] == 50.0
    assert cbs["cost_per_outcome_predicted"] == 10.0
    assert nan(cbs["cost_per_outcome_actual"]) and nan(cbs["wape"]) and nan(cbs["bias"])

    table = result.table
    assert table.columns[:2] == ["air_date", "network"]
    assert table.schema["air_date"] == pl.Date
    assert table.select("air_date", "network").rows() == [(D1, "ABC"), (D1, "CBS"), (D2, "CBS")]
    last = table.row(2, named=True)
    # a4 alone: no spend at all is an unknown cost, not a zero one.
    assert last["events"] == 1 and last["cost_missing"] == 1 and nan(last["cost"])
    assert nan(last["cost_per_outcome_predicted"])
    assert table["events"].sum() == 4


def test_segments_markdown(spec: DatasetSpec) -> None:
    text = business_metrics(PREDICTIONS, OUTCOMES, EVENTS, spec).segments_markdown()
    assert "Outcome: web visits; cost: spend." in text
    lines = text.splitlines()
    assert lines[2].startswith("| network | events | spend | actual | predicted |")
    assert lines[4] == "| ABC | 2 | 400 | 40 | 40 | 10.00 | 10.00 | 50.0% | +0.0% |"
    assert lines[5] == "| CBS | 2 | 50 | 0 | 5 | n/a | 10.00 | n/a | n/a |"
    assert lines[6] == "| **total** | 4 | 450 | 40 | 45 | 11.25 | 10.00 | 62.5% | +12.5% |"


def test_a_spec_without_cost_column(spec: DatasetSpec) -> None:
    no_cost = replace(spec, cost_column=None)
    totals = business_metrics(PREDICTIONS, OUTCOMES, None, no_cost).totals()
    assert nan(totals["cost"]) and nan(totals["cost_per_outcome_actual"])
    assert totals["cost_missing"] == 4.0
    assert totals["wape"] == 25 / 40 and totals["bias"] == 5 / 40
    assert "cost: none in this dataset" in (
        business_metrics(PREDICTIONS, OUTCOMES, EVENTS, no_cost).segments_markdown()
    )


def test_duplicate_keys_are_refused(spec: DatasetSpec) -> None:
    doubled = pl.concat([EVENTS, EVENTS.head(1)])
    with pytest.raises(ValueError, match="events: 1 duplicate 'airing_id'"):
        business_metrics(PREDICTIONS, OUTCOMES, doubled, spec)
    with pytest.raises(ValueError, match="outcomes: 2 duplicate"):
        business_metrics(PREDICTIONS, pl.concat([OUTCOMES, OUTCOMES.head(2)]), EVENTS, spec)


def test_serving_summary_of_a_small_log() -> None:
    log = pl.DataFrame(
        {
            "status": [200, 200, 404, 503, 200, 200, 200, 422, 200, 500],
            "latency_ms": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 100.0],
        }
    )
    summary = serving_summary(log)
    assert summary["requests"] == 10
    assert summary["server_errors"] == 2 and summary["error_rate"] == 0.2
    assert summary["client_errors"] == 2 and summary["client_error_rate"] == 0.2
    assert summary["p50_latency_ms"] == pytest.approx(5.5)
    # Linear interpolation at 0.99 x 9 = 8.91 between 9 and 100.
    assert summary["p99_latency_ms"] == pytest.approx(9 + 0.91 * 91)


def test_serving_summary_of_no_requests() -> None:
    summary = serving_summary(pl.DataFrame({"status": [], "latency_ms": []}))
    assert summary["requests"] == 0 and summary["error_rate"] == 0.0
    assert nan(summary["p50_latency_ms"]) and nan(summary["p99_latency_ms"])
    assert serving_summary(pl.DataFrame())["requests"] == 0


def test_within_band() -> None:
    history = [100.0, 104.0, 98.0, 101.0, 97.0, 103.0, 99.0, float("nan")]
    # Median 100, MAD 2, robust std 2 x 1.4826: the band is 100 +- 8.90.
    inside = within_band(108.0, history)
    assert inside.passed and inside.details["history"] == 7
    assert inside.details["upper"] == pytest.approx(100 + 3 * 2 * 1.4826)
    outside = within_band(109.5, history)
    assert not outside.passed and outside.observed == 109.5
    assert not within_band(90.0, history).passed
    assert within_band(90.0, history, k=5.0).passed
    assert not within_band(float("nan"), history).passed
    short = within_band(1e9, history[:6])
    assert short.passed and "only 6 of 7 days" in short.details["note"]


def test_actuals_landed() -> None:
    assert not actuals_landed(D1, 2, datetime(2025, 3, 11, 23, 59))
    assert actuals_landed(D1, 2, datetime(2025, 3, 12, 0, 0))
    assert actuals_landed(D1, 0, D1)


LOG = pl.DataFrame({"day": [D1, D1, D2], "status": [200, 404, 200], "latency_ms": [1.0, 2.0, 3.0]})


def no_past(table: str) -> pl.DataFrame:
    return pl.DataFrame()


def test_the_stage_gives_rows_numbers_and_band_verdicts(spec: DatasetSpec) -> None:
    result = business_metrics_stage(spec, [D1], PREDICTIONS, OUTCOMES, EVENTS, LOG, no_past, 28)
    d1 = result.frame.filter(pl.col("air_date") == D1)
    assert sorted(d1["network"]) == sorted(["ABC", "CBS", TOTAL])
    numbers = result.per_day[D1]
    assert numbers["wape"] == 25 / 40 and numbers["cost"] == 450.0
    assert numbers["serving_requests"] == 2.0 and numbers["serving_client_errors"] == 1.0
    assert "| **total** |" in numbers["segments"]
    passed, metadata = result.bands["wape"]
    assert passed and metadata["days_checked"] == 1 and metadata["days_outside_band"] == "none"
    assert result.bands["cost_per_outcome_actual"] is not None


def test_the_stage_reads_the_band_from_the_past_days(spec: DatasetSpec) -> None:
    """D2 alone, with D1 given as the past: D2's one airing drove no visits, so its error is
    not a number; one past day is too few for a band, so the rule passes and says so."""

    def past(table: str) -> pl.DataFrame:
        frames = {"predictions": PREDICTIONS, "raw_outcomes": OUTCOMES, "raw_events": EVENTS}
        return frames[table].filter(pl.col("air_date") == D1)

    def on_d2(frame: pl.DataFrame) -> pl.DataFrame:
        return frame.filter(pl.col("air_date") == D2)

    result = business_metrics_stage(
        spec, [D2], on_d2(PREDICTIONS), on_d2(OUTCOMES), on_d2(EVENTS), LOG, past, 28
    )
    assert set(result.per_day) == {D2} and nan(result.per_day[D2]["wape"])
    passed, metadata = result.bands["wape"]
    assert passed and "only 1 of" in metadata["note"] and metadata["day"] == str(D2)


def test_the_stage_without_cost_or_actuals(spec: DatasetSpec) -> None:
    no_cost = replace(spec, cost_column=None)
    result = business_metrics_stage(no_cost, [D1], PREDICTIONS, OUTCOMES, EVENTS, LOG, no_past, 7)
    assert result.bands["cost_per_outcome_actual"] is None and result.bands["wape"][0]
    early = OUTCOMES.filter(pl.col("air_date") == D1)
    with pytest.raises(ActualsNotLandedError, match=f"visits of {D2} have not landed yet"):
        business_metrics_stage(spec, [D1, D2], PREDICTIONS, early, EVENTS, LOG, no_past, 7)
