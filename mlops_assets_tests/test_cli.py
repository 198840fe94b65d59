"""The `mlops-assets` command in a subprocess: `demo --days 8` on a small spec with a fixed clock
exits 0 and summarizes partitions, checks and the warehouse path (and the warehouse holds what it
says); an unknown environment exits non-zero listing the valid ones."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from mlops_assets.environments import REPO_ROOT
from mlops_assets_tests.helpers import SMALL_AIRINGS_PER_DAY, Pipeline, clean_env

COMMAND = str(Path(sys.executable).parent / "mlops-assets")


def mlops_assets(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [COMMAND, *args],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def partitions_line(output: str, asset: str) -> tuple[int, int]:
    match = re.search(
        rf"^\s+{asset}\s+(\d+) partitions materialized,\s+([\d,]+) rows in warehouse$",
        output,
        re.MULTILINE,
    )
    assert match, f"no summary line for {asset}:\n{output}"
    return int(match[1]), int(match[2].replace(",", ""))


def test_demo_runs_and_summarizes(pipeline: Pipeline) -> None:
    done = mlops_assets("demo", "--days", "8", env=clean_env(**pipeline.env))
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    out = done.stdout

    # 2025-03-07 .. 2025-03-14; outcomes of the last day land after the clock (2025-03-15 06:00).
    assert "days=2025-03-07..2025-03-14" in out
    assert partitions_line(out, "raw_events") == (8, 8 * SMALL_AIRINGS_PER_DAY)
    assert partitions_line(out, "features") == (8, 8 * SMALL_AIRINGS_PER_DAY)
    assert partitions_line(out, "raw_outcomes") == (7, 7 * SMALL_AIRINGS_PER_DAY)
    assert partitions_line(out, "labeled_examples") == (7, 7 * SMALL_AIRINGS_PER_DAY)
    checks = re.search(r"checks: (\d+) passed, (\d+) failed", out)
    assert checks and int(checks[1]) > 0 and checks[2] == "0", out
    assert "runs: " in out and "failed: 0" in out

    warehouse = pipeline.data_dir / "dev" / "warehouse"
    assert f"warehouse: {warehouse / 'data'}/ (catalog {warehouse / 'catalog.sqlite'})" in out
    assert (warehouse / "catalog.sqlite").is_file()
    assert list((warehouse / "data").rglob("*.parquet"))
    assert f"online store: {pipeline.data_dir / 'dev' / 'online_store' / 'features.parquet'}" in out
    assert pipeline.rows("raw_events").height == 8 * SMALL_AIRINGS_PER_DAY


def test_unknown_environment_exits_with_the_valid_ones(pipeline: Pipeline) -> None:
    done = mlops_assets("demo", env=clean_env(**pipeline.env, MLOPS_ENV="qa"))
    assert done.returncode != 0
    assert "unknown environment 'qa'" in done.stderr
    assert "dev, staging, prod" in done.stderr
    assert not (pipeline.data_dir / "qa").exists()
    assert not any(pipeline.data_dir.iterdir())


def test_unknown_environment_option_is_refused(pipeline: Pipeline) -> None:
    done = mlops_assets("demo", "--env", "qa", env=clean_env(**pipeline.env))
    assert done.returncode == 2
    assert "invalid choice: 'qa'" in done.stderr
    assert "'dev', 'staging', 'prod'" in done.stderr
