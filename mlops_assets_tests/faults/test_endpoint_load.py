"""The online endpoint under sustained load: ``python -m mlops_assets.serving`` as a subprocess
on 127.0.0.1 (its own copy of the registry and online store, default request-log settings)
answers four client threads paced at 75 requests a second each (one to five keys, some with
overrides) for at least 60 seconds. No request fails; each answer is in the request log before
it arrives, so the log holds one entry per answered request while the server still runs, and
exactly one per answered request, with the same request ids and statuses, after a graceful
SIGINT. The server runs with MLOPS_AS_OF set: every entry falls on that day."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import httpx
import polars as pl

from mlops_assets.storage import online_store
from mlops_assets.storage.request_log import count_day, read_day
from mlops_assets_tests.helpers import FIXED_AS_OF
from mlops_assets_tests.serving.harness import copy_registry, running_server, wait_until

DURATION_S = 60.0
THREADS = 4
RATE_PER_THREAD = 75.0


@dataclass(frozen=True)
class Answer:
    status: int | None
    request_id: str | None
    failure: str | None = None


def bodies(keys: list[dict[str, str]]) -> list[bytes]:
    """A rotation of valid requests: one to five keys, every third with an override."""
    out = []
    for i in range(60):
        chosen = [keys[(i * 7 + j) % len(keys)] for j in range(1 + i % 5)]
        body: dict = {"keys": chosen}
        if i % 3 == 0:
            body["overrides"] = {"spend": 500.0 + 100 * i, "hour": i % 24}
        out.append(json.dumps(body).encode())
    return out


def paced_load(base_url: str, payloads: list[bytes], deadline: float) -> list[Answer]:
    """``THREADS`` clients, each sending at ``RATE_PER_THREAD`` until ``deadline``."""
    answers: list[Answer] = []
    lock = threading.Lock()

    def client(offset: int) -> None:
        interval = 1.0 / RATE_PER_THREAD
        with httpx.Client(base_url=base_url, timeout=30, trust_env=False) as http:
            n, due = offset, time.monotonic()
            while (now := time.monotonic()) < deadline:
                if due > now:
                    time.sleep(due - now)  # pacing: hold the request rate, not a wait for state
                due += interval
                try:
                    r = http.post("/predict", content=payloads[n % len(payloads)])
                    answer = Answer(r.status_code, r.headers.get("x-request-id"))
                except httpx.HTTPError as exc:  # a failed request is a result to count
                    answer = Answer(None, None, repr(exc))
                n += THREADS
                with lock:
                    answers.append(answer)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(deadline - time.monotonic() + 60)
    assert not any(t.is_alive() for t in threads), "a client thread did not finish"
    return answers


def test_sixty_seconds_of_load_every_answer_logged(serving_world, tmp_path: Path) -> None:
    settings = copy_registry(serving_world, tmp_path / "data")
    online_store.publish(serving_world.store, settings.online_store_path)
    payloads = bodies(serving_world.keys)
    log_dir = settings.request_log_dir
    days = {date.fromisoformat(FIXED_AS_OF[:10])}
    with running_server(settings.data_dir, tmp_path / "server.log") as srv:
        wait_until(lambda: srv.get("/readyz").status_code == 200, 60, "the endpoint to be ready")
        answers = paced_load(srv.base_url, payloads, time.monotonic() + DURATION_S)
        logged_while_serving = sum(count_day(log_dir, d) for d in days)
        assert srv.get("/healthz").status_code == 200
        exit_code = srv.stop()
    assert exit_code == 0, srv.output()

    failures = [a for a in answers if a.status != 200]
    assert not failures, f"{len(failures)} of {len(answers)} failed, e.g. {failures[:3]}"
    assert logged_while_serving == len(answers)

    assert sum(count_day(log_dir, d) for d in days) == len(answers)
    logged = pl.concat([read_day(log_dir, d) for d in sorted(days)])
    assert logged.height == len(answers)
    assert sorted(logged["request_id"]) == sorted(a.request_id for a in answers)
    assert Counter(logged["status"].to_list()) == {200: len(answers)}
    assert logged["model_version"].unique().to_list() == [serving_world.versions[0]]
    assert set(logged["pid"]) == {srv.pid}
