"""Session fixtures of the browser tests: one prepared dev environment, its real servers, and
Chromium.

The environment is filled once, in process, through the runner the demo uses (``run_days``,
``run_training``, ``run_scoring``, ``run_metrics``) against the Dagster instance in its own
DAGSTER_HOME (the repository's dagster.yaml): 35 days of 100 simulated airings a day, a first
champion on training date ``P1``, then ``P2`` under a spec whose baseline margin is 99 % (the
team tightened the bar), so the incumbent is kept and ``champion_beats_baselines`` fails as a
WARN; predictions from the first champion's cut-off, a drift report of the last day and the
business metrics of the days whose visits have landed.

Then, in their own process groups and stopped by PID: a writable ``dagster-webserver`` and a
``--read-only`` one on that instance, and ``dagster-daemon`` (``dagster dev`` is these two
processes; here they start apart so the automation sensor, RUNNING by default, can be switched off
through the webserver before the daemon would tick it: the only runs are the ones a test launches).

Each test gets a fresh browser context. Screenshots of every step go to one folder, named at the
end of the pytest output.
"""

from __future__ import annotations

import copy
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from mlops_assets.defs.model_deployment.checks import CHAMPION_BEATS_BASELINES
from mlops_assets.environments import REPO_ROOT
from mlops_assets_tests.deploy.harness import (
    LOCATION,
    REPOSITORY,
    GraphQL,
    ServerProcess,
    answers,
    free_port,
    running,
    start_process,
    wait_until,
)
from mlops_assets_tests.helpers import Pipeline, clean_env, day_range, simulator_spec
from mlops_assets_tests.ui import dagster_ui as ui

# As in ml/conftest.py: LightGBM's OpenMP threads otherwise spin on a busy machine. Timing only.
os.environ.setdefault("OMP_WAIT_POLICY", "passive")

AS_OF = "2025-02-05T06:00"
DAYS = day_range(date(2025, 1, 1), 35)  # 2025-01-01 .. 2025-02-04
P1, P2 = "2025-01-20", "2025-01-27"
TIGHT_BASELINE_MARGIN = 0.99
AIRINGS_PER_DAY = 100
BIN = Path(sys.executable).parent
WORKSPACE = str(REPO_ROOT / "workspace.yaml")
AUTOMATION_SENSOR = "automation"
STARTUP_TIMEOUT = 180
# Generous: the machine is shared, and a first page load fetches a large JavaScript bundle.
PAGE_TIMEOUT_MS = 60_000
SCREENSHOTS = pytest.StashKey[Path]()


@dataclass(frozen=True)
class Environment:
    """What the prepared environment holds, read before the servers start."""

    data_dir: Path
    dagster_home: Path
    dataset: Path
    reports_dir: Path
    groups: dict[str, set[str]]  # group -> its assets, from the definitions the servers load
    parents: dict[str, set[str]]  # asset -> the assets it reads
    candidates: tuple[str, ...]


@dataclass(frozen=True)
class Ports:
    """Chosen before the environment is filled: the links it writes point at these servers."""

    writable: int
    readonly: int
    mlflow: int
    reports: int
    dashboard: int

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{getattr(self, name)}"


@dataclass(frozen=True)
class Servers:
    writable_url: str
    readonly_url: str
    writable: GraphQL
    daemon: ServerProcess
    mlflow_url: str
    reports_url: str
    dashboard_url: str


def _small_spec() -> dict:
    raw = simulator_spec(airings_per_day=AIRINGS_PER_DAY, start_date=DAYS[0].isoformat())
    raw["training"].update(train_days=14, holdout_days=5)
    return raw


