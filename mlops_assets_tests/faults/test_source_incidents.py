"""Broken source days reach no model: on the champion world (``world.py``), each incident is fed
on a day of its own after the champion's predictions, through the daily job as the runner runs
it, and then the scoring job is asked for that day.

Simulator incidents (the spec's ``source.options.incidents``): null storm, renamed column
(schema change), empty day, negative target, duplicate keys. A user's CSV export of the same
business: missing column, renamed column, a string in a numeric column, an all-null column, an
empty day, duplicate keys, rows dated after the clock, NaN and negative targets.

Each is stopped by a named check or a failure whose message names the problem and the day,
before a labeled example (what models learn from) or a prediction is made of it; and nothing
is lost: the registry aliases, the model versions, the champion history, every prediction and
the rows of every other day are as they were.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from mlops_assets.dataset import SpecError
from mlops_assets.dataset_load import load_spec
from mlops_assets.defs.feature_refresh.checks import NULL_SHARE
from mlops_assets.ml.features import DataContractError, validate_events
from mlops_assets_tests.faults.world import (
    AIRINGS_PER_DAY,
    DAILY_ASSETS,
    Snapshot,
    World,
    csv_spec,
    simulated_source,
    small_spec,
)
from mlops_assets_tests.helpers import check_evaluations, day_range, failure_messages

CSV_DAYS = day_range(date(2025, 1, 1), 59)  # 2025-01-01 .. 2025-02-28, beyond the clock
AFTER_CLOCK = date(2025, 2, 25)


@pytest.fixture(scope="module")
def source() -> pl.DataFrame:
    """The business as a user's CSV export would hold it, before anything breaks."""
    return simulated_source(CSV_DAYS)


def feed(world: World, raw_spec: dict, day: date) -> dg.ExecuteInProcessResult:
    """Switch to ``raw_spec`` and run the daily job of ``day`` (every daily asset)."""
    world.pipeline.use_spec(raw_spec)
    return world.materialize(day, DAILY_ASSETS)


def write_csv(world: World, frame: pl.DataFrame, name: str) -> Path:
    path = world.pipeline.root / "user_data" / f"{name}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.write_csv(path)
    return path


def assert_nothing_lost(world: World, before: Snapshot, day: date) -> None:
    after = world.snapshot()
    assert after.aliases == before.aliases
    assert after.versions == before.versions
    assert after.history.equals(before.history)
    assert after.predictions.equals(before.predictions)
    for table, counts in before.rows_per_day.items():
        others = {d: n for d, n in after.rows_per_day[table].items() if d != day}
        assert others == {d: n for d, n in counts.items() if d != day}, table


def assert_reaches_no_model(world: World, day: date) -> None:
    """No feature row (what predictions read), no labeled example (what models learn from) of
    ``day``, and the scoring job refuses the day naming it, storing no prediction."""
    assert world.read("features", day).is_empty()
    assert world.read("labeled_examples", day).is_empty()
    scored = world.score([day])
    assert not scored.success
    text = failure_messages(scored)
    assert f"upstream partition {day} of features failed: raw_" in text, text
    assert world.read("predictions", day).is_empty()


def failed_steps(result: dg.ExecuteInProcessResult) -> set[str]:
    return set(result.get_failed_step_keys())


# Simulator incidents ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("day", "incident", "step", "message"),
    [
        (
            date(2025, 2, 4),
            {"kind": "schema_change", "column": "spend", "rename_to": "spend_usd"},
            "raw_events",
            "column 'spend' is missing",
        ),
        (date(2025, 2, 5), {"kind": "empty_day"}, "raw_events", "no rows (empty day)"),
        (
            date(2025, 2, 6),
            {"kind": "negative_target", "share": 0.2},
            "raw_outcomes",
            "missing, NaN or negative 'visits'",
        ),
    ],
    ids=["schema_change", "empty_day", "negative_target"],
)
def test_simulator_incident_fails_its_day_and_keeps_everything(
    world: World, day: date, incident: dict, step: str, message: str
) -> None:
    before = world.snapshot()
    result = feed(world, small_spec(incidents=[{**incident, "date": day.isoformat()}]), day)
    assert not result.success
    assert step in failed_steps(result)
    text = failure_messages(result)
    assert message in text and str(day) in text, text
    assert_reaches_no_model(world, day)
    if step == "raw_outcomes":
        assert world.read("raw_outcomes", day).is_empty()
    else:
        assert world.read("raw_events", day).is_empty()
    assert_nothing_lost(world, before, day)


