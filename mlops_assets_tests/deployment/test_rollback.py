"""`mlops-assets rollback` in a subprocess, on a copy of the environment after the second
champion was promoted: it records a rollback release decision, after which the decision history
ends with a `rollback` row and `champion` and `larva` point back at the previous champion;
rolling back again (the first champion had no predecessor) exits non-zero with the reason and
changes nothing; so does a folder without a registry."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest

from mlops_assets.environments import REPO_ROOT
from mlops_assets.storage.warehouse import Warehouse
from mlops_assets_tests.deployment.scenario import (
    AS_OF,
    TODAY,
    Scored,
    Step,
    read_aliases,
    tracking_uri,
)
from mlops_assets_tests.helpers import clean_env

COMMAND = str(Path(sys.executable).parent / "mlops-assets")


def rollback(data_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [COMMAND, "rollback"],
        env=clean_env(MLOPS_DATA_DIR=str(data_dir), MLOPS_AS_OF=AS_OF),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


@dataclass(frozen=True)
class Rollbacks:
    first: subprocess.CompletedProcess
    aliases_after_first: dict[str, str | None]
    history_after_first: pl.DataFrame
    second: subprocess.CompletedProcess
    aliases_after_second: dict[str, str | None]
    history_after_second: pl.DataFrame


def history(data_dir: Path) -> pl.DataFrame:
    return Warehouse(data_dir / "dev" / "warehouse").read("champion_history")


@pytest.fixture(scope="module")
def rollbacks(scored: Scored) -> Rollbacks:
    data_dir, uri = scored.data_copy, tracking_uri(scored.data_copy)
    first = rollback(data_dir)
    after_first = (read_aliases(uri), history(data_dir))
    second = rollback(data_dir)
    return Rollbacks(first, *after_first, second, read_aliases(uri), history(data_dir))


def test_rollback_moves_both_aliases_to_the_previous_champion(
    rollbacks: Rollbacks, scored: Scored, first_champion: Step, promoted: Step
):
    previous = first_champion.aliases_after["champion"]
    current = promoted.aliases_after["champion"]
    assert scored.step.aliases_after == {"champion": current, "larva": current}

    done = rollbacks.first
    assert done.returncode == 0, done.stdout + done.stderr
    candidate = first_champion.decision()["candidate"]
    assert (
        f"rolled back mlops_assets_dev (dev): aliases champion, larva moved from v{current} "
        f"to v{previous} ({candidate}); recorded in release_decisions and champion_history"
    ) in done.stdout
    assert rollbacks.aliases_after_first == {"champion": previous, "larva": previous}


def test_rollback_appends_a_rollback_row(rollbacks: Rollbacks, scored: Scored, promoted: Step):
    before = scored.history.sort("seq")
    after = rollbacks.history_after_first.sort("seq")
    assert after.height == before.height + 1
    assert after.head(before.height).equals(before)
    row = after.row(-1, named=True)
    assert row["action"] == "rollback"
    assert row["from_version"] == promoted.aliases_after["champion"]
    assert row["to_version"] == rollbacks.aliases_after_first["champion"]
    assert row["effective_from"] == TODAY
    assert row["reason"].startswith(
        f"rollback from v{row['from_version']} to v{row['to_version']} ("
    )


def test_rollback_without_a_previous_champion_is_refused(rollbacks: Rollbacks):
    done = rollbacks.second
    first = rollbacks.aliases_after_first["champion"]
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f"error: rollback refused: champion v{first} has no previous champion in the history: "
        "nothing to roll back to"
    )
    assert done.stdout == ""
    assert rollbacks.aliases_after_second == rollbacks.aliases_after_first
    assert rollbacks.history_after_second.sort("seq").equals(
        rollbacks.history_after_first.sort("seq")
    )


def test_rollback_without_a_registry_is_refused(tmp_path: Path):
    data_dir = (tmp_path / "data").resolve()
    done = rollback(data_dir)
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f"error: no model registry in {data_dir / 'dev'}: nothing to roll back"
    )
    assert not (data_dir / "dev" / "mlflow.db").exists()
