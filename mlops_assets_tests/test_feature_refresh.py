"""Feature refresh in process: real Dagster runs of the daily job against a real DuckDB warehouse
under tmp_path. Covers: every daily partition stored once; re-running a day leaves identical rows;
point-in-time correctness (tampering with outcomes that had not landed before day D leaves the
features of D unchanged, tampering with landed ones changes them) plus the pure
``build_features`` on a hand-made frame; the feature checks' evidence; and data incidents (null
storm, schema change, empty day, negative target, duplicate keys) on their days."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from mlops_assets.dataset_load import parse_spec
from mlops_assets.defs.feature_refresh.checks import (
    NON_EMPTY,
    NULL_SHARE,
    POINT_IN_TIME,
    SCHEMA,
    UNIQUE_KEYS,
)
from mlops_assets.ml import rules
from mlops_assets.ml.features import HISTORY_THROUGH, STATS_SCHEMA, build_features
from mlops_assets_tests.helpers import (
    SMALL_AIRINGS_PER_DAY,
    Pipeline,
    check_evaluations,
    day_range,
    failure_messages,
    simulator_spec,
)

# With the clock at 2025-03-15 06:00 and a 2-day label lag, outcomes have landed up to 2025-03-13.
BASE_DAYS = day_range(date(2025, 3, 3), 12)
LANDED_DAYS = BASE_DAYS[:-1]
ALL_CHECKS = {NON_EMPTY, UNIQUE_KEYS, SCHEMA, NULL_SHARE, POINT_IN_TIME}


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Pipeline, object]]:
    """Twelve days of the daily job, run once for the read-only tests of this module."""
    with pytest.MonkeyPatch.context() as mp:
        p = Pipeline(mp, tmp_path_factory.mktemp("feature_refresh"))
        p.use_spec()
        summary = p.run_days(BASE_DAYS)
        yield p, summary
        p.close()


@pytest.fixture
def tampered(base, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Pipeline]:
    """A private copy of the base run's data folder, free to be rewritten."""
    p = base[0].clone(monkeypatch, tmp_path)
    yield p
    p.close()


def per_day(p: Pipeline, table: str, column: str) -> dict[date, int]:
    frame = p.warehouse.query(
        f'SELECT "{column}" AS d, count(*) AS n FROM mlops."{table}" GROUP BY 1 ORDER BY 1'
    )
    return dict(zip(frame["d"].to_list(), frame["n"].to_list(), strict=True))


def test_every_daily_partition_is_stored_once(base, monkeypatch: pytest.MonkeyPatch) -> None:
    p, summary = base
    p.bind(monkeypatch)
    assert summary.failed_runs == []
    assert summary.checks_failed == []
    assert summary.checks_passed >= len(ALL_CHECKS)
    assert summary.partitions["raw_events"] == len(BASE_DAYS)
    assert summary.partitions["features"] == len(BASE_DAYS)
    assert summary.partitions["raw_outcomes"] == len(LANDED_DAYS)

    for table in ("raw_events", "features"):
        assert per_day(p, table, "air_date") == {d: SMALL_AIRINGS_PER_DAY for d in BASE_DAYS}
        keys = p.warehouse.query(
            f'SELECT count(*) AS n, count(DISTINCT airing_id) AS k FROM mlops."{table}"'
        ).row(0)
        assert keys == (len(BASE_DAYS) * SMALL_AIRINGS_PER_DAY,) * 2
        stored = p.instance.get_materialized_partitions(dg.AssetKey(table))
        assert stored == {d.isoformat() for d in BASE_DAYS}

    # Outcomes (and what depends on them) only for the days whose outcomes have landed.
    for table in ("raw_outcomes", "labeled_examples"):
        assert per_day(p, table, "air_date") == {d: SMALL_AIRINGS_PER_DAY for d in LANDED_DAYS}
    assert list(per_day(p, "outcome_stats", "day")) == LANDED_DAYS
    stored = p.instance.get_materialized_partitions(dg.AssetKey("raw_outcomes"))
    assert stored == {d.isoformat() for d in LANDED_DAYS}


def test_features_carry_the_spec_columns_and_history(base, monkeypatch: pytest.MonkeyPatch) -> None:
    p, _ = base
    p.bind(monkeypatch)
    spec = p.spec
    features = p.rows("features", BASE_DAYS[-1])
    assert features.columns[: 2 + len(spec.categorical_features)] == [
        "air_date",
        "airing_id",
        *spec.categorical_features,
    ]
    for col in spec.model_feature_columns:
        assert col in features.columns
    # The last day's history runs through the last day whose outcomes landed before it began.
    assert features[HISTORY_THROUGH].unique().to_list() == [BASE_DAYS[-1] - timedelta(days=3)]
    assert features["hist_network_mean"].null_count() == 0
    # The first day has no landed history yet.
    first = p.rows("features", BASE_DAYS[0])
    assert first[HISTORY_THROUGH].null_count() == first.height
    assert first["hist_network_n"].unique().to_list() == [0.0]


