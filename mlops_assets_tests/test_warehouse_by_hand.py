"""Reading and keeping the warehouse by hand, on a real pipeline's DuckLake: `mlops-assets sql`
prints a read-only query as CSV or one JSON array of rows and refuses a write, naming what it
runs; the README's lines (the `mlops-assets sql` command and the Python/polars block) run as
printed; `maintain` merges files and expires old snapshots but keeps the one a later
materialization read, so it stays readable."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from mlops_assets.environments import REPO_ROOT
from mlops_assets.storage.io_manager import READ_SNAPSHOTS
from mlops_assets.storage.maintenance import maintain
from mlops_assets_tests.helpers import FIXED_AS_OF, Pipeline, clean_env

DAY = date(2025, 3, 10)
AIRINGS = 40
MLOPS_ASSETS = str(Path(sys.executable).with_name("mlops-assets"))
README = (REPO_ROOT / "README.md").read_text()


@pytest.fixture
def pipeline(make_pipeline) -> Pipeline:
    p = make_pipeline(as_of=FIXED_AS_OF, airings_per_day=AIRINGS)
    assert p.materialize(DAY, ["raw_events", "features"], last=DAY + timedelta(days=1)).success
    return p


def sql(pipeline: Pipeline, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [MLOPS_ASSETS, "sql", *args],
        env=clean_env(**pipeline.env),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_sql_prints_csv_and_json_rows_of_the_warehouse(pipeline: Pipeline) -> None:
    query = "SELECT air_date, count(*) AS n FROM mlops.raw_events GROUP BY 1 ORDER BY 1"
    done = sql(pipeline, query)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "air_date,n",
        f"{DAY},{AIRINGS}",
        f"{DAY + timedelta(1)},{AIRINGS}",
    ]
    done = sql(pipeline, query, "--format", "json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [
        {"air_date": str(DAY), "n": AIRINGS},
        {"air_date": str(DAY + timedelta(1)), "n": AIRINGS},
    ]


def test_sql_refuses_a_write_and_names_a_missing_table(pipeline: Pipeline) -> None:
    before = pipeline.rows("raw_events")
    done = sql(pipeline, "DELETE FROM mlops.raw_events")
    assert done.returncode == 2
    assert "runs one read query (SELECT ...), not DELETE" in done.stderr
    done = sql(pipeline, "SELECT 1; DROP TABLE mlops.raw_events")
    assert done.returncode == 2 and "not SELECT + DROP" in done.stderr
    done = sql(pipeline, "SELECT * FROM mlops.no_such_table")
    assert done.returncode == 1 and "no_such_table" in done.stderr
    assert pipeline.rows("raw_events").equals(before)


def test_the_readmes_lines_run_as_printed(pipeline: Pipeline) -> None:
    [command] = re.findall(r"^(mlops-assets sql .+)$", README, flags=re.MULTILINE)
    query = command.removeprefix("mlops-assets sql ").strip('"')
    done = sql(pipeline, query)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[1:] == [f"{DAY + timedelta(1)},{AIRINGS}", f"{DAY},{AIRINGS}"]

    section = README[README.index("### Reading the warehouse by hand") :]
    block = section[
        section.index("```python") + len("```python") : section.index(
            "```\n", section.index("```python") + 9
        )
    ]
    done = subprocess.run(
        [sys.executable, "-c", block],
        cwd=pipeline.data_dir.parent,  # the README's paths are data/dev/... from the root
        env=clean_env(PYTHONPATH=str(REPO_ROOT)),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "shape: (5," in done.stdout and "snapshot_id" in done.stdout
    assert str(DAY + timedelta(1)) in done.stdout


def test_maintain_expires_old_snapshots_but_keeps_the_one_a_later_step_read(
    pipeline: Pipeline,
) -> None:
    wh = pipeline.warehouse
    later = DAY + timedelta(days=2)
    # Two writes of a day's events, then (after `window_start`) features that read the second.
    assert pipeline.materialize(later, ["raw_events"]).success
    first = wh.current_snapshot()
    assert pipeline.materialize(later, ["raw_events"]).success
    second = wh.current_snapshot()
    window_start = datetime.now(UTC)
    result = pipeline.materialize(later, ["features"])
    assert result.success
    [event] = result.get_asset_materialization_events()
    read = event.materialization.metadata[READ_SNAPSHOTS].value
    assert read["raw_events"] == second
    current = pipeline.rows("features")

    report = maintain(
        wh, pipeline.settings, retention_days=0, instance=pipeline.instance, now=window_start
    )
    assert second in report.kept_referenced and first in report.expired, report
    assert report.files_after < report.files_before  # small files merged
    assert wh.read("raw_events", snapshot=second).height == 3 * AIRINGS
    with pytest.raises(Exception, match=str(first)):
        wh.read("raw_events", snapshot=first)
    assert pipeline.rows("features").equals(current)
    assert pl.Series(pipeline.rows("raw_events")["airing_id"]).n_unique() == 3 * AIRINGS
