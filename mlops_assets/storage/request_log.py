"""The online endpoint's request log: one JSON line per answered request, in files of its own.

The endpoint calls :meth:`RequestLog.append` on the request path, before the answer is sent:
the entry is encoded and written with one ``os.write`` to a file opened with ``O_APPEND``. Once
that call returns the line is in the kernel's page cache, so it survives the endpoint process
being killed (SIGKILL, an out-of-memory kill) the moment the answer leaves; only a crash of the
machine itself (power loss, kernel panic) can lose the last lines the kernel had not written to
the disk yet (nothing here calls ``fsync``). Each process writes its own files, one per UTC day
of the entries' timestamps::

    <log_dir>/requests-YYYY-MM-DD-<pid>.jsonl

so two endpoint processes never interleave lines, and the warehouse is never touched: the daily
``serving_log`` asset reads a day with :func:`read_day`.

An entry (the endpoint fills it; the reader relies on these fields)::

    {"ts": "2025-03-15T06:00:00.123456+00:00",   # UTC, when the request arrived
     "request_id": "9f...", "status": 200, "error": null,   # error: the 4xx/5xx code
     "keys": [{"network": "ESPN", ...}], "overrides": {"spend": 5000.0},
     "features": [{...every model feature after overrides...}],
     "predictions": [812.4], "model_version": "7", "predictor": "compiled",
     "latency_ms": 0.41, "pid": 1234}

An entry whose line would exceed ``max_entry_bytes`` is capped: ``features``, ``overrides``,
``keys`` and then ``predictions`` are replaced, in that order and only as far as needed, by a
marker ``{"omitted": {"bytes": <its JSON size>, "items": <its length>}}``, and the entry gets
``"capped": {"limit": <max_entry_bytes>, "bytes": <the full line's size>}``. Every other field
stays, so the request still counts (``read_day`` takes ``n_keys`` from the marker).

When the disk refuses a write (full, read-only), the line is kept in memory (at most
``max_pending`` lines; beyond that the oldest are dropped and counted in ``dropped``) and
written before the next entry, or by :meth:`RequestLog.flush` (after a short write, only the
rest of the torn line, which completes it). The answer is still sent: the endpoint keeps
serving rather than fail requests on a logging problem, and ``/model`` shows ``pending`` and
``dropped``.

A crash can leave the last line of a file torn (no newline): readers skip such a final line and
count only complete lines. A torn line anywhere else is corruption and raises.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import polars as pl

PREFIX = "requests-"
SUFFIX = ".jsonl"
DEFAULT_MAX_ENTRY_BYTES = 64 * 1024
# The smallest cap: an entry without its bulky fields always fits.
MIN_ENTRY_BYTES = 1024
# Lines kept while the disk refuses writes; beyond this the oldest are dropped and counted.
DEFAULT_MAX_PENDING = 100_000
# Fields a capped entry gives up, first to last.
BULKY_FIELDS = ("features", "overrides", "keys", "predictions")
# Pending lines written per retry, so that a request meeting a recovered disk waits for a chunk.
RETRY_CHUNK = 1000
_OPEN_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)

SCHEMA: dict[str, pl.DataType] = {
    "day": pl.Date(),
    "ts": pl.Datetime("us"),
    "request_id": pl.String(),
    "status": pl.Int64(),
    "error": pl.String(),
    "model_version": pl.String(),
    "predictor": pl.String(),
    "latency_ms": pl.Float64(),
    "n_keys": pl.Int64(),
    "prediction": pl.Float64(),
    "predictions": pl.List(pl.Float64()),
    "keys": pl.String(),
    "overrides": pl.String(),
    "features": pl.String(),
    "pid": pl.Int64(),
}

logger = logging.getLogger(__name__)


class RequestLogError(ValueError):
    """A log file holds a line that is not a JSON entry; the message names file and line."""


def iso_utc(seconds: float) -> str:
    """``time.time()`` seconds as the ISO string of an entry's ``ts``."""
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="microseconds")


def file_name(day: date | str, pid: int) -> str:
    return f"{PREFIX}{day}-{pid}{SUFFIX}"


def day_files(log_dir: str | Path, day: date | str) -> list[Path]:
    """The log files of ``day`` (one per process that answered requests that day), sorted."""
    return sorted(Path(log_dir).glob(f"{PREFIX}{day}-*{SUFFIX}"))


def _encode(entry: Mapping[str, Any]) -> bytes:
    return (json.dumps(entry, separators=(",", ":"), default=str) + "\n").encode()


def _size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":"), default=str).encode())


