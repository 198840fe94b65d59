"""Helpers of the deploy tests: a private PostgreSQL server (initdb into a temporary folder, run as
the ``postgres`` user when the tests run as root), Dagster homes built from deploy/dagster.yaml,
server processes started in their own process group and stopped by PID, and bounded polling."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg2
import yaml
from psycopg2 import sql

from mlops_assets.environments import REPO_ROOT

DEPLOY_DIR = REPO_ROOT / "deploy"
DEPLOY_INSTANCE = DEPLOY_DIR / "dagster.yaml"
DEPLOY_WORKSPACE = DEPLOY_DIR / "workspace.yaml"
LOCATION = "mlops_assets"
REPOSITORY = "__repository__"
# The launcher the deploy tests use instead of the cluster one: dagster-k8s is not installed here.
DEFAULT_LAUNCHER = {"module": "dagster._core.launcher", "class": "DefaultRunLauncher"}
POSTGRES_GLOB = "/usr/lib/postgresql/*/bin/postgres"


def wait_until(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``condition`` until it returns something truthy; fail naming ``what`` at the end."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


def answers(server: ServerProcess, url: str) -> bool:
    """True once ``url`` answers 200; fails at once, with its log, if ``server`` has exited."""
    if server.process.poll() is not None:
        raise AssertionError(f"{server.name} exited early:\n{server.log}")
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def postgres_bin_dir() -> Path:
    """The bin folder of the newest installed PostgreSQL server (``make system-deps`` installs
    one when there is none)."""
    found = sorted(
        Path("/").glob(POSTGRES_GLOB.lstrip("/")),
        key=lambda p: int(re.sub(r"\D", "", p.parent.parent.name) or 0),
    )
    if not found:
        raise AssertionError(f"no PostgreSQL server at {POSTGRES_GLOB}: run `make system-deps`")
    return found[-1].parent


@dataclass(frozen=True)
class Database:
    """One database and its owner (a password login), reached over TCP on 127.0.0.1."""

    host: str
    port: int
    name: str
    user: str
    password: str

    def dagster_env(self) -> dict[str, str]:
        """The variables deploy/dagster.yaml reads its storage settings from."""
        return {
            "DAGSTER_PG_HOST": self.host,
            "DAGSTER_PG_PORT": str(self.port),
            "DAGSTER_PG_DB": self.name,
            "DAGSTER_PG_USERNAME": self.user,
            "DAGSTER_PG_PASSWORD": self.password,
        }

    def query(self, statement: str, params: Sequence[Any] = ()) -> list[tuple]:
        conn = psycopg2.connect(
            host=self.host,
            port=self.port,
            dbname=self.name,
            user=self.user,
            password=self.password,
            connect_timeout=10,
        )
        try:
            with conn.cursor() as cur:
                cur.execute(statement, params)
                return cur.fetchall()
        finally:
            conn.close()


class PostgresServer:
    """A throwaway PostgreSQL cluster in a temporary folder, on a free port of 127.0.0.1.

    initdb refuses to run as root, so when the tests run as root every server command runs as the
    ``postgres`` OS user, in a folder that user owns. Local (socket) logins are trusted, TCP
    logins need a password (scram-sha-256), as a real deployment's would.
    """

    def __init__(self) -> None:
        self.bin_dir = postgres_bin_dir()
        self.root = Path(tempfile.mkdtemp(prefix="mlops-deploy-pg-"))
        self.data_dir = self.root / "data"
        self.socket_dir = self.root / "socket"
        self.log_path = self.root / "server.log"
        self.port = free_port()
        self._as_postgres = os.geteuid() == 0
        self.socket_dir.mkdir()
        if self._as_postgres:
            shutil.chown(self.root, "postgres", "postgres")
            shutil.chown(self.socket_dir, "postgres", "postgres")
        self._databases = 0

    def _run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        prefix = ["runuser", "-u", "postgres", "--"] if self._as_postgres else []
        done = subprocess.run(
            [*prefix, *args], capture_output=True, text=True, timeout=timeout, cwd=self.root
        )
        if done.returncode != 0:
            log = self.log_path.read_text() if self.log_path.exists() else ""
            raise AssertionError(
                f"{' '.join(args)} failed ({done.returncode}):\n{done.stdout}{done.stderr}{log}"
            )
        return done

    def start(self) -> PostgresServer:
        self._run(
            str(self.bin_dir / "initdb"),
            "-D",
            str(self.data_dir),
            "-U",
            "postgres",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "--encoding=UTF8",
            "--no-sync",
            "--no-instructions",
        )
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port} "
            f"-c unix_socket_directories={self.socket_dir} -c fsync=off"
        )
        # -w: pg_ctl itself polls until the server accepts connections, for at most -t seconds.
        self._run(
            str(self.bin_dir / "pg_ctl"),
            "start",
            "-D",
            str(self.data_dir),
            "-l",
            str(self.log_path),
            "-o",
            options,
            "-w",
            "-t",
            "60",
            timeout=90,
        )
        return self

    @property
    def pid(self) -> int | None:
        """The postmaster's PID, from its pid file (None when the server is down)."""
        pid_file = self.data_dir / "postmaster.pid"
        if not pid_file.exists():
            return None
        return int(pid_file.read_text().splitlines()[0])

    def stop(self) -> None:
        """Stop by pg_ctl (fast shutdown), or kill the postmaster by PID if that fails."""
        pid = self.pid
        try:
            if pid is not None:
                self._run(
                    str(self.bin_dir / "pg_ctl"), "stop", "-D", str(self.data_dir), "-m", "fast"
                )
        except (AssertionError, subprocess.TimeoutExpired):
            if pid is not None:
                os.kill(pid, signal.SIGKILL)
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def _superuser(self):
        conn = psycopg2.connect(
            host=str(self.socket_dir), port=self.port, user="postgres", dbname="postgres"
        )
        conn.autocommit = True
        return conn

    def create_database(self, label: str) -> Database:
        """A new database owned by a new password login, both named after ``label``."""
        self._databases += 1
        name = f"{label}_{self._databases}"
        password = f"pw-{os.urandom(8).hex()}"
        conn = self._superuser()
        try:
            with conn.cursor() as cur:
                cur.execute(
                    sql.SQL("CREATE ROLE {} LOGIN PASSWORD %s").format(sql.Identifier(name)),
                    [password],
                )
                cur.execute(
                    sql.SQL("CREATE DATABASE {} OWNER {}").format(
                        sql.Identifier(name), sql.Identifier(name)
                    )
                )
        finally:
            conn.close()
        return Database("127.0.0.1", self.port, name, name, password)


