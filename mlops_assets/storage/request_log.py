"""The online endpoint's request log: one JSON line per answered request, in files of its own.

The endpoint calls :meth:`RequestLog.append` on the request path, which only adds the entry to an
in-memory batch. A background thread writes the batch every ``flush_seconds``, or as soon as
``flush_entries`` entries wait, and :meth:`RequestLog.close` writes whatever is left (the endpoint
calls it on graceful shutdown, after the last request). Each process writes its own files, one
per UTC day of the entries' timestamps::

    <log_dir>/requests-YYYY-MM-DD-<pid>.jsonl

so two endpoint processes never interleave lines, and the warehouse is never touched: the daily
``serving_log`` asset reads a day with :func:`read_day`.

An entry (the endpoint fills it; the reader relies on these fields)::

    {"ts": "2025-03-15T06:00:00.123456+00:00",   # UTC, when the request arrived
     "request_id": "9f...", "status": 200, "error": null,   # error: the 4xx/5xx code
     "keys": [{"network": "ESPN", ...}], "overrides": {"spend": 5000.0},
     "features": [{...every model feature after overrides...}],
     "predictions": [812.4], "model_version": "7", "latency_ms": 0.41, "pid": 1234}

A crash can leave the last line of a file torn (no newline): readers skip such a final line and
count only complete lines. A torn line anywhere else is corruption and raises.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import polars as pl

PREFIX = "requests-"
SUFFIX = ".jsonl"
DEFAULT_FLUSH_SECONDS = 0.5
DEFAULT_FLUSH_ENTRIES = 1000
# Entries kept while the disk refuses writes; beyond this the oldest are dropped and counted.
DEFAULT_MAX_PENDING = 200_000

SCHEMA: dict[str, pl.DataType] = {
    "day": pl.Date(),
    "ts": pl.Datetime("us"),
    "request_id": pl.String(),
    "status": pl.Int64(),
    "error": pl.String(),
    "model_version": pl.String(),
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


class RequestLog:
    """Batched, append-only writer of request entries for one process.

    ``append`` is safe to call from any thread and never touches the disk. Use as a context
    manager, or call :meth:`start` and :meth:`close`.
    """

    def __init__(
        self,
        log_dir: str | Path,
        flush_seconds: float = DEFAULT_FLUSH_SECONDS,
        flush_entries: int = DEFAULT_FLUSH_ENTRIES,
        max_pending: int = DEFAULT_MAX_PENDING,
        pid: int | None = None,
    ):
        if flush_seconds <= 0 or flush_entries < 1 or max_pending < flush_entries:
            raise ValueError(
                "request log needs flush_seconds > 0, flush_entries >= 1 and "
                f"max_pending >= flush_entries (got {flush_seconds}, {flush_entries}, "
                f"{max_pending})"
            )
        self.log_dir = Path(log_dir)
        self.flush_seconds = flush_seconds
        self.flush_entries = flush_entries
        self.max_pending = max_pending
        self.pid = os.getpid() if pid is None else pid
        self.written = 0
        self.dropped = 0
        self._pending: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False

    @property
    def pending(self) -> int:
        return len(self._pending)

    def start(self) -> RequestLog:
        """Start the background flusher (idempotent)."""
        if self._thread is None and not self._closed:
            self._thread = threading.Thread(
                target=self._run, name="request-log-flusher", daemon=True
            )
            self._thread.start()
        return self

    def append(self, entry: Mapping[str, Any]) -> None:
        """Queue one entry (with at least ``ts``: an ISO string, or ``time.time()`` seconds that
        the flusher formats off the request path); it must not be mutated afterwards."""
        with self._lock:
            self._pending.append(entry)  # type: ignore[arg-type]
            full = len(self._pending) >= self.flush_entries
        if full:
            self._wake.set()

    def flush(self) -> int:
        """Write every queued entry now; return how many were written."""
        with self._write_lock:
            with self._lock:
                batch, self._pending = self._pending, []
            if not batch:
                return 0
            try:
                self._write(batch)
            except OSError:
                logger.exception("request log: cannot write %d entries", len(batch))
                self._requeue(batch)
                return 0
            self.written += len(batch)
            return len(batch)

    def close(self) -> None:
        """Stop the flusher and write what is left (idempotent)."""
        self._closed = True
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.flush()

    def __enter__(self) -> RequestLog:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.flush_seconds)
            self._wake.clear()
            self.flush()

    def _write(self, batch: list[dict[str, Any]]) -> None:
        by_day: dict[str, list[str]] = {}
        for entry in batch:
            ts = entry["ts"]
            if isinstance(ts, float):
                ts = iso_utc(ts)
            line = json.dumps(
                {**entry, "ts": ts, "pid": self.pid}, separators=(",", ":"), default=str
            )
            by_day.setdefault(ts[:10], []).append(line + "\n")
            # Hand the interpreter lock over between entries: a request waiting for it waits
            # for one entry's encoding, not for the whole batch (up to the 5 ms switch interval).
            time.sleep(0)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for day, lines in by_day.items():
            with open(self.log_dir / file_name(day, self.pid), "a", encoding="utf-8") as fh:
                fh.write("".join(lines))

    def _requeue(self, batch: list[dict[str, Any]]) -> None:
        with self._lock:
            self._pending = batch + self._pending
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


def read_day(log_dir: str | Path, day: date | str) -> pl.DataFrame:
    """Every request logged on ``day`` (UTC), one row each, sorted by time.

    Columns (see ``SCHEMA``): day, ts (UTC, naive), request_id, status, error, model_version,
    latency_ms, n_keys, prediction (the first one), predictions (all), keys / overrides /
    features (JSON text, as the dataset's columns vary), pid. Empty with the same columns when
    nothing was logged that day.
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
            columns["latency_ms"].append(entry.get("latency_ms"))
            columns["n_keys"].append(len(keys) if isinstance(keys, list) else 0)
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
