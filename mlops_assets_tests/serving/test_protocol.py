"""The endpoint's pure parts on tiny inputs, without a server: the request schema built from the
dataset spec, which validates (key order, overrides by feature kind, every refusal naming its
field) and is the JSON schema documented, the 404 naming missing
keys, and loading the online store file (index by key tuple, signature of the bytes read,
refusal of a file lacking a column or holding duplicate or null keys)."""

from __future__ import annotations

import json
import os
import re
from datetime import date
from pathlib import Path

import polars as pl
import pytest

from mlops_assets.dataset_load import load_spec
from mlops_assets.environments import DEFAULT_DATASET
from mlops_assets.serving.protocol import (
    MAX_MISSING_LISTED,
    PredictRequest,
    RequestError,
    RequestSchema,
    missing_keys_error,
)
from mlops_assets.serving.store import StoreError, file_signature, load_online_store
from mlops_assets.storage.online_store import publish

SPEC = load_spec(DEFAULT_DATASET, validate_source=False)
SCHEMA = RequestSchema(SPEC, max_keys=3)
KEY = {"network": "ESPN", "daypart": "prime", "creative_id": "cr_80"}


def parse(payload: object, schema: RequestSchema = SCHEMA) -> PredictRequest:
    return schema.parse(json.dumps(payload).encode())


def test_keys_become_tuples_in_serving_key_order_whatever_the_object_order() -> None:
    shuffled = {"creative_id": "cr_80", "network": "ESPN", "daypart": "prime"}
    parsed = parse({"keys": [shuffled, KEY]})
    assert parsed.keys == [("ESPN", "prime", "cr_80")] * 2
    assert parsed.key_objects == [KEY, KEY]
    assert parsed.overrides == {}


def test_overrides_take_numbers_for_numeric_features_and_strings_for_categorical() -> None:
    overrides = {"spend": 5000, "hour": 20.5, "hist_network_mean": 3}
    parsed = parse({"keys": [KEY], "overrides": overrides})
    assert parsed.overrides == {"spend": 5000.0, "hour": 20.5, "hist_network_mean": 3.0}
    assert all(isinstance(v, float) for v in parsed.overrides.values())
    with pytest.raises(
        RequestError, match=re.escape("overrides.spend: Expected `float`, got `str`")
    ):
        parse({"keys": [KEY], "overrides": {"spend": "high"}})


@pytest.mark.parametrize(
    ("payload", "status", "code", "fragment"),
    [
        ("keys", 422, "invalid_body", "Expected `object`, got `str`"),
        ({"keys": {"network": "ESPN"}}, 422, "invalid_body", "keys: Expected `array`"),
        ({"keys": []}, 422, "invalid_body", "length >= 1"),
        ({"keys": [KEY], "extra": 1}, 422, "invalid_body", "unknown field `extra`"),
        ({"keys": [KEY] * 4}, 413, "too_many_keys", "the limit of 3 (max_keys)"),
        ({"keys": [{**KEY, "network": None}]}, 422, "invalid_key", "keys[0].network"),
        ({"keys": [KEY, {"network": "ESPN"}]}, 422, "invalid_key", "keys[1]: Object missing"),
        ({"keys": [{**KEY, "x": "1"}]}, 422, "invalid_key", "unknown field `x`"),
        ({"keys": [KEY], "overrides": {"spend": None}}, 422, "invalid_override", "got `null`"),
        ({"keys": [KEY], "overrides": {"spend": True}}, 422, "invalid_override", "got `bool`"),
        ({"keys": [KEY], "overrides": {"network": "CNN"}}, 422, "invalid_override", "ask for"),
        ({"keys": [KEY], "overrides": {"nope": 1}}, 422, "invalid_override", "overridable"),
    ],
)
def test_refusals_name_the_field(payload: object, status: int, code: str, fragment: str) -> None:
    with pytest.raises(RequestError) as caught:
        parse(payload)
    assert (caught.value.status, caught.value.code) == (status, code)
    assert fragment in caught.value.detail
    body = caught.value.body("rid")
    assert body["error"] == code and body["request_id"] == "rid"