def test_rerunning_a_day_leaves_identical_rows(tampered: Pipeline) -> None:
    p = tampered
    tables = ("raw_events", "raw_outcomes", "outcome_stats", "features", "labeled_examples")
    before = {t: p.rows(t) for t in tables}
    summary = p.run_days([date(2025, 3, 10)])
    assert summary.failed_runs == []
    assert summary.partitions["features"] == 1
    for table in tables:
        assert p.rows(table).equals(before[table]), table


def test_features_of_a_day_ignore_outcomes_not_landed_before_it(tampered: Pipeline) -> None:
    p = tampered
    day = date(2025, 3, 12)
    # Outcomes of day - lag land on `day` itself: not known when the day begins.
    first_unknown = day - timedelta(days=p.spec.label_lag_days)
    before = p.rows("features", day)
    assert before["hist_network_mean"].null_count() == 0

    p.execute("UPDATE mlops.outcome_stats SET total = 1e9, n = 1 WHERE day >= ?", [first_unknown])
    p.execute("UPDATE mlops.raw_outcomes SET visits = 1e9 WHERE air_date >= ?", [first_unknown])
    tampered_rows = p.warehouse.query(
        "SELECT count(*) AS n FROM mlops.outcome_stats WHERE total = 1e9"
    )["n"][0]
    assert tampered_rows > 0

    result = p.materialize(day, ["features"])
    assert result.success
    assert p.rows("features", day).equals(before)
    pit = check_evaluations(result)[POINT_IN_TIME]
    assert pit.passed
    assert pit.metadata["observed"].value == 0
    assert pit.metadata["threshold"].value == 0
    assert pit.metadata["latest_history_day"].value == str(first_unknown - timedelta(days=1))

    # Control: the last landed day does feed the features, so tampering with it shows.
    p.execute(
        "UPDATE mlops.outcome_stats SET total = total + 1e6 WHERE day = ?",
        [first_unknown - timedelta(days=1)],
    )
    assert p.materialize(day, ["features"]).success
    after = p.rows("features", day)
    assert not after["hist_network_mean"].equals(before["hist_network_mean"])
    assert after.drop("hist_network_mean", "hist_daypart_mean", "hist_creative_id_mean").equals(
        before.drop("hist_network_mean", "hist_daypart_mean", "hist_creative_id_mean")
    )


def tiny_spec(tmp_path: Path):
    raw = simulator_spec(
        numeric_features=["spend"],
        categorical_features=["network"],
        serving_keys=["network"],
        history_keys=["network"],
        segment_column="network",
        cost_column=None,
        history_days=3,
        label_lag_days=2,
    )
    return parse_spec(raw, tmp_path)


def test_build_features_uses_only_landed_history(tmp_path: Path) -> None:
    spec = tiny_spec(tmp_path)
    day = date(2025, 3, 10)
    d = {n: day - timedelta(days=n) for n in range(7)}
    events = pl.DataFrame(
        {
            "air_date": [day, day, day, day, d[1]],
            "airing_id": ["e1", "e2", "e3", "e4", "old"],
            "network": ["ABC", "ABC", "CBS", "FOX", "ABC"],
            "spend": [10, 20, 30, 40, 50],
        }
    )
    stats = pl.DataFrame(
        [
            (d[6], "network", "ABC", 10, 1e6),  # older than the 3-day window
            (d[5], "network", "ABC", 2, 10.0),
            (d[4], "network", "ABC", 3, 30.0),
            (d[3], "network", "ABC", 5, 20.0),
            (d[3], "network", "CBS", 4, 8.0),
            (d[2], "network", "ABC", 1, 1e6),  # lands on `day`: not known yet
            (d[1], "network", "CBS", 1, 1e6),
            (d[0], "network", "ABC", 1, 1e6),
            (d[0], "network", "FOX", 1, 1e6),
            (day + timedelta(days=3), "network", "FOX", 1, 1e6),
        ],
        schema=STATS_SCHEMA,
        orient="row",
    )
    features = build_features(spec, day, events, stats).sort("airing_id")

    assert features["airing_id"].to_list() == ["e1", "e2", "e3", "e4"]
    assert features["hist_network_mean"].to_list() == [6.0, 6.0, 2.0, None]  # 60/10, 8/4
    assert features["hist_network_n"].to_list() == [10.0, 10.0, 4.0, 0.0]
    assert features[HISTORY_THROUGH].unique().to_list() == [d[3]]
    assert features["spend"].dtype == pl.Float64
    assert rules.point_in_time(spec, features).passed


