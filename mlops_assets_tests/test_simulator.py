"""The TV-ad simulator (mlops_assets.simulator): deterministic per seed and date, scales with
airings_per_day, has a learnable target (LightGBM beats the per-network mean on a later week),
and injects drift from its date on and data incidents exactly on their dates."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import lightgbm as lgb
import numpy as np
import pandas as pd
import polars as pl
import pytest

from mlops_assets.simulator import (
    EVENT_SCHEMA,
    OUTCOME_SCHEMA,
    SimulatorConfig,
    SimulatorError,
    outcomes_landed,
    simulate_day,
)
from mlops_assets_tests.helpers import day_range

DAY = date(2025, 3, 10)
BEFORE, AFTER = DAY - timedelta(days=1), DAY + timedelta(days=1)


def config(airings_per_day: int = 400, **options) -> SimulatorConfig:
    return SimulatorConfig.from_options({"airings_per_day": airings_per_day, **options}, 2)


def test_same_seed_and_date_give_identical_frames() -> None:
    events_a, outcomes_a = simulate_day(DAY, config())
    events_b, outcomes_b = simulate_day(DAY, config())
    assert events_a.equals(events_b)
    assert outcomes_a.equals(outcomes_b)


def test_other_dates_and_seeds_differ() -> None:
    events, outcomes = simulate_day(DAY, config())
    events_next, outcomes_next = simulate_day(AFTER, config())
    assert not events.drop("air_date", "airing_id").equals(
        events_next.drop("air_date", "airing_id")
    )
    assert not outcomes["visits"].equals(outcomes_next["visits"])
    other_seed, _ = simulate_day(DAY, config(seed=8))
    assert not events.equals(other_seed)


def test_frames_have_the_declared_schema_and_keys() -> None:
    events, outcomes = simulate_day(DAY, config())
    assert dict(events.schema) == EVENT_SCHEMA
    assert dict(outcomes.schema) == OUTCOME_SCHEMA
    assert events["air_date"].unique().to_list() == [DAY]
    assert events["airing_id"].n_unique() == events.height
    assert events["airing_id"].to_list() == outcomes["airing_id"].to_list()
    assert outcomes["landed_on"].unique().to_list() == [DAY + timedelta(days=2)]
    assert outcomes["visits"].min() >= 0
    assert events.null_count().sum_horizontal().item() == 0


@pytest.mark.parametrize("n", [100, 20_000])
def test_airings_per_day_scales(n: int) -> None:
    events, outcomes = simulate_day(DAY, config(airings_per_day=n))
    assert events.height == n
    assert outcomes.height == n
    assert events["airing_id"].n_unique() == n


def test_invalid_options_are_refused() -> None:
    with pytest.raises(SimulatorError, match="airings_per_day"):
        config(airings_per_day=0)
    with pytest.raises(SimulatorError, match="unknown kind 'meteor'"):
        config(incidents=[{"kind": "meteor", "date": "2025-03-10"}])
    with pytest.raises(SimulatorError, match="unknown kind 'null_storm'"):
        config(drifts=[{"kind": "null_storm", "date": "2025-03-10"}])
    with pytest.raises(SimulatorError):
        config(incidents=[{"kind": "empty_day", "date": "not-a-date"}])


def test_outcomes_land_after_the_label_lag() -> None:
    assert not outcomes_landed(DAY, 2, datetime(2025, 3, 11, 23, 59))
    assert outcomes_landed(DAY, 2, datetime(2025, 3, 12, 0, 0))


def _labeled(days: list[date], cfg: SimulatorConfig) -> pl.DataFrame:
    parts = []
    for day in days:
        events, outcomes = simulate_day(day, cfg)
        parts.append(events.join(outcomes.select("airing_id", "visits"), on="airing_id"))
    return pl.concat(parts)


def test_target_is_learnable() -> None:
    """A small LightGBM on the raw attributes of 3 weeks beats the per-network mean a week later."""
    cfg = config(airings_per_day=400)
    train = _labeled(day_range(date(2025, 2, 1), 21), cfg)
    holdout = _labeled(day_range(date(2025, 3, 1), 7), cfg)
    categorical = ["network", "daypart"]
    numeric = ["hour", "duration_s", "creative_age_days", "spend", "audience_k"]

    def matrix(frame: pl.DataFrame) -> pd.DataFrame:
        pdf = frame.select(categorical + numeric).to_pandas()
        for col in categorical:
            levels = sorted(train[col].unique().to_list())
            pdf[col] = pdf[col].astype(pd.CategoricalDtype(categories=levels))
        return pdf

    params = {
        "objective": "regression",
        "learning_rate": 0.05,
        "num_leaves": 31,
        "min_data_in_leaf": 20,
        "deterministic": True,
        "force_col_wise": True,
        "seed": 7,
        "num_threads": 1,
        "verbose": -1,
    }
    model = lgb.train(params, lgb.Dataset(matrix(train), train["visits"].to_numpy()), 300)
    actual = holdout["visits"].to_numpy()
    model_mae = float(np.mean(np.abs(model.predict(matrix(holdout)) - actual)))

    network_mean = train.group_by("network").agg(pl.col("visits").mean().alias("baseline"))
    baseline = holdout.join(network_mean, on="network", how="left")["baseline"].to_numpy()
    baseline_mae = float(np.mean(np.abs(baseline - actual)))

    assert model_mae < 0.75 * baseline_mae, (model_mae, baseline_mae)


def _network_mean(day: date, cfg: SimulatorConfig, network: str) -> float:
    events = simulate_day(day, cfg)[0]
    return events.filter(pl.col("network") == network)["audience_k"].mean()


def test_audience_drift_starts_on_its_date() -> None:
    drift = {"kind": "audience_shift", "date": DAY.isoformat(), "network": "ESPN", "factor": 3}
    drifted = config(airings_per_day=5000, drifts=[drift])
    plain = config(airings_per_day=5000)

    # The day before is untouched; on the day, ESPN's mean audience jumps by about the factor.
    assert simulate_day(BEFORE, drifted)[0].equals(simulate_day(BEFORE, plain)[0])
    jump = _network_mean(DAY, drifted, "ESPN") / _network_mean(BEFORE, drifted, "ESPN")
    assert 2.4 < jump < 3.6, jump
    other = _network_mean(DAY, drifted, "CBS") / _network_mean(BEFORE, drifted, "CBS")
    assert 0.8 < other < 1.25, other

    # Same draws as without drift: ESPN rows scaled by exactly the factor, the others unchanged.
    on_day = simulate_day(DAY, drifted)[0].join(
        simulate_day(DAY, plain)[0].select("airing_id", pl.col("audience_k").alias("plain")),
        on="airing_id",
    )
    espn = on_day.filter(pl.col("network") == "ESPN")
    assert np.allclose(espn["audience_k"], 3 * espn["plain"], rtol=1e-4, atol=2e-3)
    rest = on_day.filter(pl.col("network") != "ESPN")
    assert rest["audience_k"].equals(rest["plain"], check_names=False)

    # A drift persists after its date.
    later = DAY + timedelta(days=5)
    persisted = _network_mean(later, drifted, "ESPN") / _network_mean(later, plain, "ESPN")
    assert persisted == pytest.approx(3.0, rel=1e-3)


def test_creative_mix_drift_favours_new_creatives_from_its_date() -> None:
    cfg = config(airings_per_day=3000, drifts=[{"kind": "creative_mix", "date": DAY.isoformat()}])

    def young_share(day: date) -> float:
        events = simulate_day(day, cfg)[0]
        return (events["creative_age_days"] < 18).mean()

    assert young_share(BEFORE) < 0.3
    assert young_share(DAY) > 0.7
    assert young_share(AFTER) > 0.7


def test_null_storm_hits_only_its_date() -> None:
    storm = {"kind": "null_storm", "date": DAY.isoformat(), "column": "audience_k", "share": 0.5}
    cfg = config(airings_per_day=2000, incidents=[storm])
    share = {d: simulate_day(d, cfg)[0]["audience_k"].null_count() / 2000 for d in (BEFORE, DAY)}
    assert share[BEFORE] == 0
    assert 0.44 < share[DAY] < 0.56
    assert simulate_day(AFTER, cfg)[0]["audience_k"].null_count() == 0
    assert simulate_day(DAY, cfg)[0]["spend"].null_count() == 0


def test_schema_change_renames_the_column_only_on_its_date() -> None:
    change = {"kind": "schema_change", "date": DAY.isoformat(), "column": "spend"}
    cfg = config(incidents=[change])
    assert "spend" in simulate_day(BEFORE, cfg)[0].columns
    columns = simulate_day(DAY, cfg)[0].columns
    assert "spend" not in columns
    assert "spend_v2" in columns
    assert "spend" in simulate_day(AFTER, cfg)[0].columns
    renamed = config(incidents=[{**change, "rename_to": "cost_usd"}])
    assert "cost_usd" in simulate_day(DAY, renamed)[0].columns


def test_empty_day_has_no_rows_only_on_its_date() -> None:
    cfg = config(incidents=[{"kind": "empty_day", "date": DAY.isoformat()}])
    events, outcomes = simulate_day(DAY, cfg)
    assert events.height == 0
    assert outcomes.height == 0
    assert dict(events.schema) == EVENT_SCHEMA
    assert simulate_day(BEFORE, cfg)[0].height == 400
    assert simulate_day(AFTER, cfg)[0].height == 400


def test_negative_target_only_on_its_date() -> None:
    cfg = config(incidents=[{"kind": "negative_target", "date": DAY.isoformat(), "share": 0.3}])
    negatives = {d: (simulate_day(d, cfg)[1]["visits"] < 0).sum() for d in (BEFORE, DAY, AFTER)}
    assert negatives[BEFORE] == 0
    assert negatives[AFTER] == 0
    assert 80 < negatives[DAY] < 160


def test_duplicate_keys_only_on_their_date() -> None:
    cfg = config(incidents=[{"kind": "duplicate_keys", "date": DAY.isoformat()}])
    events = simulate_day(DAY, cfg)[0]
    assert events.height == 440
    assert events["airing_id"].n_unique() == 400
    before = simulate_day(BEFORE, cfg)[0]
    assert before["airing_id"].n_unique() == before.height == 400


def test_response_drift_scales_the_outcome_of_its_network_from_its_date() -> None:
    drift = {"kind": "response_shift", "date": DAY.isoformat(), "network": "ESPN", "factor": 2}
    drifted = config(airings_per_day=5000, drifts=[drift])
    plain = config(airings_per_day=5000)

    def visits(day: date, cfg: SimulatorConfig) -> pl.DataFrame:
        events, outcomes = simulate_day(day, cfg)
        return outcomes.join(events.select("airing_id", "network"), on="airing_id")

    assert visits(BEFORE, drifted).equals(visits(BEFORE, plain))
    on_day = visits(DAY, drifted).group_by("network").agg(pl.col("visits").mean())
    base = visits(DAY, plain).group_by("network").agg(pl.col("visits").mean().alias("plain"))
    ratio = dict(
        on_day.join(base, on="network").select("network", pl.col("visits") / "plain").rows()
    )
    assert 1.8 < ratio["ESPN"] < 2.2, ratio
    assert 0.9 < ratio["CBS"] < 1.1, ratio