def cap_entry(entry: Mapping[str, Any], line: bytes, limit: int) -> bytes:
    """The line of ``entry`` within ``limit`` bytes: its bulky fields replaced by markers, in
    the order of ``BULKY_FIELDS``, until it fits (see the module docstring)."""
    capped = {**entry, "capped": {"limit": limit, "bytes": len(line)}}
    for name in BULKY_FIELDS:
        value = capped.get(name)
        if value is None:
            continue
        items = len(value) if isinstance(value, list | dict) else None
        capped[name] = {"omitted": {"bytes": _size(value), "items": items}}
        line = _encode(capped)
        if len(line) <= limit:
            break
    return line


class _Unwritten(OSError):
    """A write that failed after ``done`` bytes of its data reached the file."""

    def __init__(self, done: int, error: OSError):
        super().__init__(error.errno, error.strerror)
        self.done = done
        self.error = error


class RequestLog:
    """Append-only writer of request entries for one process: each :meth:`append` writes its
    line before it returns (see the module docstring). Safe to call from any thread. Use as a
    context manager, or call :meth:`close` at the end."""

    def __init__(
        self,
        log_dir: str | Path,
        max_entry_bytes: int = DEFAULT_MAX_ENTRY_BYTES,
        max_pending: int = DEFAULT_MAX_PENDING,
        pid: int | None = None,
    ):
        if max_entry_bytes < MIN_ENTRY_BYTES or max_pending < 1:
            raise ValueError(
                f"the request log's max_entry_bytes (serving option max_log_entry_bytes) must be "
                f">= {MIN_ENTRY_BYTES}, so that an entry without its keys and features fits, and "
                f"max_pending >= 1 (got {max_entry_bytes}, {max_pending})"
            )
        self.log_dir = Path(log_dir)
        self.max_entry_bytes = max_entry_bytes
        self.max_pending = max_pending
        self.pid = os.getpid() if pid is None else pid
        self.written = 0
        self.dropped = 0
        self.capped = 0
        self._pending: list[tuple[str, bytes]] = []
        self._fds: dict[str, int] = {}
        self._lock = threading.Lock()
        self._failing = False

    @property
    def pending(self) -> int:
        """Lines the disk refused so far, waiting to be written."""
        return len(self._pending)

    def append(self, entry: Mapping[str, Any]) -> None:
        """Write one entry (with at least ``ts``: an ISO string, or ``time.time()`` seconds) as
        one line of its day's file, before returning. A disk error keeps the line pending."""
        ts = entry["ts"]
        if isinstance(ts, float):
            ts = iso_utc(ts)
        full = {**entry, "ts": ts, "pid": self.pid}
        line = _encode(full)
        if len(line) > self.max_entry_bytes:
            line = cap_entry(full, line, self.max_entry_bytes)
            self.capped += 1
        day = ts[:10]
        with self._lock:
            if self._pending:
                self._retry()
            if self._pending:
                self._keep(day, line)
                return
            try:
                self._write(day, line)
            except OSError as exc:
                self._failed(exc)
                # After a short write only the rest of the line waits: written later, it
                # completes the torn line instead of repeating its start.
                self._keep(day, line[exc.done :] if isinstance(exc, _Unwritten) else line)
                return
            self.written += 1

    def flush(self) -> int:
        """Write the lines the disk refused before; return how many were written now."""
        with self._lock:
            before = self.written
            while self._pending and self._retry():
                pass
            return self.written - before

    def close(self) -> None:
        """Write what is pending and close the files (idempotent; ``append`` reopens)."""
        self.flush()
        with self._lock:
            for fd in self._fds.values():
                os.close(fd)
            self._fds.clear()

    def __enter__(self) -> RequestLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _fd(self, day: str) -> int:
        fd = self._fds.get(day)
        if fd is None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.log_dir / file_name(day, self.pid), _OPEN_FLAGS, 0o644)
            # Requests move to a new day; the files of older days are done.
            for old in [d for d in self._fds if d < day]:
                os.close(self._fds.pop(old))
            self._fds[day] = fd
        return fd

    def _write(self, day: str, data: bytes) -> None:
        """Append ``data`` to the day's file; _Unwritten (how much went) if a write fails after
        the file was open, OSError if it cannot be opened."""
        fd = self._fd(day)
        view = memoryview(data)
        done = 0
        try:
            while done < len(data):
                done += os.write(fd, view[done:])
        except OSError as exc:
            raise _Unwritten(done, exc) from exc

    def _retry(self) -> bool:
        """Write the oldest chunk of pending lines (same day, in order); whether it worked."""
        day = self._pending[0][0]
        lines: list[bytes] = []
        for d, line in self._pending[:RETRY_CHUNK]:
            if d != day:
                break
            lines.append(line)
        count = len(lines)
        try:
            self._write(day, b"".join(lines))
        except OSError as exc:
            self._failed(exc)
            if isinstance(exc, _Unwritten) and exc.done:
                self._written_part(exc.done)
            return False
        del self._pending[:count]
        self.written += count
        if not self._pending and self._failing:
            self._failing = False
            logger.warning("request log: %s accepts writes again", self.log_dir)
        return True

    def _written_part(self, done: int) -> None:
        """Forget the first ``done`` bytes of the pending lines, which reached the file."""
        complete = 0
        for _, line in self._pending:
            if done < len(line):
                break
            done -= len(line)
            complete += 1
        del self._pending[:complete]
        self.written += complete
        if done:
            day, line = self._pending[0]
            self._pending[0] = (day, line[done:])

    def _failed(self, exc: OSError) -> None:
        if not self._failing:
            self._failing = True
            logger.error(
                "request log: cannot write to %s (%s); keeping up to %d lines in memory",
                self.log_dir,
                exc,
                self.max_pending,
            )
        # A failed file may be gone or stale: open it again next time.
        for fd in self._fds.values():
            try:
                os.close(fd)
            except OSError:
                pass
        self._fds.clear()

    def _keep(self, day: str, line: bytes) -> None:
        self._pending.append((day, line))
        excess = len(self._pending) - self.max_pending
        if excess > 0:
            del self._pending[:excess]
            self.dropped += excess
            logger.error("request log: dropped the %d oldest unwritten entries", excess)


