"""Drift monitoring (``ml/drift.py``) on real Evidently 0.7 reports over simulated TV-ad airings.

Covers: an audience shift injected on the biggest network is detected (feature and prediction
drift, the drift-share rule fails at the dev threshold) while the quiet days before it pass; a
60 % null storm fails the null-share rule but is invisible to the drift test; an all-empty column
is reported ``empty`` instead of crashing the report; the HTML report and the local Evidently
workspace hold the run (reopened from disk; a re-run of a day replaces that day's run); sampling
is deterministic and unbiased; the rules' evidence; importing the module does not import
Evidently.

The simulator makes 2,500 airings a day: at a few hundred, Evidently's default test for a large
reference (normed Wasserstein distance, threshold 0.1) sits inside the day-to-day noise of the
heavy-tailed audience and spend columns, and quiet days flag drift at random.
"""

from __future__ import annotations

import math
import subprocess
import sys
from datetime import date, datetime
from pathlib import Path

import polars as pl
import pytest

from mlops_assets.environments import load_settings
from mlops_assets.ml import dashboard, drift, monitoring
from mlops_assets.simulator import SimulatorConfig, simulate_day

AIRINGS_PER_DAY = 2500
REFERENCE_DAYS = [date(2025, 3, d) for d in range(1, 15)]
QUIET_DAYS = [date(2025, 3, d) for d in (15, 16, 18, 19)]
STORM_DAY = date(2025, 3, 17)
SHIFT_DAYS = [date(2025, 3, 20), date(2025, 3, 21)]
BIG_NETWORK = "ESPN"
# The size of an airing: what was bought, for how long, and how many saw it.
SIZE_COLUMNS = ["duration_s", "spend", "audience_k"]
NUMERIC = ["hour", "duration_s", "spend", "audience_k"]
CATEGORICAL = ["network", "daypart"]
DEV = load_settings("dev").thresholds


def with_prediction(events: pl.DataFrame) -> pl.DataFrame:
    """A naive model's prediction: visits proportional to the audience."""
    return events.with_columns((pl.col("audience_k") * 0.06).alias("prediction"))


@pytest.fixture(scope="module")
def days() -> dict[date, pl.DataFrame]:
    options = {
        "seed": 7,
        "airings_per_day": AIRINGS_PER_DAY,
        "drifts": [
            {
                "kind": "audience_shift",
                "date": SHIFT_DAYS[0].isoformat(),
                "network": BIG_NETWORK,
                "factor": 3,
            }
        ],
        "incidents": [
            {"kind": "null_storm", "date": STORM_DAY.isoformat(), "column": "audience_k"}
        ],
    }
    config = SimulatorConfig.from_options(options, label_lag_days=2)
    wanted = [*REFERENCE_DAYS, *QUIET_DAYS, STORM_DAY, *SHIFT_DAYS]
    return {d: with_prediction(simulate_day(d, config)[0]) for d in wanted}


@pytest.fixture(scope="module")
def reference(days: dict[date, pl.DataFrame]) -> pl.DataFrame:
    return pl.concat([days[d] for d in REFERENCE_DAYS])


@pytest.fixture(scope="module")
def daily(days: dict[date, pl.DataFrame], reference: pl.DataFrame) -> dict[date, drift.DriftResult]:
    """One drift report per quiet and shifted day, on the size columns and the prediction."""
    return {
        d: drift.drift_report(
            reference,
            days[d],
            SIZE_COLUMNS,
            [],
            drift_share_max=DEV.drift_share_max,
            timestamp=datetime(d.year, d.month, d.day),
        )
        for d in [*QUIET_DAYS, *SHIFT_DAYS]
    }


def test_the_shifted_network_is_the_biggest(reference: pl.DataFrame) -> None:
    means = reference.group_by("network").agg(pl.col("audience_k").mean()).sort("audience_k")
    assert means["network"][-1] == BIG_NETWORK


def test_audience_shift_is_detected_and_quiet_days_pass(
    daily: dict[date, drift.DriftResult],
) -> None:
    for day in QUIET_DAYS:
        result = daily[day]
        assert result.drifted_columns == (), day
        assert monitoring.drift_share_rule(result, DEV.drift_share_max).passed, day
        assert monitoring.prediction_drift_rule(result).passed, day
    for day in SHIFT_DAYS:
        result = daily[day]
        assert result.drifted_columns == ("spend", "audience_k"), day
        rule = monitoring.drift_share_rule(result, DEV.drift_share_max)
        assert not rule.passed
        assert rule.observed == pytest.approx(2 / 3, abs=1e-3)
        assert rule.details["drifted"] == 2 and rule.details["tested"] == 3
        assert rule.details["drifted_columns"] == "spend, audience_k"
        assert result.prediction_drift
        assert not monitoring.prediction_drift_rule(result).passed
        assert result.prediction_mean_current > 1.2 * result.prediction_mean_reference


