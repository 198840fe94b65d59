"""Prod changes only through an approver: `MLOPS_ENV=prod mlops-assets demo` on a fresh prod
evaluates and proposes (a `propose` decision and one alert naming the command) but leaves the
registry without `champion` and `butterfly`; `mlops-assets promote --training-date` with an
approver moves both through the decision history, and `mlops-assets rollback` moves them back.
Each is a subprocess on a real data folder."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from mlops_assets.environments import REPO_ROOT
from mlops_assets.storage.warehouse import Warehouse
from mlops_assets_tests.helpers import clean_env, simulator_spec, write_yaml

COMMAND = str(Path(sys.executable).parent / "mlops-assets")
AS_OF = "2025-02-01T06:00"


def _cli(data_dir: Path, spec: Path, *args: str) -> subprocess.CompletedProcess:
    env = clean_env(
        MLOPS_DATA_DIR=str(data_dir), MLOPS_DATASET=str(spec), MLOPS_AS_OF=AS_OF, MLOPS_ENV="prod"
    )
    return subprocess.run(
        [COMMAND, *args], env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600
    )


def _aliases(data_dir: Path) -> dict[str, str | None]:
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    uri = f"sqlite:///{data_dir / 'prod' / 'mlflow.db'}"
    try:
        model = MlflowClient(uri, uri).get_registered_model("mlops_assets_prod")
    except MlflowException:
        return {"champion": None, "butterfly": None}
    return {a: model.aliases.get(a) and str(model.aliases[a]) for a in ("champion", "butterfly")}


@pytest.fixture(scope="module")
def prod(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, Path, subprocess.CompletedProcess]:
    root = tmp_path_factory.mktemp("prod_approval")
    raw = simulator_spec(airings_per_day=150)
    raw["training"].update(train_days=14, holdout_days=5)
    spec = write_yaml(root / "spec.yaml", raw)
    data_dir = root / "data"
    demo = _cli(
        data_dir, spec, "demo", "--days", "25", "--training-dates", "1", "--drift-days", "1"
    )
    return data_dir, spec, demo


def _history(data_dir: Path) -> pl.DataFrame:
    return Warehouse(data_dir / "prod" / "warehouse").read("champion_history")


def test_a_prod_demo_proposes_and_moves_no_alias(prod) -> None:
    data_dir, _, demo = prod
    history = _history(data_dir)
    assert history.height == 1, demo.stdout + demo.stderr
    row = history.row(0, named=True)
    assert row["action"] == "propose"
    assert row["to_version"] is None and row["proposed_version"] is not None
    assert f"--training-date {row['training_date']}" in row["reason"]
    assert _aliases(data_dir) == {"champion": None, "butterfly": None}
    alerts = [
        json.loads(line)
        for line in (data_dir / "prod" / "alerts" / "alerts.jsonl").read_text().splitlines()
    ]
    proposals = [a for a in alerts if a["kind"] == "proposal"]
    assert len(proposals) == 1
    assert proposals[0]["partition"] == str(row["training_date"])


def test_promote_with_an_approver_then_rollback(prod) -> None:
    data_dir, spec, _ = prod
    training_date = str(_history(data_dir)["training_date"][0])
    refused = _cli(data_dir, spec, "promote", "--training-date", training_date)
    assert refused.returncode == 2 and "named approver" in refused.stderr
    assert _aliases(data_dir) == {"champion": None, "butterfly": None}

    done = _cli(data_dir, spec, "promote", "--training-date", training_date, "--approved-by", "ana")
    assert done.returncode == 0, done.stdout + done.stderr
    proposed = _history(data_dir)["proposed_version"][0]
    assert _aliases(data_dir) == {"champion": proposed, "butterfly": proposed}
    history = _history(data_dir).sort("seq")
    last = history.row(-1, named=True)
    assert (last["kind"], last["action"], last["approved_by"]) == ("release", "promote", "ana")
    assert last["to_version"] == proposed

    back = _cli(data_dir, spec, "rollback", "--by", "ana")
    assert back.returncode == 0, back.stdout + back.stderr
    assert _aliases(data_dir) == {"champion": None, "butterfly": None}
    last = _history(data_dir).sort("seq").row(-1, named=True)
    assert (last["action"], last["from_version"], last["to_version"]) == (
        "rollback",
        proposed,
        None,
    )
