"""Runs the sections (or the groups chosen with ``--only``) and writes the JSON and markdown
results; dispatches the worker processes."""

from __future__ import annotations

import json
import os
import platform
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Collection
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any

from benchmarks.batch import _batch_worker
from benchmarks.common import (
    AS_OF,
    CHAMPION_CANDIDATE,
    LOAD_KEY,
    SKIPPED,
    BenchError,
    Plan,
    World,
    _r,
    _run_worker,
    _write_spec,
)
from benchmarks.definitions import bench_definitions
from benchmarks.endpoint import _serving_world_worker, bench_endpoint
from benchmarks.loadgen import _loadgen_worker, _null_server_worker
from benchmarks.pipeline import _cycle_scale_worker, _pipeline_worker
from benchmarks.report import SECTION_TITLES, _targets, _versions, render_markdown
from benchmarks.scale import _scale_worker

# ``--only`` names: which sections each group produces (they share a world or a worker).
GROUPS: dict[str, tuple[str, ...]] = {
    "serving": ("endpoint", "batch_inference"),
    "pipeline": ("orchestration", "backfill", "training"),
    "definitions": ("definitions_load",),
    "scale": ("scale",),
}


def _run_sections(
    plan: Plan, work: Path, progress: Callable[[str], None], only: Collection[str] = ()
) -> dict[str, dict[str, Any]]:
    """Every section's results by key; a section that could not run holds ``{"error": ...}``.
    With ``only`` (names of :data:`GROUPS`), the other groups are not run."""
    serving = World(work / "serving", _write_spec(work / "specs" / "serving.yaml", plan, False))
    pipeline = World(work / "pipeline", _write_spec(work / "specs" / "pipeline.yaml", plan, True))
    results: dict[str, dict[str, Any]] = {}

    def failed(title: str, exc: BenchError) -> dict[str, Any]:
        progress(f"{title} FAILED: {str(exc)[:2000]}")
        return {"error": str(exc)}

    def section(keys: tuple[str, ...], fn: Callable[[], dict[str, Any]]) -> None:
        """Run ``fn`` (results of ``keys``); if it fails, each key gets its error. Each result
        records the machine's load when it started (other work skews every figure)."""
        title = " and ".join(SECTION_TITLES[k] for k in keys)
        progress(f"{title} ...")
        load = _load_average()
        try:
            produced = fn()
        except BenchError as exc:
            produced = {key: failed(title, exc) for key in keys}
        for value in produced.values():
            value.setdefault(LOAD_KEY, load)
        results.update(produced)

    def guarded(key: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        load = _load_average()
        try:
            value = fn()
        except BenchError as exc:
            value = failed(SECTION_TITLES[key], exc)
        return {**value, LOAD_KEY: load}

    def serving_sections() -> dict[str, Any]:
        info = _run_worker("serving-world", {"batch_rows": plan.batch_rows}, serving.env(), work)
        batch_args = {
            "model_name": info["model_name"],
            "version": info["version"],
            "batch_path": info["batch_path"],
            "repeats": plan.batch_repeats,
            "compiled_dir": str(work / "scratch" / "compiled"),
        }
        return {
            "endpoint": guarded("endpoint", lambda: bench_endpoint(plan, work, serving, info)),
            "batch_inference": guarded(
                "batch_inference", lambda: _run_worker("batch", batch_args, serving.env(), work)
            ),
        }

    def pipeline_sections() -> dict[str, Any]:
        args = {
            "days": plan.backfill_days,
            "drift_days": plan.drift_days,
            "training_dates": plan.training_dates,
            "repeats": plan.cycle_repeats,
            "scratch": str(work / "scratch"),
        }
        produced = _run_worker("pipeline", args, pipeline.env(), work)
        by_size = []
        for airings in plan.cycle_sizes:
            progress(f"daily cycle at {airings:,} airings a day ...")
            spec = _write_spec(work / "specs" / f"cycle_{airings}.yaml", plan, True, airings)
            bigger = World(pipeline.data_dir, spec)
            cycle_args = {"airings": airings, "repeats": 2, "scratch": str(work / "scratch")}
            by_size.append(_run_worker("cycle-scale", cycle_args, bigger.env(), work))
        produced["orchestration"]["by_size"] = by_size
        return produced

    def scale() -> dict[str, Any]:
        sizes = [
            _run_worker(
                "scale", {"airings": n, "scratch": str(work / "scratch")}, pipeline.env(), work
            )
            for n in plan.scale_sizes
        ]
        by_size = {size["airings_per_day"]: size for size in sizes}
        million = by_size.get(1_000_000)
        one_million = (
            {"whole_day_seconds": million["seconds"], "peak_rss_mib": million["peak_rss_mib"]}
            if million
            else {"not_run": "quick mode measures smaller days only"}
        )
        return {
            "scale": {
                "candidate": CHAMPION_CANDIDATE,
                "max_train_rows": sizes[0]["max_train_rows"],
                "sizes": sizes,
                "one_million": one_million,
            }
        }

    runs: dict[str, Callable[[], dict[str, Any]]] = {
        "serving": serving_sections,
        "pipeline": pipeline_sections,
        "definitions": lambda: {"definitions_load": bench_definitions(plan, pipeline.env(), work)},
        "scale": scale,
    }
    for group, keys in GROUPS.items():
        if only and group not in only:
            results.update({key: {SKIPPED: "not selected (--only)"} for key in keys})
        else:
            section(keys, runs[group])
    return results


def _load_average() -> float:
    """The machine's 1-minute load average."""
    return round(os.getloadavg()[0], 2)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def run_benchmark(out: Path, quick: bool = False, only: Collection[str] = ()) -> int:
    """Run every section (or the groups named in ``only``) in a temporary folder, write ``out``
    (JSON) and ``out`` with ``.md``, print the markdown. Returns 1 when a section failed (its
    error is in both files), 130 when interrupted (SIGINT or SIGTERM: servers and workers are
    stopped, the folder is removed and nothing is written), else 0."""
    unknown = sorted(set(only) - set(GROUPS))
    if unknown:
        raise ValueError(f"unknown bench groups {unknown}; known: {', '.join(GROUPS)}")
    plan = Plan.for_mode(quick)
    started, started_at = time.perf_counter(), datetime.now().isoformat(timespec="seconds")
    load_start = [round(x, 2) for x in os.getloadavg()]

    def progress(message: str) -> None:
        print(f"bench [{time.perf_counter() - started:6.0f} s] {message}", flush=True)

    previous = signal.signal(signal.SIGTERM, _interrupt)
    work = Path(tempfile.mkdtemp(prefix="mlops-bench-"))
    try:
        progress(f"{'quick' if quick else 'full'} run in {work}")
        results = _run_sections(plan, work, progress, only)
    except KeyboardInterrupt:
        print("bench: interrupted; servers and workers stopped", file=sys.stderr)
        return 130
    finally:
        shutil.rmtree(work, ignore_errors=True)
        signal.signal(signal.SIGTERM, previous)

    report = {
        "run": {
            "mode": "quick" if quick else "full",
            "started_at": started_at,
            "seconds": _r(time.perf_counter() - started, 1),
            "cpus": os.cpu_count(),
            "load_average_start": load_start,
            "load_average_end": [round(x, 2) for x in os.getloadavg()],
            "python": platform.python_version(),
            "platform": platform.platform(),
            "versions": _versions(),
            "as_of": AS_OF.isoformat(),
            "plan": asdict(plan),
            "only": sorted(only),
        },
        **{key: results.get(key, {"error": "not run"}) for key in SECTION_TITLES},
    }
    report["targets"] = _targets(report, plan)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1, default=str) + "\n")
    markdown = render_markdown(report)
    out.with_suffix(".md").write_text(markdown)
    print()
    print(markdown)
    print(f"written: {out} and {out.with_suffix('.md')}")
    failed = [key for key in SECTION_TITLES if "error" in report[key]]
    if failed:
        print(f"failed sections: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


WORKERS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "serving-world": _serving_world_worker,
    "batch": _batch_worker,
    "pipeline": _pipeline_worker,
    "cycle-scale": _cycle_scale_worker,
    "scale": _scale_worker,
    "loadgen": _loadgen_worker,
    "null-server": _null_server_worker,
}


def worker_main(argv: list[str]) -> int:
    """``python -m benchmarks WORKER ARGS.json``: run one worker and write its JSON
    result to the ``result`` path named in ARGS.json."""
    name, args_path = argv
    args = json.loads(Path(args_path).read_text())
    result = WORKERS[name](args)
    if "result" in args:
        Path(args["result"]).write_text(json.dumps(result, default=str))
    return 0