def test_scores_and_tests_come_from_evidently(daily: dict[date, drift.DriftResult]) -> None:
    """Above 1,000 reference rows Evidently measures a distance: drift when it reaches 0.1."""
    quiet, shifted = daily[QUIET_DAYS[0]], daily[SHIFT_DAYS[0]]
    assert quiet.sampled_reference == 5000 and quiet.rows_reference == 14 * AIRINGS_PER_DAY
    audience = shifted.column("audience_k")
    assert audience.stattest == "Wasserstein distance (normed)"
    assert audience.threshold == pytest.approx(0.1)
    assert audience.score > 2 * audience.threshold > 2 * quiet.column("audience_k").score
    assert shifted.column("duration_s").stattest == "Jensen-Shannon distance"
    assert shifted.column("duration_s").status == drift.STATUS_OK
    assert shifted.prediction is not None and shifted.prediction.kind == drift.PREDICTION_KIND


def test_prediction_test_can_be_a_p_value(
    days: dict[date, pl.DataFrame], reference: pl.DataFrame
) -> None:
    p_value = 0.01
    result = drift.drift_report(
        reference,
        days[SHIFT_DAYS[0]],
        SIZE_COLUMNS,
        [],
        prediction_method="ks",
        prediction_threshold=p_value,
    )
    rule = monitoring.prediction_drift_rule(result)
    assert result.prediction is not None
    assert result.prediction.stattest == "ks"
    assert rule.threshold == p_value
    assert not rule.passed and rule.observed < p_value


def test_drift_must_persist_to_count(daily: dict[date, drift.DriftResult]) -> None:
    flags = [daily[d].drift_share > DEV.drift_share_max for d in [*QUIET_DAYS, *SHIFT_DAYS]]
    assert flags == [False, False, False, False, True, True]
    assert monitoring.persistent(flags, n=2, m=3)
    assert not monitoring.persistent(flags[:-1], n=2, m=3)
    assert not monitoring.persistent(flags, n=3, m=3)
    with pytest.raises(ValueError, match="n <= m"):
        monitoring.persistent(flags, n=4, m=3)


def test_null_storm_fails_null_rule_but_not_the_drift_test(
    days: dict[date, pl.DataFrame], reference: pl.DataFrame
) -> None:
    storm = days[STORM_DAY]
    nulls = monitoring.null_share_rule(storm, [*NUMERIC, *CATEGORICAL], DEV.null_share_max)
    assert not nulls.passed
    assert 0.55 < nulls.observed < 0.65
    assert nulls.details["worst_column"] == "audience_k"
    assert nulls.details["columns_over"] == "audience_k"
    assert nulls.details["worst_column_nulls"] == storm["audience_k"].null_count()

    result = drift.drift_report(reference, storm, NUMERIC, CATEGORICAL, prediction=None)
    audience = result.column("audience_k")
    assert audience.status == drift.STATUS_OK
    assert audience.null_share_current == pytest.approx(nulls.observed, abs=1e-4)
    assert audience.null_share_reference == 0.0
    assert monitoring.drift_share_rule(result, DEV.drift_share_max).passed
    # The test saw only the non-null 40 %: the same score as on those rows alone.
    survivors = storm.drop_nulls("audience_k")
    alone = drift.drift_report(reference, survivors, ["audience_k"], [], prediction=None)
    assert audience.score == pytest.approx(alone.column("audience_k").score, rel=1e-9)


def test_empty_columns_are_reported_not_passed_to_evidently(
    days: dict[date, pl.DataFrame], reference: pl.DataFrame
) -> None:
    current = days[QUIET_DAYS[0]].head(300).with_columns(pl.lit(None, pl.Float64).alias("spend"))
    small_reference = reference.head(600).drop("daypart")
    result = drift.drift_report(small_reference, current, NUMERIC, CATEGORICAL)
    assert result.empty_columns == ("spend", "daypart")
    assert result.column("spend").null_share_current == 1.0
    assert result.column("daypart").null_share_reference == 1.0
    assert math.isnan(result.column("spend").score)
    assert result.tested_columns == ("hour", "duration_s", "audience_k", "network")
    # At most 1,000 reference rows Evidently runs p-value tests instead of distances.
    assert result.column("hour").stattest == "K-S p_value"
    assert result.column("network").stattest == "chi-square p_value"
    rows = result.frame()
    assert rows.height == 7
    assert rows.filter(pl.col("status") == drift.STATUS_EMPTY)["column"].to_list() == [
        "spend",
        "daypart",
    ]
    table = result.summary_markdown()
    assert "empty, not tested: spend, daypart" in table
    assert "| spend | numeric | monitored | - | n/a | n/a | empty | 100.0% | 0.0% |" in table
    assert "| prediction | prediction | monitored | K-S p_value |" in table