def test_build_features_without_history(tmp_path: Path) -> None:
    spec = tiny_spec(tmp_path)
    day = date(2025, 3, 10)
    events = pl.DataFrame(
        {"air_date": [day], "airing_id": ["e1"], "network": ["ABC"], "spend": [1.0]}
    )
    features = build_features(spec, day, events, pl.DataFrame())
    assert features["hist_network_mean"].to_list() == [None]
    assert features["hist_network_n"].to_list() == [0.0]
    assert features[HISTORY_THROUGH].to_list() == [None]


def test_point_in_time_rule_catches_a_leak(tmp_path: Path) -> None:
    spec = tiny_spec(tmp_path)
    day = date(2025, 3, 10)
    leaky = pl.DataFrame(
        {
            "air_date": [day, day, day + timedelta(days=1)],
            HISTORY_THROUGH: [date(2025, 3, 7), date(2025, 3, 8), date(2025, 3, 8)],
        }
    )
    result = rules.point_in_time(spec, leaky)
    assert not result.passed
    assert result.observed == 1
    assert result.threshold == 0
    assert result.metadata()["latest_history_day"] == "2025-03-08"
    assert rules.point_in_time(spec, leaky.slice(0, 1)).passed
    assert not rules.point_in_time(spec, leaky.drop(HISTORY_THROUGH)).passed


def test_schema_rule_on_features(tmp_path: Path) -> None:
    """The features carry the model columns; a cost column that is no feature is not asked for."""
    spec = replace(tiny_spec(tmp_path), cost_column="budget")
    day = date(2025, 3, 10)
    events = pl.DataFrame(
        {"air_date": [day], "airing_id": ["e1"], "network": ["ABC"], "spend": [1.0], "budget": [2]}
    )
    features = build_features(spec, day, events, pl.DataFrame())
    assert "budget" not in features.columns
    assert rules.schema_matches(spec, features).passed

    wrong_type = rules.schema_matches(spec, features.with_columns(pl.col("spend").cast(pl.String)))
    assert not wrong_type.passed
    assert "column 'spend' should be numeric" in wrong_type.details["problems"]
    missing = rules.schema_matches(spec, features.drop("hist_network_mean"))
    assert not missing.passed
    assert missing.details["problems"] == "missing 'hist_network_mean'"


def test_feature_checks_report_observed_value_and_threshold(pipeline: Pipeline) -> None:
    result = pipeline.materialize(date(2025, 3, 10), ["raw_events", "features"])
    assert result.success
    evaluations = check_evaluations(result)
    assert set(evaluations) == ALL_CHECKS
    for name, evaluation in evaluations.items():
        assert evaluation.passed, name
        assert {"observed", "threshold"} <= set(evaluation.metadata), name
    assert evaluations[NON_EMPTY].metadata["observed"].value == SMALL_AIRINGS_PER_DAY
    assert evaluations[UNIQUE_KEYS].metadata["observed"].value == 0
    assert evaluations[NULL_SHARE].metadata["threshold"].value == 0.2
    assert evaluations[SCHEMA].metadata["problems"].value == "none"


@pytest.mark.parametrize(
    ("env", "threshold", "level"), [("dev", 0.2, "WARN"), ("prod", 0.05, "ERROR")]
)
def test_null_storm_fails_the_null_share_check(
    make_pipeline, env: str, threshold: float, level: str
) -> None:
    day = date(2025, 3, 10)
    storm = {"kind": "null_storm", "date": day.isoformat(), "column": "audience_k", "share": 0.6}
    p = make_pipeline(incidents=[storm])
    p.set_env(env)

    calm = check_evaluations(p.materialize(day - timedelta(days=1), ["raw_events", "features"]))
    assert calm[NULL_SHARE].passed
    assert calm[NULL_SHARE].metadata["observed"].value == 0.0

    result = p.materialize(day, ["raw_events", "features"])
    check = check_evaluations(result)[NULL_SHARE]
    assert not check.passed
    assert check.severity == getattr(dg.AssetCheckSeverity, level)
    assert 0.5 < check.metadata["observed"].value < 0.7
    assert check.metadata["threshold"].value == threshold
    assert check.metadata["worst_column"].value == "audience_k"
    assert check.metadata["columns_over"].value == "audience_k"
    # The asset itself is stored, nulls included, so the evidence can be inspected.
    stored = p.rows("features", day)
    assert stored.height == SMALL_AIRINGS_PER_DAY
    assert stored["audience_k"].null_count() == round(check.metadata["observed"].value * 150)
    if level == "WARN":
        assert result.success


