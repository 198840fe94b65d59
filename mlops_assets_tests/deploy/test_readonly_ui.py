"""The product managers' read-only UI: ``make ui-readonly`` serves the prod environment's webserver,
which answers read queries (the asset catalog) but refuses, as UnauthorizedError, the GraphQL
mutations behind the UI's buttons: launching a run, launching a backfill, starting a sensor.

To show those mutations are valid and would succeed, the same ones go to a writable webserver
shaped like production: deploy/workspace.yaml (the code location served by ``dagster api grpc``)
and deploy/dagster.yaml with the default run launcher in place of the Kubernetes one (dagster-k8s
is not installed here), on a private PostgreSQL database. There, with no daemon running, a
launched run waits in the run queue, and the test finds it in Postgres.

Servers are real subprocesses in their own process groups, polled until ready, stopped by PID.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from dagster._core.errors import DagsterUserCodeUnreachableError
from dagster._grpc.client import DagsterGrpcClient

from mlops_assets.environments import REPO_ROOT
from mlops_assets_tests.deploy.harness import (
    DEPLOY_WORKSPACE,
    LOCATION,
    REPOSITORY,
    Database,
    GraphQL,
    PostgresServer,
    ServerProcess,
    free_port,
    running,
    start_process,
    wait_until,
    write_deploy_home,
)
from mlops_assets_tests.helpers import FIXED_AS_OF, clean_env

BIN = Path(sys.executable).parent
STARTUP_TIMEOUT = 120
PARTITION = "2025-01-02"
SENSOR = "automation"
ASSETS = (
    "raw_events",
    "raw_outcomes",
    "features",
    "labeled_examples",
    "online_features",
    "champion",
    "predictions",
    "serving_log",
)

LAUNCH_RUN = """
mutation LaunchDailyRefresh($executionParams: ExecutionParams!) {
  launchRun(executionParams: $executionParams) {
    __typename
    ... on LaunchRunSuccess { run { runId status } }
    ... on Error { message }
  }
}
"""
LAUNCH_BACKFILL = """
mutation LaunchBackfill($backfillParams: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $backfillParams) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on Error { message }
  }
}
"""
START_SENSOR = """
mutation StartSensor($sensorSelector: SensorSelector!) {
  startSensor(sensorSelector: $sensorSelector) {
    __typename
    ... on Sensor { name sensorState { status } }
    ... on Error { message }
  }
}
"""
CATALOG = """
query Catalog($repositorySelector: RepositorySelector!) {
  assetNodes { assetKey { path } groupName }
  permissions { permission value }
  allTopLevelResourceDetailsOrError(repositorySelector: $repositorySelector) {
    __typename
    ... on ResourceDetailsList { results { name configuredValues { key value } } }
  }
  runsOrError { __typename ... on Runs { count } }
}
"""

# (mutation name, query, variables, the answer's type when the webserver lets it through)
MUTATIONS = {
    "launchRun": (
        LAUNCH_RUN,
        {
            "executionParams": {
                "selector": {
                    "repositoryLocationName": LOCATION,
                    "repositoryName": REPOSITORY,
                    "jobName": "daily_refresh",
                },
                "runConfigData": {},
                "executionMetadata": {"tags": [{"key": "dagster/partition", "value": PARTITION}]},
            }
        },
        "LaunchRunSuccess",
    ),
    "launchPartitionBackfill": (
        LAUNCH_BACKFILL,
        {
            "backfillParams": {
                "assetSelection": [{"path": ["raw_events"]}],
                "partitionNames": [PARTITION],
            }
        },
        "LaunchBackfillSuccess",
    ),
    "startSensor": (
        START_SENSOR,
        {
            "sensorSelector": {
                "repositoryLocationName": LOCATION,
                "repositoryName": REPOSITORY,
                "sensorName": SENSOR,
            }
        },
        "Sensor",
    ),
}


@dataclass
class Webservers:
    readonly: GraphQL
    writable: GraphQL
    writable_db: Database

    def mutate(self, server: GraphQL, name: str) -> dict[str, Any]:
        query, variables, _ = MUTATIONS[name]
        return server.execute(query, variables)[name]


def _grpc_serving(port: int, process: ServerProcess) -> bool:
    if process.process.poll() is not None:
        raise AssertionError(f"{process.name} exited early:\n{process.log}")
    try:
        return DagsterGrpcClient(port=port, host="127.0.0.1").ping("ready")["echo"] == "ready"
    except DagsterUserCodeUnreachableError:
        return False


@pytest.fixture(scope="module")
def webservers(
    tmp_path_factory: pytest.TempPathFactory, postgres_server: PostgresServer
) -> Iterator[Webservers]:
    root = tmp_path_factory.mktemp("ui")
    logs = root / "logs"
    readonly_port, grpc_port, writable_port = free_port(), free_port(), free_port()

    # The read-only UI exactly as `make ui-readonly` starts it (a temporary data folder and a
    # free port instead of data/ and 3001). MLOPS_ENV is unset here: the target defaults to prod.
    readonly_env = clean_env(MLOPS_DATA_DIR=str(root / "readonly_data"), MLOPS_AS_OF=FIXED_AS_OF)
    # Under `make test` the tests inherit the outer make's flags (jobserver, dry run, ...).
    for var in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL"):
        readonly_env.pop(var, None)
    venv = BIN.parent
    make_args = ["make", "--no-print-directory", "-C", str(REPO_ROOT), f"VENV={venv}"]
    make_args += ["-o", str(venv / ".installed"), "ui-readonly"]
    make_args += [f"UI_PORT={readonly_port}", f"UI_REPORTS_PORT={free_port()}"]
    make_args += [f"UI_DASHBOARD_PORT={free_port()}"]

    db = postgres_server.create_database("webserver")
    writable_env = clean_env(
        MLOPS_ENV="prod",
        MLOPS_DATA_DIR=str(root / "writable_data"),
        MLOPS_AS_OF=FIXED_AS_OF,
        DAGSTER_HOME=str(write_deploy_home(root / "writable_home")),
        MLOPS_CODE_SERVER_HOST="127.0.0.1",
        MLOPS_CODE_SERVER_PORT=str(grpc_port),
        **db.dagster_env(),
    )
    grpc_args = [str(BIN / "dagster"), "api", "grpc", "-m", "mlops_assets.definitions"]
    grpc_args += ["-h", "127.0.0.1", "-p", str(grpc_port)]

    servers = [
        start_process("readonly_webserver", make_args, readonly_env, logs),
        start_process("code_server", grpc_args, writable_env, logs),
    ]
    with running(servers):
        wait_until(lambda: _grpc_serving(grpc_port, servers[1]), STARTUP_TIMEOUT, "code server")
        webserver_args = [str(BIN / "dagster-webserver"), "-w", str(DEPLOY_WORKSPACE)]
        webserver_args += ["-h", "127.0.0.1", "-p", str(writable_port)]
        servers.append(start_process("writable_webserver", webserver_args, writable_env, logs))
        readonly = GraphQL(f"http://127.0.0.1:{readonly_port}")
        writable = GraphQL(f"http://127.0.0.1:{writable_port}")
        try:
            wait_until(lambda: readonly.ready(servers[0]), STARTUP_TIMEOUT, "read-only webserver")
            wait_until(lambda: writable.ready(servers[2]), STARTUP_TIMEOUT, "writable webserver")
            yield Webservers(readonly, writable, db)
        finally:
            readonly.close()
            writable.close()


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
def test_readonly_ui_refuses_mutation(webservers: Webservers, mutation: str) -> None:
    answer = webservers.mutate(webservers.readonly, mutation)

    assert answer["__typename"] == "UnauthorizedError", answer
    assert answer["message"] == "Authorization failed"


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
def test_writable_webserver_accepts_mutation(webservers: Webservers, mutation: str) -> None:
    answer = webservers.mutate(webservers.writable, mutation)

    assert answer["__typename"] == MUTATIONS[mutation][2], answer


def test_run_launched_on_writable_webserver_waits_in_postgres_queue(
    webservers: Webservers,
) -> None:
    answer = webservers.mutate(webservers.writable, "launchRun")

    assert answer["__typename"] == "LaunchRunSuccess", answer
    run_id = answer["run"]["runId"]
    assert answer["run"]["status"] == "QUEUED"
    rows = webservers.writable_db.query(
        "SELECT r.pipeline_name, r.status, t.value FROM runs r"
        " JOIN run_tags t ON t.run_id = r.run_id AND t.key = 'dagster/partition'"
        " WHERE r.run_id = %s",
        [run_id],
    )
    assert rows == [("daily_refresh", "QUEUED", PARTITION)]


def test_readonly_ui_serves_the_prod_catalog(webservers: Webservers) -> None:
    repository = {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY}
    data = webservers.readonly.execute(CATALOG, {"repositorySelector": repository})

    keys = {"/".join(node["assetKey"]["path"]) for node in data["assetNodes"]}
    assert set(ASSETS) <= keys
    permissions = {p["permission"]: p["value"] for p in data["permissions"]}
    assert permissions["launch_pipeline_execution"] is False
    assert permissions["edit_sensor"] is False
    resources = data["allTopLevelResourceDetailsOrError"]
    assert resources["__typename"] == "ResourceDetailsList", resources
    alerts = next(r for r in resources["results"] if r["name"] == "alerts")
    configured = {v["key"]: v["value"] for v in alerts["configuredValues"]}
    assert configured["env"] == '"prod"'
    assert data["runsOrError"] == {"__typename": "Runs", "count": 0}
