"""The benchmark suite: ``mlops-assets bench --out FILE [--quick]``.

One run measures six things, each side by side with its baseline, in its own temporary data
folder (removed at the end), on a small deterministic setup (fixed seed, fixed clock
:data:`AS_OF`), and writes FILE (JSON) plus a markdown table next to it (FILE with ``.md``):

1. **Endpoint**: the champion served by ``python -m mlops_assets.serving`` against the same
   registered version served by ``mlflow models serve --env-manager local``, both one worker on
   127.0.0.1, loaded by a separate load-generator process (:func:`_loadgen_worker`: raw asyncio
   sockets on uvloop, keep-alive, pre-encoded requests). Latency at a fixed rate (open loop)
   and throughput at saturation (closed loop, a few connections). The generator's own ceiling
   is measured first against a null HTTP server, so a reader can see it was not the bottleneck.
2. **Batch inference**: rows/s of ``ml.inference.predict_days`` (encoding included) against a
   bare ``Booster.predict`` on the already encoded matrix, same rows, same threads.
3. **Orchestration overhead**: one daily cycle through Dagster in process (the runner's runs:
   sources and features, online store, predictions, drift report, serving log and business
   metrics) against the same pure functions called in sequence on in-memory frames.
4. **Backfill**: the daily graph over many days through the runner (sources and feature
   refresh, then training, scoring and metrics), wall time and peak RSS per stage, and the
   per-partition overhead of the daily refresh against the same functions called directly.
5. **Definitions load**: ``import mlops_assets.definitions`` in a fresh interpreter against an
   empty Dagster project, and which heavy modules that import pulls in.
6. **Scale curve**: one day at 10k, 100k and 1M airings, time and peak RSS of each stage, each
   size in its own process.

Every measurement runs in a child process (``python -m mlops_assets.bench WORKER ARGS.json``)
so that its memory and imports are its own. Servers bind 127.0.0.1 only, run in their own
process group and are stopped through that group; every wait is bounded. Targets are reported,
never asserted: the benchmark does not fail on speed.
"""

from __future__ import annotations

import json
import math
import os
import platform
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta
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
                saturation_connections=4,
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
            saturation_connections=4,
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
    """Run ``python -m mlops_assets.bench <name> <args.json>`` and return the JSON it wrote."""
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
            [sys.executable, "-m", "mlops_assets.bench", name, str(args_path)],
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


# The load generator and the null server (separate processes) ----------------------------------


def _request_bytes(port: int, path: str, body: str) -> bytes:
    payload = body.encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
    )
    return head.encode() + payload


