"""Alerts: a failing run and a failed ERROR check each produce exactly one alert line, a repeat
inside the cooldown produces none, and a webhook alert reaches a local HTTP receiver. Links
start at the Dagster UI's URL setting (MLOPS_DAGSTER_URL), and a URL that is not http(s) is
refused by name. (The same sensors under the real daemon: automation/test_alert_daemon.py.)"""

from __future__ import annotations

import json
import re
import threading
from datetime import date
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import ClassVar

import dagster as dg
import pytest

from mlops_assets.defs.alerts import alert_on_failed_checks, alert_on_run_failure
from mlops_assets.defs.resources import AlertSinkResource
from mlops_assets_tests.helpers import Pipeline


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
def receiver():
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


def _failed_run(pipeline: Pipeline) -> tuple[dg.DagsterRun, dg.DagsterEvent]:
    # Outcomes of 2025-03-14 land on 2025-03-16; the clock says 2025-03-15, so this run fails.
    result = pipeline.materialize(date(2025, 3, 14), ["raw_outcomes"])
    assert not result.success
    run = pipeline.instance.get_run_by_id(result.run_id)
    failure = next(e for e in result.all_events if e.event_type_value == "PIPELINE_FAILURE")
    return run, failure


def _evaluate_run_failure(pipeline: Pipeline, alerts: AlertSinkResource) -> None:
    run, failure = _failed_run(pipeline)
    context = dg.build_run_status_sensor_context(
        sensor_name="alert_on_run_failure",
        dagster_event=failure,
        dagster_instance=pipeline.instance,
        dagster_run=run,
        resources={"alerts": alerts},
    ).for_run_failure()
    alert_on_run_failure(context)


def test_failing_run_alerts_once_and_repeat_is_suppressed(pipeline: Pipeline) -> None:
    path = pipeline.data_dir / "dev" / "alerts" / "alerts.jsonl"
    alerts = AlertSinkResource(env="dev", path=str(path))
    _evaluate_run_failure(pipeline, alerts)
    lines = _lines(path)
    assert len(lines) == 1
    alert = lines[0]
    assert alert["kind"] == "run_failure"
    assert alert["env"] == "dev"
    assert alert["partition"] == "2025-03-14"
    assert "raw_outcomes" in alert["asset"]
    assert "land on 2025-03-16" in alert["message"]
    assert alert["run_url"].endswith(alert["run_id"])

    _evaluate_run_failure(pipeline, alerts)
    assert len(_lines(path)) == 1, "a repeated failure inside the cooldown must not alert again"


def test_webhook_alert_reaches_local_receiver(pipeline: Pipeline, receiver) -> None:
    url, bodies = receiver
    path = pipeline.data_dir / "dev" / "alerts" / "alerts.jsonl"
    alerts = AlertSinkResource(env="dev", path=str(path), webhook_url=url)
    _evaluate_run_failure(pipeline, alerts)
    assert len(bodies) == 1
    assert "[dev] run_failure" in bodies[0]["text"]
    assert "raw_outcomes" in bodies[0]["text"]
    assert _lines(path)[0]["delivery"] == "posted (200)"


def test_failed_error_check_alerts_exactly_once(make_pipeline) -> None:
    storm_day = date(2025, 2, 10)
    pipeline = make_pipeline(
        incidents=[{"kind": "null_storm", "date": storm_day.isoformat(), "column": "spend"}]
    )
    pipeline.set_env("prod")  # in prod the null-share rule is an ERROR that blocks
    result = pipeline.materialize(storm_day, ["raw_events", "features"])
    failed = [e for e in result.get_asset_check_evaluations() if not e.passed]
    assert [e.check_name for e in failed] == ["features_null_share"]
    assert failed[0].severity == dg.AssetCheckSeverity.ERROR

    path = pipeline.data_dir / "prod" / "alerts" / "alerts.jsonl"
    alerts = AlertSinkResource(env="prod", path=str(path))
    defs = pipeline.definitions()
    context = dg.build_sensor_context(
        instance=pipeline.instance, resources={"alerts": alerts}, definitions=defs
    )
    alert_on_failed_checks(context)
    lines = _lines(path)
    assert len(lines) == 1
    assert lines[0]["kind"] == "check_failed"
    assert lines[0]["asset"] == "features"
    assert lines[0]["cause"] == "check features_null_share failed"
    assert "spend" in lines[0]["details"]["worst_column"]

    # The next tick starts after the cursor: nothing new, nothing sent.
    again = dg.build_sensor_context(
        instance=pipeline.instance,
        resources={"alerts": alerts},
        cursor=context.cursor,
        definitions=defs,
    )
    alert_on_failed_checks(again)
    assert len(_lines(path)) == 1


def test_alert_links_start_at_the_dagster_url_setting(pipeline: Pipeline) -> None:
    pipeline.monkeypatch.setenv("MLOPS_DAGSTER_URL", "http://dagster.internal:8080/")
    alerts = pipeline.definitions().resources["alerts"]
    assert alerts.ui_base == "http://dagster.internal:8080"
    assert alerts.run_url("abc") == "http://dagster.internal:8080/runs/abc"
    assert alerts.asset_url(dg.AssetKey(["a b", "c"])) == (
        "http://dagster.internal:8080/assets/a%20b/c"
    )


def test_a_dagster_url_that_is_not_http_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from mlops_assets.environments import SettingsError, load_settings

    monkeypatch.setenv("MLOPS_DAGSTER_URL", "127.0.0.1:3000")
    with pytest.raises(
        SettingsError, match=re.escape("MLOPS_DAGSTER_URL='127.0.0.1:3000' is not an http")
    ):
        load_settings()