def deploy_instance_config() -> dict[str, Any]:
    return yaml.safe_load(DEPLOY_INSTANCE.read_text())


def write_deploy_home(home: Path) -> Path:
    """A DAGSTER_HOME whose dagster.yaml is deploy/dagster.yaml with the default run launcher in
    place of the cluster one (the rest, Postgres storage included, unchanged)."""
    config = deploy_instance_config()
    config["run_launcher"] = dict(DEFAULT_LAUNCHER)
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return home


def _restore_default_signals() -> None:
    """In the child, before exec: its own process group, SIGINT and SIGTERM at their defaults
    (a shell or CI runner may have started the tests with them ignored)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.setpgrp()


@dataclass
class ServerProcess:
    """A server started by :func:`start_process`; its output goes to ``log_path``."""

    name: str
    process: subprocess.Popen
    log_path: Path

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def _signal_group(self, signum: int) -> bool:
        """Send ``signum`` to the process group this process leads (the server and the children
        it started); False once no process of the group is left."""
        try:
            os.killpg(self.process.pid, signum)
        except ProcessLookupError:
            return False
        return True

    def interrupt(self) -> None:
        self._signal_group(signal.SIGINT)

    def wait_or_kill(self, deadline: float) -> None:
        """Wait for the whole group to exit until ``deadline`` (a time.monotonic value), then
        SIGKILL what is left of it."""
        while time.monotonic() < deadline:
            self.process.poll()
            if not self._signal_group(0):
                break
            time.sleep(0.05)
        else:
            self._signal_group(signal.SIGKILL)
        self.process.wait(timeout=10)


def start_process(
    name: str, args: Sequence[str], env: dict[str, str], log_dir: Path
) -> ServerProcess:
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            list(args),
            env=env,
            cwd=REPO_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=_restore_default_signals,
        )
    return ServerProcess(name, process, log_path)


@contextmanager
def running(
    servers: Sequence[ServerProcess], grace: float = 20
) -> Iterator[Sequence[ServerProcess]]:
    """Stop every server on the way out, whatever happened: SIGINT to all of them at once, then
    SIGKILL to any still there after ``grace`` seconds."""
    try:
        yield servers
    finally:
        for server in servers:
            server.interrupt()
        deadline = time.monotonic() + grace
        for server in servers:
            server.wait_or_kill(deadline)


class GraphQL:
    """The GraphQL endpoint of one webserver."""

    def __init__(self, base_url: str):
        self.base_url = base_url
        self.client = httpx.Client(base_url=base_url, timeout=60)

    def ready(self, server: ServerProcess) -> bool:
        """True once the webserver answers and its code location has loaded."""
        if server.process.poll() is not None:
            raise AssertionError(f"{server.name} exited early:\n{server.log}")
        try:
            self.client.get("/server_info", timeout=2).raise_for_status()
            data = self.execute(LOCATION_STATUS_QUERY)
        except httpx.HTTPError:
            return False
        for entry in data["workspaceOrError"].get("locationEntries", []):
            if entry["name"] != LOCATION or entry["loadStatus"] != "LOADED":
                continue
            loaded = entry["locationOrLoadError"] or {}
            if loaded.get("__typename") == "PythonError":
                raise AssertionError(f"{LOCATION} failed to load: {loaded['message']}")
            return loaded.get("__typename") == "RepositoryLocation"
        return False

    def execute(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        response = self.client.post("/graphql", json={"query": query, "variables": variables or {}})
        response.raise_for_status()
        body = response.json()
        if body.get("errors"):
            raise AssertionError(f"GraphQL errors: {body['errors']}")
        return body["data"]

    def close(self) -> None:
        self.client.close()


LOCATION_STATUS_QUERY = """
query LocationStatus {
  workspaceOrError {
    __typename
    ... on Workspace {
      locationEntries {
        name
        loadStatus
        locationOrLoadError {
          __typename
          ... on PythonError { message }
        }
      }
    }
  }
}
"""