async def _exchange(reader: Any, writer: Any, request: bytes) -> tuple[int, bool]:
    """Send one request on a kept-alive connection and read the whole answer: (status, whether
    the server closes the connection)."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    lower = head.lower()
    start = lower.find(b"\r\ncontent-length:")
    if start >= 0:
        end = lower.index(b"\r\n", start + 2)
        length = int(head[start + 17 : end])
        if length:
            await reader.readexactly(length)
    elif b"\r\ntransfer-encoding: chunked" in lower:
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    return status, b"\r\nconnection: close" in lower


class _Tally:
    def __init__(self) -> None:
        self.latency: list[float] = []
        self.queued: list[float] = []
        self.lag: list[float] = []
        self.waits = 0
        self.errors = 0
        self.sent = 0
        self.first_error = ""

    def fail(self, exc: BaseException | str) -> None:
        self.errors += 1
        if not self.first_error:
            self.first_error = str(exc) if isinstance(exc, str) else repr(exc)

    def summary(self, wall: float, cpu: float) -> dict[str, Any]:
        latency, queued = sorted(self.latency), sorted(self.queued)
        ok = len(latency)
        out: dict[str, Any] = {
            "requests": self.sent,
            "ok": ok,
            "errors": self.errors,
            "seconds": _r(wall),
            "rps": _r(ok / wall if wall else 0.0, 1),
            "p50_ms": _r(_percentile(latency, 0.50) * 1e3),
            "p90_ms": _r(_percentile(latency, 0.90) * 1e3),
            "p99_ms": _r(_percentile(latency, 0.99) * 1e3),
            "max_ms": _r(latency[-1] * 1e3) if latency else math.nan,
            "generator_cpu_share": _r(cpu / wall if wall else 0.0, 3),
        }
        if queued:
            out["p99_from_schedule_ms"] = _r(_percentile(queued, 0.99) * 1e3)
            out["generator_lag_p99_ms"] = _r(_percentile(sorted(self.lag), 0.99) * 1e3)
            out["waited_for_connection"] = self.waits
        if self.first_error:
            out["first_error"] = self.first_error[:300]
        return out


async def _open(port: int) -> tuple[Any, Any]:
    import asyncio

    return await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 10)


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _saturate(
    port: int, requests: list[bytes], seconds: float, connections: int
) -> dict[str, Any]:
    """Closed loop: each connection sends its next request as soon as the answer is in."""
    import asyncio

    tally = _Tally()
    cpu0, started = _cpu(), time.perf_counter()
    end = started + seconds

    async def client(index: int) -> None:
        reader, writer = await _open(port)
        i = index
        try:
            while time.perf_counter() < end:
                sent = time.perf_counter()
                tally.sent += 1
                try:
                    status, closes = await _exchange(reader, writer, requests[i % len(requests)])
                except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                    tally.fail(exc)
                    writer.close()
                    reader, writer = await _open(port)
                    continue
                if status == 200:
                    tally.latency.append(time.perf_counter() - sent)
                else:
                    tally.fail(f"HTTP {status}")
                if closes:
                    writer.close()
                    reader, writer = await _open(port)
                i += connections
        finally:
            writer.close()

    await asyncio.wait_for(asyncio.gather(*(client(c) for c in range(connections))), seconds + 60)
    return tally.summary(time.perf_counter() - started, _cpu() - cpu0)


async def _fixed_rate(
    port: int, requests: list[bytes], seconds: float, connections: int, rate: float
) -> dict[str, Any]:
    """Open loop: request i is due at start + i / rate whatever the answers do. Latency counts
    from the moment it was written; ``p99_from_schedule_ms`` counts from when it was due, so it
    includes any wait for a free connection (a server that falls behind,
    ``waited_for_connection`` requests) and ``generator_lag_p99_ms``, how late the generator
    itself issued it."""
    import asyncio

    tally = _Tally()
    pool: asyncio.Queue = asyncio.Queue()
    for _ in range(connections):
        pool.put_nowait(await _open(port))
    total = int(rate * seconds)
    cpu0 = _cpu()
    started = time.perf_counter() + 0.01

    async def one(i: int, due: float) -> None:
        tally.lag.append(max(0.0, time.perf_counter() - due))
        if pool.empty():
            tally.waits += 1
        reader, writer = await pool.get()
        sent = time.perf_counter()
        try:
            status, closes = await _exchange(reader, writer, requests[i % len(requests)])
            done = time.perf_counter()
            if status == 200:
                tally.latency.append(done - sent)
                tally.queued.append(done - due)
            else:
                tally.fail(f"HTTP {status}")
            if closes:
                writer.close()
                reader, writer = await _open(port)
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            tally.fail(exc)
            writer.close()
            reader, writer = await _open(port)
        finally:
            pool.put_nowait((reader, writer))

    tasks = []
    for i in range(total):
        due = started + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tally.sent += 1
        tasks.append(asyncio.ensure_future(one(i, due)))
    done, pending = await asyncio.wait(tasks, timeout=60)
    for task in pending:
        task.cancel()
        tally.fail("no answer within 60 s after the last request was due")
    wall = time.perf_counter() - started
    while not pool.empty():
        pool.get_nowait()[1].close()
    return tally.summary(wall, _cpu() - cpu0)


def _loadgen_worker(args: dict[str, Any]) -> dict[str, Any]:
    """Run the phases in ``args`` against 127.0.0.1:port, in order, on one event loop."""
    import asyncio

    import uvloop

    port = args["port"]
    requests = [_request_bytes(port, args["path"], body) for body in args["bodies"]]

    async def main() -> dict[str, Any]:
        results = {}
        for phase in args["phases"]:
            if phase["kind"] == "fixed_rate":
                results[phase["name"]] = await _fixed_rate(
                    port, requests, phase["seconds"], phase["connections"], phase["rate"]
                )
            else:
                results[phase["name"]] = await _saturate(
                    port, requests, phase["seconds"], phase["connections"]
                )
        return results

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main())


_NULL_RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"


def _null_server_worker(args: dict[str, Any]) -> dict[str, Any]:
    """An HTTP server that answers every request with ``{}`` at once (uvloop, no framework):
    the ceiling of the load generator on this machine. Runs until SIGTERM."""
    import asyncio

    import uvloop

    class NullHTTP(asyncio.Protocol):
        def connection_made(self, transport: Any) -> None:
            self.transport = transport
            self.buffer = b""

        def data_received(self, data: bytes) -> None:
            self.buffer += data
            while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
                head = self.buffer[:end].lower()
                at = head.find(b"content-length:")
                length = int(head[at + 15 :].split(b"\r\n")[0]) if at >= 0 else 0
                if len(self.buffer) < end + 4 + length:
                    return
                self.buffer = self.buffer[end + 4 + length :]
                self.transport.write(_NULL_RESPONSE)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        server = await loop.create_server(NullHTTP, "127.0.0.1", args["port"])
        await stop.wait()
        server.close()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main())
    return {"stopped": True}


# 1. Endpoint --------------------------------------------------------------------------------


def _load_phases(plan: Plan) -> list[dict[str, Any]]:
    return [
        {
            "name": "warmup",
            "kind": "saturation",
            "seconds": plan.warmup_seconds,
            "connections": plan.saturation_connections,
        },
        {
            "name": "fixed_rate",
            "kind": "fixed_rate",
            "seconds": plan.load_seconds,
            "connections": plan.fixed_connections,
            "rate": plan.rate,
        },
        {
            "name": "saturation",
            "kind": "saturation",
            "seconds": plan.load_seconds,
            "connections": plan.saturation_connections,
        },
    ]


def _load(
    work: Path, port: int, path: str, bodies: list[str], phases: list[dict[str, Any]]
) -> dict[str, Any]:
    args = {"port": port, "path": path, "bodies": bodies, "phases": phases}
    return _run_worker("loadgen", args, _base_env(), work)


def bench_endpoint(plan: Plan, work: Path, world: World, info: dict[str, Any]) -> dict[str, Any]:
    env = world.env()
    keys, rows, columns = info["keys"], info["rows"], info["columns"]
    ours_bodies = [json.dumps({"keys": [key]}) for key in keys]
    mlflow_bodies = [
        json.dumps({"dataframe_split": {"columns": columns, "data": [row]}}) for row in rows
    ]
    logs = work / "logs"

    port = _free_port()
    null_args = work / "workers" / "null_server.args.json"
    null_args.parent.mkdir(parents=True, exist_ok=True)
    null_args.write_text(json.dumps({"port": port}))
    null_cmd = [sys.executable, "-m", "mlops_assets.bench", "null-server", str(null_args)]
    with _server(null_cmd, _base_env(), work, logs / "null.log", port, None, signal.SIGTERM):
        seconds = max(1.0, plan.load_seconds / 2)
        null = _load(
            work,
            port,
            "/predict",
            ours_bodies,
            [
                {"name": "warmup", "kind": "saturation", "seconds": 0.3, "connections": 4},
                {
                    "name": "floor",
                    "kind": "fixed_rate",
                    "seconds": seconds,
                    "connections": plan.fixed_connections,
                    "rate": plan.rate,
                },
                {
                    "name": "ceiling",
                    "kind": "saturation",
                    "seconds": seconds,
                    "connections": plan.saturation_connections,
                },
            ],
        )
        ceiling, floor = null["ceiling"], null["floor"]

    port = _free_port()
    ours_cmd = [sys.executable, "-m", "mlops_assets.serving", "--host", "127.0.0.1"]
    ours_cmd += ["--port", str(port), "--env", "dev", "--log-level", "warning"]
    with _server(ours_cmd, env, work, logs / "ours.log", port, "/readyz", signal.SIGINT):
        status, answer = _http(port, "POST", "/predict", json.dumps({"keys": keys}).encode())
        if status != 200:
            raise BenchError(f"our endpoint answered {status}: {answer[:500]!r}")
        ours_predictions = [p["prediction"] for p in json.loads(answer)["predictions"]]
        ours = _load(work, port, "/predict", ours_bodies, _load_phases(plan))
        status, answer = _http(port, "GET", "/model")
        if status != 200:
            raise BenchError(f"our endpoint's /model answered {status}: {answer[:500]!r}")
        # Every answer's entry was written before the answer was sent: the log's count is the
        # cost's evidence (the latencies above include it).
        request_log = json.loads(answer)["request_log"]

    port = _free_port()
    bin_dir = Path(sys.executable).parent
    mlflow_env = {
        **env,
        "PATH": os.pathsep.join([str(bin_dir), env.get("PATH", "")]),
        "MLFLOW_TRACKING_URI": info["tracking_uri"],
        "MLFLOW_REGISTRY_URI": info["tracking_uri"],
    }
    model_uri = f"models:/{info['model_name']}/{info['version']}"
    mlflow_cmd = [str(bin_dir / "mlflow"), "models", "serve", "-m", model_uri]
    mlflow_cmd += ["--env-manager", "local", "-p", str(port), "-h", "127.0.0.1"]
    with _server(mlflow_cmd, mlflow_env, work, logs / "mlflow.log", port, "/ping", signal.SIGTERM):
        body = json.dumps({"dataframe_split": {"columns": columns, "data": rows}}).encode()
        status, answer = _http(port, "POST", "/invocations", body)
        if status != 200:
            raise BenchError(f"mlflow models serve answered {status}: {answer[:500]!r}")
        mlflow_predictions = json.loads(answer)["predictions"]
        mlflow = _load(work, port, "/invocations", mlflow_bodies, _load_phases(plan))

    diff = max(abs(a - b) for a, b in zip(ours_predictions, mlflow_predictions, strict=True))
    ours_sat, mlflow_sat = ours["saturation"]["rps"], mlflow["saturation"]["rps"]
    return {
        "model": {
            "name": info["model_name"],
            "version": info["version"],
            "candidate": info["candidate"],
            "trees": info["trees"],
            "features": len(columns),
            "distinct_request_keys": len(keys),
            "max_abs_prediction_difference": diff,
        },
        "load_generator": {
            "tool": "python asyncio raw sockets on uvloop, keep-alive, one separate process",
            "ceiling_rps": ceiling["rps"],
            "ceiling_generator_cpu_share": ceiling["generator_cpu_share"],
            "ceiling_connections": plan.saturation_connections,
            "floor_p50_ms": floor["p50_ms"],
            "floor_p99_ms": floor["p99_ms"],
            "fixed_rate": plan.rate,
            "fixed_rate_connections": plan.fixed_connections,
            "saturation_connections": plan.saturation_connections,
            "phase_seconds": plan.load_seconds,
            "latency": "from the moment each request is written to its full answer",
        },
        "servers": {
            "mlops_assets": {
                "command": "python -m mlops_assets.serving (uvicorn, uvloop, httptools, 1 worker)",
                "fixed_rate": ours["fixed_rate"],
                "saturation": ours["saturation"],
                "request_log": {
                    "written": request_log["written"],
                    "pending": request_log["pending"],
                    "dropped": request_log["dropped"],
                    "mode": "one write per request before its answer",
                },
            },
            "mlflow_serve": {
                "command": f"mlflow models serve -m {model_uri} --env-manager local (1 worker)",
                "fixed_rate": mlflow["fixed_rate"],
                "saturation": mlflow["saturation"],
            },
        },
        "saturation_ratio": _r(ours_sat / mlflow_sat if mlflow_sat else math.inf, 2),
    }


# World A: a registered champion and an online store, built with the pure functions ----------


def _simulate_examples(spec: Any, first_day: date, days: int, airings: int) -> tuple[Any, Any]:
    """Labeled examples of ``days`` days from ``first_day`` with point-in-time history features,
    and every day's outcome statistics (the simulator starts early enough for a full history)."""
    import polars as pl

    from mlops_assets.ml.features import build_features, label_examples, outcome_stats
    from mlops_assets.simulator import SimulatorConfig, simulate_day

    config = SimulatorConfig(seed=SEED, airings_per_day=airings, label_lag_days=spec.label_lag_days)
    day = first_day - timedelta(days=spec.history_lookback_days)
    stats: list[Any] = []
    examples: list[Any] = []
    while day < first_day + timedelta(days=days):
        events, outcomes = simulate_day(day, config)
        if day >= first_day:
            features = build_features(spec, day, events, pl.concat(stats))
            examples.append(label_examples(spec, features, outcomes))
        stats.append(outcome_stats(spec, events, outcomes))
        day += timedelta(days=1)
    return pl.concat(examples), pl.concat(stats)