def test_nothing_testable_is_not_a_pass(
    days: dict[date, pl.DataFrame], reference: pl.DataFrame, tmp_path: Path
) -> None:
    current = (
        days[QUIET_DAYS[0]]
        .head(50)
        .with_columns(
            pl.lit(None, pl.Float64).alias(c) for c in ["spend", "audience_k", "prediction"]
        )
    )
    result = drift.drift_report(reference.head(100), current, ["spend", "audience_k"], [])
    assert result.snapshot is None
    assert result.empty_columns == ("spend", "audience_k")
    assert not monitoring.drift_share_rule(result, DEV.drift_share_max).passed
    assert not monitoring.prediction_drift_rule(result).passed
    with pytest.raises(ValueError, match="no Evidently run"):
        dashboard.save_report(result, tmp_path / "report.html")


def test_html_and_workspace_hold_the_runs(
    daily: dict[date, drift.DriftResult],
    days: dict[date, pl.DataFrame],
    reference: pl.DataFrame,
    tmp_path: Path,
) -> None:
    from evidently.ui.workspace import Workspace

    html = dashboard.save_report(daily[SHIFT_DAYS[0]], tmp_path / "reports" / "2025-03-20.html")
    assert html.stat().st_size > 10_000
    assert "<html" in html.read_text()[:2000].lower()
    assert list(html.parent.iterdir()) == [html]
    assert html.stat().st_mode & 0o777 == 0o644

    named = {
        d: drift.drift_report(reference, days[d], SIZE_COLUMNS, [], name=d.isoformat())
        for d in (QUIET_DAYS[-1], SHIFT_DAYS[0])
    }
    ws_dir = tmp_path / "evidently"
    first = {d: dashboard.add_to_workspace(r, ws_dir, "drift dev") for d, r in named.items()}
    rerun = dashboard.add_to_workspace(named[SHIFT_DAYS[0]], ws_dir, "drift dev")
    other = dashboard.add_to_workspace(daily[QUIET_DAYS[0]], ws_dir, "drift other")

    reopened = Workspace(str(ws_dir))
    projects = reopened.search_project("drift dev")
    assert len(projects) == 1
    runs = {str(r) for r in reopened.list_runs(projects[0].id)}
    assert runs == {first[QUIET_DAYS[-1]], rerun}
    assert first[SHIFT_DAYS[0]] not in runs
    run = reopened.get_run(projects[0].id, rerun)
    assert run is not None and run.name == "2025-03-20"
    (other_project,) = reopened.search_project("drift other")
    assert {str(r) for r in reopened.list_runs(other_project.id)} == {other}


def test_sampling_is_deterministic_order_free_and_unbiased(reference: pl.DataFrame) -> None:
    sample = drift.sample(reference, 5000, seed=0)
    assert sample.height == 5000
    assert sample.equals(drift.sample(reference, 5000, seed=0))
    shuffled = reference.sample(fraction=1.0, shuffle=True, seed=3)
    assert drift.sample(shuffled, 5000, seed=0).sort("airing_id").equals(sample.sort("airing_id"))
    assert not drift.sample(reference, 5000, seed=1).equals(sample)
    # On these columns the smallest raw row hashes miss daypart shares by 0.07 to 0.11.
    features = reference.select(*NUMERIC, *CATEGORICAL)
    full = features["daypart"].value_counts(normalize=True).sort("daypart")["proportion"]
    for seed in (0, 1, 2):
        part = drift.sample(features, 5000, seed=seed)["daypart"].value_counts(normalize=True)
        assert (full - part.sort("daypart")["proportion"]).abs().max() < 0.025, seed
    assert drift.sample(reference.head(10), 5000, seed=0).height == 10
    with pytest.raises(ValueError):
        drift.sample(reference, 0, seed=0)


def test_null_share_rule_counts_nan_and_absent_columns() -> None:
    frame = pl.DataFrame({"a": [1.0, None, float("nan"), 4.0], "b": ["x", "y", "z", None]})
    rule = monitoring.null_share_rule(frame, ["a", "b", "c"], max_share=0.3)
    assert not rule.passed
    assert rule.observed == 1.0
    assert rule.details["worst_column"] == "c"
    assert rule.details["columns_over"] == "a, c"
    assert rule.details["rows"] == 4
    assert monitoring.null_share_rule(frame, ["a", "b"], max_share=0.5).passed


def test_a_column_cannot_be_numeric_and_categorical(reference: pl.DataFrame) -> None:
    with pytest.raises(ValueError, match="both numeric and categorical"):
        drift.drift_report(reference, reference, ["hour"], ["hour"])


def test_importing_the_module_does_not_import_evidently() -> None:
    code = (
        "import sys\n"
        "import mlops_assets.ml.drift, mlops_assets.ml.business\n"
        "loaded = [m for m in sys.modules if m.split('.')[0] == 'evidently']\n"
        "sys.exit(f'evidently imported: {loaded[:3]}' if loaded else 0)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
