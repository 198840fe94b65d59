"""The processes of one environment, as the Makefile starts them.

Every command resolves the environment the way `mlops-assets` does (``MLOPS_ENV``,
``MLOPS_DATA_DIR``; see ``environments.py``), prepares its Dagster home under
``$MLOPS_DATA_DIR/<env>/dagster_home`` with the repository's dagster.yaml, and points the links
the pipeline writes (alerts, asset metadata) at the servers it starts (``MLOPS_DAGSTER_URL``,
``MLOPS_MLFLOW_URL``, ``MLOPS_REPORTS_URL``, unless set):

- ``dev``: ``dagster dev`` (webserver and daemon) for ``$MLOPS_ENV`` (default dev), the
  environment's MLflow UI, the reports server and the Evidently UI with the business dashboard
  (``MLOPS_DASHBOARD_URL``);
- ``ui-readonly``: the read-only webserver, the reports server and the Evidently UI (its writes
  need a secret nobody is told), for ``$MLOPS_ENV`` if set, else prod;
- ``prod-ops``: the same two and, beside them, the environment's daemon (automation, sensors,
  freshness, run monitoring), so prod runs by itself.

The read-only targets start no MLflow UI: MLflow's UI has no read-only mode, and from it anyone
could move the registry aliases that only an approved promotion may move.

The reports server serves ``$MLOPS_DATA_DIR/<env>/reports/`` (the Evidently HTML reports the
drift asset saves and links) as static files through uvicorn and Starlette's ``StaticFiles``.

Each process runs in its own process group with default signal handlers; SIGINT or SIGTERM stops
all of them (SIGKILL after a grace period), and if one exits the others are stopped.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from mlops_assets.environments import (
    REPO_ROOT,
    Settings,
    SettingsError,
    env_name_chosen,
    load_settings,
)

WORKSPACE = REPO_ROOT / "workspace.yaml"
STOP_GRACE_S = 30.0
POLL_S = 0.2


def _bin(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


def environment(env: str | None, host: str, port: int) -> tuple[Settings, dict[str, str]]:
    """The settings of ``env`` (or of MLOPS_ENV) and the variables the Dagster processes get."""
    from mlops_assets.run_instance import prepare_home

    settings = load_settings(env)
    home = prepare_home(settings)
    variables = dict(os.environ)
    variables.update(
        MLOPS_ENV=settings.env,
        MLOPS_DATA_DIR=str(settings.data_dir),
        DAGSTER_HOME=str(home),
    )
    variables.setdefault("MLOPS_DAGSTER_URL", f"http://{host}:{port}")
    return settings, variables


def _default_signals() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.setpgrp()


def _signal_group(proc: subprocess.Popen, signum: int) -> bool:
    try:
        os.killpg(proc.pid, signum)
    except ProcessLookupError:
        return False
    return True


def supervise(commands: Sequence[Sequence[str]], env: dict[str, str]) -> int:
    """Run ``commands`` side by side until one exits or this process is told to stop; then stop
    all of them. Returns the first exit code seen (0 when stopped by a signal)."""
    stopping: list[int] = []

    def stop(signum: int, _frame) -> None:
        stopping.append(signum)

    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    procs = [
        subprocess.Popen(list(c), env=env, cwd=REPO_ROOT, preexec_fn=_default_signals)
        for c in commands
    ]
    code = 0
    try:
        while not stopping:
            done = [(p, c) for p, c in zip(procs, commands, strict=True) if p.poll() is not None]
            if done:
                proc, command = done[0]
                code = proc.returncode
                sys.stderr.write(f"{command[0]} exited ({code}); stopping the others\n")
                break
            time.sleep(POLL_S)  # polling the children's state, bounded by their lifetime
    finally:
        for proc in procs:
            _signal_group(proc, signal.SIGINT)
        deadline = time.monotonic() + STOP_GRACE_S
        for proc in procs:
            try:
                proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                _signal_group(proc, signal.SIGKILL)
                proc.wait(timeout=10)
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return code


def reports_app():
    """The reports server's ASGI app (``uvicorn --factory``): the environment's reports folder as
    static files, nothing else."""
    from starlette.applications import Starlette
    from starlette.routing import Mount
    from starlette.staticfiles import StaticFiles

    folder = load_settings().reports_dir
    folder.mkdir(parents=True, exist_ok=True)
    return Starlette(routes=[Mount("/", app=StaticFiles(directory=folder, html=True))])


# The MLflow UI is for browsing runs and the registry: no job workers (MLflow's server otherwise
# starts seven task-queue processes, which also outlive a stop).
MLFLOW_UI_ENV = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


def mlflow_ui_command(settings: Settings, host: str, port: int) -> list[str]:
    """The environment's MLflow UI (its SQLite tracking store and registry), one worker."""
    return [
        _bin("mlflow"), "ui", "--backend-store-uri", settings.mlflow_tracking_uri,
        "--host", host, "--port", str(port), "--workers", "1",
    ]  # fmt: skip


