"""The Dagster processes of one environment, as the Makefile starts them.

Every command resolves the environment the way `mlops-assets` does (``MLOPS_ENV``,
``MLOPS_DATA_DIR``; see ``environments.py``), prepares its Dagster home under
``$MLOPS_DATA_DIR/<env>/dagster_home`` with the repository's dagster.yaml, and points alert links
at the UI it serves (``MLOPS_DAGSTER_URL``, unless set):

- ``dev``: ``dagster dev`` (webserver and daemon) for ``$MLOPS_ENV`` (default dev);
- ``ui-readonly``: the read-only webserver, for ``$MLOPS_ENV`` if set, else prod;
- ``prod-ops``: the same read-only webserver and, beside it, the environment's daemon
  (automation, sensors, freshness, run monitoring), so prod runs by itself.

``prod-ops`` runs each process in its own process group with default signal handlers; SIGINT or
SIGTERM stops both (SIGKILL after a grace period), and if either exits the other is stopped.
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

from mlops_assets.environments import REPO_ROOT, Settings, SettingsError, load_settings

WORKSPACE = REPO_ROOT / "workspace.yaml"
STOP_GRACE_S = 30.0
POLL_S = 0.2


def _bin(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


def environment(env: str | None, host: str, port: int) -> tuple[Settings, dict[str, str]]:
    """The settings of ``env`` (or of MLOPS_ENV) and the variables the Dagster processes get."""
    from mlops_assets.runner import prepare_home

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
            done = [p for p in procs if p.poll() is not None]
            if done:
                code = done[0].returncode
                sys.stderr.write(f"{done[0].args[0]} exited ({code}); stopping the others\n")
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mlops_assets.services", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("command", choices=("dev", "ui-readonly", "prod-ops", "home"))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int)
    args = parser.parse_args(argv)
    readonly = args.command in ("ui-readonly", "prod-ops")
    port = args.port or (3001 if readonly else 3000)
    env_name = None if os.environ.get("MLOPS_ENV") or not readonly else "prod"
    try:
        settings, env = environment(env_name, args.host, port)
    except SettingsError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    if args.command == "home":
        sys.stdout.write(env["DAGSTER_HOME"] + "\n")
        return 0
    sys.stderr.write(
        f"{args.command}: env={settings.env} Dagster home {env['DAGSTER_HOME']} "
        f"UI {env['MLOPS_DAGSTER_URL']}\n"
    )
    sys.stderr.flush()
    # A shell that starts jobs in the background hands its children SIGINT ignored, and exec
    # would pass that on: Dagster's processes must stop on SIGINT.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    workspace = ["-w", str(WORKSPACE)]
    where = ["-h", args.host, "-p", str(port)]
    if args.command == "dev":
        os.execve(_bin("dagster"), [_bin("dagster"), "dev", *workspace, *where], env)
    webserver = [_bin("dagster-webserver"), *workspace, "--read-only", *where]
    if args.command == "ui-readonly":
        os.execve(webserver[0], webserver, env)
    return supervise([webserver, [_bin("dagster-daemon"), "run", *workspace]], env)


if __name__ == "__main__":
    sys.exit(main())
