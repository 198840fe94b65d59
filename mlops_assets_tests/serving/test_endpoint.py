"""The online endpoint as it runs: ``python -m mlops_assets.serving`` as a subprocess on
127.0.0.1, against a real MLflow SQLite registry (two LightGBM versions trained on simulated TV-ad
data) and a real online-store Parquet file under a temporary folder.

Covers: predictions equal the batch path (``TabularModel.predict``) with and without overrides;
moving the champion (alias and pointer) and republishing the online store under concurrent load
switch the answers with zero failed requests and no request mixing old and new; a bad store file
or model version keeps the previous pair; every bad-request class gets its 4xx JSON error and the
server still answers; each answered request is in the request log, with the features used, before
its answer arrives: the log holds exactly one entry per answered request of a 2,000-request load
while the server still runs and after a graceful SIGINT; /readyz is 503 without a champion or
online store, naming the reason, and turns ready when they appear. The server runs with
MLOPS_AS_OF set, so its entries fall on that day (``test_endpoint_hardening.py`` covers the
serving clock, SIGKILL, 415, the timeouts and the log cap).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from mlops_assets.ml.promotion import CHAMPION_ALIAS
from mlops_assets.storage import online_store
from mlops_assets.storage.request_log import count_day, read_day
from mlops_assets_tests.helpers import FIXED_AS_OF
from mlops_assets_tests.serving.harness import (
    Answer,
    Load,
    Server,
    World,
    copy_registry,
    move_champion,
    predictions,
    running_server,
    wait_until,
)

TOL = 1e-9
# The servers run with MLOPS_AS_OF=FIXED_AS_OF: their request log entries fall on that day.
AS_OF_DAY = date.fromisoformat(FIXED_AS_OF[:10])


@pytest.fixture(scope="module")
def server(world: World) -> Iterator[Server]:
    with running_server(world.data_dir, world.data_dir.parent / "server.log") as srv:
        yield srv


def use(world: World, server: Server, version: str, store: pl.DataFrame) -> None:
    """Point the champion alias at ``version``, publish ``store`` and wait until the endpoint
    serves exactly that pair with no load problem left."""
    move_champion(world.settings, version)
    path = online_store.publish(store, world.settings.online_store_path)
    inode = path.stat().st_ino

    def serving() -> bool:
        info = server.model()
        store = info["online_store"]
        return (
            info["version"] == version
            and info["model_problem"] is None
            and store.get("inode") == inode
            and store["problem"] is None
        )

    wait_until(serving, 30, f"v{version} and the new online store to be served")


def assert_matches(answer: Answer, expected: np.ndarray) -> None:
    got = predictions(answer)
    assert got.shape == expected.shape
    assert np.max(np.abs(got - expected)) <= TOL


# (a) predictions equal the batch path ---------------------------------------------------------


def test_predictions_equal_the_batch_path(world: World, server: Server) -> None:
    v1 = world.versions[0]
    use(world, server, v1, world.store)
    keys = world.keys
    assert 100 < len(keys) <= 1000

    r = server.post({"keys": keys})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model_version"] == v1
    assert body["request_id"] == r.headers["x-request-id"]
    assert [p["key"] for p in body["predictions"]] == keys
    got = np.array([p["prediction"] for p in body["predictions"]])
    expected = world.models[v1].predict(world.rows(keys))
    np.testing.assert_allclose(got, expected, rtol=0, atol=TOL)
    assert np.ptp(got) > 0, "a constant answer would hide a wrong feature lookup"

    overrides = {"spend": 5000.0, "hour": 21}
    r = server.post({"keys": keys, "overrides": overrides})
    assert r.status_code == 200, r.text
    got_what_if = np.array([p["prediction"] for p in r.json()["predictions"]])
    what_if = world.rows(keys).with_columns(spend=pl.lit(5000.0), hour=pl.lit(21.0))
    np.testing.assert_allclose(got_what_if, world.models[v1].predict(what_if), rtol=0, atol=TOL)
    assert not np.allclose(got_what_if, got), "the overrides changed nothing"


# (b) hot switching under load -----------------------------------------------------------------


def assert_switched(answers: list[Answer], expected: dict[str, np.ndarray], new: str) -> None:
    """No failures; every answer equals the old or the new expectation, as its label says; both
    appear; and every request sent after the first new answer arrived got the new one."""
    failures = [a for a in answers if a.status != 200]
    assert not failures, f"{len(failures)} failed requests, e.g. {failures[:3]}"
    for answer in answers:
        assert_matches(answer, expected[label_of(answer, expected)])
    labels = Counter(label_of(a, expected) for a in answers)
    assert set(labels) == set(expected), labels
    first_new = min(a.done for a in answers if label_of(a, expected) == new)
    late_old = [a for a in answers if a.sent > first_new and label_of(a, expected) != new]
    assert not late_old, f"{len(late_old)} requests sent after the switch got the old answer"


def label_of(answer: Answer, expected: dict[str, np.ndarray]) -> str:
    """The expectation an answer matches (its model version when the versions differ)."""
    version = answer.body["model_version"]
    if version in expected:
        return version
    got = predictions(answer)
    return next(k for k, e in expected.items() if np.max(np.abs(got - e)) <= TOL)


def test_moving_the_alias_under_load_switches_without_failures(
    world: World, server: Server
) -> None:
    v1, v2 = world.versions
    use(world, server, v1, world.store)
    keys = world.keys[:5]
    rows = world.rows(keys)
    expected = {v: world.models[v].predict(rows) for v in (v1, v2)}
    assert not np.allclose(expected[v1], expected[v2])
    body = json.dumps({"keys": keys}).encode()

    with Load(server, lambda n: body, threads=6) as load:
        wait_until(lambda: load.count() >= 150, 60, "150 answers from v1")
        move_champion(world.settings, v2)
        wait_until(
            lambda: load.count(lambda a: a.body and a.body.get("model_version") == v2) >= 150,
            60,
            "150 answers from v2",
        )
    answers = load.snapshot()
    assert len(answers) >= 300
    assert_switched(answers, expected, v2)


def test_republishing_the_store_under_load_switches_without_failures(
    world: World, server: Server
) -> None:
    v1 = world.versions[0]
    use(world, server, v1, world.store)
    keys = world.keys[-5:]
    republished = world.store.with_columns(
        spend=pl.col("spend") * 3.0, audience_k=pl.col("audience_k") * 3.0
    )
    model = world.models[v1]
    expected = {
        "old": model.predict(world.rows(keys)),
        "new": model.predict(world.rows(keys, republished)),
    }
    assert not np.allclose(expected["old"], expected["new"])
    body = json.dumps({"keys": keys}).encode()

    with Load(server, lambda n: body, threads=6) as load:
        wait_until(lambda: load.count() >= 150, 60, "150 answers from the old store")
        online_store.publish(republished, world.settings.online_store_path)

        def new_answers() -> bool:
            got = [a for a in load.snapshot() if a.status == 200]
            hits = [a for a in got if np.max(np.abs(predictions(a) - expected["new"])) <= TOL]
            return len(hits) >= 150

        wait_until(new_answers, 60, "150 answers from the republished store")
    answers = load.snapshot()
    assert {a.body["model_version"] for a in answers if a.body} == {v1}
    assert_switched(answers, expected, "new")


def test_a_bad_store_file_or_model_version_keeps_the_previous_pair(
    world: World, server: Server
) -> None:
    v1 = world.versions[0]
    use(world, server, v1, world.store)
    served_inode = world.settings.online_store_path.stat().st_ino
    keys = world.keys[:3]
    expected = world.models[v1].predict(world.rows(keys))

    path = world.settings.online_store_path
    aside = path.with_name("garbage.tmp")
    aside.write_bytes(b"this is not parquet")
    os.replace(aside, path)
    problem = wait_until(
        lambda: server.model()["online_store"]["problem"], 30, "the store problem to show"
    )
    assert "not readable Parquet" in problem
    info = server.model()
    assert info["online_store"]["inode"] == served_inode and info["ready"] is True
    r = server.post({"keys": keys})
    assert r.status_code == 200
    np.testing.assert_allclose([p["prediction"] for p in r.json()["predictions"]], expected)

    # A version whose artifacts hold no model: the alias moves to it, the endpoint keeps v1.
    from mlflow import MlflowClient

    uri = world.settings.mlflow_tracking_uri
    client = MlflowClient(uri, registry_uri=uri)
    empty = world.data_dir.parent / "empty_model"
    empty.mkdir(exist_ok=True)
    broken = client.create_model_version(world.model_name, source=empty.as_uri()).version
    move_champion(world.settings, str(broken))
    problem = wait_until(lambda: server.model()["model_problem"], 30, "the model problem to show")
    assert f"v{broken}" in problem
    assert server.model()["version"] == v1
    r = server.post({"keys": keys})
    assert r.status_code == 200 and r.json()["model_version"] == v1

    use(world, server, v1, world.store)
    info = server.model()
    assert info["model_problem"] is None and info["online_store"]["problem"] is None


# (c) bad requests -----------------------------------------------------------------------------


def _key(world: World) -> dict[str, str]:
    return world.keys[0]


BAD_REQUESTS = {
    "malformed JSON": (lambda k: b'{"keys": [', 400, "malformed_json", "not valid JSON"),
    "NaN is not JSON": (
        lambda k: b'{"keys": [' + json.dumps(k).encode() + b'], "overrides": {"spend": NaN}}',
        400,
        "malformed_json",
        "NaN",
    ),
    "not UTF-8": (lambda k: b'{"keys": "\xff"}', 400, "malformed_json", "UTF-8"),
    "empty body": (lambda k: b"", 400, "malformed_json", "empty"),
    "body not an object": (
        lambda k: [k],
        422,
        "invalid_body",
        "the body: Expected `object`, got `array`",
    ),
    "missing keys": (
        lambda k: {"overrides": {"spend": 1.0}},
        422,
        "invalid_body",
        "missing required field `keys`",
    ),
    "keys empty": (
        lambda k: {"keys": []},
        422,
        "invalid_body",
        "keys: Expected `array` of length >= 1",
    ),
    "unknown body field": (
        lambda k: {"keys": [k], "key": k},
        422,
        "invalid_body",
        "unknown field `key`",
    ),
    "key not an object": (
        lambda k: {"keys": ["ESPN"]},
        422,
        "invalid_key",
        "keys[0]: Expected `object`",
    ),
    "key lacks a serving-key column": (
        lambda k: {"keys": [{c: v for c, v in k.items() if c != "daypart"}]},
        422,
        "invalid_key",
        "keys[0]: Object missing required field `daypart`",
    ),
    "key with an unknown column": (
        lambda k: {"keys": [k, {**k, "region": "west"}]},
        422,
        "invalid_key",
        "keys[1]: Object contains unknown field `region`",
    ),
    "non-string key value": (
        lambda k: {"keys": [{**k, "network": 7}]},
        422,
        "invalid_key",
        "keys[0].network: Expected `str`, got `int`",
    ),
    "string where a number is expected": (
        lambda k: {"keys": [k], "overrides": {"spend": "5000"}},
        422,
        "invalid_override",
        "overrides.spend: Expected `float`, got `str`",
    ),
    "boolean where a number is expected": (
        lambda k: {"keys": [k], "overrides": {"hour": True}},
        422,
        "invalid_override",
        "overrides.hour: Expected `float`, got `bool`",
    ),
    "override of an unknown column": (
        lambda k: {"keys": [k], "overrides": {"weather": 1.0}},
        422,
        "invalid_override",
        "overrides: Object contains unknown field `weather`; the overridable",
    ),
    "override of a serving key": (
        lambda k: {"keys": [k], "overrides": {"network": "CNN"}},
        422,
        "invalid_override",
        "unknown field `network`; the overridable columns are",
    ),
    "overrides not an object": (
        lambda k: {"keys": [k], "overrides": [1.0]},
        422,
        "invalid_override",
        "overrides: Expected `object | null`, got `array`",
    ),
    "key not in the online store": (
        lambda k: {"keys": [k, {**k, "creative_id": "cr_nowhere"}]},
        404,
        "key_not_found",
        "creative_id='cr_nowhere'",
    ),
    "too many keys": (lambda k: {"keys": [k] * 1001}, 413, "too_many_keys", "limit of 1000"),
    "oversized body": (
        lambda k: b'{"keys": [' + b" " * (1 << 20) + b"]}",
        413,
        "body_too_large",
        "limit is 1048576",
    ),
    "oversized chunked body": (
        lambda k: iter([b'{"keys": ['] + [b" " * 65536] * 17 + [b"]}"]),
        413,
        "body_too_large",
        "exceeds 1048576",
    ),
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_bad_request_gets_its_4xx_and_the_server_keeps_answering(
    world: World, server: Server, case: str
) -> None:
    make, status, error, fragment = BAD_REQUESTS[case]
    body = make(_key(world))
    if isinstance(body, bytes):
        r = server.client.post("/predict", content=body)
    elif isinstance(body, Iterator):
        r = server.client.post("/predict", content=body)
        assert "content-length" not in r.request.headers
    else:
        r = server.post(body)
    assert r.status_code == status, r.text
    answer = r.json()
    assert answer["error"] == error
    assert fragment in answer["detail"], answer["detail"]
    assert answer["request_id"] == r.headers["x-request-id"]
    if error == "key_not_found":
        assert answer["missing"] == [{**_key(world), "creative_id": "cr_nowhere"}]
    assert server.get("/healthz").status_code == 200
    assert server.post({"keys": [_key(world)]}).status_code == 200
    assert server.process.poll() is None


def test_unknown_routes_and_methods_get_json_errors(server: Server) -> None:
    r = server.get("/predict")
    assert r.status_code == 405 and r.json()["error"] == "method_not_allowed"
    r = server.get("/nowhere")
    assert r.status_code == 404 and r.json()["error"] == "not_found"


def test_openapi_documents_the_request_and_every_error(server: Server) -> None:
    document = server.get("/openapi.json").json()
    route = document["paths"]["/predict"]["post"]
    ref = route["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    body = document["components"]["schemas"][ref.rsplit("/", 1)[-1]]
    assert set(body["properties"]) == {"keys", "overrides"} and body["required"] == ["keys"]
    assert {"200", "400", "404", "413", "422", "503"} <= set(route["responses"])
    assert {"/healthz", "/readyz", "/model"} <= set(document["paths"])


# Request log while serving ---------------------------------------------------------------------


def test_request_log_holds_each_answer_with_the_features_used(world: World, server: Server) -> None:
    v1 = world.versions[0]
    use(world, server, v1, world.store)
    key = _key(world)
    ok = server.post({"keys": [key], "overrides": {"spend": 5000.0}})
    missing = server.post({"keys": [{**key, "creative_id": "cr_nowhere"}]})
    assert (ok.status_code, missing.status_code) == (200, 404)
    ids = {ok.headers["x-request-id"], missing.headers["x-request-id"]}
    log_dir = world.settings.request_log_dir
    rows = read_day(log_dir, AS_OF_DAY).filter(pl.col("request_id").is_in(list(ids)))
    assert rows.height == 2, "an answered request is not in the log"
    first, second = rows.sort("status").to_dicts()
    assert first["status"] == 200 and first["error"] is None and first["model_version"] == v1
    assert first["prediction"] == ok.json()["predictions"][0]["prediction"]
    assert json.loads(first["keys"]) == [key]
    features = json.loads(first["features"])[0]
    assert features["spend"] == 5000.0
    assert features["hour"] == world.rows([key])["hour"][0]
    assert first["latency_ms"] > 0 and first["n_keys"] == 1
    assert second["status"] == 404 and second["error"] == "key_not_found"
    assert second["prediction"] is None and second["features"] is None
    assert server.model()["request_log"]["dropped"] == 0


# (d) every answered request is logged, while serving and through a graceful shutdown ----------


def test_log_holds_one_entry_per_answered_request_before_and_after_sigint(
    world: World, tmp_path: Path
) -> None:
    settings = copy_registry(world, tmp_path / "data")
    online_store.publish(world.store, settings.online_store_path)
    keys = world.keys
    good = [json.dumps({"keys": [k]}).encode() for k in keys[:50]]
    bad = json.dumps({"keys": [{**keys[0], "creative_id": "cr_nowhere"}]}).encode()
    days = {AS_OF_DAY}
    with running_server(settings.data_dir, tmp_path / "server.log") as srv:
        wait_until(lambda: srv.get("/readyz").status_code == 200, 60, "the endpoint to be ready")
        with Load(
            srv, lambda n: bad if n % 10 == 9 else good[n % 50], threads=8, total=2000
        ) as load:
            load.join(120)
        answers = load.snapshot()
        # Written before each answer was sent: all there while the server still runs.
        assert count_day(settings.request_log_dir, AS_OF_DAY) == 2000
        log_state = srv.model()["request_log"]
        assert (log_state["written"], log_state["pending"]) == (2000, 0)
        exit_code = srv.stop()
    assert exit_code == 0, srv.output()

    assert len(answers) == 2000
    assert all(a.status is not None for a in answers), [a.failure for a in answers][:3]
    statuses = Counter(a.status for a in answers)
    assert statuses == {200: 1800, 404: 200}
    assert sum(count_day(settings.request_log_dir, d) for d in days) == len(answers)
    logged = pl.concat([read_day(settings.request_log_dir, d) for d in sorted(days)])
    assert sorted(logged["request_id"]) == sorted(a.request_id for a in answers)
    assert Counter(logged["status"].to_list()) == statuses
    assert set(logged["pid"]) == {srv.pid}
    assert logged.filter(pl.col("status") == 200)["model_version"].unique().to_list() == [
        world.versions[0]
    ]
    names = {p.name for p in settings.request_log_dir.iterdir()}
    assert names and names <= {f"requests-{d}-{srv.pid}.jsonl" for d in days}


# (e) readiness ---------------------------------------------------------------------------------


def test_readyz_is_503_without_a_champion_and_names_it(world: World, tmp_path: Path) -> None:
    settings = copy_registry(world, tmp_path / "data")
    move_champion(settings, None)
    key = _key(world)
    with running_server(settings.data_dir, tmp_path / "server.log") as srv:

        def reasons() -> list[str] | None:
            r = srv.get("/readyz")
            assert r.status_code == 503, r.text
            found = r.json()["reasons"]
            return found if not any(x.startswith("loading") for x in found) else None

        found = wait_until(reasons, 60, "the first registry and store checks")
        assert any(f"has no alias '{CHAMPION_ALIAS}'" in x for x in found), found
        assert any("online store file" in x and "does not exist" in x for x in found), found
        r = srv.post({"keys": [key]})
        assert r.status_code == 503 and r.json()["error"] == "no_champion"
        assert CHAMPION_ALIAS in r.json()["detail"]

        online_store.publish(world.store, settings.online_store_path)
        wait_until(lambda: len(srv.get("/readyz").json()["reasons"]) == 1, 30, "store loaded")
        r = srv.get("/readyz")
        assert r.status_code == 503 and "no champion" in r.json()["detail"]

        move_champion(settings, world.versions[1])
        wait_until(lambda: srv.get("/readyz").status_code == 200, 30, "the champion to load")
        r = srv.post({"keys": [key]})
        assert r.status_code == 200 and r.json()["model_version"] == world.versions[1]
        info = srv.model()
        assert info["candidate"] == "lgbm_large" and info["online_store"]["rows"] == len(world.keys)

        move_champion(settings, None)
        wait_until(lambda: srv.get("/readyz").status_code == 503, 30, "the champion to be dropped")
        assert srv.post({"keys": [key]}).status_code == 503
