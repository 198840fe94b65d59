"""The dataset spec (mlops_assets.dataset): the default spec loads, and a spec that names a
missing column, declares a string column of a CSV as a numeric feature, names an unknown source
kind or otherwise breaks its contract fails at load with a SpecError naming the field."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from mlops_assets.dataset import SpecError
from mlops_assets.dataset_load import load_spec
from mlops_assets.environments import DEFAULT_DATASET
from mlops_assets_tests.helpers import simulator_spec, write_yaml


def csv_spec(csv_path: Path, **overrides: Any) -> dict[str, Any]:
    raw = {
        "name": "shop_sales",
        "event_noun": "order",
        "outcome_noun": "units sold",
        "start_date": "2025-02-01",
        "date_column": "sale_date",
        "event_key": "order_id",
        "target": "units",
        "numeric_features": ["price"],
        "categorical_features": ["store"],
        "serving_keys": ["store"],
        "history_keys": ["store"],
        "history_days": 7,
        "label_lag_days": 1,
        "source": {"kind": "csv", "path": csv_path.name},
    }
    raw.update(overrides)
    return raw


@pytest.fixture
def shop_csv(tmp_path: Path) -> Path:
    path = tmp_path / "shop.csv"
    pl.DataFrame(
        {
            "sale_date": [date(2025, 2, 1), date(2025, 2, 1), date(2025, 2, 2)],
            "order_id": ["o1", "o2", "o3"],
            "store": ["north", "south", "north"],
            "price": [9.5, 12.0, 7.25],
            "units": [3, 1, 4],
        }
    ).write_csv(path)
    return path


def test_default_spec_loads() -> None:
    spec = load_spec(DEFAULT_DATASET)
    assert spec.name == "tv_ad_response"
    assert spec.source.kind == "simulator"
    assert spec.date_column == "air_date"
    assert spec.event_key == "airing_id"
    assert spec.target == "visits"
    assert spec.label_lag_days == 2
    assert spec.cost_column == "spend"
    assert spec.path == DEFAULT_DATASET
    assert spec.model_feature_columns[: len(spec.raw_feature_columns)] == spec.raw_feature_columns
    assert "hist_network_mean" in spec.model_feature_columns
    assert spec.history_lookback_days == spec.label_lag_days + spec.history_days


def test_csv_spec_loads_with_relative_path(tmp_path: Path, shop_csv: Path) -> None:
    spec = load_spec(write_yaml(tmp_path / "shop.yaml", csv_spec(shop_csv)))
    assert spec.source.path == shop_csv.resolve()
    assert spec.event_columns == {
        "sale_date": "date",
        "order_id": "categorical",
        "store": "categorical",
        "price": "numeric",
    }


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("numeric_features", ["hour", "not_a_column"]),
        ("categorical_features", ["network", "daypart", "creative_id", "region"]),
        ("target", "conversions"),
        ("date_column", "aired_on"),
        ("event_key", "spot_id"),
        ("cost_column", "budget"),
    ],
)
def test_missing_column_names_the_field(tmp_path: Path, field: str, value: Any) -> None:
    path = write_yaml(tmp_path / "spec.yaml", simulator_spec(**{field: value}))
    with pytest.raises(SpecError) as err:
        load_spec(path)
    missing = value[-1] if isinstance(value, list) else value
    assert f"field '{field}'" in str(err.value)
    assert repr(missing) in str(err.value)


def test_string_column_as_numeric_feature_names_the_field(tmp_path: Path, shop_csv: Path) -> None:
    raw = csv_spec(shop_csv, numeric_features=["price", "order_id"])
    with pytest.raises(SpecError) as err:
        load_spec(write_yaml(tmp_path / "shop.yaml", raw))
    message = str(err.value)
    assert "field 'numeric_features'" in message
    assert "'order_id'" in message
    assert "must be numeric" in message


def test_string_target_names_the_field(tmp_path: Path, shop_csv: Path) -> None:
    raw = csv_spec(shop_csv, target="order_id", event_key="store")
    with pytest.raises(SpecError, match="field 'target': column 'order_id' must be numeric"):
        load_spec(write_yaml(tmp_path / "shop.yaml", raw))


def test_non_date_date_column_names_the_field(tmp_path: Path, shop_csv: Path) -> None:
    raw = csv_spec(shop_csv, date_column="order_id", event_key="store")
    with pytest.raises(SpecError, match="field 'date_column'"):
        load_spec(write_yaml(tmp_path / "shop.yaml", raw))


@pytest.mark.parametrize("kind", ["excel", "postgres", "Simulator"])
def test_unknown_source_kind_names_the_field(tmp_path: Path, kind: str) -> None:
    raw = simulator_spec()
    raw["source"]["kind"] = kind
    with pytest.raises(SpecError) as err:
        load_spec(write_yaml(tmp_path / "spec.yaml", raw))
    assert "field 'source.kind'" in str(err.value)
    assert repr(kind) in str(err.value)
    assert "simulator, csv, parquet, duckdb" in str(err.value)


def test_missing_source_file_names_the_field(tmp_path: Path) -> None:
    raw = csv_spec(tmp_path / "nowhere.csv")
    with pytest.raises(SpecError, match=r"field 'source\.path'.*does not exist"):
        load_spec(write_yaml(tmp_path / "shop.yaml", raw))


def test_missing_required_field_is_named(tmp_path: Path) -> None:
    raw = simulator_spec()
    del raw["event_key"]
    with pytest.raises(SpecError, match="field 'event_key' is required"):
        load_spec(write_yaml(tmp_path / "spec.yaml", raw))


def test_hostile_column_name_is_refused(tmp_path: Path) -> None:
    raw = simulator_spec(numeric_features=['hour"; DROP TABLE x; --'])
    with pytest.raises(SpecError, match="field 'numeric_features'"):
        load_spec(write_yaml(tmp_path / "spec.yaml", raw))


def test_serving_key_must_be_categorical(tmp_path: Path) -> None:
    raw = simulator_spec(serving_keys=["network", "hour"])
    with pytest.raises(SpecError, match="key column 'hour'"):
        load_spec(write_yaml(tmp_path / "spec.yaml", raw))


def test_bad_training_cadence_names_the_field(tmp_path: Path) -> None:
    raw = simulator_spec()
    raw["training"]["cadence"] = "hourly"
    with pytest.raises(SpecError, match=re.escape("field 'training.cadence'")):
        load_spec(write_yaml(tmp_path / "spec.yaml", raw))


def test_missing_spec_file_mentions_mlops_dataset(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="MLOPS_DATASET"):
        load_spec(tmp_path / "absent.yaml")


def test_candidate_params_override_a_candidate(tmp_path: Path) -> None:
    raw = simulator_spec()
    raw["training"]["candidate_params"] = {"lgbm_large": {"num_boost_round": 900, "lambda_l2": 2}}
    spec = load_spec(write_yaml(tmp_path / "spec.yaml", raw))
    assert spec.training.candidate_params == {
        "lgbm_large": {"num_boost_round": 900, "lambda_l2": 2}
    }


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (
            {"lgbm_larg": {"num_boost_round": 900}},
            "field 'training.candidate_params.lgbm_larg' is not a candidate; did you mean "
            "'training.candidate_params.lgbm_large'? (candidates: global_mean, segment_mean, "
            "lgbm_small, lgbm_large)",
        ),
        (
            {"lgbm_large": {"num_boost_rounds": 900}},
            "field 'training.candidate_params.lgbm_large.num_boost_rounds' is not a parameter of "
            "candidate lgbm_large; did you mean "
            "'training.candidate_params.lgbm_large.num_boost_round'? (its parameters: objective,",
        ),
        (
            {"lgbm_large": {"num_boost_round": "many"}},
            "field 'training.candidate_params.lgbm_large.num_boost_round' must be an integer "
            "like its default 400, got 'many'",
        ),
        (
            {"lgbm_small": {"learning_rate": True}},
            "field 'training.candidate_params.lgbm_small.learning_rate' must be a number like "
            "its default 0.05, got True",
        ),
        (
            {"global_mean": {"min_rows": 5}},
            "field 'training.candidate_params.global_mean': candidate global_mean has no "
            "parameters to change; remove it",
        ),
        (
            {"segment_mean": 5},
            "field 'training.candidate_params.segment_mean': input should be a valid "
            "dictionary, got 5",
        ),
    ],
)
def test_a_bad_candidate_override_names_the_field_and_the_fix(
    tmp_path: Path, params: dict[str, Any], message: str
) -> None:
    raw = simulator_spec()
    raw["training"]["candidate_params"] = params
    with pytest.raises(SpecError, match=re.escape(message)):
        load_spec(write_yaml(tmp_path / "spec.yaml", raw))


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (
            {"drift_exclude": ["weekday"]},
            "field 'drift_exclude': 'weekday' is not a column the drift report watches",
        ),
        (
            {"monitored_features": ["spend", "hist_nowhere_mean"]},
            "field 'monitored_features': 'hist_nowhere_mean' is not a numeric or categorical "
            "feature nor a history feature",
        ),
        (
            {"monitored_features": ["spend"], "drift_exclude": ["spend"]},
            "column 'spend' is listed in both 'monitored_features' and 'drift_exclude'",
        ),
    ],
)
def test_a_wrong_drift_column_names_the_field_and_the_fix(
    tmp_path: Path, fields: dict[str, Any], expected: str
) -> None:
    path = write_yaml(tmp_path / "spec.yaml", simulator_spec(**fields))
    with pytest.raises(SpecError) as err:
        load_spec(path)
    message = str(err.value)
    assert expected in message
    assert "drop it here" in message or "remove it from one of them" in message


def test_history_features_and_the_target_may_be_named_for_drift(tmp_path: Path) -> None:
    raw = simulator_spec(
        monitored_features=["spend", "hist_network_mean"], drift_exclude=["visits"]
    )
    spec = load_spec(write_yaml(tmp_path / "spec.yaml", raw))
    assert spec.monitored_numeric == ["spend", "hist_network_mean"]
    assert spec.drift_exclude == ("visits",)
