"""The environment's Dagster instance and the runs the runner starts in it.

Its home (under the environment's data folder, with the repository's ``dagster.yaml``), the tags
that name the process and host executing each run, failing runs whose process died (their pool
slots freed), reporting steps that wait for a pool slot, and :func:`execute_run`, the one place a
run is executed in process.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import psutil
from dagster._core.utils import make_new_run_id

from mlops_assets.environments import REPO_ROOT, Settings

# Every run this module starts names the process and host that execute it, so a later runner
# can tell a run whose process died (SIGKILL, out of memory) from one still running.
RUNNER_PID_TAG = "mlops/runner_pid"
RUNNER_HOST_TAG = "mlops/runner_host"


def prepare_home(settings: Settings) -> Path:
    """The environment's Dagster home (under its data folder), created if needed, holding the
    repository's dagster.yaml (copied again when the repository's copy changed)."""
    settings.ensure_dirs()
    home = settings.dagster_home
    source, target = REPO_ROOT / "dagster.yaml", home / "dagster.yaml"
    if not target.exists() or target.read_bytes() != source.read_bytes():
        shutil.copy(source, target)
    return home


def ensure_instance(settings: Settings) -> dg.DagsterInstance:
    """The environment's own Dagster instance (DAGSTER_HOME under its data folder)."""
    os.environ["DAGSTER_HOME"] = str(prepare_home(settings))
    return dg.DagsterInstance.get()


def runner_tags() -> dict[str, str]:
    return {RUNNER_PID_TAG: str(os.getpid()), RUNNER_HOST_TAG: socket.gethostname()}


@dataclass(frozen=True)
class DeadRun:
    """A run failed by :func:`fail_dead_runs`: its id, job and the process that is gone."""

    run_id: str
    job_name: str
    pid: int

    def describe(self) -> str:
        return f"run {self.run_id} ({self.job_name}, process {self.pid} gone)"


@dataclass(frozen=True)
class _Reporting:
    notice: Callable[[str], None] = lambda _: None
    console_log_level: str | None = None


_REPORTING: ContextVar[_Reporting | None] = ContextVar("mlops_runner_reporting", default=None)


def _reporting() -> _Reporting:
    return _REPORTING.get() or _Reporting()


@contextmanager
def reporting(
    notice: Callable[[str], None] = lambda _: None, console_log_level: str | None = None
) -> Iterator[None]:
    """Within the block, runs started by this module tell ``notice`` what they clean up and
    what they wait for, and Dagster's console logger of each run logs at ``console_log_level``
    (None: Dagster's default, DEBUG). The event log is stored in the instance either way."""
    token = _REPORTING.set(_Reporting(notice, console_log_level))
    try:
        yield
    finally:
        _REPORTING.reset(token)


def _local_runs(instance: dg.DagsterInstance) -> bool:
    """Whether this instance's runs execute as processes of this machine (the default run
    launcher, or in process), so that a process id says whether a run is still running."""
    from dagster._core.launcher import DefaultRunLauncher
    from dagster._core.launcher.sync_in_memory_run_launcher import SyncInMemoryRunLauncher

    return isinstance(instance.run_launcher, DefaultRunLauncher | SyncInMemoryRunLauncher)


def _run_process(instance: dg.DagsterInstance, run: dg.DagsterRun) -> tuple[int, float] | None:
    """The process executing ``run`` and when it started: the runner's pid tag, else the pid
    Dagster records on the run's RUN_START event (a `dagster asset materialize` process, a run
    worker the daemon or the webserver launched). None before the run has started."""
    starts = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.RUN_START)
    started_at = starts[0].timestamp if starts else None
    pid = int(run.tags.get(RUNNER_PID_TAG) or 0)
    if pid <= 0 and starts and starts[0].dagster_event is not None:
        pid = starts[0].dagster_event.pid or 0
    if pid <= 0:
        return None
    if started_at is None:
        record = instance.get_run_record_by_id(run.run_id)
        started_at = record.create_timestamp.timestamp() if record else time.time()
    return pid, started_at


def _alive(pid: int, started_at: float) -> bool:
    """Whether process ``pid`` exists and is the one that started by ``started_at`` (a process
    created later only reuses the number)."""
    try:
        created = psutil.Process(pid).create_time()
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True
    return created <= started_at + 1.0


