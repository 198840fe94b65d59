"""Shared parts of the benchmark: the plan (full or quick sizes), the worlds' data folders and
dataset specs, server and worker processes, and small helpers."""

from __future__ import annotations

import json
import math
import os
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from http.client import HTTPConnection
from pathlib import Path
from typing import Any

PACKAGE_ROOT = Path(__file__).resolve().parent.parent
# The pipeline's clock: a Saturday, so a weekly training partition (Mondays) ends inside the
# quick backfill. The measured daily cycle is the day whose outcomes land on AS_OF.
AS_OF = date(2025, 6, 7)
CYCLE_DAY = AS_OF - timedelta(days=2)
SEED = 7
AIRINGS_PER_DAY = 400
# The candidate served and batch-scored: the largest tree model of the leaderboard.
CHAMPION_CANDIDATE = "lgbm_large"
SERVING_KEYS = 64
# Not imported when the definitions load: the ML libraries, and the data libraries the assets
# use only inside their bodies.
HEAVY_MODULES = (
    "mlflow",
    "evidently",
    "lightgbm",
    "polars",
    "duckdb",
    "numpy",
    "pandas",
    "pyarrow",
)
GIB = 1 << 30
MIB = 1 << 20
LOAD_KEY = "load_average_at_start"
WORKER_TIMEOUT = 1800
SERVER_START_TIMEOUT = 180
# A section not run (--only) holds {SKIPPED: reason}.
SKIPPED = "skipped"


class BenchError(RuntimeError):
    """A benchmark step could not run; the message says which and why."""


@dataclass(frozen=True)
class Plan:
    """Sizes of one benchmark run (full or quick)."""

    quick: bool
    rate: int
    load_seconds: float
    warmup_seconds: float
    fixed_connections: int
    saturation_connections: int
    batch_rows: int
    batch_repeats: int
    backfill_days: int
    train_days: int
    holdout_days: int
    drift_days: int
    # Train only the last n training dates of the backfill (None: all of them).
    training_dates: int | None
    cycle_repeats: int
    load_repeats: int
    scale_sizes: tuple[int, ...]
    # Airings a day of the extra daily cycles measured in the pipeline world.
    cycle_sizes: tuple[int, ...]

    @classmethod
    def for_mode(cls, quick: bool) -> Plan:
        if quick:
            return cls(
                quick=True,
                rate=200,
                load_seconds=2.0,
                warmup_seconds=0.5,
                fixed_connections=32,
                saturation_connections=16,
                batch_rows=20_000,
                batch_repeats=2,
                backfill_days=14,
                train_days=7,
                holdout_days=3,
                drift_days=1,
                training_dates=1,
                cycle_repeats=1,
                load_repeats=3,
                scale_sizes=(10_000,),
                cycle_sizes=(2_000,),
            )
        return cls(
            quick=False,
            rate=200,
            load_seconds=10.0,
            warmup_seconds=1.0,
            fixed_connections=32,
            saturation_connections=16,
            batch_rows=200_000,
            batch_repeats=3,
            backfill_days=90,
            train_days=28,
            holdout_days=7,
            drift_days=7,
            training_dates=None,
            cycle_repeats=3,
            load_repeats=5,
            scale_sizes=(10_000, 100_000, 1_000_000),
            cycle_sizes=(20_000, 100_000),
        )


# Small helpers ------------------------------------------------------------------------------