def test_duplicate_keys_are_kept_from_history_and_models(world: World) -> None:
    day = date(2025, 2, 7)
    before = world.snapshot()
    incident = {"kind": "duplicate_keys", "date": day.isoformat()}
    result = feed(world, small_spec(incidents=[incident]), day)
    assert not result.success
    # Without the guard the duplicated airings' visits were counted twice in outcome_stats, the
    # history that every later day's features (and so every model) read. Both source assets
    # refuse the day, so neither stores it.
    assert failed_steps(result) == {"raw_events", "raw_outcomes"}
    text = failure_messages(result)
    assert f"of {day}: {AIRINGS_PER_DAY // 10} duplicate 'airing_id' values" in text, text
    for table in ("raw_events", "raw_outcomes", "outcome_stats"):
        assert world.read(table, day).is_empty(), table
    assert_reaches_no_model(world, day)
    assert_nothing_lost(world, before, day)


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_null_storm_fails_the_null_share_check(world: World, env: str) -> None:
    """In dev the rule warns (the day is stored, its evidence readable); in prod it is an ERROR
    that stops the day's labeled examples in the same run."""
    day = date(2025, 2, 3)
    before = world.snapshot()
    storm = {"kind": "null_storm", "date": day.isoformat(), "column": "audience_k", "share": 0.6}
    world.pipeline.set_env(env)
    result = feed(world, small_spec(incidents=[storm]), day)
    check = check_evaluations(result)[NULL_SHARE]
    assert not check.passed
    assert check.metadata["worst_column"].value == "audience_k"
    assert 0.45 < check.metadata["observed"].value < 0.75
    assert check.metadata["observed"].value > check.metadata["threshold"].value
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    if env == "prod":
        assert check.severity == dg.AssetCheckSeverity.ERROR
        assert not result.success
        assert "labeled_examples" not in materialized
    else:
        assert check.severity == dg.AssetCheckSeverity.WARN
        assert result.success
        assert world.read("features", day)["audience_k"].null_count() > 0
    world.pipeline.set_env("dev")
    assert_nothing_lost(world, before, day)


# A user's CSV export ---------------------------------------------------------------------------


def _without(column: str) -> Callable[[pl.DataFrame, date], pl.DataFrame]:
    return lambda frame, day: frame.drop(column)


def _renamed(column: str, to: str) -> Callable[[pl.DataFrame, date], pl.DataFrame]:
    return lambda frame, day: frame.rename({column: to})


def _on_day(day: date, **values: pl.Expr) -> Callable[[pl.DataFrame, date], pl.DataFrame]:
    on = pl.col("air_date") == day
    return lambda frame, _: frame.with_columns(
        pl.when(on).then(expr).otherwise(pl.col(name)).alias(name) for name, expr in values.items()
    )


@pytest.mark.parametrize(
    ("day", "change", "step", "messages"),
    [
        (
            date(2025, 2, 8),
            _without("spend"),
            "raw_events",
            ["airings of 2025-02-08 break the dataset spec: column 'spend' is missing"],
        ),
        (
            date(2025, 2, 9),
            _renamed("audience_k", "audience_thousands"),
            "raw_events",
            ["airings of 2025-02-09 break the dataset spec: column 'audience_k' is missing"],
        ),
        (
            date(2025, 2, 10),
            _on_day(date(2025, 2, 10), spend=pl.lit("n/a")),
            "raw_events",
            [
                "csv source",
                "cannot be read for 2025-02-10: line ",
                "column 'spend' holds 'n/a', which is not a number",
            ],
        ),
        (
            date(2025, 2, 12),
            lambda frame, day: frame.filter(pl.col("air_date") != day),
            "raw_events",
            ["airings of 2025-02-12: the source returned no rows (empty day)"],
        ),
        (
            date(2025, 2, 14),
            _on_day(
                date(2025, 2, 14),
                visits=pl.when(pl.col("airing_id").str.ends_with("7"))
                .then(float("nan"))
                .otherwise(pl.col("visits")),
            ),
            "raw_outcomes",
            ["visits of 2025-02-14: 10 of 100 rows have a missing, NaN or negative 'visits'"],
        ),
        (
            date(2025, 2, 15),
            _on_day(date(2025, 2, 15), visits=-pl.col("visits") - 1.0),
            "raw_outcomes",
            ["visits of 2025-02-15: 100 of 100 rows have a missing, NaN or negative 'visits'"],
        ),
    ],
    ids=["missing_column", "renamed_column", "string_in_numeric", "empty_day", "nan", "negative"],
)
def test_broken_csv_day_fails_and_keeps_everything(
    world: World,
    source: pl.DataFrame,
    day: date,
    change: Callable[[pl.DataFrame, date], pl.DataFrame],
    step: str,
    messages: list[str],
) -> None:
    """The spec was loaded while the file was good; the user then overwrote the file."""
    before = world.snapshot()
    path = write_csv(world, source, f"export_{day}")
    world.pipeline.use_spec(csv_spec(path))
    world.pipeline.definitions()  # loaded, and the spec checked, on the good file
    change(source, day).write_csv(path)

    result = world.materialize(day, DAILY_ASSETS)
    assert not result.success
    assert step in failed_steps(result)
    text = failure_messages(result)
    for message in messages:
        assert message in text, text
    assert_reaches_no_model(world, day)
    assert world.read(step, day).is_empty()
    assert_nothing_lost(world, before, day)