def _serving_world_worker(args: dict[str, Any]) -> dict[str, Any]:
    """Train the champion candidate on simulated days, log and register it, point the champion
    and stage aliases at it, publish the online store and write the batch-scoring frame."""
    import polars as pl

    from mlops_assets.defs.common import project
    from mlops_assets.ml import registry
    from mlops_assets.ml.candidates import candidate_by_name
    from mlops_assets.ml.features import build_features, latest_per_serving_key
    from mlops_assets.ml.promotion import CHAMPION_ALIAS
    from mlops_assets.ml.training import (
        data_fingerprint,
        split_windows,
        train_and_score,
        training_windows,
    )
    from mlops_assets.simulator import SimulatorConfig, simulate_day
    from mlops_assets.storage import online_store

    p = project()
    spec, settings = p.spec, p.settings
    settings.ensure_dirs()
    days = spec.training.train_days + spec.training.holdout_days
    first_day = CYCLE_DAY - timedelta(days=days)
    examples, stats = _simulate_examples(spec, first_day, days, AIRINGS_PER_DAY)
    last_day = examples[spec.date_column].max()
    training_date = last_day + timedelta(days=spec.label_lag_days)
    windows = training_windows(spec, training_date)
    train, holdout = split_windows(examples, spec, windows)
    candidate = candidate_by_name(CHAMPION_CANDIDATE)
    result = train_and_score(candidate, train, holdout, spec, seed=SEED)
    experiment_id = registry.configure(
        settings.mlflow_tracking_uri, settings.mlflow_artifacts_dir, "mlops_assets"
    )
    logged = registry.log_candidate(
        experiment_id=experiment_id,
        candidate=candidate,
        result=result,
        windows=windows,
        registered_model_name=settings.registered_model_name,
        partition=training_date.isoformat(),
        data_fingerprint=data_fingerprint(train),
    )
    registry.set_aliases(
        settings.registered_model_name,
        logged.version,
        [CHAMPION_ALIAS, settings.stage_alias],
        settings.mlflow_tracking_uri,
    )
    recent = examples.filter(pl.col(spec.date_column) > last_day - timedelta(days=7))
    store = latest_per_serving_key(spec, recent.drop(spec.target))
    online_store.publish(store, settings.online_store_path)

    columns = list(result.model.feature_columns)
    complete = store.drop_nulls(columns).sort(list(spec.serving_keys))
    step = max(1, complete.height // SERVING_KEYS)
    chosen = complete[::step].head(SERVING_KEYS)
    keys = chosen.select(spec.serving_keys).to_dicts()
    rows = [[row[c] for c in columns] for row in chosen.select(columns).iter_rows(named=True)]

    batch_day = last_day + timedelta(days=1)
    config = SimulatorConfig(
        seed=SEED, airings_per_day=args["batch_rows"], label_lag_days=spec.label_lag_days
    )
    events, _ = simulate_day(batch_day, config)
    batch = build_features(spec, batch_day, events, stats)
    batch_path = settings.env_dir / "batch_features.parquet"
    batch.write_parquet(batch_path)
    return {
        "model_name": settings.registered_model_name,
        "version": logged.version,
        "candidate": candidate.name,
        "trees": result.model.booster.num_trees(),
        "tracking_uri": settings.mlflow_tracking_uri,
        "columns": columns,
        "keys": keys,
        "rows": rows,
        "store_rows": store.height,
        "train_rows": result.train_rows,
        "batch_path": str(batch_path),
        "batch_rows": batch.height,
    }


# 2. Batch inference -------------------------------------------------------------------------


def _batch_worker(args: dict[str, Any]) -> dict[str, Any]:
    """``predict_days`` (the predictions asset's function) on the batch frame against a bare
    ``Booster.predict`` on the same rows already encoded, same thread count; best of n."""
    import numpy as np
    import polars as pl

    from mlops_assets.defs.common import project
    from mlops_assets.ml import registry
    from mlops_assets.ml.inference import PREDICTION, predict_days

    spec, settings = project().spec, project().settings
    model = registry.load_model_version(
        args["model_name"], args["version"], settings.mlflow_tracking_uri
    )
    frame = pl.read_parquet(args["batch_path"]).sort(spec.date_column, spec.event_key)
    threads = model.predict_threads
    version = args["version"]

    def ours(rows: Any) -> Any:
        return predict_days(spec, rows, lambda _day: version, lambda _v: model)

    def bare(matrix: Any) -> Any:
        return model.booster.predict(matrix, num_threads=threads)

    warm = frame.head(1000)
    ours(warm), bare(model.encode(warm))
    timings: dict[str, list[float]] = {"ours": [], "bare": [], "encode": []}
    for _ in range(args["repeats"]):
        started = time.perf_counter()
        predicted = ours(frame)
        timings["ours"].append(time.perf_counter() - started)
        started = time.perf_counter()
        matrix = model.encode(frame)
        timings["encode"].append(time.perf_counter() - started)
        started = time.perf_counter()
        raw = bare(matrix)
        timings["bare"].append(time.perf_counter() - started)
    diff = float(np.max(np.abs(predicted[PREDICTION].to_numpy() - np.clip(raw, 0.0, None))))
    rows = frame.height
    best = {k: min(v) for k, v in timings.items()}
    return {
        "rows": rows,
        "threads": threads,
        "repeats": args["repeats"],
        "predict_days": {"seconds": _r(best["ours"]), "rows_per_s": round(rows / best["ours"])},
        "booster_predict": {
            "seconds": _r(best["bare"]),
            "rows_per_s": round(rows / best["bare"]),
        },
        "encode_seconds": _r(best["encode"]),
        "ratio": _r(best["bare"] / best["ours"], 3),
        "max_abs_prediction_difference": diff,
    }


# 3 and 4. Backfill and one daily cycle, in the pipeline world ---------------------------------


def _run_stats(instance: Any, runs_before: int) -> dict[str, Any]:
    """Wall and step time of the runs recorded since the instance held ``runs_before`` runs,
    with the seconds of each step (asset) summed over those runs."""
    records = instance.get_runs(limit=max(0, instance.get_runs_count() - runs_before))
    run_seconds = 0.0
    steps: dict[str, float] = {}
    for run in reversed(records):
        stats = instance.get_run_stats(run.run_id)
        if stats.start_time and stats.end_time:
            run_seconds += stats.end_time - stats.start_time
        for step in instance.get_run_step_stats(run.run_id):
            if step.start_time and step.end_time:
                steps[step.step_key] = steps.get(step.step_key, 0.0) + (
                    step.end_time - step.start_time
                )
    return {
        "runs": len(records),
        "run_seconds": run_seconds,
        "step_seconds": sum(steps.values()),
        "by_step": steps,
    }


def _direct_daily(p: Any, days: list[date], scratch: Path) -> int:
    """The daily refresh's pure functions over ``days``, as ``run_days`` materializes them:
    events, outcomes, outcome statistics, features (with their checks), labeled examples, then
    the online store of the last week. Returns the rows of features built."""
    import polars as pl

    from mlops_assets.defs.feature_refresh.checks import evaluate_feature_checks
    from mlops_assets.ml import features as F
    from mlops_assets.storage import online_store
    from mlops_assets.storage.sources import read_events, read_outcomes

    spec, now = p.spec, p.settings.now()
    stats: list[Any] = []
    built = []
    for day in days:
        events = F.validate_events(spec, read_events(spec, day), day)
        outcomes = F.validate_outcomes(spec, read_outcomes(spec, day, now), day)
        stats.append(F.outcome_stats(spec, events, outcomes))
        frame = F.build_features_for_days(spec, [day], events, pl.concat(stats))
        evaluate_feature_checks(p, frame)
        F.label_examples(spec, frame, outcomes)
        built.append(frame)
    recent = pl.concat(built[-7:])
    online_store.publish(F.latest_per_serving_key(spec, recent), scratch / "features.parquet")
    return sum(f.height for f in built)


@dataclass
class _CycleInputs:
    """What the assets of the cycle day read from earlier days, loaded before the clock starts
    for the direct path."""

    history_stats: Any
    recent_features: Any
    champion_history: Any
    references: Any
    upper: dict[str, float]


def _cycle_inputs(p: Any, day: date) -> _CycleInputs:
    import polars as pl

    from mlops_assets.ml import inference, promotion, registry
    from mlops_assets.storage.warehouse import Warehouse

    spec, settings = p.spec, p.settings
    wh = Warehouse(settings.warehouse_path, settings.schema)
    first = day - timedelta(days=spec.history_lookback_days)
    stats = wh.read("outcome_stats", "day", first, day - timedelta(days=spec.label_lag_days))
    recent = wh.read("features", spec.date_column, day - timedelta(days=6), day)
    history = wh.read(promotion.HISTORY_TABLE)
    version = promotion.champion_in_force(history, day)
    if version is None:
        raise BenchError(f"no champion is in force on {day}: the backfill trained none")
    tags = registry.version_tags(
        settings.registered_model_name, version, settings.mlflow_tracking_uri
    )
    start, end = (date.fromisoformat(d) for d in tags["train_window"].split(".."))
    seen = wh.read("labeled_examples", spec.date_column, start, end + timedelta(days=1))
    references = wh.read("drift_reference")
    latest = references.filter(pl.col("model_version") == version)["training_date"].max()
    return _CycleInputs(
        history_stats=stats,
        recent_features=recent,
        champion_history=history,
        references=references.filter(
            (pl.col("model_version") == version) & (pl.col("training_date") == latest)
        ),
        upper={version: inference.PLAUSIBLE_FACTOR * float(seen[spec.target].max() or 0.0)},
    )


def _direct_cycle(p: Any, day: date, inputs: _CycleInputs, scratch: Path) -> dict[str, float]:
    """The asset bodies of one daily cycle, minus Dagster and the IO manager: the same pure
    functions in sequence on in-memory frames (seconds per asset group)."""
    import polars as pl

    from mlops_assets.defs.feature_refresh.checks import evaluate_feature_checks
    from mlops_assets.ml import business, drift, inference, promotion, registry
    from mlops_assets.ml import features as F
    from mlops_assets.storage import online_store, request_log
    from mlops_assets.storage.sources import read_events, read_outcomes

    spec, settings = p.spec, p.settings
    limits = settings.thresholds
    laps: dict[str, float] = {}
    clock = [time.perf_counter()]

    def lap(name: str) -> None:
        now = time.perf_counter()
        laps[name] = now - clock[0]
        clock[0] = now

    events = F.validate_events(spec, read_events(spec, day), day)
    outcomes = F.validate_outcomes(spec, read_outcomes(spec, day, settings.now()), day)
    lap("sources")
    F.outcome_stats(spec, events, outcomes)
    features = F.build_features_for_days(spec, [day], events, inputs.history_stats)
    evaluate_feature_checks(p, features)
    F.label_examples(spec, features, outcomes)
    lap("features")
    recent = pl.concat([inputs.recent_features, features], how="diagonal_relaxed")
    online_store.publish(F.latest_per_serving_key(spec, recent), scratch / "features.parquet")
    lap("online_features")
    name, uri = settings.registered_model_name, settings.mlflow_tracking_uri
    predictions = inference.predict_days(
        spec,
        features,
        lambda d: promotion.champion_in_force(inputs.champion_history, d),
        lambda v: registry.load_model_version(name, v, uri),
    )
    inference.one_per_row(predictions, features, spec.event_key)
    inference.all_finite(predictions)
    inference.within_range(predictions, inputs.upper)
    lap("predictions")
    current = features.join(
        predictions.select(spec.event_key, "prediction", "model_version"), on=spec.event_key
    )
    numeric, categorical = spec.monitored_numeric, spec.monitored_categorical
    result = drift.drift_report(
        inputs.references,
        current,
        numeric,
        categorical,
        name=day.isoformat(),
        timestamp=datetime.combine(day, datetime.min.time()),
        drift_share_max=limits.drift_share_max,
    )
    drift.save_report(result, scratch / f"drift_{day}.html")
    drift.add_to_workspace(result, scratch / "workspace", "bench")
    drift.drift_share_rule(result, limits.drift_share_max)
    drift.null_share_rule(current, numeric + categorical, limits.null_share_max)
    drift.prediction_drift_rule(result)
    lap("drift_report")
    log = request_log.read_day(settings.request_log_dir, day)
    metrics = business.business_metrics(predictions, outcomes, events, spec)
    business.serving_summary(log)
    business.within_band(metrics.totals()["wape"], [])
    lap("business_metrics")
    return laps


def _pipeline_worker(args: dict[str, Any]) -> dict[str, Any]:
    """Backfill the pipeline world through the runner (section 4), then time one more daily
    cycle through Dagster and directly (section 3)."""
    import gc

    from mlops_assets.defs.common import project
    from mlops_assets.runner import (
        RunSummary,
        ensure_instance,
        first_champion_day,
        run_days,
        run_metrics,
        run_scoring,
        run_training,
        training_partitions,
    )

    p = project()
    settings = p.settings
    watch = RssWatch()
    summary = RunSummary()
    days = [CYCLE_DAY - timedelta(days=n) for n in range(args["days"], 0, -1)]
    with watch.stage("load_definitions"):
        instance = ensure_instance(settings)
        from mlops_assets.definitions import defs
    with watch.stage("daily_refresh") as extra:
        run_days(defs, instance, settings, days, summary=summary)
        extra["partitions"] = len(days)
    available = training_partitions(days[0], CYCLE_DAY)
    partitions = available[-args["training_dates"] :] if args["training_dates"] else available
    with watch.stage("training") as extra:
        run_training(defs, instance, partitions, summary=summary)
        extra["partitions"] = len(partitions)
    served_from = first_champion_day(settings)
    if served_from is None:
        raise BenchError(f"training dates {partitions} promoted no champion")
    served = [d for d in days if d >= served_from]
    with watch.stage("scoring") as extra:
        run_scoring(defs, instance, served, summary=summary, drift_days=args["drift_days"])
        extra["partitions"] = len(served)
        extra["drift_reports"] = min(len(served), args["drift_days"])
    with watch.stage("metrics") as extra:
        run_metrics(defs, instance, settings, served, summary=summary)
        extra["partitions"] = len(served)
    if summary.failed_runs:
        raise BenchError(f"backfill runs failed: {summary.failed_runs}")
    peak = _maxrss_bytes()
    backfill_seconds = sum(s["seconds"] for s in watch.stages.values())

    scratch = Path(args["scratch"])
    scratch.mkdir(parents=True, exist_ok=True)
    gc.collect()
    started = time.perf_counter()
    rows = _direct_daily(p, days, scratch)
    direct_daily = time.perf_counter() - started
    daily = watch.stages["daily_refresh"]["seconds"]
    backfill = {
        "days": len(days),
        "first_day": days[0].isoformat(),
        "last_day": days[-1].isoformat(),
        "airings_per_day": AIRINGS_PER_DAY,
        "training_dates": partitions,
        "training_dates_available": len(available),
        "runs": summary.runs,
        "asset_partitions": sum(summary.partitions.values()),
        "checks_passed": summary.checks_passed,
        "checks_failed": len(summary.checks_failed),
        "stages": watch.stages,
        "wall_seconds": _r(backfill_seconds),
        "peak_rss_mib": _mib(peak),
        "daily_refresh_direct_seconds": _r(direct_daily),
        "daily_refresh_feature_rows": rows,
        "per_partition_seconds": _r(daily / len(days)),
        "per_partition_overhead_seconds": _r((daily - direct_daily) / len(days)),
    }

    orchestration = _measure_cycle(p, defs, instance, scratch, args["repeats"])
    watch.close()
    return {"backfill": backfill, "orchestration": orchestration}


def _measure_cycle(
    p: Any,
    defs: Any,
    instance: Any,
    scratch: Path,
    repeats: int,
    rows: int = AIRINGS_PER_DAY,
    ephemeral: bool = True,
) -> dict[str, Any]:
    """One daily cycle of :data:`CYCLE_DAY` (``rows`` airings) up to three ways, alternated
    ``repeats`` times after one untimed pass of each: one run of the ``daily_cycle`` job on the
    environment's Dagster instance (SQLite event log, as the demo uses), the same run on an
    in-memory instance (what the framework costs without event storage; when ``ephemeral``),
    and the asset bodies' functions directly."""
    import gc

    import dagster as dg

    from mlops_assets.runner import RunSummary, run_cycle

    settings, day = p.settings, CYCLE_DAY
    inputs = _cycle_inputs(p, day)

    def through_dagster(on: Any) -> dict[str, Any]:
        runs_before = on.get_runs_count()
        cycle = RunSummary()
        started = time.perf_counter()
        run_cycle(defs, on, settings, day, summary=cycle)
        wall = time.perf_counter() - started
        if cycle.failed_runs:
            raise BenchError(f"the daily cycle of {day} failed: {cycle.failed_runs}")
        return {"seconds": wall, **_run_stats(on, runs_before)}

    def directly() -> dict[str, Any]:
        started = time.perf_counter()
        laps = _direct_cycle(p, day, inputs, scratch)
        return {"seconds": time.perf_counter() - started, **laps}

    directly()
    through_dagster(instance)
    samples: dict[str, list[dict[str, Any]]] = {"dagster": [], "ephemeral": [], "direct": []}
    with dg.DagsterInstance.ephemeral() as in_memory:
        ways = [("direct", directly), ("dagster", lambda: through_dagster(instance))]
        if ephemeral:
            ways.append(("ephemeral", lambda: through_dagster(in_memory)))
        for _ in range(repeats):
            for name, measure in ways:
                gc.collect()
                samples[name].append(measure())

    def median_sample(name: str) -> dict[str, Any]:
        middle = statistics.median(x["seconds"] for x in samples[name])
        return min(samples[name], key=lambda x: abs(x["seconds"] - middle))

    direct, dagster = median_sample("direct"), median_sample("dagster")

    def runs(sample: dict[str, Any]) -> dict[str, Any]:
        return {
            "seconds": _r(sample["seconds"]),
            "runs": int(sample["runs"]),
            "run_seconds": _r(sample["run_seconds"]),
            "step_seconds": _r(sample["step_seconds"]),
            "by_step": {k: _r(v) for k, v in sample["by_step"].items()},
            "ratio": _r(sample["seconds"] / direct["seconds"], 2),
        }

    extra = {"dagster_ephemeral": runs(median_sample("ephemeral"))} if ephemeral else {}
    return {
        "day": day.isoformat(),
        "rows": rows,
        "repeats": repeats,
        "dagster": runs(dagster),
        **extra,
        "direct": {
            "seconds": _r(direct["seconds"]),
            "by_stage": {k: _r(v) for k, v in direct.items() if k != "seconds"},
        },
        "ratio": _r(dagster["seconds"] / direct["seconds"], 2),
        "overhead_seconds": _r(dagster["seconds"] - direct["seconds"]),
    }


def _cycle_scale_worker(args: dict[str, Any]) -> dict[str, Any]:
    """The daily cycle of :data:`CYCLE_DAY` at ``airings`` a day, in the backfilled pipeline
    world (its history, champion and drift reference come from the 400-a-day days before):
    through the ``daily_cycle`` job and directly, to show how the overhead scales."""
    from mlops_assets.defs.common import project
    from mlops_assets.runner import ensure_instance

    p = project()
    instance = ensure_instance(p.settings)
    from mlops_assets.definitions import defs

    return _measure_cycle(
        p,
        defs,
        instance,
        Path(args["scratch"]),
        args["repeats"],
        rows=args["airings"],
        ephemeral=False,
    )


# 5. Definitions load ------------------------------------------------------------------------

_IMPORT_DEFS = "import mlops_assets.definitions"
_EMPTY_PROJECT = "import dagster; dagster.Definitions()"
_MODULES_CHECK = (
    "import json, sys\nimport mlops_assets.definitions\n"
    "print(json.dumps(sorted(m for m in {mods!r} if m in sys.modules)))"
)


def bench_definitions(plan: Plan, env: dict[str, str], work: Path) -> dict[str, Any]:
    """Median wall time of fresh interpreters importing the definitions, an empty Dagster
    project and nothing, alternated so that load on the machine hits each alike."""
    import compileall

    # Dagster's modules were compiled to bytecode when pip installed them; ours are compiled
    # here, as the first import would (unless PYTHONDONTWRITEBYTECODE is set, then every load
    # would recompile them and pay about 0.1 s the empty project does not).
    compileall.compile_dir(PACKAGE_ROOT / "mlops_assets", quiet=1)
    commands = {"definitions": _IMPORT_DEFS, "empty_dagster": _EMPTY_PROJECT, "python": "pass"}
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(plan.load_repeats):
        for name, code in commands.items():
            started = time.perf_counter()
            done = subprocess.run(
                [sys.executable, "-c", code],
                env=env,
                cwd=work,
                capture_output=True,
                text=True,
                timeout=300,
            )
            times[name].append(time.perf_counter() - started)
            if done.returncode != 0:
                raise BenchError(f"python -c {code!r} failed:\n{done.stderr[-2000:]}")
    check = subprocess.run(
        [sys.executable, "-c", _MODULES_CHECK.format(mods=HEAVY_MODULES)],
        env=env,
        cwd=work,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if check.returncode != 0:
        raise BenchError(f"the import check failed:\n{check.stderr[-2000:]}")
    medians = {name: statistics.median(values) for name, values in times.items()}
    return {
        "repeats": plan.load_repeats,
        "definitions_seconds": _r(medians["definitions"]),
        "empty_dagster_seconds": _r(medians["empty_dagster"]),
        "python_seconds": _r(medians["python"]),
        "all_seconds": {name: [_r(v) for v in values] for name, values in times.items()},
        "ratio": _r(medians["definitions"] / medians["empty_dagster"], 2),
        "heavy_modules_checked": list(HEAVY_MODULES),
        "heavy_modules_imported": json.loads(check.stdout.strip().splitlines()[-1]),
    }


# 6. Scale curve -----------------------------------------------------------------------------


def _scale_worker(args: dict[str, Any]) -> dict[str, Any]:
    """One day at ``airings`` per day: simulate, features, fit one LightGBM candidate on the
    capped sample, predict every row, drift report on a sampled current."""
    import polars as pl

    from mlops_assets.dataset import load_spec
    from mlops_assets.ml import drift
    from mlops_assets.ml.candidates import candidate_by_name
    from mlops_assets.ml.features import build_features, label_examples, outcome_stats
    from mlops_assets.ml.inference import PREDICTION, predict_days
    from mlops_assets.ml.training import sample_rows
    from mlops_assets.simulator import SimulatorConfig, simulate_day

    airings = args["airings"]
    spec = load_spec(os.environ["MLOPS_DATASET"], validate_source=False)
    config = SimulatorConfig(seed=SEED, airings_per_day=airings, label_lag_days=spec.label_lag_days)
    day = CYCLE_DAY
    watch = RssWatch()
    history = []
    setup_started = time.perf_counter()
    # Imported up front so that no stage pays a one-off import (evidently alone takes seconds).
    import evidently  # noqa: F401
    import lightgbm  # noqa: F401

    for back in (1, 2):
        prior = day - timedelta(days=spec.label_lag_days + back)
        history.append(outcome_stats(spec, *simulate_day(prior, config)))
    stats = pl.concat(history)
    setup_seconds = time.perf_counter() - setup_started
    baseline = _mib(watch.rss())

    with watch.stage("simulate") as extra:
        events, outcomes = simulate_day(day, config)
        extra["rows"] = events.height
    with watch.stage("features") as extra:
        outcome_stats(spec, events, outcomes)
        features = build_features(spec, day, events, stats)
        labeled = label_examples(spec, features, outcomes)
        extra["rows"] = features.height
    with watch.stage("train") as extra:
        candidate = candidate_by_name(CHAMPION_CANDIDATE)
        sample = sample_rows(labeled, spec.training.max_train_rows, SEED)
        model = candidate.fit(sample, spec, SEED)
        extra["rows"] = sample.height
    with watch.stage("predict") as extra:
        predictions = predict_days(spec, features, lambda _d: "1", lambda _v: model)
        extra["rows"] = predictions.height
    with watch.stage("drift") as extra:
        reference = sample_rows(sample, 5_000, 11)
        reference = reference.with_columns(
            pl.Series(PREDICTION, model.predict(reference), dtype=pl.Float64)
        )
        current = features.join(predictions.select(spec.event_key, PREDICTION), on=spec.event_key)
        result = drift.drift_report(
            reference, current, spec.monitored_numeric, spec.monitored_categorical
        )
        drift.save_report(result, Path(args["scratch"]) / f"drift_{airings}.html")
        extra["rows"] = result.sampled_current
    watch.close()
    peak = _maxrss_bytes()
    return {
        "airings_per_day": airings,
        "candidate": candidate.name,
        "max_train_rows": spec.training.max_train_rows,
        "history_setup_seconds": _r(setup_seconds),
        "baseline_rss_mib": baseline,
        "stages": watch.stages,
        "seconds": _r(sum(s["seconds"] for s in watch.stages.values())),
        "peak_rss_mib": _mib(peak),
    }


# The report ---------------------------------------------------------------------------------


def _targets(results: dict[str, Any], plan: Plan) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []

    def add(name: str, target: str, observed: str, met: bool | None) -> None:
        out.append({"name": name, "target": target, "observed": observed, "met": met})

    endpoint = results.get("endpoint", {})
    if "servers" in endpoint:
        p99 = endpoint["servers"]["mlops_assets"]["fixed_rate"]["p99_ms"]
        add("endpoint_p99", f"p99 <= 2 ms at {plan.rate} req/s", f"{p99:.2f} ms", p99 <= 2.0)
        ratio = endpoint["saturation_ratio"]
        add("endpoint_saturation", ">= 10x mlflow models serve", f"{ratio:.1f}x", ratio >= 10)
    batch = results.get("batch_inference", {})
    if "ratio" in batch:
        add(
            "batch_inference",
            ">= 0.8x bare Booster.predict rows/s",
            f"{batch['ratio']:.2f}x",
            batch["ratio"] >= 0.8,
        )
    orchestration = results.get("orchestration", {})
    if "ratio" in orchestration:
        ratio = orchestration["ratio"]
        rows = orchestration["rows"]
        add("orchestration", f"< 1.5x direct ({rows:,} rows)", f"{ratio:.2f}x", ratio < 1.5)
        for size in orchestration.get("by_size", []):
            ratio = size["ratio"]
            goal = f"< 1.5x direct ({size['rows']:,} rows)"
            add("orchestration", goal, f"{ratio:.2f}x", ratio < 1.5)
    load = results.get("definitions_load", {})
    if "ratio" in load:
        ratio = load["ratio"]
        add("definitions_load", "< 1.5x empty Dagster project", f"{ratio:.2f}x", ratio < 1.5)
        heavy = load["heavy_modules_imported"]
        add(
            "definitions_imports",
            f"none of {', '.join(HEAVY_MODULES)} imported",
            ", ".join(heavy) or "none",
            not heavy,
        )
    scale = {s["airings_per_day"]: s for s in results.get("scale", {}).get("sizes", [])}
    if 1_000_000 in scale:
        peak = scale[1_000_000]["peak_rss_mib"]
        goal = "1M airings/day completes, peak RSS < 6 GiB"
        add("scale_1m", goal, f"{peak:,.0f} MiB", peak * MIB < 6 * GIB)
    else:
        add("scale_1m", "1M airings/day completes, peak RSS < 6 GiB", "not run (quick)", None)
    return out


def _fmt(value: Any) -> str:
    """Numbers for a table: fewer decimals the larger they are."""
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        digits = 0 if abs(value) >= 1000 else 1 if abs(value) >= 100 else 2
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(c) for c in row) + " |" for row in rows]
    return lines