def _maxrss_bytes() -> int:
    """This process's high-water mark of resident memory (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _mib(n_bytes: float) -> float:
    return round(n_bytes / MIB, 1)


def _r(value: float, digits: int = 4) -> float:
    return round(float(value), digits)


def _percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list (NaN when empty)."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[rank - 1]


class RssWatch:
    """Time and peak resident memory per stage of this process.

    A thread samples RSS every few milliseconds; the process's own high-water mark
    (getrusage) catches a peak between two samples when the stage raised it.
    """

    def __init__(self, interval: float = 0.005):
        import psutil

        self._process = psutil.Process()
        self._interval = interval
        self._peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        self.stages: dict[str, dict[str, float]] = {}

    def rss(self) -> int:
        """Resident memory now, in bytes."""
        return self._process.memory_info().rss

    def _sample(self) -> None:
        while not self._stop.wait(self._interval):
            rss = self.rss()
            if rss > self._peak:
                self._peak = rss

    @contextmanager
    def stage(self, name: str) -> Iterator[dict[str, float]]:
        """Record ``name``'s seconds and peak RSS; the yielded dict takes extra figures."""
        extra: dict[str, float] = {}
        high_before = _maxrss_bytes()
        self._peak = self.rss()
        started = time.perf_counter()
        yield extra
        seconds = time.perf_counter() - started
        high_after = _maxrss_bytes()
        peak = max(self._peak, self.rss(), high_after if high_after > high_before else 0)
        self.stages[name] = {"seconds": _r(seconds), "peak_rss_mib": _mib(peak), **extra}

    def close(self) -> None:
        self._stop.set()
        self._thread.join(1)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _http(port: int, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
    """One request to 127.0.0.1 (no proxy is ever consulted)."""
    conn = HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def _answers(port: int, path: str | None) -> bool:
    try:
        if path is None:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        return _http(port, "GET", path)[0] == 200
    except OSError:
        return False


def _tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


def _stop_group(process: subprocess.Popen, sig: int, timeout: float = 20) -> None:
    """Signal the process group the benchmark started (``start_new_session``), wait, then kill
    whatever of that group is left."""
    pgid = process.pid
    if process.poll() is None:
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            pass
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    if process.poll() is None:
        process.wait(10)


@contextmanager
def _server(
    command: list[str],
    env: dict[str, str],
    cwd: Path,
    log_path: Path,
    port: int,
    ready_path: str | None,
    stop_signal: int,
) -> Iterator[subprocess.Popen]:
    """A server process in its own process group, ready (``ready_path`` answers 200, or the
    port accepts when None) before the block runs, stopped through its group afterwards."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command,
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while not _answers(port, ready_path):
            if process.poll() is not None:
                raise BenchError(
                    f"{' '.join(command[:4])} exited with {process.returncode} before it was "
                    f"ready:\n{_tail(log_path)}"
                )
            if time.monotonic() > deadline:
                raise BenchError(
                    f"{' '.join(command[:4])} was not ready after {SERVER_START_TIMEOUT} s:\n"
                    f"{_tail(log_path)}"
                )
            time.sleep(0.1)
        yield process
    finally:
        _stop_group(process, stop_signal)


def _base_env() -> dict[str, str]:
    """The caller's environment without MLOPS_* or DAGSTER_HOME, importing this checkout."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLOPS_")}
    env.pop("DAGSTER_HOME", None)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(PACKAGE_ROOT), env.get("PYTHONPATH", "")) if p
    )
    # LightGBM's OpenMP threads otherwise spin while waiting, which on a small shared machine
    # costs other processes (the server, the load generator) their CPU.
    env.setdefault("OMP_WAIT_POLICY", "passive")
    env["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    env["PYTHONUNBUFFERED"] = "1"
    return env


@dataclass(frozen=True)
class World:
    """One environment of the benchmark: its data folder and dataset spec."""

    data_dir: Path
    spec_path: Path

    def env(self) -> dict[str, str]:
        return {
            **_base_env(),
            "MLOPS_ENV": "dev",
            "MLOPS_DATA_DIR": str(self.data_dir),
            "MLOPS_DATASET": str(self.spec_path),
            "MLOPS_AS_OF": f"{AS_OF.isoformat()}T06:00",
        }


def _write_spec(path: Path, plan: Plan, pipeline: bool, airings: int = AIRINGS_PER_DAY) -> Path:
    """The embedded dataset spec with a fixed seed and volume; the pipeline world gets the
    plan's training windows (short in quick mode so one training date fits the backfill)."""
    import yaml

    from mlops_assets.environments import DEFAULT_DATASET

    raw = yaml.safe_load(DEFAULT_DATASET.read_text())
    raw["source"]["options"] = {"seed": SEED, "airings_per_day": airings}
    if pipeline:
        raw["training"].update(train_days=plan.train_days, holdout_days=plan.holdout_days)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def _run_worker(name: str, args: dict[str, Any], env: dict[str, str], work: Path) -> Any:
    """Run ``python -m benchmarks <name> <args.json>`` and return the JSON it wrote."""
    folder = work / "workers"
    folder.mkdir(parents=True, exist_ok=True)
    stamp = f"{name}_{len(list(folder.iterdir()))}"
    args_path, result_path, log_path = (
        folder / f"{stamp}.args.json",
        folder / f"{stamp}.result.json",
        folder / f"{stamp}.log",
    )
    args_path.write_text(json.dumps({**args, "result": str(result_path)}))
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks", name, str(args_path)],
            env=env,
            cwd=work,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        returncode = process.wait(WORKER_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise BenchError(
            f"worker {name} took longer than {WORKER_TIMEOUT} s:\n{_tail(log_path)}"
        ) from None
    finally:
        # Whatever happens (timeout, Ctrl-C), nothing the worker started outlives it.
        _stop_group(process, signal.SIGTERM)
    if returncode != 0 or not result_path.exists():
        raise BenchError(f"worker {name} failed ({returncode}):\n{_tail(log_path)}")
    return json.loads(result_path.read_text())