def reports_command(host: str, port: int) -> list[str]:
    """The reports server of the environment the variables name (:func:`reports_app`)."""
    return [
        _bin("uvicorn"), "--factory", "mlops_assets.services:reports_app",
        "--host", host, "--port", str(port), "--log-level", "warning",
    ]  # fmt: skip


def dashboard_command(settings: Settings, host: str, port: int, readonly: bool) -> list[str]:
    """The Evidently UI over the environment's workspace (drift runs, business runs and the
    dashboard). Read-only, every write operation needs a secret that is never shown."""
    import secrets

    settings.evidently_workspace.mkdir(parents=True, exist_ok=True)
    command = [
        _bin("evidently"), "ui", "--workspace", str(settings.evidently_workspace),
        "--host", host, "--port", str(port),
    ]  # fmt: skip
    return command + (["--secret", secrets.token_hex(16)] if readonly else [])


# Evidently's usage telemetry stays off (and there is no network to send it to).
DASHBOARD_ENV = {"DO_NOT_TRACK": "1"}


def _url(host: str, port: int) -> str:
    return f"http://{host}:{port}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mlops_assets.services", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("command", choices=("dev", "ui-readonly", "prod-ops", "home"))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, help="the Dagster UI (3000; read-only: 3001)")
    parser.add_argument("--mlflow-port", type=int, default=5000, help="the MLflow UI (dev)")
    parser.add_argument(
        "--reports-port", type=int, help="the reports server (5001; read-only: 5002)"
    )
    parser.add_argument(
        "--dashboard-port", type=int, help="the Evidently UI (5003; read-only: 5004)"
    )
    args = parser.parse_args(argv)
    readonly = args.command in ("ui-readonly", "prod-ops")
    port = args.port or (3001 if readonly else 3000)
    reports_port = args.reports_port or (5002 if readonly else 5001)
    dashboard_port = args.dashboard_port or (5004 if readonly else 5003)
    env_name = None if env_name_chosen() or not readonly else "prod"
    try:
        settings, env = environment(env_name, args.host, port)
    except SettingsError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    if args.command == "home":
        sys.stdout.write(env["DAGSTER_HOME"] + "\n")
        return 0
    env.setdefault("MLOPS_REPORTS_URL", _url(args.host, reports_port))
    env.setdefault("MLOPS_DASHBOARD_URL", _url(args.host, dashboard_port))
    env.update(DASHBOARD_ENV)
    if not readonly:
        env.setdefault("MLOPS_MLFLOW_URL", _url(args.host, args.mlflow_port))
        env.update(MLFLOW_UI_ENV)
    links = {
        "UI": "MLOPS_DAGSTER_URL",
        "MLflow": "MLOPS_MLFLOW_URL",
        "reports": "MLOPS_REPORTS_URL",
        "dashboard": "MLOPS_DASHBOARD_URL",
    }
    urls = " ".join(f"{what} {env[name]}" for what, name in links.items() if name in env)
    sys.stderr.write(
        f"{args.command}: env={settings.env} Dagster home {env['DAGSTER_HOME']} {urls}\n"
    )
    sys.stderr.flush()
    workspace = ["-w", str(WORKSPACE)]
    where = ["-h", args.host, "-p", str(port)]
    reports = reports_command(args.host, reports_port)
    board = dashboard_command(settings, args.host, dashboard_port, readonly)
    if args.command == "dev":
        mlflow = mlflow_ui_command(settings, args.host, args.mlflow_port)
        dagster = [_bin("dagster"), "dev", *workspace, *where]
        return supervise([dagster, mlflow, reports, board], env)
    webserver = [_bin("dagster-webserver"), *workspace, "--read-only", *where]
    if args.command == "ui-readonly":
        return supervise([webserver, reports, board], env)
    daemon = [_bin("dagster-daemon"), "run", *workspace]
    return supervise([webserver, reports, board, daemon], env)


if __name__ == "__main__":
    sys.exit(main())