SECTION_TITLES = {
    "endpoint": "1. Online endpoint",
    "batch_inference": "2. Batch inference",
    "orchestration": "3. Orchestration overhead (one daily cycle)",
    "backfill": "4. Backfill",
    "definitions_load": "5. Definitions load",
    "scale": "6. Scale curve (one day)",
}


def render_markdown(report: dict[str, Any]) -> str:
    """The report as markdown: the targets, then one table per section."""
    meta, results = report["run"], report
    lines = [
        f"# mlops_assets benchmark ({meta['mode']})",
        "",
        f"Run {meta['started_at']}, {meta['seconds']:.0f} s, on {meta['cpus']} CPUs, load "
        f"average {meta['load_average_start']} at start and {meta['load_average_end']} at end. "
        f"Clock {meta['as_of']}, seed {SEED}, {AIRINGS_PER_DAY} airings a day unless stated.",
        "",
        "## Targets (reported, not asserted)",
        "",
    ]
    met = {True: "yes", False: "**no**", None: "-"}
    lines += _table(
        ["target", "goal", "observed", "met"],
        [[t["name"], t["target"], t["observed"], met[t["met"]]] for t in report["targets"]],
    )
    for key, title in SECTION_TITLES.items():
        section = results.get(key, {})
        lines += ["", f"## {title}", ""]
        if LOAD_KEY in section:
            lines += [f"Load average (1 min) when this section started: {section[LOAD_KEY]}.", ""]
        if "error" in section:
            lines.append(f"Failed: {section['error'][:1500]}")
            continue
        if SKIPPED in section:
            lines.append(f"Not run: {section[SKIPPED]}.")
            continue
        lines += _SECTION_RENDERERS[key](section)
    return "\n".join(lines) + "\n"


