"""No "Join the Dagster community" dialog in the UIs the project starts, seen in a fresh Chromium
(empty local storage, nothing dismissed in advance).

The UI is `make dev` itself (which also serves the environment's MLflow UI and its reports, on
the ports given), with MLOPS_ENV=staging and MLOPS_DATA_DIR pointing at a temporary
folder: it must serve the instance of that environment's own Dagster home
(``$MLOPS_DATA_DIR/staging/dagster_home``, holding the repository's dagster.yaml, whose
``nux: enabled: false`` hides the dialog). The control is a webserver on an instance without
that setting: there the same browser steps do show the dialog, so its absence above is not a page
that had not finished loading."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
import yaml
from playwright.sync_api import Browser, Page, expect

from mlops_assets.environments import REPO_ROOT
from mlops_assets.services import STOP_GRACE_S
from mlops_assets_tests.deploy.harness import (
    GraphQL,
    ServerProcess,
    answers,
    free_port,
    running,
    start_process,
    wait_until,
)
from mlops_assets_tests.helpers import FIXED_AS_OF, Pipeline, clean_env
from mlops_assets_tests.ui import dagster_ui as ui

VENV = Path(sys.executable).parent.parent
STAMP = VENV / ".installed"
COMMUNITY = "Join the Dagster community"
STARTUP_TIMEOUT = 240
INSTANCE_QUERY = "query Instance { instance { info } }"


def make_command(target: str, **variables: str) -> list[str]:
    """``make <target>`` of this checkout with this interpreter's venv, which is installed
    already (the bootstrap stamp is taken as up to date)."""
    return [
        "make",
        "--no-print-directory",
        "-C",
        str(REPO_ROOT),
        target,
        f"VENV={VENV}",
        "-o",
        str(STAMP),
        *(f"{k}={v}" for k, v in variables.items()),
    ]


def descendants(server: ServerProcess) -> list[psutil.Process]:
    try:
        return psutil.Process(server.process.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


@pytest.fixture
def staging(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Pipeline]:
    pipeline = Pipeline(monkeypatch, tmp_path / "make_dev", as_of=FIXED_AS_OF)
    pipeline.use_spec(airings_per_day=100)
    pipeline.set_env("staging")
    yield pipeline
    pipeline.close()


def _load(page: Page, url: str) -> bool:
    """Open the asset graph at ``url`` and return the UI's own answer to whether the dialog is
    due (the ShouldShowNux query), once the graph has drawn."""
    with page.expect_response(
        lambda r: "/graphql" in r.url and "ShouldShowNux" in (r.request.post_data or "")
    ) as answer:
        page.goto(f"{url}/asset-groups")
    expect(ui.group_node(page, "sources")).to_be_visible()
    return answer.value.json()["data"]["shouldShowNux"]


def test_make_dev_ui_shows_no_community_dialog(
    staging: Pipeline, browser: Browser, tmp_path: Path
) -> None:
    dev_port, control_port = free_port(), free_port()
    env = clean_env(**staging.env)
    home = staging.data_dir / "staging" / "dagster_home"
    control_home = tmp_path / "control_home"
    control_home.mkdir()
    config = yaml.safe_load((REPO_ROOT / "dagster.yaml").read_text())
    assert config["nux"] == {"enabled": False}
    del config["nux"]
    (control_home / "dagster.yaml").write_text(yaml.safe_dump(config))

    logs = tmp_path / "logs"
    mlflow_port, reports_port, dashboard_port = free_port(), free_port(), free_port()
    reports = staging.data_dir / "staging" / "reports"
    reports.mkdir(parents=True)
    (reports / "drift_2025-01-01.html").write_text("<html>a saved report</html>")
    ports = {
        "DEV_PORT": dev_port,
        "MLFLOW_PORT": mlflow_port,
        "REPORTS_PORT": reports_port,
        "DASHBOARD_PORT": dashboard_port,
    }
    dev = start_process(
        "make_dev", make_command("dev", **{k: str(v) for k, v in ports.items()}), env, logs
    )
    control = start_process(
        "control_webserver",
        [
            str(VENV / "bin" / "dagster-webserver"),
            "-w",
            str(REPO_ROOT / "workspace.yaml"),
            "-h",
            "127.0.0.1",
            "-p",
            str(control_port),
        ],
        {**env, "DAGSTER_HOME": str(control_home)},
        logs,
    )
    children: list[psutil.Process] = []
    # The supervisor gives its children STOP_GRACE_S after SIGINT; make gets that and a margin.
    with running([dev, control], grace=STOP_GRACE_S + 15):
        dev_api = GraphQL(f"http://127.0.0.1:{dev_port}")
        control_api = GraphQL(f"http://127.0.0.1:{control_port}")
        try:
            wait_until(lambda: dev_api.ready(dev), STARTUP_TIMEOUT, "make dev's webserver")
            wait_until(lambda: control_api.ready(control), STARTUP_TIMEOUT, "the control")
            # Beside the UI: the environment's MLflow UI and its reports, on the given ports.
            mlflow_health = f"http://127.0.0.1:{mlflow_port}/health"
            wait_until(lambda: answers(dev, mlflow_health), STARTUP_TIMEOUT, "make dev's MLflow")
            report = httpx.get(f"http://127.0.0.1:{reports_port}/drift_2025-01-01.html")
            assert report.status_code == 200 and report.text == "<html>a saved report</html>"
            # ... and the Evidently UI over the environment's workspace (the dashboard).
            projects = f"http://127.0.0.1:{dashboard_port}/api/projects"
            wait_until(lambda: answers(dev, projects), STARTUP_TIMEOUT, "make dev's Evidently UI")
            children = descendants(dev)
            # make dev serves the staging environment's own Dagster home under MLOPS_DATA_DIR.
            assert (home / "dagster.yaml").read_text() == (REPO_ROOT / "dagster.yaml").read_text()
            info = dev_api.execute(INSTANCE_QUERY)["instance"]["info"]
            assert str(home) in info, info
            assert (home / "history" / "runs.db").is_file()

            context = browser.new_context(viewport={"width": 1600, "height": 1000})
            try:
                page = context.new_page()
                assert _load(page, control_api.base_url) is True
                expect(page.get_by_role("dialog").filter(has_text=COMMUNITY)).to_be_visible()

                fresh = browser.new_context(viewport={"width": 1600, "height": 1000})
                try:
                    page = fresh.new_page()
                    assert _load(page, dev_api.base_url) is False
                    assert page.get_by_text(COMMUNITY).count() == 0
                finally:
                    fresh.close()
            finally:
                context.close()
        finally:
            dev_api.close()
            control_api.close()
    _gone, alive = psutil.wait_procs(children, timeout=10)
    survivors = [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    for process in survivors:
        process.kill()
    assert survivors == [], f"make dev left {survivors} running after SIGINT"


def test_make_dev_refuses_an_unknown_environment(staging: Pipeline) -> None:
    env = clean_env(**{**staging.env, "MLOPS_ENV": "qa"})
    done = subprocess.run(make_command("dev"), env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "unknown environment 'qa'" in done.stderr, done.stderr
