"""`mlops-assets bench --quick --out <tmp>/bench.json` in a subprocess: it exits 0, writes the
JSON results and the markdown table next to them (and prints the table), every section is
present without an error and its figures are positive, both servers answered every request
with the same predictions, and nothing is left behind: no temporary folder, no process.

No timing is asserted: the benchmark reports its targets, it does not fail on speed.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil
import pytest

from benchmarks.report import SECTION_TITLES
from mlops_assets.environments import REPO_ROOT
from mlops_assets_tests.helpers import clean_env

pytestmark = pytest.mark.timeout(900)
COMMAND = str(Path(sys.executable).parent / "mlops-assets")


class Run:
    def __init__(self, report: dict[str, Any], markdown: str, stdout: str, tmpdir: Path):
        self.report = report
        self.markdown = markdown
        self.stdout = stdout
        self.tmpdir = tmpdir


def bench(out: Path, tmpdir: Path, *args: str) -> Run:
    """``mlops-assets bench --quick --out OUT ARGS`` with TMPDIR=tmpdir; it must exit 0."""
    done = subprocess.run(
        [COMMAND, "bench", "--quick", "--out", str(out), *args],
        env=clean_env(TMPDIR=str(tmpdir)),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=840,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    markdown = out.with_suffix(".md").read_text()
    return Run(json.loads(out.read_text()), markdown, done.stdout, tmpdir)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    root = tmp_path_factory.mktemp("bench")
    tmpdir = root / "tmp"
    tmpdir.mkdir()
    return bench(root / "results" / "bench.json", tmpdir)


def positive(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value > 0


def test_every_section_is_written_and_printed(run: Run) -> None:
    assert run.report["run"]["mode"] == "quick"
    for key, title in SECTION_TITLES.items():
        assert key in run.report, key
        assert "error" not in run.report[key], run.report[key]
        assert f"## {title}" in run.markdown
    assert "## Targets" in run.markdown
    names = {t["name"] for t in run.report["targets"]}
    assert {"endpoint_p99", "endpoint_saturation", "batch_inference", "orchestration"} <= names
    assert {"definitions_load", "definitions_imports", "scale_1m"} <= names
    for target in run.report["targets"]:
        assert f"| {target['name']} |" in run.markdown
    # The printed table is the file's.
    assert run.markdown.strip() in run.stdout


def test_endpoint_compares_both_servers_on_the_same_model(run: Run) -> None:
    endpoint = run.report["endpoint"]
    assert endpoint["model"]["max_abs_prediction_difference"] < 1e-9
    generator = endpoint["load_generator"]
    assert "asyncio" in generator["tool"] or "wrk" in generator["tool"]
    for field in ("ceiling_rps", "floor_p50_ms", "floor_p99_ms"):
        assert positive(generator[field]), (field, generator)
    for name in ("mlops_assets", "mlflow_serve"):
        for phase in ("fixed_rate", "saturation"):
            figures = endpoint["servers"][name][phase]
            assert figures["requests"] > 0 and figures["errors"] == 0, (name, phase, figures)
            assert figures["ok"] == figures["requests"]
            for field in ("p50_ms", "p99_ms", "rps"):
                assert positive(figures[field]), (name, phase, field, figures)
            assert figures["p50_ms"] <= figures["p99_ms"]
        # The fixed-rate p99 is the median of three runs, each listed.
        fixed = endpoint["servers"][name]["fixed_rate"]
        runs = fixed["p99_ms_runs"]
        assert len(runs) == 3 and fixed["p99_ms"] == sorted(runs)[1], fixed
    assert generator["saturation_connections"] == 16
    assert positive(endpoint["saturation_ratio"])


def test_batch_inference_scores_the_same_rows_both_ways(run: Run) -> None:
    batch = run.report["batch_inference"]
    assert batch["rows"] > 0 and batch["max_abs_prediction_difference"] == 0.0
    for path in ("predict_days", "booster_predict"):
        assert positive(batch[path]["seconds"]) and positive(batch[path]["rows_per_s"])
    assert positive(batch["ratio"])
    # The champion compiled once, then predicting the same rows as the booster.
    fast = batch["compiled"]
    assert fast["max_abs_prediction_difference"] <= 1e-9
    assert fast["verified_max_abs_diff"] <= 1e-9
    assert positive(fast["rows_per_s"]) and positive(fast["ratio_vs_booster"])
    assert positive(fast["compile_seconds"])
    assert "batch_inference_compiled" in {t["name"] for t in run.report["targets"]}


def test_orchestration_and_backfill_figures(run: Run) -> None:
    cycle = run.report["orchestration"]
    for path in ("dagster", "dagster_ephemeral"):
        assert cycle[path]["runs"] == 1, cycle[path]
        assert positive(cycle[path]["seconds"]) and positive(cycle[path]["step_seconds"])
        assert {"features", "predictions", "drift_report", "business_metrics"} <= set(
            cycle[path]["by_step"]
        ), cycle[path]["by_step"]
    assert positive(cycle["direct"]["seconds"]) and positive(cycle["ratio"])
    assert set(cycle["direct"]["by_stage"]) >= {"features", "predictions", "drift_report"}
    # Dagster's floor: the same graph of trivial assets, run on the same instance.
    assert cycle["floor_shape"]["assets"] == 10 and cycle["floor_shape"]["checks"] >= 10
    assert positive(cycle["floor_seconds"]) and len(cycle["floor_samples"]) == cycle["repeats"]
    assert cycle["overhead_vs_floor"] == pytest.approx(
        cycle["overhead_seconds"] / cycle["floor_seconds"], rel=0.05, abs=0.02
    )
    sizes = run.report["run"]["plan"]["cycle_sizes"]
    assert [x["rows"] for x in cycle["by_size"]] == sizes and sizes
    for larger in cycle["by_size"]:
        assert larger["dagster"]["runs"] == 1 and positive(larger["ratio"]), larger
    assert "The same cycle at larger volumes" in run.markdown

    training = run.report["training"]
    assert training["dates"] == len(run.report["backfill"]["training_dates"])
    assert 0 < training["fit_seconds_per_date"] < training["seconds_per_date"], training
    assert set(training["fit_seconds_by_date"]) == set(run.report["backfill"]["training_dates"])

    backfill = run.report["backfill"]
    assert backfill["days"] == run.report["run"]["plan"]["backfill_days"]
    assert backfill["training_dates"] and backfill["checks_failed"] == 0
    assert positive(backfill["asset_partitions"]) and positive(backfill["peak_rss_mib"])
    assert set(backfill["stages"]) >= {"daily_refresh", "training", "scoring", "metrics"}
    for name, stage in backfill["stages"].items():
        assert positive(stage["seconds"]) and positive(stage["peak_rss_mib"]), name
    assert positive(backfill["per_partition_seconds"])


def test_definitions_load_and_scale_figures(run: Run) -> None:
    load = run.report["definitions_load"]
    for field in ("definitions_seconds", "empty_dagster_seconds", "ratio"):
        assert positive(load[field]), field
    assert isinstance(load["heavy_modules_imported"], list)

    sizes = run.report["scale"]["sizes"]
    assert [s["airings_per_day"] for s in sizes] == run.report["run"]["plan"]["scale_sizes"]
    for size in sizes:
        assert set(size["stages"]) == {"simulate", "features", "train", "predict", "drift"}
        for name, stage in size["stages"].items():
            assert positive(stage["seconds"]) and positive(stage["peak_rss_mib"]), name
        assert size["stages"]["predict"]["rows"] == size["airings_per_day"]


def test_nothing_is_left_behind(run: Run) -> None:
    assert list(run.tmpdir.iterdir()) == []
    leftovers = []
    for process in psutil.process_iter(["pid", "cmdline", "cwd"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if str(run.tmpdir) in f"{cmdline} {process.info['cwd'] or ''}":
            leftovers.append((process.info["pid"], cmdline[:200]))
    assert leftovers == []


def test_only_runs_the_named_groups(tmp_path: Path) -> None:
    only = bench(tmp_path / "only.json", tmp_path, "--only", "definitions")
    report = only.report
    assert report["run"]["only"] == ["definitions"]
    assert positive(report["definitions_load"]["ratio"])
    assert report["definitions_load"]["heavy_modules_imported"] == []
    skipped = ("endpoint", "batch_inference", "orchestration", "backfill", "scale", "training")
    for key in skipped:
        assert report[key] == {"skipped": "not selected (--only)"}, key
    assert only.markdown.count("Not run: not selected (--only).") == 6