def _render_endpoint(s: dict[str, Any]) -> list[str]:
    gen, model = s["load_generator"], s["model"]
    rows = []
    for name, server in s["servers"].items():
        for phase in ("fixed_rate", "saturation"):
            r = server[phase]
            label = f"fixed {gen['fixed_rate']} req/s" if phase == "fixed_rate" else "saturation"
            rows.append(
                [
                    name,
                    label,
                    r["requests"],
                    r["errors"],
                    r["p50_ms"],
                    r["p99_ms"],
                    r["rps"],
                ]
            )
    lines = _table(["server", "phase", "requests", "errors", "p50 ms", "p99 ms", "req/s"], rows)
    return [
        f"Model v{model['version']} ({model['candidate']}, {model['trees']} trees, "
        f"{model['features']} features), one key per request over {model['distinct_request_keys']}"
        f" keys; both servers predict the same (max difference "
        f"{model['max_abs_prediction_difference']:.2g}). Load generator: {gen['tool']}. Against "
        f"a null HTTP server (answers at once) it reaches {gen['ceiling_rps']:,.0f} req/s with "
        f"{gen['ceiling_connections']} connections, and at {gen['fixed_rate']} req/s measures "
        f"p50 {gen['floor_p50_ms']:.2f} ms, p99 {gen['floor_p99_ms']:.2f} ms (its own and "
        f"loopback's share of every latency below). {gen['phase_seconds']:.0f} s per phase; "
        f"fixed rate open loop on {gen['fixed_rate_connections']} connections, saturation closed "
        f"loop on {gen['saturation_connections']}. Saturation ratio: "
        f"{s['saturation_ratio']:.1f}x.{_render_request_log(s)}",
        "",
        *lines,
    ]