def test_json_constants_bad_bytes_and_huge_numbers_are_refused() -> None:
    for body in (b'{"keys": [{"network": Infinity}]}', b'{"keys": NaN}', b"\xc3\x28", b"   ", b""):
        with pytest.raises(RequestError) as caught:
            SCHEMA.parse(body)
        assert (caught.value.status, caught.value.code) == (400, "malformed_json"), body
    with pytest.raises(RequestError, match="Expected `object`"):
        SCHEMA.parse(b'{"keys": [' + b"[" * 100_000 + b"]" * 100_000 + b"]}")
    huge = b'{"keys": [{"network": "E", "daypart": "p", "creative_id": "c"}], '
    with pytest.raises(RequestError, match=re.escape("overrides.spend: must be a finite number")):
        SCHEMA.parse(huge + b'"overrides": {"spend": 1e999}}')


def test_the_schema_that_validates_is_the_one_documented() -> None:
    schemas = SCHEMA.json_schemas()
    body = schemas["PredictBody"]
    assert body["required"] == ["keys"] and body["additionalProperties"] is False
    keys = body["properties"]["keys"]
    assert (keys["minItems"], keys["maxItems"]) == (1, 3)
    key = schemas["ServingKey"]
    assert key["required"] == list(SPEC.serving_keys) and key["additionalProperties"] is False
    overrides = schemas["Overrides"]["properties"]
    assert overrides["spend"]["type"] == "number"
    assert overrides["creative_age_days"]["type"] == "number"
    assert set(overrides).isdisjoint(SPEC.serving_keys)
    assert {"PredictResponse", "ErrorResponse", "KeyPrediction"} <= set(schemas)


def test_the_404_names_the_first_missing_key_and_lists_a_bounded_number() -> None:
    missing = [("ESPN", "prime", f"cr_{n}") for n in range(30)]
    error = missing_keys_error(missing, SCHEMA.serving_keys, total=31)
    assert error.status == 404
    assert "creative_id='cr_0'" in error.detail and "29 more of 31" in error.detail
    assert len(error.extra["missing"]) == MAX_MISSING_LISTED
    assert error.extra["missing"][0] == {
        "network": "ESPN",
        "daypart": "prime",
        "creative_id": "cr_0",
    }


def store_frame(**columns: list) -> pl.DataFrame:
    base = {
        "network": ["ESPN", "CNN"],
        "daypart": ["prime", "prime"],
        "creative_id": ["cr_1", "cr_2"],
        "air_date": [date(2025, 3, 13), date(2025, 3, 14)],
    }
    for col in SPEC.model_feature_columns:
        if col not in SPEC.serving_keys:
            base[col] = [1.0, None]
    return pl.DataFrame({**base, **columns})


def test_the_store_is_indexed_by_key_tuple_with_the_signature_of_what_was_read(
    tmp_path: Path,
) -> None:
    path = publish(store_frame(), tmp_path / "features.parquet")
    store = load_online_store(path, SPEC)
    assert store.row_count == 2
    assert store.signature == file_signature(path)
    assert store.signature[2] == os.stat(path).st_ino
    assert store.features_through == date(2025, 3, 14)
    row = store.rows[("CNN", "prime", "cr_2")]
    assert list(row) == list(SPEC.model_feature_columns)
    assert row["network"] == "CNN" and row["spend"] is None
    assert store.describe()["rows"] == 2


@pytest.mark.parametrize(
    ("frame", "fragment"),
    [
        (store_frame().drop("spend"), "lacks columns ['spend']"),
        (store_frame(creative_id=["cr_1", "cr_1"], network=["ESPN", "ESPN"]), "1 duplicate"),
        (store_frame(daypart=["prime", None]), "null serving key"),
    ],
)
def test_a_store_file_that_cannot_be_served_is_refused(
    tmp_path: Path, frame: pl.DataFrame, fragment: str
) -> None:
    path = publish(frame, tmp_path / "features.parquet")
    with pytest.raises(StoreError, match=re.escape(fragment)):
        load_online_store(path, SPEC)


def test_a_missing_or_corrupt_store_file_is_refused_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "features.parquet"
    assert file_signature(path) is None
    with pytest.raises(StoreError, match="does not exist"):
        load_online_store(path, SPEC)
    path.write_bytes(b"PAR1 but not really")
    with pytest.raises(StoreError, match="not readable Parquet"):
        load_online_store(path, SPEC)
