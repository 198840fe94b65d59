"""Pure tests of ``ml/profile.py`` on tiny frames: per-column statistics, a segment that vanished
(named, with how often it was seen), new values flagged only in a column that was stable over the
reference (a column that gains values routinely is not), and the error for a missing column."""

from __future__ import annotations

from datetime import date, timedelta

import polars as pl
import pytest

from mlops_assets.ml import profile

DAY = date(2025, 1, 10)


def _events(day: date, networks: list[str], creatives: list[str], spend: list) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "day": [day] * len(networks),
            "network": networks,
            "creative_id": creatives,
            "spend": spend,
        },
        schema_overrides={"spend": pl.Float64},
    )


def _reference(days: int = 4) -> pl.DataFrame:
    # Networks A, B, C every day; creatives: one new per day (an "open" column).
    return pl.concat(
        _events(DAY - timedelta(k), ["A", "B", "C"], ["c0", "c0", f"c{k}"], [1.0, 2.0, 3.0])
        for k in range(days, 0, -1)
    )


def _profile(current: pl.DataFrame, reference: pl.DataFrame) -> profile.Profile:
    return profile.profile_day(
        current,
        reference,
        date_column="day",
        numeric=["spend"],
        categorical=["network", "creative_id"],
        segment_column="network",
    )


def test_numeric_and_categorical_statistics() -> None:
    result = _profile(
        _events(DAY, ["A", "B", "A"], ["c0", "c0", "c1"], [1.0, None, 5.0]), _reference()
    )
    rows = {r["column"]: r for r in result.frame.iter_rows(named=True)}
    assert rows["spend"]["missing_share"] == pytest.approx(1 / 3)
    assert (rows["spend"]["min"], rows["spend"]["max"], rows["spend"]["mean"]) == (1.0, 5.0, 3.0)
    assert rows["network"]["distinct"] == 2
    assert rows["network"]["top_values"].startswith("A (2)")
    assert result.metrics()["rows"] == 3


def test_a_vanished_segment_is_named_with_how_often_it_was_seen() -> None:
    result = _profile(_events(DAY, ["A", "B"], ["c0", "c0"], [1.0, 2.0]), _reference())
    assert result.vanished == ["C"]
    rule = profile.segments_present_rule(result, min_share=0.5)
    assert not rule.passed and rule.observed == 1
    assert (
        rule.details["reason"] == "network C had no events today (present on 4 of the last 4 days)"
    )


def test_a_rare_segment_missing_today_is_not_a_warning() -> None:
    reference = pl.concat([_reference(), _events(DAY - timedelta(4), ["D"], ["c0"], [1.0])])
    result = _profile(_events(DAY, ["A", "B", "C"], ["c0"] * 3, [1.0] * 3), reference)
    assert result.vanished == ["D"]
    assert profile.segments_present_rule(result, min_share=0.5).passed


def test_new_values_warn_only_in_a_stable_column() -> None:
    # A new network (stable column) warns; a new creative (a column that gains values every day)
    # is listed but does not.
    result = _profile(
        _events(DAY, ["A", "B", "C", "Z"], ["c0", "c0", "c0", "c99"], [1.0] * 4), _reference()
    )
    rows = {r["column"]: r for r in result.frame.iter_rows(named=True)}
    assert rows["network"]["stable"] and not rows["creative_id"]["stable"]
    assert rows["creative_id"]["unseen_values"] == "c99"
    assert result.unseen == {"network": ["Z"]}
    rule = profile.no_unseen_categories_rule(result)
    assert not rule.passed and rule.observed == 1 and "network: Z" in rule.details["reason"]

    quiet = _profile(_events(DAY, ["A", "B", "C"], ["c0", "c0", "c99"], [1.0] * 3), _reference())
    assert profile.no_unseen_categories_rule(quiet).passed


def test_a_missing_column_names_itself_and_the_fix() -> None:
    with pytest.raises(profile.ProfileError, match=r"no column 'spend'.*dataset spec"):
        _profile(_events(DAY, ["A"], ["c0"], [1.0]).drop("spend"), _reference())