def _render_request_log(s: dict[str, Any]) -> str:
    log = s["servers"]["mlops_assets"].get("request_log")
    if not log:
        return ""
    return (
        f" Our endpoint wrote each request's log entry before answering it ({log['written']:,} "
        f"entries, {log['pending']} pending, {log['dropped']} dropped): the figures include it."
    )


def _render_batch(s: dict[str, Any]) -> list[str]:
    return [
        f"{s['rows']:,} feature rows of one day, {s['threads']} thread(s), best of "
        f"{s['repeats']}. predict_days includes encoding ({s['encode_seconds']:.3f} s of it); "
        f"ratio {s['ratio']:.2f}x.",
        "",
        *_table(
            ["path", "seconds", "rows/s"],
            [
                ["predict_days (predictions asset)", *s["predict_days"].values()],
                ["bare Booster.predict (encoded matrix)", *s["booster_predict"].values()],
            ],
        ),
    ]


def _render_orchestration(s: dict[str, Any]) -> list[str]:
    rows = []
    for key, label in (
        ("dagster", "Dagster in process, environment instance (SQLite)"),
        ("dagster_ephemeral", "Dagster in process, in-memory instance"),
    ):
        d = s[key]
        detail = f"{d['runs']} runs, {d['run_seconds']:.2f} s in runs, {d['step_seconds']:.2f} s"
        rows.append([label, d["seconds"], f"{d['ratio']:.2f}x", detail + " in steps"])
    rows.append(["same functions directly", s["direct"]["seconds"], "1.00x", ""])
    rows += [[f"direct: {k}", v, "", ""] for k, v in s["direct"]["by_stage"].items()]
    return [
        f"Day {s['day']} ({s['rows']} rows): sources, features, online store, predictions, "
        f"drift report, serving log and business metrics in one run of the `daily_cycle` job; "
        f"median of {s['repeats']}, alternated, in the process the backfill warmed. The direct "
        "path gets earlier days' inputs in memory and writes nothing to the warehouse. Ratio "
        f"{s['ratio']:.2f}x, overhead {s['overhead_seconds']:.2f} s per cycle.",
        "",
        *_table(["path", "seconds", "vs direct", "detail"], rows),
        "",
        "Seconds per Dagster step (input loading, the asset body, storing the output, checks):",
        "",
        *_table(
            ["step", "SQLite instance", "in-memory instance"],
            [
                [step, seconds, s["dagster_ephemeral"]["by_step"].get(step, math.nan)]
                for step, seconds in s["dagster"]["by_step"].items()
            ],
        ),
        *_render_cycle_sizes(s),
    ]


