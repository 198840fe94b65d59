"""The request log on its own, under a temporary folder: each entry is in its file when
``append`` returns (also after the writing process is SIGKILLed), in one file per UTC day and
process; ``read_day`` flattens them into typed columns and ``count_day`` agrees with it; a torn
final line is skipped, a corrupt line in the middle raises naming file and line; an oversized
entry is capped with markers and still counts; a failing disk keeps lines up to a cap and writes
them, in order, once it accepts writes again, completing a line a short write tore."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
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
from mlops_assets_tests.helpers import clean_env

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


def test_each_entry_is_on_disk_when_append_returns(tmp_path: Path) -> None:
    log = RequestLog(tmp_path, pid=11)
    for n in range(5):
        log.append(entry(n))
        assert count_day(tmp_path, DAY) == n + 1
        assert read_day(tmp_path, DAY)["request_id"].to_list()[-1] == f"r{n:04d}"
    assert (log.written, log.pending) == (5, 0)
    log.close()
    assert [p.name for p in tmp_path.iterdir()] == [file_name(DAY, 11)]


def test_entries_survive_a_killed_process_without_a_close(tmp_path: Path) -> None:
    """A child process appends and is SIGKILLed before it could close anything."""
    code = (
        "import os, signal, sys\n"
        "from mlops_assets.storage.request_log import RequestLog\n"
        "log = RequestLog(sys.argv[1], pid=31)\n"
        "for n in range(200):\n"
        "    log.append({'ts': 1742032800.0 + n, 'request_id': f'k{n}', 'status': 200})\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], env=clean_env(), timeout=120)
    assert done.returncode == -signal.SIGKILL
    frame = read_day(tmp_path, DAY)
    assert frame["request_id"].to_list() == [f"k{n}" for n in range(200)]
    assert frame["ts"][0] == datetime(2025, 3, 15, 10, 0)


def test_close_is_idempotent_and_append_reopens(tmp_path: Path) -> None:
    log = RequestLog(tmp_path, pid=13)
    for n in range(7):
        log.append(entry(n))
    log.close()
    log.close()
    log.append(entry(7))
    assert count_day(tmp_path, DAY) == 8 and log.written == 8
    log.close()


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


def test_a_failing_disk_keeps_lines_up_to_the_cap_and_writes_them_when_it_recovers(
    tmp_path: Path,
) -> None:
    blocker = tmp_path / "logs"
    blocker.write_text("a file where the log folder should be")
    log = RequestLog(blocker, max_pending=3, pid=9)
    for n in range(5):
        log.append(entry(n))
    assert (log.pending, log.dropped, log.written) == (3, 2, 0)
    assert log.flush() == 0
    blocker.unlink()
    assert log.flush() == 3
    log.append(entry(5))
    assert (log.pending, log.dropped, log.written) == (0, 2, 4)
    assert read_day(blocker, DAY)["request_id"].to_list() == ["r0002", "r0003", "r0004", "r0005"]
    log.close()


def test_a_short_write_is_completed_not_repeated(tmp_path: Path) -> None:
    """A child process whose file size limit (RLIMIT_FSIZE) stops a write halfway through a
    line, then lifts the limit: the torn line is completed and the file reads back whole."""
    code = (
        "import resource, signal, sys\n"
        "from mlops_assets.storage.request_log import RequestLog\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]\n"
        "log = RequestLog(sys.argv[1], pid=41)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (1000, hard))\n"
        "for n in range(12):\n"
        "    log.append({'ts': 1742032800.0 + n, 'request_id': f's{n:02d}', 'status': 200,\n"
        "                'features': [{'spend': 1.0 * n}] * 4})\n"
        "print(log.written, log.pending)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))\n"
        "log.append({'ts': 1742032900.0, 'request_id': 's12', 'status': 200})\n"
        "print(log.written, log.pending)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    limited, lifted = (tuple(map(int, line.split())) for line in done.stdout.splitlines())
    assert limited[0] < 12 and limited[1] == 12 - limited[0]
    assert lifted == (13, 0)
    path = tmp_path / file_name(DAY, 41)
    assert all(json.loads(line) for line in path.read_text().splitlines())
    assert read_day(tmp_path, DAY)["request_id"].to_list() == [f"s{n:02d}" for n in range(13)]


def test_pending_lines_go_out_before_the_next_entry(tmp_path: Path) -> None:
    blocker = tmp_path / "logs"
    blocker.write_text("not a folder")
    log = RequestLog(blocker, pid=8)
    log.append(entry(0))
    blocker.unlink()
    log.append(entry(1))
    assert read_day(blocker, DAY)["request_id"].to_list() == ["r0000", "r0001"]
    assert (log.pending, log.written) == (0, 2)
    log.close()


def big_entry(n_keys: int) -> dict[str, Any]:
    keys = [
        {"network": "ESPN", "daypart": "prime", "creative_id": f"cr_{i}"} for i in range(n_keys)
    ]
    features = [{"spend": 100.0 + i, "hour": 20.0, "audience_k": 51.5} for i in range(n_keys)]
    return entry(1, keys=keys, features=features, predictions=[float(i) for i in range(n_keys)])


def test_an_oversized_entry_is_capped_with_markers_and_still_counts(tmp_path: Path) -> None:
    log = RequestLog(tmp_path, max_entry_bytes=4096, pid=4)
    log.append(big_entry(100))
    log.append(entry(2))
    log.close()
    lines = (tmp_path / file_name(DAY, 4)).read_bytes().splitlines(keepends=True)
    assert len(lines[0]) <= 4096 and log.capped == 1
    raw = json.loads(lines[0])
    assert raw["capped"]["limit"] == 4096 and raw["capped"]["bytes"] > 4096
    assert raw["features"] == {
        "omitted": {"bytes": raw["features"]["omitted"]["bytes"], "items": 100}
    }
    assert raw["features"]["omitted"]["bytes"] > 4096
    # Features went first; the keys went too, since the line still did not fit; the
    # predictions (100 short numbers) stayed.
    assert raw["keys"]["omitted"]["items"] == 100
    assert raw["predictions"] == [float(i) for i in range(100)]
    assert (raw["request_id"], raw["status"], raw["latency_ms"]) == ("r0001", 200, 0.25)
    assert "capped" not in json.loads(lines[1])

    frame = read_day(tmp_path, DAY)
    capped = frame.row(0, named=True)
    assert capped["n_keys"] == 100 and capped["prediction"] == 0.0
    assert json.loads(capped["features"])["omitted"]["items"] == 100
    assert frame.row(1, named=True)["n_keys"] == 1


def test_a_cap_below_the_predictions_omits_them_too(tmp_path: Path) -> None:
    log = RequestLog(tmp_path, max_entry_bytes=1024, pid=6)
    log.append(big_entry(1000))
    log.close()
    line = (tmp_path / file_name(DAY, 6)).read_bytes()
    assert len(line) <= 1024
    assert json.loads(line)["predictions"]["omitted"]["items"] == 1000
    row = read_day(tmp_path, DAY).row(0, named=True)
    assert (row["n_keys"], row["prediction"], row["predictions"]) == (1000, None, None)


def test_an_entry_within_the_cap_is_untouched(tmp_path: Path) -> None:
    log = RequestLog(tmp_path, max_entry_bytes=1 << 20, pid=3)
    log.append(big_entry(100))
    log.close()
    raw = json.loads((tmp_path / file_name(DAY, 3)).read_bytes())
    assert "capped" not in raw and len(raw["features"]) == 100 and log.capped == 0


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="max_log_entry_bytes\\) must be >= 1024"):
        RequestLog("unused", max_entry_bytes=100)
    with pytest.raises(ValueError, match="max_pending >= 1"):
        RequestLog("unused", max_pending=0)
