"""The HTTP load generator (open loop at a fixed rate, closed loop at saturation) and the null
server that measures its ceiling; each runs in its own process."""

from __future__ import annotations

import math
import resource
import signal
import time
from typing import Any

from benchmarks.common import _percentile, _r

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
    _done, pending = await asyncio.wait(tasks, timeout=60)
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
