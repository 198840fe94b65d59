"""A second dataset of another shape (store sales from a CSV file: date column `sale_date`, key
`order_id`, target `units`, serving key `store`) runs through every asset by changing only
MLOPS_DATASET: every table gets rows in the new dataset's own columns and the online store file
is published."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import polars as pl

from mlops_assets.storage import online_store
from mlops_assets_tests.helpers import DAILY_TABLES, Pipeline, day_range

DAYS = day_range(date(2025, 2, 23), 20)
ROWS_PER_DAY = 30
STORES = ("north", "south", "east", "west", "center")
TV_COLUMNS = {"air_date", "airing_id", "network", "daypart", "creative_id", "visits"}


def write_store_sales(path: Path) -> Path:
    """20 days x 30 orders, deterministic for the seed."""
    rng = np.random.default_rng(42)
    n = len(DAYS) * ROWS_PER_DAY
    days = np.repeat(np.array(DAYS, dtype="datetime64[D]"), ROWS_PER_DAY)
    store = rng.choice(STORES, size=n)
    channel = rng.choice(["web", "shop"], size=n, p=[0.4, 0.6])
    price = np.round(rng.uniform(2.0, 40.0, size=n), 2)
    promo = rng.integers(0, 2, size=n)
    store_lift = np.array([STORES.index(s) + 1 for s in store], dtype=float)
    units = rng.poisson(store_lift * (1 + promo) * 20.0 / price + 1)
    pl.DataFrame(
        {
            "sale_date": days,
            "order_id": [f"o{i:05d}" for i in range(n)],
            "store": store,
            "channel": channel,
            "price": price,
            "promo": promo,
            "discount_cost": np.round(promo * price * 0.2, 2),
            "units": units,
        }
    ).write_csv(path)
    return path


def store_sales_spec(csv_path: Path) -> dict:
    return {
        "name": "store_sales",
        "event_noun": "order",
        "outcome_noun": "units sold",
        "description": "Orders of a small chain of stores and the units each sold.",
        "start_date": DAYS[0].isoformat(),
        "date_column": "sale_date",
        "event_key": "order_id",
        "target": "units",
        "numeric_features": ["price", "promo"],
        "categorical_features": ["store", "channel"],
        "serving_keys": ["store"],
        "history_keys": ["store", "channel"],
        "history_days": 7,
        "segment_column": "store",
        "cost_column": "discount_cost",
        "label_lag_days": 1,
        "training": {"cadence": "weekly", "train_days": 14, "holdout_days": 7},
        "source": {"kind": "csv", "path": str(csv_path)},
    }


def test_store_sales_run_through_every_asset(pipeline: Pipeline, tmp_path: Path) -> None:
    csv = write_store_sales(tmp_path / "store_sales.csv")
    pipeline.use_spec(store_sales_spec(csv))
    assert pipeline.spec.name == "store_sales"

    summary = pipeline.run_days(DAYS)
    assert summary.failed_runs == []
    assert summary.checks_failed == []

    wh = pipeline.warehouse
    for table in DAILY_TABLES:
        frame = wh.read(table)
        assert frame.height > 0, table
        assert not TV_COLUMNS & set(frame.columns), (table, frame.columns)

    events = wh.read("raw_events")
    assert events["sale_date"].dtype == pl.Date
    assert events.group_by("sale_date").len().sort("sale_date")["len"].to_list() == [30] * 20
    assert "units" not in events.columns
    assert events["order_id"].n_unique() == events.height == 600

    features = wh.read("features")
    for col in ("hist_store_mean", "hist_store_n", "hist_channel_mean", "hist_channel_n"):
        assert col in features.columns
    assert features.filter(pl.col("sale_date") == DAYS[-1])["hist_store_mean"].null_count() == 0

    labeled = wh.read("labeled_examples")
    assert labeled.height == 600
    assert labeled["units"].sum() == pl.read_csv(csv)["units"].sum()

    published = wh.read("online_features")
    assert sorted(published["store"].to_list()) == sorted(STORES)

    store_file = pipeline.settings.online_store_path
    assert store_file.is_file()
    assert store_file.is_relative_to(pipeline.data_dir / "dev")
    served = online_store.read(store_file)
    assert sorted(served["store"].to_list()) == sorted(STORES)
    assert served["sale_date"].unique().to_list() == [DAYS[-1]]
