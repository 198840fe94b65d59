"""`make prod-ops`: prod runs by itself beside the product managers' read-only UI.

With MLOPS_DATA_DIR pointing at a temporary folder and MLOPS_ENV unset, the target serves the prod
environment's own Dagster home (``$MLOPS_DATA_DIR/prod/dagster_home``, the repository's
dagster.yaml) with a read-only webserver and runs prod's daemon beside it. Prod's `features`
were materialized once before: no freshness state exists for them until a daemon evaluates one
("Not evaluated" in the UI); under `make prod-ops` the freshness daemon records it (fresh), the
sensor and automation daemons beat, the UI shows the asset as fresh and refuses to launch runs,
the reports server serves prod's saved reports, and SIGINT stops every process the target
started."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import httpx
import psutil
from dagster._core.definitions.freshness import FreshnessState

from mlops_assets.environments import REPO_ROOT
from mlops_assets_tests.deploy.harness import (
    GraphQL,
    free_port,
    running,
    start_process,
    wait_until,
)
from mlops_assets_tests.helpers import clean_env, copy_dagster_yaml

VENV = Path(sys.executable).parent.parent
STARTUP_TIMEOUT = 240
DAEMONS = {"SENSOR", "ASSET", "FRESHNESS_DAEMON", "MONITORING"}
FRESHNESS_QUERY = """
query Freshness {
  assetOrError(assetKey: {path: ["features"]}) {
    __typename
    ... on Asset { definition { freshnessStatusInfo { freshnessStatus } } }
  }
}
"""
PERMISSIONS_QUERY = "query Permissions { permissions { permission value } }"


def test_prod_ops_runs_prods_daemon_beside_the_readonly_ui(make_pipeline, tmp_path: Path) -> None:
    now = datetime.now(UTC).replace(tzinfo=None, second=0, microsecond=0)
    day = now.date() - timedelta(days=1)
    pipeline = make_pipeline(
        as_of=now.isoformat(timespec="minutes"), start_date=day.isoformat(), airings_per_day=100
    )
    pipeline.set_env("prod")
    home = pipeline.data_dir / "prod" / "dagster_home"
    copy_dagster_yaml(home)
    instance = dg.DagsterInstance.from_config(str(home))
    pipeline.use_instance(instance)
    result = pipeline.materialize(day, ["raw_events", "features"])
    assert result.success
    features = dg.AssetKey("features")
    assert instance.get_freshness_state_records([features]) == {}  # not evaluated

    port = free_port()
    env = clean_env(**{k: v for k, v in pipeline.env.items() if k != "MLOPS_ENV"})
    command = ["make", "--no-print-directory", "-C", str(REPO_ROOT), "prod-ops"]
    reports_port = free_port()
    command += [f"VENV={VENV}", "-o", str(VENV / ".installed"), f"UI_PORT={port}"]
    command += [f"UI_REPORTS_PORT={reports_port}", f"UI_DASHBOARD_PORT={free_port()}"]
    reports = pipeline.data_dir / "prod" / "reports"
    reports.mkdir(parents=True, exist_ok=True)
    (reports / "drift_report.html").write_text("<html>prod report</html>")
    ops = start_process("make_prod_ops", command, env, tmp_path / "logs")
    children: list[psutil.Process] = []
    with running([ops], grace=60):
        api = GraphQL(f"http://127.0.0.1:{port}")
        try:
            wait_until(lambda: api.ready(ops), STARTUP_TIMEOUT, "the read-only webserver")

            def evaluated() -> bool:
                assert ops.process.poll() is None, ops.log[-3000:]
                records = instance.get_freshness_state_records([features])
                return features in records

            wait_until(evaluated, STARTUP_TIMEOUT, "prod's freshness daemon")
            state = instance.get_freshness_state_records([features])[features]
            assert state.freshness_state == FreshnessState.PASS
            wait_until(
                lambda: DAEMONS <= set(instance.get_daemon_heartbeats()),
                STARTUP_TIMEOUT,
                f"heartbeats of {sorted(DAEMONS)}",
            )
            answer = httpx.get(f"http://127.0.0.1:{reports_port}/drift_report.html", timeout=10)
            assert answer.status_code == 200 and answer.text == "<html>prod report</html>"
            children = psutil.Process(ops.process.pid).children(recursive=True)

            asset = api.execute(FRESHNESS_QUERY)["assetOrError"]
            assert asset["definition"]["freshnessStatusInfo"]["freshnessStatus"] == "HEALTHY"
            permissions = {
                p["permission"]: p["value"] for p in api.execute(PERMISSIONS_QUERY)["permissions"]
            }
            assert permissions["launch_pipeline_execution"] is False, permissions
            assert (home / "dagster.yaml").read_text() == (REPO_ROOT / "dagster.yaml").read_text()
        finally:
            api.close()
    instance.dispose()
    survivors = [p for p in children if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    names = [" ".join(p.cmdline()[:3]) for p in survivors]
    for process in survivors:
        process.kill()
    assert survivors == [], f"left running after SIGINT: {names}"
