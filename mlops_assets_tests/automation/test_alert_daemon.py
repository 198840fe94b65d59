"""Alerts through the real daemon on the shipped instance: `dagster-daemon run` and a
`dagster-webserver` on a Dagster home holding the repository's own dagster.yaml (run-sharded
SQLite storage, as under `make dev`), a webhook receiver on 127.0.0.1 (MLOPS_ALERT_WEBHOOK).

In prod, a day whose `spend` is mostly null fails the ERROR check `features_null_share`, and
`predictions` was last materialized four days ago (an event recorded with that timestamp: the
freshness daemon judges by the wall clock), past its 72-hour freshness window. Exactly one alert
of each must reach the receiver and the alert log, and stay one after later sensor ticks; no
tick of the sensor may fail; and every link points at the webserver named by MLOPS_DAGSTER_URL,
whose GraphQL API knows the linked run and asset."""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import ClassVar
from urllib.parse import urlparse

import dagster as dg
import httpx
import pytest
from dagster._core.events import DagsterEvent, DagsterEventType, StepMaterializationData
from dagster._core.events.log import EventLogEntry
from dagster._core.scheduler.instigation import TickStatus

from mlops_assets.defs.alerts import EVENT_SENSOR
from mlops_assets.environments import REPO_ROOT
from mlops_assets_tests.deploy.harness import (
    GraphQL,
    free_port,
    running,
    start_process,
    wait_until,
)
from mlops_assets_tests.helpers import clean_env, copy_dagster_yaml

BIN = Path(sys.executable).parent
WORKSPACE = str(REPO_ROOT / "workspace.yaml")
ALERT_DEADLINE_S = 300
STARTUP_DEADLINE_S = 180
STALE_ASSET = "predictions"
STALE_FOR = timedelta(days=4)

RUN_QUERY = """
query Run($runId: ID!) { runOrError(runId: $runId) { __typename ... on Run { runId } } }
"""
ASSET_QUERY = """
query Asset($key: AssetKeyInput!) {
  assetOrError(assetKey: $key) {
    __typename
    ... on Asset { key { path } definition { freshnessStatusInfo { freshnessStatus } } }
  }
}
"""


class _Receiver(BaseHTTPRequestHandler):
    bodies: ClassVar[list[dict]] = []

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        type(self).bodies.append(json.loads(self.rfile.read(length)))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args) -> None:
        return


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[dict]]]:
    _Receiver.bodies = []
    server = HTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hook", _Receiver.bodies
    server.shutdown()
    server.server_close()