def _render_cycle_sizes(s: dict[str, Any]) -> list[str]:
    sizes = [x for x in s.get("by_size", []) if "dagster" in x]
    if not sizes:
        return []
    rows = [[s["rows"], s["dagster"]["seconds"], s["direct"]["seconds"], f"{s['ratio']:.2f}x"]]
    rows += [
        [x["rows"], x["dagster"]["seconds"], x["direct"]["seconds"], f"{x['ratio']:.2f}x"]
        for x in sizes
    ]
    return [
        "",
        "The same cycle at larger volumes (one run on the SQLite instance; history, champion and "
        "drift reference from the 400-a-day backfill; median of 2):",
        "",
        *_table(["airings a day", "through Dagster s", "directly s", "ratio"], rows),
    ]


def _render_backfill(s: dict[str, Any]) -> list[str]:
    rows = [
        [name, stage.get("partitions", ""), stage["seconds"], stage["peak_rss_mib"]]
        for name, stage in s["stages"].items()
    ]
    return [
        f"{s['days']} days ({s['first_day']}..{s['last_day']}, {s['airings_per_day']} airings a "
        f"day) through the runner on the environment's Dagster instance: {s['runs']} runs, "
        f"{s['asset_partitions']} asset partitions, {len(s['training_dates'])} training dates "
        f"(of {s['training_dates_available']} whose window fits the days). Wall "
        f"{s['wall_seconds']:.1f} s, peak RSS {s['peak_rss_mib']:,.0f} MiB. The daily refresh "
        f"takes {s['per_partition_seconds']:.3f} s per day; the same functions directly take "
        f"{s['daily_refresh_direct_seconds']:.2f} s for all days, so the per-partition overhead "
        f"is {s['per_partition_overhead_seconds']:.3f} s.",
        "",
        *_table(["stage", "partitions", "seconds", "peak RSS MiB"], rows),
    ]


def _render_definitions(s: dict[str, Any]) -> list[str]:
    return [
        f"Median of {s['repeats']} fresh interpreters each. Ratio {s['ratio']:.2f}x. Heavy "
        f"modules imported by the definitions: {', '.join(s['heavy_modules_imported']) or 'none'}"
        f" (checked: {', '.join(s['heavy_modules_checked'])}).",
        "",
        *_table(
            ["command", "median seconds"],
            [
                [f"python -c '{_IMPORT_DEFS}'", s["definitions_seconds"]],
                [f"python -c '{_EMPTY_PROJECT}'", s["empty_dagster_seconds"]],
                ["python -c 'pass'", s["python_seconds"]],
            ],
        ),
    ]


def _render_scale(s: dict[str, Any]) -> list[str]:
    rows = []
    for size in s["sizes"]:
        for name, stage in size["stages"].items():
            rows.append(
                [
                    size["airings_per_day"],
                    name,
                    stage.get("rows", ""),
                    stage["seconds"],
                    stage["peak_rss_mib"],
                ]
            )
        rows.append(
            [size["airings_per_day"], "**whole day**", "", size["seconds"], size["peak_rss_mib"]]
        )
    return [
        f"Each size in its own process; training fits {s['candidate']} on at most "
        f"{s['max_train_rows']:,} rows; the drift report samples the current side. Peak RSS "
        f"is the process's, libraries included (about {s['sizes'][0]['baseline_rss_mib']:,.0f}"
        " MiB before the first stage).",
        "",
        *_table(["airings/day", "stage", "rows", "seconds", "peak RSS MiB"], rows),
    ]


