"""The online endpoint fuzzed from its own OpenAPI document: ``python -m mlops_assets.serving``
runs as a subprocess on 127.0.0.1 against a real registry and online store, and Hypothesis
generates /predict bodies from the ``PredictBody`` schema that /openapi.json publishes, valid
ones (real serving keys and feature columns mixed with arbitrary ones) and invalid ones: random
JSON, values of the wrong type, huge and tiny numbers, unicode (lone surrogates included),
missing and extra fields, raw bytes and deeply nested arrays.

No input gets a 5xx: each answer is a 200 with one finite prediction per key or a 4xx JSON
error naming the problem, and the server still answers /healthz at the end. Examples are
bounded (300 bodies, 100 raw payloads) and derandomized, so a run is reproducible.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from mlops_assets_tests.serving.harness import Server, running_server, wait_until

SETTINGS = settings(
    max_examples=300,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
EXTREMES = [
    10**400,
    -(10**400),
    2**1024,
    2**63,
    -(2**63) - 1,
    1.7976931348623157e308,
    -1e308,
    5e-324,
    -0.0,
    0,
    1e-300,
]
ODD_STRINGS = ["", " ", "\x00", "\ud800", "\udfff", "é", "🙂", "null", "NaN", "a" * 5000, "'\";--"]


@pytest.fixture(scope="module")
def server(serving_world, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    log = tmp_path_factory.mktemp("fuzz") / "server.log"
    with running_server(serving_world.data_dir, log) as srv:
        wait_until(lambda: srv.get("/readyz").status_code == 200, 60, "the endpoint to be ready")
        yield srv


@pytest.fixture(scope="module")
def schema(server: Server) -> dict[str, Any]:
    """The request body schema, as /openapi.json publishes it, with its references resolved."""
    document = server.get("/openapi.json").json()
    route = document["paths"]["/predict"]["post"]
    components = document["components"]["schemas"]

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return resolve(components[node["$ref"].rsplit("/", 1)[-1]])
            return {k: resolve(v) for k, v in node.items()}
        if isinstance(node, list):
            return [resolve(v) for v in node]
        return node

    return resolve(route["requestBody"]["content"]["application/json"]["schema"])


def json_values() -> st.SearchStrategy[Any]:
    """Any JSON value (finite numbers, since JSON has no NaN)."""
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=False, allow_infinity=False),
        st.sampled_from(EXTREMES),
        st.text(max_size=20),
        st.sampled_from(ODD_STRINGS),
    )
    return st.recursive(
        scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
        ),
        max_leaves=12,
    )


def from_schema(
    node: dict[str, Any], names: list[str], strings: list[str]
) -> st.SearchStrategy[Any]:
    """Values valid for a JSON-schema ``node`` (the subset PredictBody uses). Object keys are
    drawn from ``names`` or arbitrary text, strings from ``strings`` or arbitrary text."""
    if "anyOf" in node:
        return st.one_of([from_schema(n, names, strings) for n in node["anyOf"]])
    kind = node.get("type")
    if kind == "null":
        return st.none()
    if kind == "string":
        return st.one_of(st.sampled_from(strings), st.text(max_size=12))
    if kind in ("number", "integer"):
        numbers = st.one_of(st.integers(-(10**6), 10**6), st.sampled_from(EXTREMES))
        if kind == "number":
            numbers = st.one_of(numbers, st.floats(allow_nan=False, allow_infinity=False))
        return numbers
    if kind == "array":
        items = from_schema(node.get("items", {}), names, strings)
        return st.lists(items, min_size=node.get("minItems", 0), max_size=4)
    if kind == "object":
        props = node.get("properties", {})
        required = set(node.get("required", []))
        fixed = st.fixed_dictionaries(
            {k: from_schema(v, names, strings) for k, v in props.items() if k in required},
            optional={
                k: from_schema(v, names, strings) for k, v in props.items() if k not in required
            },
        )
        extra = node.get("additionalProperties", True)
        if extra is False:
            return fixed
        values = json_values() if extra is True else from_schema(extra, names, strings)
        keys = st.one_of(st.sampled_from(names), st.text(max_size=12))
        more = st.dictionaries(keys, values, max_size=4)
        return st.builds(lambda a, b: {**b, **a}, fixed, more)
    return json_values()


@st.composite
def bodies(draw: st.DrawFn, schema: dict[str, Any], names: list[str], strings: list[str]):
    """A body from the schema, then perhaps broken: a field dropped, a field added, a value
    swapped for one of another type, or the whole body replaced by random JSON."""
    body = draw(from_schema(schema, names, strings))
    how = draw(st.sampled_from(["valid", "drop", "extra", "retype", "random"]))
    if how == "drop" and body:
        body.pop(draw(st.sampled_from(sorted(body))))
    elif how == "extra":
        body[draw(st.text(max_size=10))] = draw(json_values())
    elif how == "retype":
        body[draw(st.sampled_from(["keys", "overrides"]))] = draw(json_values())
    elif how == "random":
        body = draw(json_values())
    return body


def assert_answered(server: Server, content: bytes) -> int:
    """Post ``content``: no 5xx, and a well-formed answer; its status."""
    r = server.client.post(
        "/predict", content=content, headers={"content-type": "application/json"}
    )
    assert r.status_code < 500, (content[:300], r.status_code, r.text[:500])
    answer = r.json()
    if r.status_code == 200:
        predictions = [p["prediction"] for p in answer["predictions"]]
        assert predictions and all(math.isfinite(p) for p in predictions), answer
        assert answer["model_version"]
    else:
        assert 400 <= r.status_code < 500
        assert answer["error"] and answer["detail"], answer
        assert answer["request_id"] == r.headers["x-request-id"]
    return r.status_code


def encode(body: Any) -> bytes:
    return json.dumps(body).encode()


def test_generated_bodies_never_get_a_5xx(
    server: Server, schema: dict[str, Any], serving_world
) -> None:
    spec = serving_world.spec
    names = list(dict.fromkeys([*spec.serving_keys, *spec.model_feature_columns, "keys"]))
    keys = serving_world.keys
    strings = sorted({v for key in keys[:30] for v in key.values()}) + ODD_STRINGS
    statuses: set[int] = set()

    @SETTINGS
    @given(body=bodies(schema, names, strings))
    @example(body={"keys": [keys[0]]})
    @example(body={"keys": [keys[0]], "overrides": {"spend": 10**400}})
    @example(body={"keys": [keys[0]], "overrides": {"audience_k": 1.7976931348623157e308}})
    @example(body={"keys": [keys[0]], "overrides": {"network": "\ud800"}})
    @example(body={"keys": [{**keys[0], "creative_id": "\ud800"}]})
    def fuzz(body: Any) -> None:
        statuses.add(assert_answered(server, encode(body)))

    fuzz()
    # The generator reached both the prediction path and the refusals.
    assert 200 in statuses and 422 in statuses, statuses
    assert server.get("/healthz").status_code == 200
    assert server.process.poll() is None


@settings(SETTINGS, max_examples=100)
@given(
    payload=st.one_of(
        st.binary(max_size=200),
        st.text(max_size=200).map(str.encode),
        json_values().map(encode),
    )
)
@example(payload=b"[" * 100_000 + b"]" * 100_000)
@example(payload=b'{"keys": ' + b"[" * 50_000 + b"]" * 50_000 + b"}")
@example(payload=b'{"keys": [{"network": "ABC"}], "overrides": {"spend": 1' + b"0" * 400 + b"}}")
@example(payload=b'{"keys": [], "overrides": {"spend": 1e999}}')
@example(payload=b'\xef\xbb\xbf{"keys": []}')
def test_raw_payloads_never_get_a_5xx(server: Server, payload: bytes) -> None:
    assert_answered(server, payload)


def test_the_server_still_answers_after_the_fuzzing(server: Server) -> None:
    assert server.get("/healthz").status_code == 200
    assert server.get("/readyz").status_code == 200
    info = server.model()
    assert info["ready"] is True and info["model_problem"] is None
    assert info["request_log"]["dropped"] == 0