@pytest.mark.parametrize(
    ("incident", "message"),
    [
        ({"kind": "schema_change", "column": "spend"}, "column 'spend' is missing"),
        ({"kind": "empty_day"}, "the source returned no rows (empty day)"),
    ],
)
def test_broken_source_day_fails_and_keeps_previous_rows(
    pipeline: Pipeline, incident: dict, message: str
) -> None:
    day = date(2025, 3, 10)
    first = pipeline.materialize(day, ["raw_events"])
    assert first.success
    previous = pipeline.rows("raw_events", day)
    assert previous.height == SMALL_AIRINGS_PER_DAY

    # A new spec file: the project is cached per (env, data dir, dataset path, clock).
    pipeline.use_spec(incidents=[{**incident, "date": day.isoformat()}])
    result = pipeline.materialize(day, ["raw_events", "features"])
    assert not result.success
    assert result.get_failed_step_keys() == {"raw_events"}
    assert message in failure_messages(result)
    assert f"of {day}" in failure_messages(result)
    assert pipeline.rows("raw_events", day).equals(previous)
    assert pipeline.rows("features", day).is_empty()


def test_negative_target_fails_raw_outcomes(pipeline: Pipeline) -> None:
    day = date(2025, 3, 10)
    assert pipeline.materialize(day, ["raw_outcomes"]).success
    previous = pipeline.rows("raw_outcomes", day)
    pipeline.use_spec(incidents=[{"kind": "negative_target", "date": day.isoformat()}])
    result = pipeline.materialize(day, ["raw_outcomes"])
    assert not result.success
    assert "negative 'visits'" in failure_messages(result)
    assert pipeline.rows("raw_outcomes", day).equals(previous)


def test_outcomes_that_have_not_landed_are_refused(pipeline: Pipeline) -> None:
    result = pipeline.materialize(date(2025, 3, 14), ["raw_outcomes"])
    assert not result.success
    assert "land on 2025-03-16" in failure_messages(result)
    assert pipeline.rows("raw_outcomes").is_empty()


def test_duplicate_keys_fail_both_source_assets_of_the_day(make_pipeline) -> None:
    """Duplicated keys are refused where they enter, by both source assets of the day (the
    blocking unique-key check on features stays as the last line), naming two of the rows."""
    day = date(2025, 3, 10)
    p = make_pipeline(incidents=[{"kind": "duplicate_keys", "date": day.isoformat()}])
    result = p.materialize(day, ["raw_events", "raw_outcomes", "features", "labeled_examples"])
    assert not result.success
    assert set(result.get_failed_step_keys()) == {"raw_events", "raw_outcomes"}
    text = failure_messages(result)
    assert f"of {day}: {SMALL_AIRINGS_PER_DAY // 10} duplicate 'airing_id' values" in text, text
    assert "two of them: {'airing_id':" in text, text
    assert "event_key: [air_date, ...]" in text, text
    for table in ("raw_events", "raw_outcomes", "features", "labeled_examples"):
        assert p.rows(table).is_empty(), table


def test_null_storm_day_fails_the_check_inside_a_range(make_pipeline) -> None:
    """A backfill of many days in one run must still judge each day, not the range's average."""
    day = date(2025, 3, 10)
    storm = {"kind": "null_storm", "date": day.isoformat(), "column": "audience_k", "share": 0.6}
    p = make_pipeline(incidents=[storm])
    summary = p.run_days(BASE_DAYS)
    assert summary.failed_runs == []
    assert any(name.startswith(NULL_SHARE) for name in summary.checks_failed), summary

    result = p.materialize(BASE_DAYS[0], ["raw_events", "features"], last=BASE_DAYS[-1])
    check = check_evaluations(result)[NULL_SHARE]
    assert not check.passed
    assert 0.5 < check.metadata["observed"].value < 0.7
    assert check.metadata["threshold"].value == 0.2
    assert check.metadata["worst_day"].value == day.isoformat()

    calm = p.materialize(BASE_DAYS[0], ["raw_events", "features"], last=day - timedelta(days=1))
    assert check_evaluations(calm)[NULL_SHARE].passed


def test_a_daily_cycle_before_the_outcomes_land_is_refused(pipeline: Pipeline) -> None:
    from mlops_assets.runner import run_cycle

    today = pipeline.settings.today()
    runs_before = pipeline.instance.get_runs_count()
    with pytest.raises(ValueError, match=rf"outcomes, which land on .* \(today is {today}\)"):
        run_cycle(pipeline.definitions(), pipeline.instance, pipeline.settings, today)
    assert pipeline.instance.get_runs_count() == runs_before
