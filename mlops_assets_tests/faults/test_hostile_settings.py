"""Hostile settings are refused with a message naming them, before anything is written.

- Identifiers: MLOPS_SCHEMA, the IO manager's and the warehouse resource's schema, warehouse
  table names and every column a dataset spec names (``source.table`` included) must be plain
  identifiers: quotes, semicolons, dots and spaces are refused.
- Paths. What "inside the data dir" means here: every state path of environment E (warehouse,
  online store, request log, MLflow database and artifacts, reports, alerts, Dagster home) must
  resolve, symbolic links followed, inside ``$MLOPS_DATA_DIR/E/``, and so must every symbolic
  link anywhere under that folder (nested ones too: dev's ``dagster_home/history`` linked to
  prod's, a relative ``..`` link, a dangling one), while links that stay inside (loops
  included) are accepted; and a dataset's source file must not lie inside any environment's
  folder (another environment's data, or its own state), wherever it is reached from (a
  relative ``..`` path or a link). MLOPS_DATA_DIR itself may be anywhere (a link to a bigger
  disk included) but must be a directory. MLOPS_ENV must be one of dev, staging, prod.

The CLI and the endpoint refuse such settings with exit code 2 and the message, and write
nothing.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from mlops_assets.dataset import SpecError
from mlops_assets.dataset_load import load_spec
from mlops_assets.defs.common import project
from mlops_assets.defs.resources import WarehouseResource
from mlops_assets.environments import REPO_ROOT, SettingsError, load_settings
from mlops_assets.storage.io_manager import DuckDBPolarsIOManager
from mlops_assets.storage.warehouse import Warehouse, WarehouseError
from mlops_assets_tests.faults.world import csv_spec, simulated_source
from mlops_assets_tests.helpers import clean_env, simulator_spec, write_yaml

HOSTILE_IDENTIFIERS = [
    'mlops"; DROP TABLE raw_events; --',
    "mlops;drop",
    "a'b",
    "main.mlops",
    "ml ops",
    "x" * 64,
]
DAY = date(2025, 3, 10)
MLOPS_ASSETS = str(Path(sys.executable).parent / "mlops-assets")


def files_under(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*")} if folder.exists() else set()


# Identifiers -----------------------------------------------------------------------------------


@pytest.mark.parametrize("schema", HOSTILE_IDENTIFIERS)
def test_hostile_schema_is_refused_everywhere(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, schema: str
) -> None:
    monkeypatch.setenv("MLOPS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MLOPS_SCHEMA", schema)
    with pytest.raises(SettingsError, match=r"MLOPS_SCHEMA .* is not a plain identifier"):
        load_settings()
    database = str(tmp_path / "w")
    with pytest.raises(ValueError, match="schema_name"):
        DuckDBPolarsIOManager(database=database, schema_name=schema)
    with pytest.raises(SettingsError, match="warehouse schema"):
        WarehouseResource(database=database, schema_name=schema).get()
    assert not (tmp_path / "w").exists()


def test_cli_refuses_a_hostile_schema_and_writes_nothing(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    env = clean_env(MLOPS_DATA_DIR=str(data), MLOPS_SCHEMA='mlops"; DROP SCHEMA main; --')
    done = subprocess.run(
        [MLOPS_ASSETS, "demo", "--days", "2"],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.startswith("error: MLOPS_SCHEMA 'mlops\"; DROP SCHEMA main; --'")
    assert files_under(data) == set()


@pytest.mark.parametrize("table", ['raw_events"; DROP TABLE mlops.x; --', "a;b", "mlops.t", ""])
def test_hostile_table_names_are_refused_and_keep_the_table(tmp_path: Path, table: str) -> None:
    wh = Warehouse(tmp_path / "w", "mlops")
    frame = pl.DataFrame({"air_date": [DAY], "airing_id": ["a1"], "spend": [1.0]})
    wh.replace_partition("raw_events", frame, "air_date", DAY, DAY + timedelta(days=1))
    for write in (
        lambda: wh.replace_partition(table, frame, "air_date", DAY, DAY + timedelta(days=1)),
        lambda: wh.replace_table(table, frame),
        lambda: wh.append(table, frame),
        lambda: wh.read(table),
    ):
        with pytest.raises((SettingsError, WarehouseError), match="table name"):
            write()
    assert wh.tables() == ["raw_events"]
    assert wh.read("raw_events").equals(frame)


SPEC_FIELDS: list[tuple[str, Any]] = [
    ("date_column", 'air_date"; --'),
    ("event_key", "airing_id;"),
    ("target", "visits or 1=1"),
    ("numeric_features", ["hour", 'spend"']),
    ("categorical_features", ["network", "day part"]),
    ("serving_keys", ["network", "main.daypart"]),
    ("history_keys", ["network';--"]),
    ("segment_column", "network;"),
    ("cost_column", 'spend" --'),
    ("monitored_features", ["hour;"]),
]


@pytest.mark.parametrize(("field", "value"), SPEC_FIELDS, ids=[f for f, _ in SPEC_FIELDS])
def test_hostile_spec_column_is_refused_naming_the_field(
    tmp_path: Path, field: str, value: Any
) -> None:
    path = write_yaml(tmp_path / "spec.yaml", simulator_spec(**{field: value}))
    with pytest.raises(SpecError) as err:
        load_spec(path)
    message = str(err.value)
    assert f"dataset spec field '{field}'" in message
    assert "is not a plain identifier" in message


def test_hostile_duckdb_source_table_is_refused(tmp_path: Path) -> None:
    (tmp_path / "source.duckdb").write_bytes(b"")
    raw = simulator_spec()
    raw["source"] = {"kind": "duckdb", "path": "source.duckdb", "table": 'events"; DROP x; --'}
    with pytest.raises(SpecError, match=re.escape("dataset spec field 'source.table'")):
        load_spec(write_yaml(tmp_path / "spec.yaml", raw))


@pytest.mark.parametrize("env", ["../prod", "dev; rm -rf /", "prod/../dev", "DEV"])
def test_hostile_environment_name_is_refused(monkeypatch: pytest.MonkeyPatch, env: str) -> None:
    monkeypatch.setenv("MLOPS_ENV", env)
    with pytest.raises(SettingsError, match="valid ones are: dev, staging, prod"):
        load_settings()


# State paths -----------------------------------------------------------------------------------


@pytest.fixture
def data(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A data folder with a prod environment holding state, selected as MLOPS_DATA_DIR."""
    root = tmp_path / "data"
    load_settings("prod", root).ensure_dirs()
    (root / "prod" / "mlflow.db").write_bytes(b"prod registry")
    monkeypatch.setenv("MLOPS_DATA_DIR", str(root))
    return root