def fail_dead_runs(instance: dg.DagsterInstance) -> list[DeadRun]:
    """Mark failed every started run whose process is gone, however it was launched (this
    runner, `dagster asset materialize`, the daemon or the UI), free its pool slots, and return
    what was failed.

    A run whose process is killed stays STARTED and keeps its `registry` pool slot, so every
    later training or deployment step of every run would wait for that slot forever. Only on an
    instance whose runs are processes of this machine (the default run launcher); elsewhere the run
    launcher's worker health checks of run monitoring do this."""
    if not _local_runs(instance):
        return []
    host = socket.gethostname()
    filters = dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED])
    dead = []
    for run in instance.get_runs(filters=filters):
        if run.tags.get(RUNNER_HOST_TAG, host) != host:
            continue
        process = _run_process(instance, run)
        if process is None or _alive(*process):
            continue
        pid = process[0]
        instance.report_run_failed(
            run, f"the process {pid} on {host} that ran this run is gone (killed?)"
        )
        instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
        dead.append(DeadRun(run.run_id, run.job_name, pid))
    return dead


# A step waiting this long for a pool slot is reported, with the run holding the slot.
POOL_WAIT_REPORT_S = 5.0
POOL_POLL_S = 0.5
# While a step waits, the holders' processes are checked this often.
POOL_SWEEP_S = 2.0


def _holders(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    """For each pool a step of ``run_id`` has waited on for POOL_WAIT_REPORT_S or more, who
    holds its slots."""
    storage = instance.event_log_storage
    waits = []
    now = time.time()
    for key in sorted(storage.get_concurrency_keys()):
        info = storage.get_concurrency_info(key)
        mine = [
            p
            for p in info.pending_steps
            if p.run_id == run_id
            and p.assigned_timestamp is None
            and now - p.enqueued_timestamp.timestamp() >= POOL_WAIT_REPORT_S
        ]
        if not mine:
            continue
        held = []
        for slot in info.claimed_slots:
            other = instance.get_run_by_id(slot.run_id)
            status = other.status.value if other else "unknown run"
            job = other.job_name if other else "?"
            held.append(f"run {slot.run_id} ({job}, step {slot.step_key}, {status})")
        waits.append(
            f"step {mine[0].step_key} waits for pool '{key}', held by "
            + ("; ".join(held) or "no run (slots being reassigned)")
        )
    return waits


@contextmanager
def _watch_pools(instance: dg.DagsterInstance, run_id: str) -> Iterator[None]:
    """While the block runs ``run_id``, report once per wait what holds the pool a step waits
    for, and fail the holder if its process is gone."""
    notice = _reporting().notice
    stop = threading.Event()
    reported: set[str] = set()

    def watch() -> None:
        swept = 0.0
        # Nothing can have waited long enough before then: short runs cost no query at all.
        if stop.wait(POOL_WAIT_REPORT_S):
            return
        while not stop.wait(POOL_POLL_S):
            waits = _holders(instance, run_id)
            for wait in waits:
                if wait not in reported:
                    reported.add(wait)
                    notice(wait)
            if waits and time.monotonic() - swept >= POOL_SWEEP_S:
                swept = time.monotonic()
                for gone in fail_dead_runs(instance):
                    notice(f"cleaned up dead {gone.describe()}: failed, pool slots freed")

    thread = threading.Thread(target=watch, name=f"pool-watch-{run_id[:8]}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=10)


def execute_run(job, instance: dg.DagsterInstance, tags: dict[str, str] | None = None, **kwargs):
    """One in-process run of ``job``, tagged with this process, after failing dead runs."""
    reporting_now = _reporting()
    for gone in fail_dead_runs(instance):
        reporting_now.notice(f"cleaned up dead {gone.describe()}: failed, pool slots freed")
    if reporting_now.console_log_level:
        level = reporting_now.console_log_level
        kwargs["run_config"] = {"loggers": {"console": {"config": {"log_level": level}}}}
    run_id = make_new_run_id()
    with _watch_pools(instance, run_id):
        return job.execute_in_process(
            instance=instance,
            tags={**(tags or {}), **runner_tags()},
            raise_on_error=False,
            run_id=run_id,
            **kwargs,
        )