def _prepare(root: Path, ports: Ports) -> Environment:
    from mlops_assets import run_instance, runner
    from mlops_assets.ml.candidates import CANDIDATES

    patch = pytest.MonkeyPatch()
    pipeline = Pipeline(patch, root, as_of=AS_OF)
    pipeline.use_urls(ports.url("readonly"), ports.url("mlflow"), ports.url("reports"))
    pipeline.set_var("MLOPS_DASHBOARD_URL", ports.url("dashboard"))
    try:
        pipeline.use_spec(_small_spec())
        settings = pipeline.settings
        patch.setenv("DAGSTER_HOME", str(settings.dagster_home))
        instance = run_instance.ensure_instance(settings)
        pipeline.use_instance(instance)
        summary = runner.run_days(pipeline.definitions(), instance, settings, DAYS)
        partitions = runner.training_partitions(DAYS[0], settings.today())
        assert partitions == [P1, P2], partitions
        runner.run_training(pipeline.definitions(), instance, [P1], summary=summary)

        tight = copy.deepcopy(_small_spec())
        tight["training"]["baseline_margin"] = TIGHT_BASELINE_MARGIN
        dataset = pipeline.use_spec(tight)
        defs = pipeline.definitions()
        runner.run_training(defs, instance, [P2], summary=summary)
        served_from = runner.first_champion_day(pipeline.settings)
        assert served_from is not None, "no champion after the first training date"
        served = [d for d in DAYS if d >= served_from]
        runner.run_scoring(defs, instance, served, summary=summary, drift_days=1)
        runner.run_metrics(defs, instance, pipeline.settings, served, summary=summary)
        assert summary.failed_runs == [], summary.failed_runs
        assert f"{CHAMPION_BEATS_BASELINES} [-] (training {P2})" in summary.checks_failed, (
            summary.checks_failed
        )

        specs = defs.resolve_all_asset_specs()
        groups: dict[str, set[str]] = {}
        for spec in specs:
            groups.setdefault(spec.group_name, set()).add(spec.key.to_user_string())
        parents = {
            spec.key.to_user_string(): {dep.asset_key.to_user_string() for dep in spec.deps}
            for spec in specs
        }
        return Environment(
            data_dir=pipeline.data_dir,
            dagster_home=pipeline.settings.dagster_home,
            dataset=dataset,
            reports_dir=pipeline.settings.reports_dir,
            groups=groups,
            parents=parents,
            candidates=tuple(c.name for c in CANDIDATES),
        )
    finally:
        pipeline.close()
        patch.undo()
        if "mlflow" in sys.modules:
            import mlflow

            mlflow.set_tracking_uri(None)
            mlflow.set_registry_uri(None)


@pytest.fixture(scope="session")
def ports() -> Ports:
    return Ports(free_port(), free_port(), free_port(), free_port(), free_port())


@pytest.fixture(scope="session")
def environment(tmp_path_factory: pytest.TempPathFactory, ports: Ports) -> Environment:
    return _prepare(tmp_path_factory.mktemp("ui_env"), ports)


def _stop_automation_sensor(server: GraphQL) -> None:
    selector = {
        "repositoryLocationName": LOCATION,
        "repositoryName": REPOSITORY,
        "sensorName": AUTOMATION_SENSOR,
    }
    sensor = server.execute(ui.SENSOR_QUERY, {"selector": selector})["sensorOrError"]
    assert sensor["__typename"] == "Sensor", sensor
    stopped = server.execute(ui.STOP_SENSOR, {"id": sensor["sensorState"]["id"]})["stopSensor"]
    assert stopped == {
        "__typename": "StopSensorMutationResult",
        "instigationState": {"status": "STOPPED"},
    }, stopped