def _lines(path: Path) -> Iterable[tuple[int, str]]:
    """The complete lines of a file (a final line without newline is a torn write: skipped)."""
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if line.endswith("\n"):
                yield number, line


def _dumps(value: Any) -> str | None:
    return None if value is None else json.dumps(value, separators=(",", ":"), sort_keys=True)


def _count(keys: Any) -> int:
    """How many keys a request named: the list's length, or the marker's count when a capped
    entry omitted them."""
    if isinstance(keys, list):
        return len(keys)
    if isinstance(keys, dict):
        return int((keys.get("omitted") or {}).get("items") or 0)
    return 0


def read_day(log_dir: str | Path, day: date | str) -> pl.DataFrame:
    """Every request logged on ``day`` (UTC), one row each, sorted by time.

    Columns (see ``SCHEMA``): day, ts (UTC, naive), request_id, status, error, model_version,
    predictor (compiled or booster), latency_ms, n_keys, prediction (the first one), predictions
    (all), keys / overrides / features (JSON text, as the dataset's columns vary; a field a
    capped entry omitted holds its marker, and its predictions are null), pid. Empty with the
    same columns when nothing was logged that day.
    """
    columns: dict[str, list[Any]] = {name: [] for name in SCHEMA}
    for path in day_files(log_dir, day):
        for number, line in _lines(path):
            try:
                entry = json.loads(line)
                ts = datetime.fromisoformat(entry["ts"]).astimezone(UTC).replace(tzinfo=None)
            except (ValueError, KeyError, TypeError) as exc:
                raise RequestLogError(f"{path}:{number} is not a request log entry: {exc}") from exc
            keys = entry.get("keys")
            predictions = entry.get("predictions")
            columns["day"].append(ts.date())
            columns["ts"].append(ts)
            columns["request_id"].append(entry.get("request_id"))
            columns["status"].append(entry.get("status"))
            columns["error"].append(entry.get("error"))
            columns["model_version"].append(entry.get("model_version"))
            columns["predictor"].append(entry.get("predictor"))
            columns["latency_ms"].append(entry.get("latency_ms"))
            if not isinstance(predictions, list):
                predictions = None  # none, or omitted from a capped entry
            columns["n_keys"].append(_count(keys))
            columns["prediction"].append(predictions[0] if predictions else None)
            columns["predictions"].append(predictions)
            columns["keys"].append(_dumps(keys))
            columns["overrides"].append(_dumps(entry.get("overrides")))
            columns["features"].append(_dumps(entry.get("features")))
            columns["pid"].append(entry.get("pid"))
    return pl.DataFrame(columns, schema=SCHEMA).sort("ts", "request_id")


def count_day(log_dir: str | Path, day: date | str) -> int:
    """How many requests were logged on ``day`` (complete lines; cheap, nothing is parsed)."""
    total = 0
    for path in day_files(log_dir, day):
        with open(path, "rb") as fh:
            while chunk := fh.read(1 << 20):
                total += chunk.count(b"\n")
    return total
