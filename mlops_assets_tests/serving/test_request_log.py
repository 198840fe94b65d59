"""The request log on its own, under a temporary folder: entries reach the disk by the background
timer, by batch size and on close, in one file per UTC day and process; ``read_day`` flattens
them into typed columns and ``count_day`` agrees with it; a torn final line is skipped, a corrupt
line in the middle raises naming file and line; a failing disk keeps entries up to a cap."""

from __future__ import annotations

import json
from datetime import date, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from mlops_assets.storage.request_log import (
    SCHEMA,
    RequestLog,
    RequestLogError,
    count_day,
    file_name,
    read_day,
)
from mlops_assets_tests.serving.harness import wait_until

DAY = date(2025, 3, 15)


def entry(n: int, ts: str = "2025-03-15T10:00:00.000000+00:00", **fields: Any) -> dict[str, Any]:
    """A /predict entry as the endpoint writes it (200, one key, one prediction)."""
    return {
        "ts": ts,
        "request_id": f"r{n:04d}",
        "status": 200,
        "error": None,
        "keys": [{"network": "ESPN", "daypart": "prime", "creative_id": f"cr_{n}"}],
        "overrides": None,
        "features": [{"spend": 100.0 + n, "hour": 20.0}],
        "predictions": [float(n)],
        "model_version": "3",
        "latency_ms": 0.25,
        **fields,
    }


def test_background_timer_writes_batches_without_a_close(tmp_path: Path) -> None:
    log = RequestLog(tmp_path, flush_seconds=0.05, pid=11).start()
    try:
        for n in range(5):
            log.append(entry(n))
        wait_until(lambda: count_day(tmp_path, DAY) == 5, 10, "the timer flush")
        assert log.written == 5 and log.pending == 0
    finally:
        log.close()
    assert [p.name for p in tmp_path.iterdir()] == [file_name(DAY, 11)]


def test_a_full_batch_is_written_before_the_timer(tmp_path: Path) -> None:
    with RequestLog(tmp_path, flush_seconds=600, flush_entries=10, pid=12) as log:
        for n in range(10):
            log.append(entry(n))
        wait_until(lambda: count_day(tmp_path, DAY) == 10, 10, "the batch-size flush")
        for n in range(10, 13):
            log.append(entry(n))
        assert log.pending == 3
    assert count_day(tmp_path, DAY) == 13


def test_close_writes_what_is_left(tmp_path: Path) -> None:
    log = RequestLog(tmp_path, flush_seconds=600, flush_entries=1000, pid=13).start()
    for n in range(7):
        log.append(entry(n))
    assert count_day(tmp_path, DAY) == 0
    log.close()
    assert count_day(tmp_path, DAY) == 7 and log.written == 7
    log.close()
    assert count_day(tmp_path, DAY) == 7


def test_entries_go_to_the_file_of_their_utc_day_and_process(tmp_path: Path) -> None:
    with RequestLog(tmp_path, pid=21) as first, RequestLog(tmp_path, pid=22) as second:
        first.append(entry(1, ts="2025-03-14T23:59:59.999999+00:00"))
        first.append(entry(2, ts="2025-03-15T00:00:00.000001+00:00"))
        second.append(entry(3, ts="2025-03-15T08:00:00.000000+00:00"))
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [
        "requests-2025-03-14-21.jsonl",
        "requests-2025-03-15-21.jsonl",
        "requests-2025-03-15-22.jsonl",
    ]
    assert count_day(tmp_path, date(2025, 3, 14)) == 1
    frame = read_day(tmp_path, DAY)
    assert frame["request_id"].to_list() == ["r0002", "r0003"]
    assert frame["pid"].to_list() == [21, 22]


def test_read_day_flattens_one_row_per_request(tmp_path: Path) -> None:
    two_keys = entry(
        1,
        ts="2025-03-15T10:00:01.500000+00:00",
        keys=[{"network": "CNN"}, {"network": "FOX"}],
        predictions=[1.5, 2.5],
        overrides={"spend": 5000.0},
    )
    refused = entry(
        2,
        ts="2025-03-15T09:00:00.000000+00:00",
        status=404,
        error="key_not_found",
        features=None,
        predictions=None,
        model_version="3",
    )
    malformed = entry(
        3,
        ts="2025-03-15T11:00:00.000000+00:00",
        status=400,
        error="malformed_json",
        keys=None,
        features=None,
        predictions=None,
    )
    with RequestLog(tmp_path, pid=5) as log:
        for e in (two_keys, refused, malformed):
            log.append(e)
    frame = read_day(tmp_path, DAY)
    assert frame.schema == pl.Schema(SCHEMA)
    assert frame["request_id"].to_list() == ["r0002", "r0001", "r0003"]
    first = frame.row(1, named=True)
    assert first["ts"] == datetime(2025, 3, 15, 10, 0, 1, 500000)
    assert first["day"] == DAY
    assert (first["status"], first["n_keys"], first["prediction"]) == (200, 2, 1.5)
    assert first["predictions"] == [1.5, 2.5]
    assert json.loads(first["keys"]) == [{"network": "CNN"}, {"network": "FOX"}]
    assert json.loads(first["overrides"]) == {"spend": 5000.0}
    assert json.loads(first["features"]) == [{"spend": 101.0, "hour": 20.0}]
    assert (first["model_version"], first["latency_ms"], first["pid"]) == ("3", 0.25, 5)
    refused_row, malformed_row = frame.row(0, named=True), frame.row(2, named=True)
    assert (refused_row["status"], refused_row["error"]) == (404, "key_not_found")
    assert refused_row["prediction"] is None and refused_row["n_keys"] == 1
    assert (malformed_row["n_keys"], malformed_row["keys"]) == (0, None)


def test_an_empty_day_has_the_columns_and_no_rows(tmp_path: Path) -> None:
    frame = read_day(tmp_path / "never_written", DAY)
    assert frame.height == 0 and frame.schema == pl.Schema(SCHEMA)
    assert count_day(tmp_path / "never_written", DAY) == 0


def test_a_torn_last_line_is_skipped_and_a_corrupt_middle_line_raises(tmp_path: Path) -> None:
    with RequestLog(tmp_path, pid=7) as log:
        for n in range(3):
            log.append(entry(n))
    path = tmp_path / file_name(DAY, 7)
    with open(path, "a") as fh:
        fh.write('{"ts": "2025-03-15T10:00:00+00:00", "request_id": "torn", "sta')
    assert count_day(tmp_path, DAY) == 3
    assert read_day(tmp_path, DAY)["request_id"].to_list() == ["r0000", "r0001", "r0002"]

    lines = path.read_text().splitlines(keepends=True)
    path.write_text(lines[0] + "not json\n" + lines[1])
    with pytest.raises(RequestLogError, match=rf"{path.name}:2 is not a request log entry"):
        read_day(tmp_path, DAY)


def test_a_failing_disk_keeps_entries_up_to_the_cap(tmp_path: Path) -> None:
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("a file where the log folder should be")
    log = RequestLog(blocker / "logs", flush_seconds=600, flush_entries=2, max_pending=3, pid=9)
    for n in range(5):
        log.append(entry(n))
    assert log.flush() == 0
    assert (log.pending, log.dropped, log.written) == (3, 2, 0)
    log.close()
    assert log.pending == 3


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="flush_seconds > 0"):
        RequestLog("unused", flush_seconds=0)
    with pytest.raises(ValueError, match="max_pending >= flush_entries"):
        RequestLog("unused", flush_entries=10, max_pending=5)
