"""What `mlops-assets demo` prints, run as a subprocess on a small spec (100 airings a day, a
14-day training and 5-day holdout window) with a fixed clock: one progress line per stage and
the summary, at most 80 lines in all, and none of Dagster's DEBUG event lines (which
`--verbose` does print). Too few days for a champion: the demo names the days the training window
needs and suggests `--days N`; with exactly N days a first champion is chosen, so N is the least
that works."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from mlops_assets.environments import REPO_ROOT
from mlops_assets_tests.helpers import Pipeline, clean_env, simulator_spec

COMMAND = str(Path(sys.executable).parent / "mlops-assets")
MAX_LINES = 80
# As of 2025-03-15 06:00 the latest training date that has ended is 2025-03-10: holdout
# 2025-03-04..03-08 (two days of label lag), training 2025-02-18..03-03, 25 days before today.
NEEDED_DAYS = 25
STAGES = ("daily assets", "training", "scoring", "business metrics", "pipeline health")
DEBUG_LINE = re.compile(r"\bDEBUG\b")


def _demo(pipeline: Pipeline, *args: str) -> tuple[int, list[str]]:
    done = subprocess.run(
        [COMMAND, "demo", *args],
        env=clean_env(**pipeline.env),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return done.returncode, (done.stdout + done.stderr).splitlines()


def _small(make_pipeline, name: str) -> Pipeline:
    pipeline = make_pipeline(name)
    raw = simulator_spec(airings_per_day=100)
    raw["training"].update(train_days=14, holdout_days=5)
    pipeline.use_spec(raw)
    return pipeline


def test_too_few_days_names_the_days_needed_quietly(make_pipeline) -> None:
    code, lines = _demo(_small(make_pipeline, "quiet"), "--days", str(NEEDED_DAYS - 1))
    text = "\n".join(lines)
    assert code == 0, text[-3000:]
    assert len(lines) <= MAX_LINES, text
    assert [line for line in lines if DEBUG_LINE.search(line)] == [], text
    assert f"{NEEDED_DAYS - 1} days are too few for a champion" in text, text
    assert f"needs {NEEDED_DAYS} days of data" in text, text
    assert f"mlops-assets demo --days {NEEDED_DAYS}" in text, text
    assert sum(line.startswith("daily assets") for line in lines) == 1, text
    assert "Summary" in lines, text

    # The event log went to the terminal only because it was asked for.
    code, verbose = _demo(_small(make_pipeline, "verbose"), "--days", "3", "--verbose")
    assert code == 0, "\n".join(verbose)[-3000:]
    assert sum(bool(DEBUG_LINE.search(line)) for line in verbose) > MAX_LINES


def test_demo_with_the_days_needed_is_short_and_complete(make_pipeline) -> None:
    pipeline = _small(make_pipeline, "full")
    code, lines = _demo(pipeline, "--days", str(NEEDED_DAYS))
    text = "\n".join(lines)
    assert code == 0, text[-3000:]
    assert len(lines) <= MAX_LINES, text
    assert [line for line in lines if DEBUG_LINE.search(line)] == [], text
    for stage in STAGES:
        assert sum(line.startswith(stage) for line in lines) == 1, (stage, text)
    assert "too few for a champion" not in text
    assert re.search(r"decision: first, champion v\d+", text), text
    assert re.search(r"runs: \d+, failed: 0", text), text
    # The runs and their event logs are in the instance all the same.
    home = pipeline.data_dir / "dev" / "dagster_home"
    assert f"Dagster home: {home}" in text
    assert any((home / "history" / "runs").glob("*.db"))