_SECTION_RENDERERS: dict[str, Callable[[dict[str, Any]], list[str]]] = {
    "endpoint": _render_endpoint,
    "batch_inference": _render_batch,
    "orchestration": _render_orchestration,
    "backfill": _render_backfill,
    "definitions_load": _render_definitions,
    "scale": _render_scale,
}


# The run ------------------------------------------------------------------------------------


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("dagster", "mlflow", "lightgbm", "polars", "duckdb", "evidently", "uvicorn"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


# ``--only`` names: which sections each group produces (they share a world or a worker).
GROUPS: dict[str, tuple[str, ...]] = {
    "serving": ("endpoint", "batch_inference"),
    "pipeline": ("orchestration", "backfill"),
    "definitions": ("definitions_load",),
    "scale": ("scale",),
}
SKIPPED = "skipped"


def _run_sections(
    plan: Plan, work: Path, progress: Callable[[str], None], only: Collection[str] = ()
) -> dict[str, dict[str, Any]]:
    """Every section's results by key; a section that could not run holds ``{"error": ...}``.
    With ``only`` (names of :data:`GROUPS`), the other groups are not run."""
    serving = World(work / "serving", _write_spec(work / "specs" / "serving.yaml", plan, False))
    pipeline = World(work / "pipeline", _write_spec(work / "specs" / "pipeline.yaml", plan, True))
    results: dict[str, dict[str, Any]] = {}

    def failed(title: str, exc: BenchError) -> dict[str, Any]:
        progress(f"{title} FAILED: {str(exc)[:2000]}")
        return {"error": str(exc)}

    def section(keys: tuple[str, ...], fn: Callable[[], dict[str, Any]]) -> None:
        """Run ``fn`` (results of ``keys``); if it fails, each key gets its error. Each result
        records the machine's load when it started (other work skews every figure)."""
        title = " and ".join(SECTION_TITLES[k] for k in keys)
        progress(f"{title} ...")
        load = _load_average()
        try:
            produced = fn()
        except BenchError as exc:
            produced = {key: failed(title, exc) for key in keys}
        for value in produced.values():
            value.setdefault(LOAD_KEY, load)
        results.update(produced)

    def guarded(key: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        load = _load_average()
        try:
            value = fn()
        except BenchError as exc:
            value = failed(SECTION_TITLES[key], exc)
        return {**value, LOAD_KEY: load}

    def serving_sections() -> dict[str, Any]:
        info = _run_worker("serving-world", {"batch_rows": plan.batch_rows}, serving.env(), work)
        batch_args = {
            "model_name": info["model_name"],
            "version": info["version"],
            "batch_path": info["batch_path"],
            "repeats": plan.batch_repeats,
        }
        return {
            "endpoint": guarded("endpoint", lambda: bench_endpoint(plan, work, serving, info)),
            "batch_inference": guarded(
                "batch_inference", lambda: _run_worker("batch", batch_args, serving.env(), work)
            ),
        }

    def pipeline_sections() -> dict[str, Any]:
        args = {
            "days": plan.backfill_days,
            "drift_days": plan.drift_days,
            "training_dates": plan.training_dates,
            "repeats": plan.cycle_repeats,
            "scratch": str(work / "scratch"),
        }
        produced = _run_worker("pipeline", args, pipeline.env(), work)
        by_size = []
        for airings in plan.cycle_sizes:
            progress(f"daily cycle at {airings:,} airings a day ...")
            spec = _write_spec(work / "specs" / f"cycle_{airings}.yaml", plan, True, airings)
            bigger = World(pipeline.data_dir, spec)
            cycle_args = {"airings": airings, "repeats": 2, "scratch": str(work / "scratch")}
            by_size.append(_run_worker("cycle-scale", cycle_args, bigger.env(), work))
        produced["orchestration"]["by_size"] = by_size
        return produced

    def scale() -> dict[str, Any]:
        sizes = [
            _run_worker(
                "scale", {"airings": n, "scratch": str(work / "scratch")}, pipeline.env(), work
            )
            for n in plan.scale_sizes
        ]
        return {
            "scale": {
                "candidate": CHAMPION_CANDIDATE,
                "max_train_rows": sizes[0]["max_train_rows"],
                "sizes": sizes,
            }
        }

    runs: dict[str, Callable[[], dict[str, Any]]] = {
        "serving": serving_sections,
        "pipeline": pipeline_sections,
        "definitions": lambda: {"definitions_load": bench_definitions(plan, pipeline.env(), work)},
        "scale": scale,
    }
    for group, keys in GROUPS.items():
        if only and group not in only:
            results.update({key: {SKIPPED: "not selected (--only)"} for key in keys})
        else:
            section(keys, runs[group])
    return results


def _load_average() -> float:
    """The machine's 1-minute load average."""
    return round(os.getloadavg()[0], 2)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def run_benchmark(out: Path, quick: bool = False, only: Collection[str] = ()) -> int:
    """Run every section (or the groups named in ``only``) in a temporary folder, write ``out``
    (JSON) and ``out`` with ``.md``, print the markdown. Returns 1 when a section failed (its
    error is in both files), 130 when interrupted (SIGINT or SIGTERM: servers and workers are
    stopped, the folder is removed and nothing is written), else 0."""
    unknown = sorted(set(only) - set(GROUPS))
    if unknown:
        raise ValueError(f"unknown bench groups {unknown}; known: {', '.join(GROUPS)}")
    plan = Plan.for_mode(quick)
    started, started_at = time.perf_counter(), datetime.now().isoformat(timespec="seconds")
    load_start = [round(x, 2) for x in os.getloadavg()]

    def progress(message: str) -> None:
        print(f"bench [{time.perf_counter() - started:6.0f} s] {message}", flush=True)

    previous = signal.signal(signal.SIGTERM, _interrupt)
    work = Path(tempfile.mkdtemp(prefix="mlops-bench-"))
    try:
        progress(f"{'quick' if quick else 'full'} run in {work}")
        results = _run_sections(plan, work, progress, only)
    except KeyboardInterrupt:
        print("bench: interrupted; servers and workers stopped", file=sys.stderr)
        return 130
    finally:
        shutil.rmtree(work, ignore_errors=True)
        signal.signal(signal.SIGTERM, previous)

    report = {
        "run": {
            "mode": "quick" if quick else "full",
            "started_at": started_at,
            "seconds": _r(time.perf_counter() - started, 1),
            "cpus": os.cpu_count(),
            "load_average_start": load_start,
            "load_average_end": [round(x, 2) for x in os.getloadavg()],
            "python": platform.python_version(),
            "platform": platform.platform(),
            "versions": _versions(),
            "as_of": AS_OF.isoformat(),
            "plan": asdict(plan),
            "only": sorted(only),
        },
        **{key: results.get(key, {"error": "not run"}) for key in SECTION_TITLES},
    }
    report["targets"] = _targets(report, plan)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1, default=str) + "\n")
    markdown = render_markdown(report)
    out.with_suffix(".md").write_text(markdown)
    print()
    print(markdown)
    print(f"written: {out} and {out.with_suffix('.md')}")
    failed = [key for key in SECTION_TITLES if "error" in report[key]]
    if failed:
        print(f"failed sections: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


_WORKERS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "serving-world": _serving_world_worker,
    "batch": _batch_worker,
    "pipeline": _pipeline_worker,
    "cycle-scale": _cycle_scale_worker,
    "scale": _scale_worker,
    "loadgen": _loadgen_worker,
    "null-server": _null_server_worker,
}


def _worker_main(argv: list[str]) -> int:
    """``python -m mlops_assets.bench WORKER ARGS.json``: run one worker and write its JSON
    result to the ``result`` path named in ARGS.json."""
    name, args_path = argv
    args = json.loads(Path(args_path).read_text())
    result = _WORKERS[name](args)
    if "result" in args:
        Path(args["result"]).write_text(json.dumps(result, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(_worker_main(sys.argv[1:]))
