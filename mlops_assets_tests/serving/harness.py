"""Helpers of the endpoint tests: a real registry and online store under a temporary folder, the
endpoint started as a subprocess (``python -m mlops_assets.serving``) on a free port, a
multi-threaded load generator that records every answer, and bounded polling."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import polars as pl

from mlops_assets.dataset import DatasetSpec
from mlops_assets.environments import DEFAULT_DATASET, Settings, load_settings
from mlops_assets.ml import registry
from mlops_assets.ml.candidates import candidate_by_name
from mlops_assets.ml.features import latest_per_serving_key
from mlops_assets.ml.model import TabularModel
from mlops_assets.ml.promotion import CHAMPION_ALIAS
from mlops_assets.ml.training import (
    data_fingerprint,
    split_windows,
    train_and_score,
    training_windows,
)
from mlops_assets.storage import champion_pointer, online_store
from mlops_assets_tests.helpers import FIXED_AS_OF, clean_env
from mlops_assets_tests.worlds import FIRST_DAY, simulated_examples, small_spec

AIRINGS_PER_DAY = 120
SIMULATED_DAYS = 28
STORE_DAYS = 7
# Fast polling so that switches show within a second; the defaults are 1.5 s and 1 s.
POLL_ARGS = ("--model-poll-seconds", "0.25", "--store-poll-seconds", "0.2")


def wait_until(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``condition`` until it returns something truthy; fail naming ``what`` at the end."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.02)


@dataclass(frozen=True)
class World:
    """Two registered LightGBM versions, their models as loaded back, and an online store."""

    spec: DatasetSpec
    settings: Settings
    model_name: str
    versions: tuple[str, str]
    models: dict[str, TabularModel]
    store: pl.DataFrame

    @property
    def data_dir(self) -> Path:
        return self.settings.data_dir

    @property
    def keys(self) -> list[dict[str, str]]:
        return self.store.select(self.spec.serving_keys).to_dicts()

    def rows(self, keys: list[dict[str, str]], frame: pl.DataFrame | None = None) -> pl.DataFrame:
        """The store rows of ``keys``, in that order."""
        frame = self.store if frame is None else frame
        wanted = pl.DataFrame(keys, schema=dict.fromkeys(self.spec.serving_keys, pl.String))
        return wanted.join(
            frame, on=list(self.spec.serving_keys), how="left", maintain_order="left"
        )


def build_world(data_dir: Path) -> World:
    """Simulate, train lgbm_small and lgbm_large, log and register both (champion: the first),
    and publish the online store (latest row per serving key of the last week)."""
    spec = small_spec()
    examples = simulated_examples(spec, FIRST_DAY, SIMULATED_DAYS, AIRINGS_PER_DAY)
    last_day = examples[spec.date_column].max()
    training_date = last_day + timedelta(days=spec.label_lag_days)
    windows = training_windows(spec, training_date)
    train, holdout = split_windows(examples, spec, windows)
    settings = load_settings("dev", data_dir, DEFAULT_DATASET)
    experiment_id = registry.configure(
        settings.mlflow_tracking_uri, settings.mlflow_artifacts_dir, "serving_tests"
    )
    versions = []
    for name in ("lgbm_small", "lgbm_large"):
        candidate = candidate_by_name(name)
        result = train_and_score(candidate, train, holdout, spec, seed=7)
        logged = registry.log_candidate(
            experiment_id=experiment_id,
            candidate=candidate,
            result=result,
            windows=windows,
            registered_model_name=settings.registered_model_name,
            partition=training_date.isoformat(),
            data_fingerprint=data_fingerprint(train),
        )
        versions.append(logged.version)
    name, uri = settings.registered_model_name, settings.mlflow_tracking_uri
    move_champion(settings, versions[0])
    recent = examples.filter(pl.col(spec.date_column) > last_day - timedelta(days=STORE_DAYS))
    store = latest_per_serving_key(spec, recent.drop(spec.target))
    online_store.publish(store, settings.online_store_path)
    models = {v: registry.load_model_version(name, v, uri) for v in versions}
    return World(spec, settings, name, (versions[0], versions[1]), models, store)


def move_champion(settings: Settings, version: str | None) -> None:
    """What the decision history does when it decides a champion: move the registry alias to
    ``version`` (None: remove it) and publish the champion pointer the endpoint watches."""
    name, uri = settings.registered_model_name, settings.mlflow_tracking_uri
    if version is None:
        registry.delete_aliases(name, [CHAMPION_ALIAS], uri)
    else:
        registry.set_aliases(name, version, [CHAMPION_ALIAS], uri)
    champion_pointer.publish(settings.champion_pointer_path, name, version, [CHAMPION_ALIAS])


def copy_registry(world: World, data_dir: Path) -> Settings:
    """Another environment folder whose registry is a copy of ``world``'s (same versions and
    aliases, artifacts shared read-only) with its champion pointer, without an online store."""
    settings = load_settings("dev", data_dir, DEFAULT_DATASET)
    settings.mlflow_db_path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(world.settings.mlflow_db_path, settings.mlflow_db_path)
    settings.champion_pointer_path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(world.settings.champion_pointer_path, settings.champion_pointer_path)
    return settings


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    """One endpoint process; its stdout and stderr go to ``log_path``."""

    process: subprocess.Popen
    base_url: str
    log_path: Path
    client: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.client = httpx.Client(base_url=self.base_url, timeout=30, trust_env=False)

    @property
    def pid(self) -> int:
        return self.process.pid

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:]

    def get(self, path: str) -> httpx.Response:
        return self.client.get(path)

    def post(self, body: Any, **kwargs: Any) -> httpx.Response:
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        return self.client.post("/predict", content=content, **kwargs)

    def model(self) -> dict[str, Any]:
        return self.get("/model").json()

    def answers(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(
                f"the endpoint exited with {self.process.returncode}:\n{self.output()}"
            )
        try:
            return self.get("/healthz").status_code == 200
        except httpx.TransportError:
            return False

    def stop(self, timeout: float = 30) -> int:
        """SIGINT by PID, then wait for the process to exit; its exit code."""
        self.client.close()
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGINT)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
            raise AssertionError(
                f"the endpoint ignored SIGINT for {timeout} s:\n{self.output()}"
            ) from None


@contextmanager
def running_server(
    data_dir: Path, log_path: Path, *args: str, as_of: str | None = FIXED_AS_OF
) -> Iterator[Server]:
    """Start the endpoint on ``data_dir`` (env dev; MLOPS_AS_OF=``as_of``, unset when None) and
    wait until /healthz answers."""
    port = free_port()
    env = clean_env(
        MLOPS_DATA_DIR=str(data_dir),
        MLOPS_DATASET=str(DEFAULT_DATASET),
        OMP_WAIT_POLICY="passive",
        **({"MLOPS_AS_OF": as_of} if as_of else {}),
    )
    command = [sys.executable, "-m", "mlops_assets.serving", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--log-level", "warning", *POLL_ARGS, *args]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command,
            env=env,
            cwd=data_dir.parent,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Server(process, f"http://127.0.0.1:{port}", log_path)
    try:
        wait_until(server.answers, 60, "the endpoint to answer /healthz")
        yield server
    finally:
        if process.poll() is None:
            server.stop()


@dataclass
class Answer:
    sent: float
    done: float
    status: int | None
    body: dict[str, Any] | None
    request_id: str | None
    failure: str | None = None


class Load:
    """``threads`` clients posting bodies from ``next_body`` until stopped or ``total`` is
    reached, each answer recorded with its send and receive times."""

    def __init__(
        self,
        server: Server,
        next_body: Callable[[int], bytes],
        threads: int = 6,
        total: int | None = None,
    ):
        self.server = server
        self.next_body = next_body
        self.total = total
        self.answers: list[Answer] = []
        self._lock = threading.Lock()
        self._issued = 0
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._work, daemon=True) for _ in range(threads)]

    def _ticket(self) -> int | None:
        with self._lock:
            if self._stop.is_set() or (self.total is not None and self._issued >= self.total):
                return None
            self._issued += 1
            return self._issued - 1

    def _work(self) -> None:
        with httpx.Client(base_url=self.server.base_url, timeout=30, trust_env=False) as client:
            while (n := self._ticket()) is not None:
                sent = time.monotonic()
                try:
                    r = client.post("/predict", content=self.next_body(n))
                    answer = Answer(
                        sent, time.monotonic(), r.status_code, r.json(), r.headers["x-request-id"]
                    )
                except Exception as exc:  # a failed request is a result the test counts
                    answer = Answer(sent, time.monotonic(), None, None, None, repr(exc))
                with self._lock:
                    self.answers.append(answer)

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)

    def join(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        assert not any(t.is_alive() for t in self._threads), "load did not finish in time"

    def count(self, predicate: Callable[[Answer], bool] = lambda a: True) -> int:
        with self._lock:
            return sum(1 for a in self.answers if predicate(a))

    def snapshot(self) -> list[Answer]:
        with self._lock:
            return list(self.answers)


def raw_connection(server: Server, timeout: float = 10.0) -> socket.socket:
    """A plain TCP connection to the endpoint, blocking with ``timeout`` on every call."""
    host, port = server.base_url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=timeout)
    sock.settimeout(timeout)
    return sock


def read_until_eof(sock: socket.socket, timeout: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and the seconds that took;
    fails if it is still open after ``timeout`` seconds."""
    started = time.monotonic()
    data = b""
    while True:
        remaining = timeout - (time.monotonic() - started)
        if remaining <= 0:
            raise AssertionError(f"the server kept the connection open for {timeout} s")
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            raise AssertionError(f"the server kept the connection open for {timeout} s") from None
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            return data, time.monotonic() - started
        data += chunk


def http_request(
    body: bytes, content_type: str = "application/json", length: int | None = None
) -> bytes:
    """The bytes of a POST /predict request head followed by ``body``."""
    head = (
        f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body) if length is None else length}\r\n\r\n"
    )
    return head.encode() + body


def parse_response(data: bytes) -> tuple[int, dict[str, str], bytes]:
    """Status, headers (lower-case names) and body of one raw HTTP/1.1 response."""
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, body


def predictions(answer: Answer) -> np.ndarray:
    assert answer.body is not None
    return np.array([p["prediction"] for p in answer.body["predictions"]])
