"""The ``data_profile`` stage function (``ml/profile.py``) on hand-made frames of a few rows,
without Dagster: the per-column statistics, a segment that vanished (named, with how often it was
seen), a value new in a stable column (named with its column) while an open column's new values
and a too-short reference are not judged, the verdict over a range of days, the stored frame's
columns as the catalog declares them, Evidently's report of a day, and the refusals: a day with no
events and a column the spec names that is missing."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta

import polars as pl
import pytest

from mlops_assets.defs.catalog import column_schemas
from mlops_assets.ml import profile
from mlops_assets_tests.worlds import small_spec

SPEC = replace(
    small_spec(),
    numeric_features=("spend",),
    categorical_features=("network", "daypart", "creative_id"),
    segment_column="network",
)
DAY = date(2025, 3, 10)
WINDOW = 7


def _events(days: dict[date, list[tuple]]) -> pl.DataFrame:
    rows = [
        {"air_date": d, "network": n, "daypart": p, "creative_id": c, "spend": s}
        for d, day_rows in days.items()
        for n, p, c, s in day_rows
    ]
    return pl.DataFrame(
        rows,
        schema={
            "air_date": pl.Date,
            "network": pl.String,
            "daypart": pl.String,
            "creative_id": pl.String,
            "spend": pl.Float64,
        },
    )


def _history(last: date = DAY - timedelta(days=1), n: int = WINDOW) -> dict[date, list[tuple]]:
    """``n`` ordinary days up to ``last``: three networks, two dayparts, a new creative every
    other day (an open column)."""
    days = {}
    for k in range(n):
        d = last - timedelta(days=k)
        creative = f"cr_{(d.toordinal() // 2) % 100}"
        days[d] = [
            ("ABC", "prime", creative, 10.0),
            ("CBS", "morning", creative, 20.0),
            ("NBC", "prime", creative, 30.0),
        ]
    return days


def test_an_ordinary_day_is_described_and_passes() -> None:
    today = [
        ("ABC", "prime", "cr_1", 10.0),
        ("CBS", "morning", "cr_1", None),
        ("NBC", "prime", "cr_1", 40.0),
        ("NBC", "prime", "cr_1", 20.0),
    ]
    result = profile.profile_stage(SPEC, [DAY], _events({**_history(), DAY: today}), WINDOW)
    (day,) = result.days
    rows = {r["column"]: r for r in day.frame.iter_rows(named=True)}
    spend, network = rows["spend"], rows["network"]
    assert (spend["min"], spend["median"], spend["max"], spend["mean"]) == (
        10.0,
        20.0,
        40.0,
        70 / 3,
    )
    assert spend["missing_share"] == 0.25 and spend["rows"] == 4
    assert network["distinct"] == 3 and network["top_values"].startswith("NBC (2)")
    assert network["absent_values"] is None and network["stable"]
    assert all(r.passed for r in day.rules.values())
    assert day.metrics()["segments_vanished"] == 0 and day.metrics()["reference_days"] == WINDOW
    # The creative column gains values routinely: today's creative is new, but not judged.
    assert rows["creative_id"]["new_values"] == "cr_1" and not rows["creative_id"]["stable"]


def test_a_vanished_segment_fails_segments_present_naming_it() -> None:
    today = [("ABC", "prime", "cr_1", 10.0), ("NBC", "prime", "cr_1", 30.0)]
    (day,) = profile.profile_stage(SPEC, [DAY], _events({**_history(), DAY: today}), WINDOW).days
    rule = day.rules[profile.SEGMENTS_PRESENT]
    assert not rule.passed and rule.observed == 1
    meta = rule.metadata()
    assert meta["vanished"] == "CBS"
    assert meta["reason"] == (
        f"network CBS had no TV ad airings on {DAY} (it had some on 7 of the 7 days before)"
    )
    assert day.frame.filter(pl.col("column") == "network")["absent_values"].to_list() == ["CBS"]
    assert "network CBS had no TV ad airings" in day.summary_markdown()


def test_a_new_value_of_a_stable_column_fails_naming_column_and_value() -> None:
    today = [
        ("ABC", "prime", "cr_1", 10.0),
        ("CBS", "late_night", "cr_1", 20.0),
        ("NBC", "prime", "cr_1", 30.0),
        ("HBO", "prime", "cr_1", 30.0),
    ]
    (day,) = profile.profile_stage(SPEC, [DAY], _events({**_history(), DAY: today}), WINDOW).days
    rule = day.rules[profile.NO_NEW_CATEGORIES]
    assert not rule.passed and rule.observed == 2
    assert rule.metadata()["new_values"] == "network: HBO; daypart: late_night"
    assert "creative_id" not in rule.metadata()["columns"]


def test_a_short_reference_judges_no_new_value() -> None:
    today = [("HBO", "late_night", "cr_1", 10.0)]
    events = _events({**_history(n=3), DAY: today})
    (day,) = profile.profile_stage(SPEC, [DAY], events, WINDOW, min_reference_days=4).days
    rule = day.rules[profile.NO_NEW_CATEGORIES]
    assert rule.passed and rule.metadata()["reason"].startswith("not judged: 3 reference days")
    # The segments still are: every network of the three days vanished.
    assert day.rules[profile.SEGMENTS_PRESENT].metadata()["vanished"] == "ABC, CBS, NBC"


def test_a_range_gives_each_day_its_verdict_and_the_catalog_columns() -> None:
    before = DAY - timedelta(days=1)
    history = _history(last=before - timedelta(days=1))
    ordinary = history[before - timedelta(days=1)]
    events = _events({**history, before: ordinary, DAY: ordinary[:2]})
    result = profile.profile_stage(SPEC, [before, DAY], events, WINDOW)
    passed, meta = result.verdict(profile.SEGMENTS_PRESENT)
    assert not passed
    assert (meta["days_failed"], meta["day"], meta["days_checked"]) == (str(DAY), str(DAY), 2)
    assert [d.rules[profile.SEGMENTS_PRESENT].passed for d in result.days] == [True, False]
    declared = [c.name for c in column_schemas(SPEC)["data_profile"].columns]
    assert result.frame.columns == declared
    assert result.frame.height == 2 * len(SPEC.raw_feature_columns)


def test_the_days_evidently_report_is_saved(tmp_path) -> None:
    (day,) = profile.profile_stage(
        SPEC, [DAY], _events({**_history(), DAY: _history()[DAY - timedelta(days=1)]}), WINDOW
    ).days
    html = profile.save_report(SPEC, day, tmp_path / "profile.html")
    text = html.read_text(encoding="utf-8")
    assert len(text) > 100_000 and "spend" in text and "daypart" in text


def test_a_day_without_events_or_a_missing_column_is_refused() -> None:
    events = _events(_history())
    with pytest.raises(profile.ProfileError, match=f"no TV ad airings stored for {DAY}"):
        profile.profile_stage(SPEC, [DAY], events, WINDOW)
    with pytest.raises(profile.ProfileError, match="no column 'spend'"):
        profile.profile_stage(SPEC, [DAY - timedelta(days=1)], events.drop("spend"), WINDOW)