@pytest.mark.parametrize(
    ("change", "field", "column"),
    [
        (_without("spend"), "numeric_features", "spend"),
        (_renamed("audience_k", "audience_thousands"), "numeric_features", "audience_k"),
        (_renamed("visits", "web_visits"), "target", "visits"),
    ],
    ids=["missing", "renamed", "renamed_target"],
)
def test_a_broken_csv_is_refused_when_definitions_load(
    world: World, source: pl.DataFrame, change, field: str, column: str
) -> None:
    path = write_csv(world, change(source, None), f"broken_{field}_{column}")
    spec_path = world.pipeline.use_spec(csv_spec(path))
    with pytest.raises(SpecError) as err:
        load_spec(spec_path)
    assert f"field '{field}' names column '{column}'" in str(err.value)


def test_string_in_the_first_rows_is_refused_as_a_wrong_type(
    world: World, source: pl.DataFrame
) -> None:
    first = source["air_date"].min()
    bad = _on_day(first, spend=pl.lit("n/a"))(source, first)
    spec_path = world.pipeline.use_spec(csv_spec(write_csv(world, bad, "wrong_type")))
    with pytest.raises(SpecError, match="field 'numeric_features': column 'spend' must be numeric"):
        load_spec(spec_path)


def test_all_null_column_in_a_csv_fails_the_null_share_check(
    world: World, source: pl.DataFrame
) -> None:
    day = date(2025, 2, 11)
    before = world.snapshot()
    nulls = _on_day(day, audience_k=pl.lit(None, dtype=pl.Float64))(source, day)
    result = feed(world, csv_spec(write_csv(world, nulls, "all_null")), day)
    check = check_evaluations(result)[NULL_SHARE]
    assert not check.passed
    assert check.metadata["observed"].value == 1.0
    assert check.metadata["columns_over"].value == "audience_k"
    assert world.read("features", day)["audience_k"].null_count() == AIRINGS_PER_DAY
    assert_nothing_lost(world, before, day)


def test_duplicate_keys_in_a_csv_stop_both_sources_and_features(
    world: World, source: pl.DataFrame
) -> None:
    day = date(2025, 2, 13)
    before = world.snapshot()
    repeated = source.filter(pl.col("air_date") == day).head(7)
    path = write_csv(world, pl.concat([source, repeated]).sort("air_date"), "duplicates")
    result = feed(world, csv_spec(path), day)
    assert not result.success
    assert failed_steps(result) == {"raw_events", "raw_outcomes"}
    text = failure_messages(result)
    # Each source asset names the day, the key and two of the offending rows.
    for event in result.get_step_failure_events():
        description = event.step_failure_data.user_failure_data.description
        assert f"airings of {day}: 7 duplicate 'airing_id' values" in description, event.step_key
    assert "two of them: {'airing_id':" in text, text
    for table in ("raw_events", "raw_outcomes", "outcome_stats"):
        assert world.read(table, day).is_empty(), table
    assert_reaches_no_model(world, day)
    assert_nothing_lost(world, before, day)


def test_rows_dated_after_the_clock_are_not_read(world: World, source: pl.DataFrame) -> None:
    """The export already holds airings of days after the pipeline's clock (2025-02-20)."""
    before = world.snapshot()
    assert source.filter(pl.col("air_date") == AFTER_CLOCK).height == AIRINGS_PER_DAY
    result = feed(world, csv_spec(write_csv(world, source, "future")), AFTER_CLOCK)
    assert not result.success
    text = failure_messages(result)
    assert f"of {AFTER_CLOCK}: the day has not ended by the pipeline's clock" in text, text
    assert "2025-02-20 06:00" in text
    for table in DAILY_ASSETS:
        assert world.read(table, AFTER_CLOCK).is_empty(), table

    # Outcomes dated so that they land after the clock are refused too.
    late = date(2025, 2, 19)
    outcomes = world.materialize(late, ["raw_outcomes"])
    assert not outcomes.success
    assert "land on 2025-02-21" in failure_messages(outcomes)
    assert world.read("raw_outcomes", late).is_empty()

    # And a day's rows never carry another day's date.
    spec = world.pipeline.spec
    frame = source.filter(pl.col("air_date") == late - timedelta(days=1)).drop("visits")
    stray = pl.concat([frame, frame.head(1).with_columns(air_date=pl.lit(late))])
    with pytest.raises(DataContractError, match=r"rows dated \['2025-02-18', '2025-02-19'\]"):
        validate_events(spec, stray, late - timedelta(days=1))
    assert_nothing_lost(world, before, AFTER_CLOCK)
