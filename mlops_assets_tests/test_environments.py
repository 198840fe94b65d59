"""The environment resolver (mlops_assets.environments): MLOPS_ENV defaults to dev and refuses
unknown names by listing the valid ones; every path of an environment lives under
$MLOPS_DATA_DIR/<env>/, and a symbolic link nested in that folder may not lead out of it; stage
aliases; thresholds tighten towards prod; the clock is fixed by MLOPS_AS_OF; hostile schema
names are refused; the alert webhook's variables are read here and a bad format is refused;
nothing is read at import time."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from mlops_assets.environments import (
    ENVIRONMENTS,
    SettingsError,
    load_settings,
    validate_identifier,
)
from mlops_assets_tests.helpers import clean_env, run_python

PATH_PROPERTIES = (
    "env_dir",
    "warehouse_path",
    "online_store_path",
    "champion_pointer_path",
    "request_log_dir",
    "mlflow_db_path",
    "mlflow_artifacts_dir",
    "reports_dir",
    "alerts_path",
    "dagster_home",
)


def test_default_environment_is_dev(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MLOPS_DATA_DIR", str(tmp_path))
    settings = load_settings()
    assert settings.env == "dev"
    assert settings.stage_alias == "larva"
    assert settings.env_dir == tmp_path.resolve() / "dev"


@pytest.mark.parametrize("name", ["qa", "production", "DEV", "dev "])
def test_unknown_environment_lists_the_valid_ones(
    monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    monkeypatch.setenv("MLOPS_ENV", name)
    with pytest.raises(SettingsError) as err:
        load_settings()
    message = str(err.value)
    assert repr(name) in message
    assert "dev, staging, prod" in message


def test_unknown_environment_argument_is_refused_too() -> None:
    with pytest.raises(SettingsError, match="valid ones are: dev, staging, prod"):
        load_settings(env="qa")


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_every_path_lives_under_the_environment_folder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, env: str
) -> None:
    monkeypatch.setenv("MLOPS_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("MLOPS_ENV", env)
    settings = load_settings()
    env_dir = tmp_path.resolve() / env
    for prop in PATH_PROPERTIES:
        path = getattr(settings, prop)
        assert path.is_relative_to(env_dir), f"{prop}={path} is outside {env_dir}"
    assert settings.mlflow_tracking_uri == f"sqlite:///{env_dir / 'mlflow.db'}"
    assert settings.registered_model_name.endswith(env)


def test_environments_share_no_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MLOPS_DATA_DIR", str(tmp_path))
    paths = {env: {getattr(load_settings(env), p) for p in PATH_PROPERTIES} for env in ENVIRONMENTS}
    assert not paths["dev"] & paths["staging"]
    assert not paths["dev"] & paths["prod"]
    assert not paths["staging"] & paths["prod"]
    names = {load_settings(env).registered_model_name for env in ENVIRONMENTS}
    assert len(names) == 3


def test_ensure_dirs_creates_only_the_environment_folder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("MLOPS_DATA_DIR", str(tmp_path))
    load_settings("staging").ensure_dirs()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["staging"]
    assert (tmp_path / "staging" / "dagster_home").is_dir()
    assert (tmp_path / "staging" / "online_store").is_dir()


def test_stage_aliases() -> None:
    aliases = {env: load_settings(env).stage_alias for env in ENVIRONMENTS}
    assert aliases == {"dev": "larva", "staging": "chrysalis", "prod": "butterfly"}


def test_thresholds_tighten_towards_prod() -> None:
    dev, staging, prod = (load_settings(env).thresholds for env in ENVIRONMENTS)
    assert dev.null_share_max > staging.null_share_max > prod.null_share_max
    assert dev.drift_share_max > staging.drift_share_max > prod.drift_share_max
    assert dev.promotion_margin <= staging.promotion_margin <= prod.promotion_margin
    assert (dev.strict, staging.strict, prod.strict) == (False, False, True)


def test_a_nested_link_out_of_the_environment_is_refused_and_one_inside_accepted(
    tmp_path: Path,
) -> None:
    load_settings("dev", tmp_path).ensure_dirs()
    dev = tmp_path.resolve() / "dev"
    (dev / "reports" / "day").mkdir()
    (dev / "reports" / "latest").symlink_to("day", target_is_directory=True)
    assert load_settings("dev", tmp_path).env_dir == dev

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    link = dev / "dagster_home" / "storage" / "runs"
    link.parent.mkdir()
    link.symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(SettingsError) as err:
        load_settings("dev", tmp_path)
    message = str(err.value)
    assert f"symbolic link {link} -> {elsewhere}" in message
    assert f"resolves to {elsewhere.resolve()}, outside {dev}" in message


def test_as_of_fixes_the_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLOPS_AS_OF", "2025-03-15T06:00")
    settings = load_settings()
    assert settings.now() == datetime(2025, 3, 15, 6, 0)
    assert settings.today().isoformat() == "2025-03-15"


def test_unparsable_as_of_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLOPS_AS_OF", "yesterday")
    with pytest.raises(SettingsError, match="MLOPS_AS_OF='yesterday'"):
        load_settings()


@pytest.mark.parametrize(
    "schema",
    [
        'mlops"; DROP TABLE raw_events; --',
        "mlops;drop",
        'a"b',
        "main.mlops",
        "1mlops",
        "ml ops",
        "",
        "x" * 64,
    ],
)
def test_hostile_schema_is_refused(monkeypatch: pytest.MonkeyPatch, schema: str) -> None:
    monkeypatch.setenv("MLOPS_SCHEMA", schema)
    with pytest.raises(SettingsError, match="MLOPS_SCHEMA"):
        load_settings()


def test_plain_schema_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLOPS_SCHEMA", "mlops_test_2")
    assert load_settings().schema == "mlops_test_2"
    assert validate_identifier("_x9", "what") == "_x9"


def test_nothing_is_read_at_import(tmp_path: Path) -> None:
    code = (
        "import mlops_assets.environments as e\n"
        "print('imported')\n"
        "try:\n"
        "    e.load_settings()\n"
        "except e.SettingsError as exc:\n"
        "    print('refused:', exc)\n"
    )
    env = clean_env(MLOPS_ENV="bogus", MLOPS_AS_OF="not-a-date", MLOPS_SCHEMA="x;y")
    done = run_python(code, env)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "imported"
    assert lines[1].startswith("refused: unknown environment 'bogus'")
    assert "dev, staging, prod" in lines[1]


def test_alert_webhook_variables_are_read_with_the_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("MLOPS_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("MLOPS_ALERT_WEBHOOK", raising=False)
    monkeypatch.delenv("MLOPS_ALERT_WEBHOOK_FORMAT", raising=False)
    settings = load_settings("dev")
    assert (settings.alert_webhook_set, settings.alert_webhook_format) == (False, "slack")
    assert settings.mlflow_experiment == "mlops_assets"
    monkeypatch.setenv("MLOPS_ALERT_WEBHOOK", "http://127.0.0.1:9/hook")
    monkeypatch.setenv("MLOPS_ALERT_WEBHOOK_FORMAT", "json")
    settings = load_settings("dev")
    assert (settings.alert_webhook_set, settings.alert_webhook_format) == (True, "json")
    monkeypatch.setenv("MLOPS_ALERT_WEBHOOK_FORMAT", "teams")
    with pytest.raises(SettingsError, match="'teams' is not a webhook format; use one of: slack"):
        load_settings("dev")
