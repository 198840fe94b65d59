"""Bringing your own data: a CSV with no key column, whose spec `mlops-assets spec init` writes,
runs through the whole demo with the clock taken from the data; the strict spec refuses unknown
fields (with a suggestion), a column in two roles, a missing DuckDB table and a wrong type in
any row, naming the field and the fix; the published JSON Schema matches the spec model; and one
bad day (empty, a value that does not parse, an infinite or absurd target) costs that day only:
the other days of its range are stored and a step that reads the failed day names it."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import polars as pl
import pytest
import yaml

from mlops_assets.dataset import SpecError
from mlops_assets.dataset_load import load_spec
from mlops_assets.dataset_schema import SCHEMA_PATH, json_schema
from mlops_assets.scaffold import ScaffoldError, draft, render
from mlops_assets.storage.warehouse import Warehouse
from mlops_assets_tests.helpers import (
    REPO_ROOT,
    Pipeline,
    clean_env,
    day_range,
    failure_messages,
    write_yaml,
)

FIRST_DAY = date(2012, 1, 1)
HOURS = range(6, 18)


def hourly_frame(days: int, first: date = FIRST_DAY, seed: int = 1) -> pl.DataFrame:
    """An hourly business with no key column: (date, hour) is unique. ``casual`` and
    ``registered`` sum to the target (a leak); ``workingday`` is constant within a day."""
    rng = np.random.default_rng(seed)
    rows = []
    for d in range(days):
        day = first + timedelta(days=d)
        for hour in HOURS:
            weather = str(rng.choice(["clear", "mist", "rain"]))
            temp = float(rng.normal(10, 5))
            level = 50 + 40 * np.sin((hour - 6) / 12 * np.pi) + 2 * temp
            level += {"clear": 30, "mist": 0, "rain": -30}[weather]
            cnt = round(max(0.0, level + rng.normal(0, 5)), 3)
            casual = round(cnt * 0.3, 3)
            rows.append(
                {
                    "date": day,
                    "hour": hour,
                    "weather": weather,
                    "temp": round(temp, 2),
                    "workingday": int(day.weekday() < 5),
                    "cnt": cnt,
                    "casual": casual,
                    "registered": round(cnt - casual, 3),
                }
            )
    return pl.DataFrame(rows)


def spec_init(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mlops_assets.cli", "spec", "init", *args],
        env=clean_env(),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


# The scaffold and the whole demo ---------------------------------------------------------------


def test_spec_init_csv_runs_through_the_demo_with_the_clock_from_the_data(tmp_path: Path) -> None:
    csv = tmp_path / "bikes.csv"
    hourly_frame(16).write_csv(csv)
    spec_path = tmp_path / "specs" / "bikes.yaml"
    init = spec_init("--source", str(csv), "--target", "cnt", "--out", str(spec_path), cwd=tmp_path)
    assert init.returncode == 0, init.stderr
    raw = yaml.safe_load(spec_path.read_text())
    assert raw["event_key"] == ["date", "hour"]
    assert raw["target"] == "cnt"
    assert "casual" not in raw["numeric_features"] and "registered" not in raw["numeric_features"]
    assert raw["source"]["path"] == "../bikes.csv"

    # No MLOPS_AS_OF: the clock is midnight after the source's last day (2012-01-16).
    env = clean_env(MLOPS_DATA_DIR=str(tmp_path / "data"), MLOPS_DATASET=str(spec_path))
    demo = subprocess.run(
        [sys.executable, "-m", "mlops_assets.cli", "demo"],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert demo.returncode == 0, demo.stdout + demo.stderr
    out = demo.stdout
    assert "holds 2012-01-01..2012-01-16 (16 days); clock 2012-01-17 00:00" in out, out
    assert "runs: " in out and "failed: 0" in out, out
    wh = Warehouse(tmp_path / "data" / "dev" / "warehouse", "mlops")
    events = wh.read("raw_events")
    assert events.height == 16 * len(HOURS)
    assert events["date_hour_key"].n_unique() == events.height
    assert events["date_hour_key"][0].startswith("2012-01-")
    history = wh.read("champion_history")
    assert history["to_version"].drop_nulls().len() >= 1, history
    predictions = wh.read("predictions")
    assert predictions.height > 0
    assert predictions["prediction"].is_finite().all()
    # The working-day flag is one value per day: the drift report leaves it out and says so;
    # the history feature and the landed target are watched.
    drift_rows = wh.read("drift_report")
    rules = dict(zip(drift_rows["column"], drift_rows["rule"], strict=False))
    assert rules["workingday"] == "excluded: day-constant", rules
    assert any(r.startswith("monitored: one value per") for r in rules.values()), rules
    assert any(r.startswith("target of 2012-01-") for r in rules.values()), rules


def test_spec_init_writes_to_standard_output_with_its_warnings(tmp_path: Path) -> None:
    csv = tmp_path / "bikes.csv"
    hourly_frame(5).with_columns(site=pl.lit("hq")).write_csv(csv)
    result = spec_init("--source", str(csv), "--target", "cnt", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert "casual: suspected target leak" in text
    assert "registered: suspected target leak" in text
    assert "workingday: constant within each day" in text
    assert "site: near-constant (100.0% of rows hold one value), left out" in text
    assert "categorical_features: [weather, workingday]" in text
    assert not list(tmp_path.glob("*.yaml"))


def test_spec_init_finds_a_single_key_column_and_lists_the_others(tmp_path: Path) -> None:
    frame = hourly_frame(3).with_row_index("ride_id").with_columns(pl.col("ride_id") + 1000)
    path = tmp_path / "rides.parquet"
    frame.write_parquet(path)
    d = draft(path, target="cnt")
    assert d.source_kind == "parquet"
    assert d.event_key == ["ride_id"]
    assert "ride_id" not in d.numeric
    assert d.window()["cadence"] == "daily"
    spec = yaml.safe_load(render(d, tmp_path))
    assert spec["source"] == {"kind": "parquet", "path": "rides.parquet"}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda f: f.drop("date"), "no column holds dates"),
        (lambda f: f.with_columns(hour=pl.lit(1)), "is unique on every row: add a key column"),
    ],
    ids=["no_date", "no_key"],
)
def test_spec_init_says_what_the_file_lacks(tmp_path: Path, change, message: str) -> None:
    csv = tmp_path / "bad.csv"
    change(hourly_frame(2)).write_csv(csv)
    with pytest.raises(ScaffoldError, match=message):
        draft(csv, target="cnt")
    result = spec_init("--source", str(csv), "--target", "weather", cwd=tmp_path)
    assert result.returncode == 2
    assert "error:" in result.stderr


def test_spec_init_refuses_an_unknown_target(tmp_path: Path) -> None:
    csv = tmp_path / "bikes.csv"
    hourly_frame(2).write_csv(csv)
    with pytest.raises(ScaffoldError, match=r"--target 'count' is not a column .*\(it has: date"):
        draft(csv, target="count")


# A strict spec ---------------------------------------------------------------------------------


def bikes_spec(csv: Path, **overrides: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "name": "bikes",
        "start_date": FIRST_DAY.isoformat(),
        "date_column": "date",
        "event_key": ["date", "hour"],
        "target": "cnt",
        "numeric_features": ["hour", "temp"],
        "categorical_features": ["weather"],
        "serving_keys": ["weather"],
        "history_keys": ["weather"],
        "history_days": 3,
        "label_lag_days": 1,
        "training": {"cadence": "daily", "train_days": 6, "holdout_days": 2},
        "source": {"kind": "csv", "path": csv.name},
    }
    raw.update(overrides)
    return raw


@pytest.fixture
def bikes_csv(tmp_path: Path) -> Path:
    path = tmp_path / "bikes.csv"
    hourly_frame(4).write_csv(path)
    return path


def load(tmp_path: Path, raw: dict[str, Any]):
    return load_spec(write_yaml(tmp_path / "spec.yaml", raw))


def test_a_composite_key_is_one_derived_key_column(tmp_path: Path, bikes_csv: Path) -> None:
    spec = load(tmp_path, bikes_spec(bikes_csv))
    assert spec.key_columns == ("date", "hour")
    assert spec.event_key == "date_hour_key"
    assert spec.key_description == "(date, hour)"


@pytest.mark.parametrize(
    ("field", "value", "suggestion"),
    [
        ("numeric_feature", ["hour"], "did you mean 'numeric_features'?"),
        ("histroy_days", 7, "did you mean 'history_days'?"),
    ],
)
def test_an_unknown_field_is_refused_with_a_suggestion(
    tmp_path: Path, bikes_csv: Path, field: str, value: Any, suggestion: str
) -> None:
    with pytest.raises(SpecError) as err:
        load(tmp_path, bikes_spec(bikes_csv, **{field: value}))
    message = str(err.value)
    assert f"dataset spec field '{field}' is not a spec field" in message
    assert suggestion in message


def test_an_unknown_nested_field_is_refused_with_a_suggestion(
    tmp_path: Path, bikes_csv: Path
) -> None:
    raw = bikes_spec(bikes_csv)
    raw["training"]["cadance"] = "daily"
    with pytest.raises(SpecError, match=r"'training.cadance' .*did you mean 'training.cadence'\?"):
        load(tmp_path, raw)


@pytest.mark.parametrize(
    ("overrides", "fields"),
    [
        (
            {"categorical_features": ["weather", "temp"]},
            ("numeric_features", "categorical_features"),
        ),
        ({"numeric_features": ["hour", "temp", "cnt"]}, ("target", "numeric_features")),
        ({"categorical_features": ["weather", "date"]}, ("date_column", "categorical_features")),
    ],
    ids=["numeric_and_categorical", "target_as_feature", "date_as_feature"],
)
def test_a_column_in_two_roles_names_both_fields(
    tmp_path: Path, bikes_csv: Path, overrides: dict, fields: tuple[str, str]
) -> None:
    with pytest.raises(SpecError) as err:
        load(tmp_path, bikes_spec(bikes_csv, **overrides))
    message = str(err.value)
    assert f"is listed in both '{fields[0]}' and '{fields[1]}'" in message
    assert "remove it from one of them" in message


def test_a_wrong_value_names_the_field_and_the_choices(tmp_path: Path, bikes_csv: Path) -> None:
    raw = bikes_spec(bikes_csv)
    raw["training"]["metric"] = "mape"
    with pytest.raises(
        SpecError, match=r"'training.metric' is 'mape'; use one of: wape, mae, rmse"
    ):
        load(tmp_path, raw)
    with pytest.raises(SpecError, match=r"'history_days': .*greater than or equal to 1, got 0"):
        load(tmp_path, bikes_spec(bikes_csv, history_days=0))


def test_a_wrong_type_in_a_late_row_is_refused_naming_the_line(tmp_path: Path) -> None:
    """Types are inferred from every row: a text cell on the last day is found at load."""
    frame = hourly_frame(4).with_columns(pl.col("temp").cast(pl.String))
    frame[frame.height - 1, "temp"] = "warm"
    path = tmp_path / "late.csv"
    frame.write_csv(path)
    with pytest.raises(SpecError) as err:
        load(tmp_path, bikes_spec(path))
    message = str(err.value)
    assert "field 'numeric_features': column 'temp' must be numeric" in message
    assert f"line {frame.height + 1} (2012-01-04): 'warm'" in message
    assert "fix the values" in message


def test_a_missing_duckdb_table_is_a_named_spec_error(tmp_path: Path) -> None:
    db = tmp_path / "source.duckdb"
    with duckdb.connect(str(db)) as con:
        con.execute("CREATE TABLE rides AS SELECT 1 AS x")
    raw = bikes_spec(db, source={"kind": "duckdb", "path": db.name, "table": "trips"})
    with pytest.raises(SpecError) as err:
        load(tmp_path, raw)
    message = str(err.value)
    assert "dataset spec field 'source.table': table 'trips' is not in" in message
    assert "(it has: rides)" in message


def test_the_published_json_schema_matches_the_spec_model() -> None:
    published = json.loads(SCHEMA_PATH.read_text())
    assert published == json_schema(), "regenerate it with dataset_schema.write_json_schema()"
    assert published["additionalProperties"] is False
    assert "event_key" in published["required"]


# The clock from the data -----------------------------------------------------------------------


def csv_pipeline(monkeypatch: pytest.MonkeyPatch, root: Path, frame: pl.DataFrame, **spec):
    """A pipeline on ``frame`` as a CSV, with no MLOPS_AS_OF (the clock comes from the data)."""
    csv = root / "source" / "bikes.csv"
    csv.parent.mkdir(parents=True, exist_ok=True)
    frame.write_csv(csv)
    p = Pipeline(monkeypatch, root, as_of="")
    raw = bikes_spec(csv, **spec)
    raw["source"]["path"] = str(csv)
    p.use_spec(raw)
    return p, csv


def test_the_clock_of_a_file_source_is_the_day_after_its_last(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    p, _ = csv_pipeline(monkeypatch, tmp_path, hourly_frame(6))
    assert p.settings.as_of.isoformat() == "2012-01-07T00:00:00"
    assert p.settings.today() == date(2012, 1, 7)


def test_a_short_source_says_what_it_has(tmp_path: Path) -> None:
    csv = tmp_path / "short.csv"
    hourly_frame(5).write_csv(csv)
    spec = write_yaml(
        tmp_path / "short.yaml",
        bikes_spec(csv, training={"cadence": "daily", "train_days": 28, "holdout_days": 7}),
    )
    env = clean_env(MLOPS_DATA_DIR=str(tmp_path / "data"), MLOPS_DATASET=str(spec))
    demo = subprocess.run(
        [sys.executable, "-m", "mlops_assets.cli", "demo"],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = demo.stdout
    assert "no training: 5 days are too few for a champion" in out, out + demo.stderr
    assert "the training window needs 35 days of data" in out, out
    assert "the source holds 5 days (2012-01-01..2012-01-05)" in out, out
    assert "shorten training.train_days or training.holdout_days" in out


# One bad day costs one day ---------------------------------------------------------------------

RANGE = day_range(FIRST_DAY, 10)
BAD_DAY = date(2012, 1, 5)


def _per_day(p: Pipeline, table: str) -> dict[date, int]:
    frame = p.rows(table)
    column = "day" if table == "outcome_stats" else "date"
    counts = frame.group_by(column).len()
    return dict(zip(counts[column].to_list(), counts["len"].to_list(), strict=True))


def test_an_empty_day_in_a_range_costs_that_day_only(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    frame = hourly_frame(11).filter(pl.col("date") != BAD_DAY)
    p, _ = csv_pipeline(monkeypatch, tmp_path, frame)
    summary = p.run_days(RANGE)
    assert set(summary.failed_days) == {BAD_DAY.isoformat()}
    assert "no rows (empty day)" in summary.failed_days[BAD_DAY.isoformat()]
    for table in ("raw_events", "raw_outcomes", "features", "labeled_examples"):
        stored = _per_day(p, table)
        assert sorted(stored) == [d for d in RANGE if d != BAD_DAY], table
        assert set(stored.values()) == {len(HOURS)}, table

    # A step that reads the failed day names it and its reason, not a missing table or column.
    result = p.materialize(BAD_DAY, ["features"])
    assert not result.success
    text = failure_messages(result)
    assert f"upstream partition {BAD_DAY} of raw_events failed:" in text, text
    assert "the source returned no rows (empty day)" in text, text


def _cell(frame: pl.DataFrame, day: date, hour: int, column: str, value: Any) -> pl.DataFrame:
    on = (pl.col("date") == day) & (pl.col("hour") == hour)
    return frame.with_columns(
        pl.when(on).then(pl.lit(value)).otherwise(pl.col(column).cast(pl.String)).alias(column)
    )


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("temp", "n/a", "column 'temp' holds 'n/a', which is not a number"),
        ("cnt", "inf", "rows have a missing, NaN or negative 'cnt', or one that is infinite"),
        ("cnt", "1e308", "or one that is infinite or above 1e+15"),
    ],
    ids=["unparsable", "infinite_target", "absurd_target"],
)
def test_a_bad_value_fails_its_own_day_of_a_range(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, column: str, value: str, message: str
) -> None:
    p, csv = csv_pipeline(monkeypatch, tmp_path, hourly_frame(11))
    p.definitions()  # the spec is checked on the good file; the export is then overwritten
    _cell(hourly_frame(11), BAD_DAY, 9, column, value).write_csv(csv)
    result = p.materialize(RANGE[0], ["raw_events", "raw_outcomes"], last=RANGE[-1])
    assert not result.success
    text = failure_messages(result)
    assert "1 of 10 days break the bikes contract; nothing is stored" in text, text
    assert f"{BAD_DAY}: " in text and message in text, text
    if column == "temp":
        assert "line 53" in text, text  # header, 4 days x 12 hours, then the 4th row of the day
    assert p.rows("raw_events").is_empty()

    summary = p.run_days(RANGE)
    assert set(summary.failed_days) == {BAD_DAY.isoformat()}
    assert sorted(_per_day(p, "raw_outcomes")) == [d for d in RANGE if d != BAD_DAY]


def test_a_key_unique_only_within_a_day_says_to_add_the_date(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    p, _ = csv_pipeline(
        monkeypatch,
        tmp_path,
        hourly_frame(11).with_columns(slot=pl.col("hour") - 6),
        event_key="slot",
    )
    summary = p.run_days(RANGE[:6])
    text = " ".join(summary.failed_runs)
    assert summary.failed_runs, text
    stats = p.materialize(RANGE[0], ["outcome_stats"], last=RANGE[4])
    message = failure_messages(stats)
    assert "duplicate 'slot' values" in message, message
    assert "'slot' must be unique across days; two of them:" in message, message
    assert "event_key: [date, slot]" in message, message