def test_environment_folder_linked_into_another_is_refused(data: Path) -> None:
    (data / "dev").symlink_to(data / "prod", target_is_directory=True)
    with pytest.raises(SettingsError) as err:
        load_settings("dev")
    message = str(err.value)
    assert f"resolves to {data / 'prod'}, outside {data / 'dev'}" in message
    assert "env_dir" in message


@pytest.mark.parametrize(
    ("entry", "target"),
    [
        ("mlflow.db", "prod/mlflow.db"),
        ("warehouse", "prod/warehouse"),
        ("mlflow_artifacts", "prod/mlflow_artifacts"),
        ("dagster_home", "prod/dagster_home"),
    ],
)
def test_state_path_linked_out_of_its_environment_is_refused(
    data: Path, entry: str, target: str
) -> None:
    (data / "dev").mkdir()
    (data / "dev" / entry).symlink_to(data / target)
    with pytest.raises(SettingsError, match=f"resolves to {data / target}, outside"):
        load_settings("dev")


def test_state_path_linked_outside_the_data_folder_is_refused(data: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (data / "staging").mkdir()
    (data / "staging" / "reports").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(SettingsError, match=r"reports_dir .* resolves to .*elsewhere"):
        load_settings("staging")


def test_link_nested_in_an_environment_folder_into_another_is_refused(data: Path) -> None:
    """The incident: dev's Dagster run history linked to prod's."""
    load_settings("dev", data).ensure_dirs()
    link = data / "dev" / "dagster_home" / "history"
    (data / "prod" / "dagster_home" / "history").mkdir()
    link.symlink_to(data / "prod" / "dagster_home" / "history", target_is_directory=True)
    with pytest.raises(SettingsError) as err:
        load_settings("dev")
    message = str(err.value)
    assert f"symbolic link {link} -> {data / 'prod' / 'dagster_home' / 'history'}" in message
    assert f"outside {data / 'dev'}" in message
    assert "Replace the link with a real folder" in message


@pytest.mark.parametrize(
    ("entry", "target"),
    [
        # deep inside an artifact folder, absolute
        ("mlflow_artifacts/1/abc/artifacts/model", "{prod}/mlflow_artifacts"),
        # relative, climbing out with ..
        ("reports/2025-03-15", "../../prod/reports"),
        # dangling: writing through it would create prod's file
        ("alerts/archive.jsonl", "{prod}/alerts/archive.jsonl"),
        # a file link outside the data folder
        ("request_log/requests-2025-03-15-1.jsonl", "{outside}/requests.jsonl"),
    ],
)
def test_any_link_under_an_environment_that_leads_out_is_refused(
    data: Path, tmp_path: Path, entry: str, target: str
) -> None:
    link = data / "dev" / entry
    link.parent.mkdir(parents=True)
    link.symlink_to(target.format(prod=data / "prod", outside=tmp_path))
    with pytest.raises(SettingsError, match=f"symbolic link {re.escape(str(link))} -> "):
        load_settings("dev")


def test_links_that_stay_inside_the_environment_are_accepted(data: Path) -> None:
    dev = data / "dev"
    load_settings("dev", data).ensure_dirs()
    (dev / "reports" / "2025-03-15").mkdir()
    (dev / "reports" / "latest").symlink_to("2025-03-15", target_is_directory=True)
    (dev / "mlflow_artifacts" / "current").symlink_to(dev / "mlflow_artifacts")
    # Links that a walker following them would never finish: back to the top, and a loop.
    (dev / "reports" / "2025-03-15" / "home").symlink_to(dev, target_is_directory=True)
    (dev / "alerts" / "a").symlink_to(dev / "alerts" / "b")
    (dev / "alerts" / "b").symlink_to(dev / "alerts" / "a")
    settings = load_settings("dev")
    assert settings.env_dir == dev


def test_endpoint_refuses_a_nested_link_out_of_its_environment(data: Path) -> None:
    load_settings("dev", data).ensure_dirs()
    link = data / "dev" / "dagster_home" / "history"
    link.symlink_to(data / "prod" / "dagster_home", target_is_directory=True)
    before = files_under(data)
    done = subprocess.run(
        [sys.executable, "-m", "mlops_assets.serving", "--port", "0"],
        env=clean_env(MLOPS_DATA_DIR=str(data)),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert f"error: the dev environment's folder holds a symbolic link {link}" in done.stderr
    assert files_under(data) == before


def test_data_dir_that_is_a_file_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "data").write_text("not a folder")
    monkeypatch.setenv("MLOPS_DATA_DIR", str(tmp_path / "data"))
    with pytest.raises(SettingsError, match=r"MLOPS_DATA_DIR=.* is not a directory"):
        load_settings()


def test_linked_data_dir_and_plain_folders_are_accepted(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    disk = tmp_path / "big_disk"
    disk.mkdir()
    (tmp_path / "data").symlink_to(disk, target_is_directory=True)
    monkeypatch.setenv("MLOPS_DATA_DIR", str(tmp_path / "data"))
    settings = load_settings("dev")
    settings.ensure_dirs()
    assert settings.env_dir == disk / "dev"
    assert settings.warehouse_path.parent == disk / "dev"


def test_cli_refuses_a_linked_environment_and_touches_no_other(data: Path) -> None:
    (data / "dev").symlink_to(data / "prod", target_is_directory=True)
    prod_before = {p: p.stat().st_mtime_ns for p in files_under(data / "prod")}
    done = subprocess.run(
        [MLOPS_ASSETS, "demo", "--days", "2", "--env", "dev"],
        env=clean_env(MLOPS_DATA_DIR=str(data)),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.startswith("error: the dev environment's env_dir")
    assert {p: p.stat().st_mtime_ns for p in files_under(data / "prod")} == prod_before
    assert (data / "prod" / "mlflow.db").read_bytes() == b"prod registry"


# Dataset source paths --------------------------------------------------------------------------


def write_source_csv(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    simulated_source([DAY]).write_csv(path)
    return path


@pytest.mark.parametrize("env", ["prod", "staging", "dev"])
def test_source_inside_an_environment_folder_is_refused(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, env: str
) -> None:
    """``project()`` loads the spec of the current environment (dev) with the data folder."""
    csv = write_source_csv(data / env / "exports" / "airings.csv")
    spec_path = write_yaml(tmp_path / "specs" / f"into_{env}.yaml", csv_spec(csv))
    monkeypatch.setenv("MLOPS_DATASET", str(spec_path))
    with pytest.raises(SpecError) as err:
        project()
    message = str(err.value)
    assert "dataset spec field 'source.path'" in message
    assert f"inside the data folder of the '{env}' environment" in message


def test_source_reached_through_a_link_or_dotdot_is_refused(data: Path, tmp_path: Path) -> None:
    csv = write_source_csv(data / "prod" / "exports" / "airings.csv")
    outside = tmp_path / "incoming"
    outside.mkdir()
    (outside / "airings.csv").symlink_to(csv)
    linked = csv_spec(outside / "airings.csv")
    with pytest.raises(SpecError, match="inside the data folder of the 'prod' environment"):
        load_spec(write_yaml(tmp_path / "specs" / "linked.yaml", linked), data_dir=data)

    dotdot = csv_spec(Path("..") / "prod" / "exports" / "airings.csv")
    spec_in_data = write_yaml(data / "datasets" / "dotdot.yaml", dotdot)
    with pytest.raises(SpecError, match="inside the data folder of the 'prod' environment"):
        load_spec(spec_in_data, data_dir=data)


def test_source_outside_the_environment_folders_is_accepted(data: Path, tmp_path: Path) -> None:
    csv = write_source_csv(data / "datasets" / "airings.csv")
    spec = load_spec(write_yaml(data / "datasets" / "ok.yaml", csv_spec(csv)), data_dir=data)
    assert spec.source.path == csv
    other = write_source_csv(tmp_path / "exports" / "airings.csv")
    assert load_spec(write_yaml(tmp_path / "ok.yaml", csv_spec(other)), data_dir=data)


def test_endpoint_refuses_a_source_in_another_environment(data: Path, tmp_path: Path) -> None:
    csv = write_source_csv(data / "prod" / "exports" / "airings.csv")
    spec_path = write_yaml(tmp_path / "specs" / "serve.yaml", csv_spec(csv))
    before = files_under(data)
    done = subprocess.run(
        [sys.executable, "-m", "mlops_assets.serving", "--port", "0"],
        env=clean_env(MLOPS_DATA_DIR=str(data), MLOPS_DATASET=str(spec_path)),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert "error: dataset spec field 'source.path'" in done.stderr
    assert "inside the data folder of the 'prod' environment" in done.stderr
    assert files_under(data) == before
    assert not os.path.exists(data / "dev")