@pytest.fixture(scope="session")
def servers(
    environment: Environment, ports: Ports, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Servers]:
    """The webservers, and the MLflow UI, reports server and Evidently UI as `make dev` starts
    them."""
    from mlops_assets import services
    from mlops_assets.environments import load_settings

    logs = tmp_path_factory.mktemp("ui_logs")
    env = clean_env(
        MLOPS_DATA_DIR=str(environment.data_dir),
        MLOPS_DATASET=str(environment.dataset),
        MLOPS_AS_OF=AS_OF,
        DAGSTER_HOME=str(environment.dagster_home),
        MLOPS_DAGSTER_URL=ports.url("readonly"),
        MLOPS_MLFLOW_URL=ports.url("mlflow"),
        MLOPS_REPORTS_URL=ports.url("reports"),
        MLOPS_DASHBOARD_URL=ports.url("dashboard"),
        **services.MLFLOW_UI_ENV,
        **services.DASHBOARD_ENV,
    )
    settings = load_settings(data_dir=environment.data_dir, dataset=environment.dataset)
    webserver = [str(BIN / "dagster-webserver"), "-w", WORKSPACE, "-h", "127.0.0.1"]
    processes = [
        start_process("webserver", [*webserver, "-p", str(ports.writable)], env, logs),
        start_process(
            "readonly_webserver", [*webserver, "--read-only", "-p", str(ports.readonly)], env, logs
        ),
        start_process(
            "mlflow_ui", services.mlflow_ui_command(settings, "127.0.0.1", ports.mlflow), env, logs
        ),
        start_process(
            "reports_server", services.reports_command("127.0.0.1", ports.reports), env, logs
        ),
        start_process(
            "evidently_ui",
            services.dashboard_command(settings, "127.0.0.1", ports.dashboard, readonly=True),
            env,
            logs,
        ),
    ]
    with running(processes):
        writable = GraphQL(ports.url("writable"))
        readonly = GraphQL(ports.url("readonly"))
        try:
            wait_until(lambda: writable.ready(processes[0]), STARTUP_TIMEOUT, "webserver")
            wait_until(lambda: readonly.ready(processes[1]), STARTUP_TIMEOUT, "read-only webserver")
            health = f"{ports.url('mlflow')}/health"
            wait_until(lambda: answers(processes[2], health), STARTUP_TIMEOUT, "the MLflow UI")
            report = f"{ports.url('reports')}/drift_{DAYS[-1]}.html"
            wait_until(lambda: answers(processes[3], report), STARTUP_TIMEOUT, "the reports")
            projects = f"{ports.url('dashboard')}/api/projects"
            wait_until(lambda: answers(processes[4], projects), STARTUP_TIMEOUT, "Evidently UI")
            _stop_automation_sensor(writable)
            daemon_args = [str(BIN / "dagster-daemon"), "run", "-w", WORKSPACE]
            processes.append(start_process("daemon", daemon_args, env, logs))
            yield Servers(
                writable.base_url,
                readonly.base_url,
                writable,
                processes[-1],
                ports.url("mlflow"),
                ports.url("reports"),
                ports.url("dashboard"),
            )
        finally:
            writable.close()
            readonly.close()


# Package scope: Playwright's sync API keeps an asyncio loop running in the worker's thread while
# it is open, and a test outside this folder on the same worker (the automation clock calls
# asyncio.run) must not find it.
@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    expect.set_options(timeout=PAGE_TIMEOUT_MS)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=ui.CHROMIUM, headless=True, args=ui.CHROMIUM_ARGS
        )
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def open_page(browser: Browser) -> Iterator[Callable[..., Page]]:
    """Factory: a page in a fresh browser context (1600 x 1000, ``scale`` device pixels per CSS
    pixel), with Dagster's community dialog dismissed in advance."""
    contexts = []

    def make(scale: float = 1) -> Page:
        context = browser.new_context(
            viewport={"width": 1600, "height": 1000}, device_scale_factor=scale
        )
        context.set_default_timeout(PAGE_TIMEOUT_MS)
        context.add_init_script(ui.DISMISS_COMMUNITY_NUX)
        contexts.append(context)
        return context.new_page()

    yield make
    for context in contexts:
        context.close()


@pytest.fixture
def page(open_page: Callable[..., Page]) -> Page:
    return open_page()


class Shots:
    """Screenshots of one test's steps, numbered in order: ``<test>_<n>_<step>.png``."""

    def __init__(self, folder: Path, test: str):
        self.folder, self.test, self.count = folder, test, 0

    def take(self, page: Page, step: str, **options) -> Path:
        self.count += 1
        path = self.folder / f"{self.test}_{self.count:02d}_{step}.png"
        page.screenshot(path=path, **options)
        return path


@pytest.fixture(scope="session")
def screenshot_dir(request: pytest.FixtureRequest, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("ui_screenshots")
    request.config.stash[SCREENSHOTS] = folder
    return folder


@pytest.fixture
def shots(screenshot_dir: Path, request: pytest.FixtureRequest) -> Shots:
    return Shots(screenshot_dir, request.node.name.removeprefix("test_"))


def pytest_terminal_summary(terminalreporter, exitstatus, config: pytest.Config) -> None:
    folder = config.stash.get(SCREENSHOTS, None)
    if folder is not None:
        terminalreporter.write_line(f"UI screenshots: {folder}")
