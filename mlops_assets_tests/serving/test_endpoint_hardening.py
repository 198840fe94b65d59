"""The endpoint against what kills, stalls or floods it, as it runs: ``python -m
mlops_assets.serving`` as a subprocess on 127.0.0.1 against a real registry and online store,
spoken to over real sockets.

Covers: every answered request is in the request log even when the server is SIGKILLed the
moment the last answer arrives; with MLOPS_AS_OF set the log's entries fall on the as-of day,
with times running on from the as-of instant (and on the wall clock's day without it); a body
that is not JSON gets 415 naming the Content-Type and the fix; an idle connection is closed
after ``keep_alive_seconds``, after its last answer and before any request alike; a request
whose body or headers do not arrive within ``read_timeout_seconds`` gets 408 and its connection
is closed, even while it trickles in; an oversized request is answered and logged capped.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from mlops_assets.storage import online_store
from mlops_assets.storage.request_log import count_day, file_name, read_day
from mlops_assets_tests.helpers import FIXED_AS_OF
from mlops_assets_tests.serving.harness import (
    Load,
    Server,
    World,
    copy_registry,
    http_request,
    parse_response,
    raw_connection,
    read_until_eof,
    running_server,
    wait_until,
)

AS_OF_DAY = date.fromisoformat(FIXED_AS_OF[:10])
KEEP_ALIVE_S = 1.0
READ_TIMEOUT_S = 1.0
MAX_LOG_ENTRY_BYTES = 4096
# How much later than its timeout the server may close a connection on a busy machine.
SLACK_S = 4.0


@pytest.fixture(scope="module")
def tight(world: World, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """An endpoint with short timers and a small log cap, on its own data folder."""
    settings = copy_registry(world, tmp_path_factory.mktemp("tight") / "data")
    online_store.publish(world.store, settings.online_store_path)
    args = (
        "--keep-alive-seconds",
        str(KEEP_ALIVE_S),
        "--read-timeout-seconds",
        str(READ_TIMEOUT_S),
        "--max-log-entry-bytes",
        str(MAX_LOG_ENTRY_BYTES),
    )
    log = settings.data_dir.parent / "server.log"
    with running_server(settings.data_dir, log, *args) as srv:
        wait_until(lambda: srv.get("/readyz").status_code == 200, 60, "the endpoint to be ready")
        yield srv


def log_dir(server: Server) -> Path:
    return Path(server.model()["request_log"]["dir"])


def logged(server: Server, request_id: str, day: date = AS_OF_DAY) -> dict:
    rows = read_day(log_dir(server), day).filter(pl.col("request_id") == request_id)
    assert rows.height == 1, f"request {request_id} is not in the log of {day}"
    return rows.row(0, named=True)


def body_of(world: World, n_keys: int = 1) -> bytes:
    return json.dumps({"keys": world.keys[:n_keys]}).encode()


# Durability -----------------------------------------------------------------------------------


def test_every_answered_request_is_logged_when_the_server_is_sigkilled(
    world: World, tmp_path: Path
) -> None:
    settings = copy_registry(world, tmp_path / "data")
    online_store.publish(world.store, settings.online_store_path)
    bodies = [json.dumps({"keys": [k]}).encode() for k in world.keys[:20]]
    total = 300
    with running_server(settings.data_dir, tmp_path / "server.log") as srv:
        wait_until(lambda: srv.get("/readyz").status_code == 200, 60, "the endpoint to be ready")
        with Load(srv, lambda n: bodies[n % len(bodies)], threads=6, total=total) as load:
            load.join(120)
            os.kill(srv.pid, signal.SIGKILL)
        assert srv.process.wait(30) == -signal.SIGKILL
    answers = load.snapshot()
    assert len(answers) == total and all(a.status == 200 for a in answers), answers[:3]
    log = settings.request_log_dir
    assert count_day(log, AS_OF_DAY) == total
    frame = read_day(log, AS_OF_DAY)
    assert sorted(frame["request_id"]) == sorted(a.request_id for a in answers)
    by_id = {a.request_id: a.body["predictions"][0]["prediction"] for a in answers}
    assert all(by_id[r] == p for r, p in zip(frame["request_id"], frame["prediction"], strict=True))
    assert [p.name for p in log.iterdir()] == [file_name(AS_OF_DAY, srv.pid)]


# The serving clock ----------------------------------------------------------------------------


def test_with_as_of_the_log_entries_fall_on_the_as_of_day(world: World, tmp_path: Path) -> None:
    settings = copy_registry(world, tmp_path / "data")
    online_store.publish(world.store, settings.online_store_path)
    past = date(2024, 11, 5)
    log = settings.request_log_dir
    with running_server(settings.data_dir, tmp_path / "server.log", as_of=past.isoformat()) as srv:
        wait_until(lambda: srv.get("/readyz").status_code == 200, 60, "the endpoint to be ready")
        ids = [srv.post(json.loads(body_of(world))).headers["x-request-id"] for _ in range(5)]
        clock = srv.model()["clock"]
    today = datetime.now(UTC).date()
    frame = read_day(log, past)
    assert frame["request_id"].to_list() == ids
    midnight = datetime(past.year, past.month, past.day)
    # The clock runs on from the as-of instant: in order, within the minutes the test took.
    assert frame["ts"].is_sorted() and frame["ts"].n_unique() == 5
    assert midnight <= frame["ts"].min() and frame["ts"].max() < midnight + timedelta(hours=1)
    assert clock["as_of"] == "2024-11-05T00:00:00" and clock["now"].startswith("2024-11-05T00:")
    assert count_day(log, today) == 0 and read_day(log, today).height == 0
    assert {p.name for p in log.iterdir()} == {file_name(past, srv.pid)}


def test_without_as_of_the_log_entries_fall_on_the_wall_clock_day(
    world: World, tmp_path: Path
) -> None:
    settings = copy_registry(world, tmp_path / "data")
    online_store.publish(world.store, settings.online_store_path)
    log = settings.request_log_dir
    before = datetime.now(UTC).replace(tzinfo=None)
    with running_server(settings.data_dir, tmp_path / "server.log", as_of=None) as srv:
        wait_until(lambda: srv.get("/readyz").status_code == 200, 60, "the endpoint to be ready")
        request_id = srv.post(json.loads(body_of(world))).headers["x-request-id"]
        assert srv.model()["clock"]["as_of"] is None
    after = datetime.now(UTC).replace(tzinfo=None)
    days = sorted({before.date(), after.date()})
    frame = pl.concat([read_day(log, d) for d in days])
    assert frame["request_id"].to_list() == [request_id]
    assert before <= frame["ts"][0] <= after
    assert read_day(log, AS_OF_DAY).height == 0


# 415 ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "text/plain; charset=utf-8", "application/x-www-form-urlencoded", "text/json"],
)
def test_a_body_that_is_not_json_gets_415_naming_the_fix(
    world: World, tight: Server, content_type: str
) -> None:
    r = tight.client.post(
        "/predict", content=body_of(world), headers={"content-type": content_type}
    )
    assert r.status_code == 415, r.text
    answer = r.json()
    assert answer["error"] == "unsupported_media_type"
    assert repr(content_type) in answer["detail"]
    assert "Content-Type: application/json" in answer["detail"]
    row = logged(tight, r.headers["x-request-id"])
    assert (row["status"], row["error"]) == (415, "unsupported_media_type")
    # The same connection goes on serving: the unread body did not corrupt it.
    assert tight.post(json.loads(body_of(world))).status_code == 200


@pytest.mark.parametrize(
    "content_type", ["application/json", "application/json; charset=utf-8", "APPLICATION/JSON"]
)
def test_json_content_types_are_served(world: World, tight: Server, content_type: str) -> None:
    r = tight.client.post(
        "/predict", content=body_of(world), headers={"content-type": content_type}
    )
    assert r.status_code == 200, r.text


# Idle and slow connections --------------------------------------------------------------------


def test_an_idle_kept_alive_connection_is_closed_after_the_timeout(
    world: World, tight: Server
) -> None:
    with raw_connection(tight) as sock:
        sock.sendall(http_request(body_of(world)))
        first = b""
        while b"\r\n\r\n" not in first:
            first += sock.recv(65536)
        status, headers, body = parse_response(first)
        while len(body) < int(headers["content-length"]):
            body += sock.recv(65536)
        assert status == 200 and headers.get("connection") != "close"
        rest, idle = read_until_eof(sock, KEEP_ALIVE_S + SLACK_S)
    assert rest == b""
    assert idle >= KEEP_ALIVE_S * 0.9, f"closed after {idle:.2f} s, before the timeout"


def test_a_connection_that_never_sends_a_request_is_closed(tight: Server) -> None:
    with raw_connection(tight) as sock:
        data, idle = read_until_eof(sock, KEEP_ALIVE_S + SLACK_S)
    assert data == b""
    assert idle >= KEEP_ALIVE_S * 0.9, f"closed after {idle:.2f} s, before the timeout"


def test_a_body_that_stops_arriving_gets_408_and_is_closed(world: World, tight: Server) -> None:
    body = body_of(world)
    with raw_connection(tight) as sock:
        sock.sendall(http_request(body[:10], length=len(body)))
        data, waited = read_until_eof(sock, READ_TIMEOUT_S + SLACK_S)
    status, headers, answer = parse_response(data)
    assert status == 408 and headers["connection"] == "close"
    error = json.loads(answer)
    assert error["error"] == "request_timeout"
    assert f"10 of {len(body)} bytes received" in error["detail"]
    assert "read_timeout_seconds" in error["detail"]
    assert waited >= READ_TIMEOUT_S * 0.9
    row = logged(tight, headers["x-request-id"])
    assert (row["status"], row["error"]) == (408, "request_timeout")


def test_a_trickling_body_is_cut_at_the_read_timeout(world: World, tight: Server) -> None:
    """One more byte whenever the server has said nothing for 0.2 s: progress does not extend
    the deadline."""
    body = body_of(world) + b" " * 200
    started = time.monotonic()
    with raw_connection(tight) as sock:
        sock.sendall(http_request(b"", length=len(body)))
        sent, data = 0, b""
        deadline = started + READ_TIMEOUT_S + SLACK_S
        while time.monotonic() < deadline:
            sock.settimeout(0.2)
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                sock.sendall(body[sent : sent + 1])
                sent += 1
                continue
            if not chunk:
                break
            data += chunk
        closed_after = time.monotonic() - started
    assert data, "the server neither answered nor closed the connection"
    assert parse_response(data)[0] == 408
    assert sent < len(body) and closed_after < READ_TIMEOUT_S + SLACK_S


def test_headers_that_stop_arriving_get_408_and_are_closed(tight: Server) -> None:
    with raw_connection(tight) as sock:
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Ty")
        data, waited = read_until_eof(sock, READ_TIMEOUT_S + SLACK_S)
    status, headers, answer = parse_response(data)
    assert status == 408 and headers["connection"] == "close"
    assert json.loads(answer)["error"] == "request_timeout"
    assert waited >= READ_TIMEOUT_S * 0.9


# The log cap ----------------------------------------------------------------------------------


def test_an_oversized_request_is_answered_and_logged_capped(world: World, tight: Server) -> None:
    n = 100
    r = tight.post({"keys": world.keys[:n]})
    assert r.status_code == 200 and len(r.json()["predictions"]) == n
    request_id = r.headers["x-request-id"]
    path = log_dir(tight) / file_name(AS_OF_DAY, tight.pid)
    line = next(x for x in path.read_bytes().splitlines() if request_id.encode() in x)
    assert len(line) + 1 <= MAX_LOG_ENTRY_BYTES
    raw = json.loads(line)
    assert raw["capped"]["limit"] == MAX_LOG_ENTRY_BYTES
    assert raw["capped"]["bytes"] > MAX_LOG_ENTRY_BYTES
    # The features went first, then the keys (the line still did not fit); the predictions of
    # 100 keys fit and stayed.
    assert raw["features"]["omitted"]["items"] == n and raw["keys"]["omitted"]["items"] == n
    assert raw["predictions"] == [p["prediction"] for p in r.json()["predictions"]]
    row = logged(tight, request_id)
    assert row["n_keys"] == n and row["status"] == 200
    assert row["prediction"] == r.json()["predictions"][0]["prediction"]
    assert tight.model()["request_log"]["capped"] >= 1
    small = tight.post({"keys": world.keys[:1]})
    assert json.loads(logged(tight, small.headers["x-request-id"])["features"])[0]