def _lines(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _store_old_materialization(instance: dg.DagsterInstance, day: date, when: datetime) -> None:
    """A materialization of ``predictions`` for ``day`` recorded at ``when`` (a runless event,
    as an external report would be)."""
    event = DagsterEvent(
        event_type_value=DagsterEventType.ASSET_MATERIALIZATION.value,
        job_name="__ASSET_JOB",
        event_specific_data=StepMaterializationData(
            dg.AssetMaterialization(asset_key=STALE_ASSET, partition=day.isoformat())
        ),
    )
    instance.store_event(
        EventLogEntry(
            error_info=None,
            level="DEBUG",
            user_message="",
            run_id="",
            timestamp=when.timestamp(),
            dagster_event=event,
        )
    )


def _sensor_ticks(instance: dg.DagsterInstance) -> list:
    states = [s for s in instance.all_instigator_state() if s.name == EVENT_SENSOR]
    if not states:
        return []
    state = states[0]
    return list(instance.get_ticks(state.instigator_origin_id, state.selector_id, limit=100))


def test_daemon_alerts_once_per_failed_check_and_stale_asset(
    make_pipeline, receiver, tmp_path: Path
) -> None:
    url, bodies = receiver
    now = datetime.now(UTC).replace(tzinfo=None, second=0, microsecond=0)
    day = now.date() - timedelta(days=1)
    pipeline = make_pipeline(
        as_of=now.isoformat(timespec="minutes"),
        start_date=day.isoformat(),
        airings_per_day=100,
        incidents=[{"kind": "null_storm", "date": day.isoformat(), "column": "spend"}],
    )
    pipeline.set_env("prod")
    home = tmp_path / "dagster_home"
    copy_dagster_yaml(home)
    port = free_port()
    ui = f"http://127.0.0.1:{port}"
    env = clean_env(
        **pipeline.env,
        DAGSTER_HOME=str(home),
        MLOPS_ALERT_WEBHOOK=url,
        MLOPS_ALERT_WEBHOOK_FORMAT="json",
        MLOPS_DAGSTER_URL=ui,
    )
    alerts_path = pipeline.data_dir / "prod" / "alerts" / "alerts.jsonl"

    instance = dg.DagsterInstance.from_config(str(home))
    pipeline.use_instance(instance)
    result = pipeline.materialize(day, ["raw_events", "features"])
    failed = [e.check_name for e in result.get_asset_check_evaluations() if not e.passed]
    assert failed == ["features_null_share"], failed
    _store_old_materialization(instance, day, datetime.now(UTC) - STALE_FOR)

    logs = tmp_path / "logs"
    webserver = start_process(
        "webserver",
        [str(BIN / "dagster-webserver"), "-w", WORKSPACE, "-h", "127.0.0.1", "-p", str(port)],
        env,
        logs,
    )
    daemon = start_process(
        "daemon", [str(BIN / "dagster-daemon"), "run", "-w", WORKSPACE], env, logs
    )
    with running([daemon, webserver]):

        def both_alerts() -> bool:
            assert daemon.process.poll() is None, f"the daemon exited:\n{daemon.log[-3000:]}"
            kinds = {a["kind"] for a in _lines(alerts_path)}
            return {"check_failed", "freshness"} <= kinds and len(bodies) >= 2

        wait_until(both_alerts, ALERT_DEADLINE_S, "a check alert and a freshness alert")
        last_alert = max(datetime.fromisoformat(a["ts"]) for a in _lines(alerts_path))

        def tick_after_alerts() -> bool:
            done = [
                t
                for t in _sensor_ticks(instance)
                if t.status in (TickStatus.SKIPPED, TickStatus.SUCCESS)
                and t.timestamp > last_alert.timestamp()
            ]
            return bool(done)

        # One more completed tick after the alerts: it must not alert again.
        wait_until(tick_after_alerts, ALERT_DEADLINE_S, "a sensor tick after the alerts")
        graphql = GraphQL(ui)
        try:
            wait_until(lambda: graphql.ready(webserver), STARTUP_DEADLINE_S, "the webserver")
            lines = _lines(alerts_path)
            ticks = _sensor_ticks(instance)
            failures = [t.tick_data.error for t in ticks if t.status == TickStatus.FAILURE]
            assert failures == [], failures
            assert len(ticks) >= 2

            assert sorted(a["kind"] for a in lines) == ["check_failed", "freshness"], lines
            assert sorted(b["kind"] for b in bodies) == ["check_failed", "freshness"], bodies
            assert all(a["delivery"] == "posted (200)" for a in lines), lines
            check = next(a for a in lines if a["kind"] == "check_failed")
            stale = next(a for a in lines if a["kind"] == "freshness")
            assert check["asset"] == "features"
            assert check["partition"] == day.isoformat()
            assert check["cause"] == "check features_null_share failed"
            assert check["run_id"] == result.run_id
            assert stale["asset"] == STALE_ASSET
            assert stale["cause"] == "stale"

            # The links start at MLOPS_DAGSTER_URL and name what the webserver knows.
            assert check["run_url"] == f"{ui}/runs/{result.run_id}"
            assert stale["asset_url"] == f"{ui}/assets/{STALE_ASSET}"
            for link in (check["run_url"], stale["asset_url"]):
                page = httpx.get(link, timeout=30)
                assert page.status_code == 200 and "<html" in page.text.lower(), link
            run_id = urlparse(check["run_url"]).path.rsplit("/", 1)[-1]
            run = graphql.execute(RUN_QUERY, {"runId": run_id})["runOrError"]
            assert run == {"__typename": "Run", "runId": result.run_id}, run
            path = urlparse(stale["asset_url"]).path.removeprefix("/assets/").split("/")
            asset = graphql.execute(ASSET_QUERY, {"key": {"path": path}})["assetOrError"]
            assert asset["__typename"] == "Asset", asset
            status = asset["definition"]["freshnessStatusInfo"]["freshnessStatus"]
            assert status == "DEGRADED", asset  # a FAIL freshness state
        finally:
            graphql.close()
    instance.dispose()
