"""The targets and the markdown report of a benchmark run."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from benchmarks.common import (
    AIRINGS_PER_DAY,
    GIB,
    HEAVY_MODULES,
    LOAD_KEY,
    MIB,
    SEED,
    SKIPPED,
    Plan,
)
from benchmarks.definitions import _EMPTY_PROJECT, _IMPORT_DEFS

# The report ---------------------------------------------------------------------------------


def _targets(results: dict[str, Any], plan: Plan) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []

    def add(name: str, target: str, observed: str, met: bool | None) -> None:
        out.append({"name": name, "target": target, "observed": observed, "met": met})

    endpoint = results.get("endpoint", {})
    if "servers" in endpoint:
        p99 = endpoint["servers"]["mlops_assets"]["fixed_rate"]["p99_ms"]
        add("endpoint_p99", f"p99 <= 2 ms at {plan.rate} req/s", f"{p99:.2f} ms", p99 <= 2.0)
        runs = endpoint["servers"]["mlops_assets"]["fixed_rate"].get("p99_ms_runs", [p99])
        observed = ", ".join(f"{r:.2f}" for r in runs) + " ms"
        goal = f"p99 <= 1.0 ms at {plan.rate} req/s in each of {len(runs)} runs"
        add("endpoint_p99_runs", goal, observed, max(runs) <= 1.0)
        ratio = endpoint["saturation_ratio"]
        add("endpoint_saturation", ">= 10x mlflow models serve", f"{ratio:.1f}x", ratio >= 10)
        rps = endpoint["servers"]["mlops_assets"]["saturation"]["rps"]
        connections = endpoint["load_generator"]["saturation_connections"]
        goal = f">= 5,000 req/s at {connections} connections, 1 worker"
        add("endpoint_saturation_rps", goal, f"{rps:,.0f} req/s", rps >= 5000)
    batch = results.get("batch_inference", {})
    if "ratio" in batch:
        add(
            "batch_inference",
            ">= 0.8x bare Booster.predict rows/s",
            f"{batch['ratio']:.2f}x",
            batch["ratio"] >= 0.8,
        )
    fast = batch.get("compiled", {})
    if "ratio_vs_booster" in fast:
        ratio = fast["ratio_vs_booster"]
        goal = ">= 5x Booster.predict, 1 thread, same rows"
        add("batch_inference_compiled", goal, f"{ratio:.2f}x", ratio >= 5)
    orchestration = results.get("orchestration", {})
    if "ratio" in orchestration:
        ratio = orchestration["ratio"]
        rows = orchestration["rows"]
        add("orchestration", f"< 1.5x direct ({rows:,} rows)", f"{ratio:.2f}x", ratio < 1.5)
        vs_floor = orchestration["overhead_vs_floor"]
        floor = orchestration["floor_seconds"]
        goal = f"overhead <= 2x Dagster's floor ({floor:.2f} s)"
        add("orchestration_floor", goal, f"{vs_floor:.2f}x", vs_floor <= 2)
        for size in orchestration.get("by_size", []):
            ratio = size["ratio"]
            goal = f"< 1.5x direct ({size['rows']:,} rows)"
            add("orchestration", goal, f"{ratio:.2f}x", ratio < 1.5)
    load = results.get("definitions_load", {})
    if "ratio" in load:
        ratio = load["ratio"]
        add("definitions_load", "< 1.5x empty Dagster project", f"{ratio:.2f}x", ratio < 1.5)
        heavy = load["heavy_modules_imported"]
        add(
            "definitions_imports",
            f"none of {', '.join(HEAVY_MODULES)} imported",
            ", ".join(heavy) or "none",
            not heavy,
        )
    backfill = results.get("backfill", {})
    if "wall_seconds" in backfill:
        wall, days = backfill["wall_seconds"], backfill["days"]
        goal = f"{days}-day backfill <= 30 s on 2 cores"
        add("backfill", goal, f"{wall:.1f} s", wall <= 30 if days >= 90 else None)
    training = results.get("training", {})
    if "seconds_per_date" in training:
        per_date = training["seconds_per_date"]
        add("training", "<= 3 s per training date", f"{per_date:.2f} s", per_date <= 3)
    scale = {s["airings_per_day"]: s for s in results.get("scale", {}).get("sizes", [])}
    goal = "1M airings in one day <= 15 s end to end, peak RSS <= 2 GiB"
    if 1_000_000 in scale:
        peak, seconds = scale[1_000_000]["peak_rss_mib"], scale[1_000_000]["seconds"]
        met = seconds <= 15 and peak * MIB <= 2 * GIB
        add("scale_1m", goal, f"{seconds:.1f} s, {peak:,.0f} MiB", met)
    else:
        add("scale_1m", goal, "not run (quick)", None)
    return out


def _fmt(value: Any) -> str:
    """Numbers for a table: fewer decimals the larger they are."""
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        digits = 0 if abs(value) >= 1000 else 1 if abs(value) >= 100 else 2
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(c) for c in row) + " |" for row in rows]
    return lines


SECTION_TITLES = {
    "endpoint": "1. Online endpoint",
    "batch_inference": "2. Batch inference",
    "orchestration": "3. Orchestration overhead (one daily cycle)",
    "backfill": "4. Backfill",
    "definitions_load": "5. Definitions load",
    "scale": "6. Scale curve (one day)",
    "training": "7. Training, per training date",
}


def render_markdown(report: dict[str, Any]) -> str:
    """The report as markdown: the targets, then one table per section."""
    meta, results = report["run"], report
    lines = [
        f"# mlops_assets benchmark ({meta['mode']})",
        "",
        f"Run {meta['started_at']}, {meta['seconds']:.0f} s, on {meta['cpus']} CPUs, load "
        f"average {meta['load_average_start']} at start and {meta['load_average_end']} at end. "
        f"Clock {meta['as_of']}, seed {SEED}, {AIRINGS_PER_DAY} airings a day unless stated.",
        "",
        "## Targets (reported, not asserted)",
        "",
    ]
    met = {True: "yes", False: "**no**", None: "-"}
    lines += _table(
        ["target", "goal", "observed", "met"],
        [[t["name"], t["target"], t["observed"], met[t["met"]]] for t in report["targets"]],
    )
    for key, title in SECTION_TITLES.items():
        section = results.get(key, {})
        lines += ["", f"## {title}", ""]
        if LOAD_KEY in section:
            lines += [f"Load average (1 min) when this section started: {section[LOAD_KEY]}.", ""]
        if "error" in section:
            lines.append(f"Failed: {section['error'][:1500]}")
            continue
        if SKIPPED in section:
            lines.append(f"Not run: {section[SKIPPED]}.")
            continue
        lines += _SECTION_RENDERERS[key](section)
    return "\n".join(lines) + "\n"


def _render_endpoint(s: dict[str, Any]) -> list[str]:
    gen, model = s["load_generator"], s["model"]
    rows = []
    for name, server in s["servers"].items():
        for phase in ("fixed_rate", "saturation"):
            r = server[phase]
            label = f"fixed {gen['fixed_rate']} req/s" if phase == "fixed_rate" else "saturation"
            rows.append(
                [
                    name,
                    label,
                    r["requests"],
                    r["errors"],
                    r["p50_ms"],
                    r["p99_ms"],
                    r["rps"],
                ]
            )
    lines = _table(["server", "phase", "requests", "errors", "p50 ms", "p99 ms", "req/s"], rows)
    return [
        f"Model v{model['version']} ({model['candidate']}, {model['trees']} trees, "
        f"{model['features']} features), one key per request over {model['distinct_request_keys']}"
        f" keys; both servers predict the same (max difference "
        f"{model['max_abs_prediction_difference']:.2g}). Load generator: {gen['tool']}. Against "
        f"a null HTTP server (answers at once) it reaches {gen['ceiling_rps']:,.0f} req/s with "
        f"{gen['ceiling_connections']} connections, and at {gen['fixed_rate']} req/s measures "
        f"p50 {gen['floor_p50_ms']:.2f} ms, p99 {gen['floor_p99_ms']:.2f} ms (its own and "
        f"loopback's share of every latency below). {gen['phase_seconds']:.0f} s per phase; "
        f"fixed rate open loop on {gen['fixed_rate_connections']} connections, saturation closed "
        f"loop on {gen['saturation_connections']}. Saturation ratio: "
        f"{s['saturation_ratio']:.1f}x.{_render_request_log(s)}",
        "",
        *lines,
    ]


def _render_request_log(s: dict[str, Any]) -> str:
    log = s["servers"]["mlops_assets"].get("request_log")
    if not log:
        return ""
    return (
        f" Our endpoint wrote each request's log entry before answering it ({log['written']:,} "
        f"entries, {log['pending']} pending, {log['dropped']} dropped): the figures include it."
    )


def _render_batch(s: dict[str, Any]) -> list[str]:
    return [
        f"{s['rows']:,} feature rows of one day, {s['threads']} thread(s), best of "
        f"{s['repeats']}. predict_days includes encoding ({s['encode_seconds']:.3f} s of it); "
        f"ratio {s['ratio']:.2f}x.",
        "",
        *_table(
            ["path", "seconds", "rows/s"],
            [
                ["predict_days (predictions asset)", *s["predict_days"].values()],
                ["bare Booster.predict (encoded matrix)", *s["booster_predict"].values()],
                *_compiled_rows(s.get("compiled", {})),
            ],
        ),
        *_compiled_note(s.get("compiled", {})),
    ]


def _compiled_rows(c: dict[str, Any]) -> list[list[Any]]:
    if "rows_per_s" not in c:
        return []
    one = c["one_thread"]
    rows = c["rows_per_s"]
    return [
        [f"predict_days, compiled champion ({c['threads']} threads)", c["seconds"], rows],
        ["compiled library, 1 thread (encoded matrix)", "", one["compiled_rows_per_s"]],
        ["Booster.predict, 1 thread (encoded matrix)", "", one["booster_rows_per_s"]],
    ]


def _compiled_note(c: dict[str, Any]) -> list[str]:
    if "rows_per_s" not in c:
        return []
    return [
        "",
        f"Compiled with lleaves once ({_fmt(c['compile_seconds'])} s, verified against the "
        f"booster: max difference {c['verified_max_abs_diff']:.1e}); on 1 thread it is "
        f"{c['ratio_vs_booster']:.2f}x Booster.predict on the same rows.",
    ]


def _render_orchestration(s: dict[str, Any]) -> list[str]:
    rows = []
    for key, label in (
        ("dagster", "Dagster in process, environment instance (SQLite)"),
        ("dagster_ephemeral", "Dagster in process, in-memory instance"),
    ):
        d = s[key]
        detail = f"{d['runs']} runs, {d['run_seconds']:.2f} s in runs, {d['step_seconds']:.2f} s"
        rows.append([label, d["seconds"], f"{d['ratio']:.2f}x", detail + " in steps"])
    rows.append(["same functions directly", s["direct"]["seconds"], "1.00x", ""])
    rows += [[f"direct: {k}", v, "", ""] for k, v in s["direct"]["by_stage"].items()]
    if "floor_seconds" in s:
        shape = s["floor_shape"]
        rows.append(
            [
                "Dagster's floor: trivial assets of the same shape, SQLite instance",
                s["floor_seconds"],
                "",
                f"{shape['assets']} assets, {shape['checks']} checks; the cycle's overhead "
                f"is {s['overhead_vs_floor']:.2f}x this",
            ]
        )
    return [
        f"Day {s['day']} ({s['rows']} rows): sources, features, online store, predictions, "
        f"drift report, serving log and business metrics in one run of the `daily_cycle` job; "
        f"median of {s['repeats']}, alternated, in the process the backfill warmed. The direct "
        "path gets earlier days' inputs in memory and writes nothing to the warehouse. Ratio "
        f"{s['ratio']:.2f}x, overhead {s['overhead_seconds']:.2f} s per cycle.",
        "",
        *_table(["path", "seconds", "vs direct", "detail"], rows),
        "",
        "Seconds per Dagster step (input loading, the asset body, storing the output, checks):",
        "",
        *_table(
            ["step", "SQLite instance", "in-memory instance"],
            [
                [step, seconds, s["dagster_ephemeral"]["by_step"].get(step, math.nan)]
                for step, seconds in s["dagster"]["by_step"].items()
            ],
        ),
        *_render_cycle_sizes(s),
    ]


def _render_cycle_sizes(s: dict[str, Any]) -> list[str]:
    sizes = [x for x in s.get("by_size", []) if "dagster" in x]
    if not sizes:
        return []
    rows = [[s["rows"], s["dagster"]["seconds"], s["direct"]["seconds"], f"{s['ratio']:.2f}x"]]
    rows += [
        [x["rows"], x["dagster"]["seconds"], x["direct"]["seconds"], f"{x['ratio']:.2f}x"]
        for x in sizes
    ]
    return [
        "",
        "The same cycle at larger volumes (one run on the SQLite instance; history, champion and "
        "drift reference from the 400-a-day backfill; median of 2):",
        "",
        *_table(["airings a day", "through Dagster s", "directly s", "ratio"], rows),
    ]


def _render_backfill(s: dict[str, Any]) -> list[str]:
    rows = [
        [name, stage.get("partitions", ""), stage["seconds"], stage["peak_rss_mib"]]
        for name, stage in s["stages"].items()
    ]
    return [
        f"{s['days']} days ({s['first_day']}..{s['last_day']}, {s['airings_per_day']} airings a "
        f"day) through the runner on the environment's Dagster instance: {s['runs']} runs, "
        f"{s['asset_partitions']} asset partitions, {len(s['training_dates'])} training dates "
        f"(of {s['training_dates_available']} whose window fits the days). Wall "
        f"{s['wall_seconds']:.1f} s, peak RSS {s['peak_rss_mib']:,.0f} MiB. The daily refresh "
        f"takes {s['per_partition_seconds']:.3f} s per day; the same functions directly take "
        f"{s['daily_refresh_direct_seconds']:.2f} s for all days, so the per-partition overhead "
        f"is {s['per_partition_overhead_seconds']:.3f} s.",
        "",
        *_table(["stage", "partitions", "seconds", "peak RSS MiB"], rows),
    ]


def _render_definitions(s: dict[str, Any]) -> list[str]:
    return [
        f"Median of {s['repeats']} fresh interpreters each. Ratio {s['ratio']:.2f}x. Heavy "
        f"modules imported by the definitions: {', '.join(s['heavy_modules_imported']) or 'none'}"
        f" (checked: {', '.join(s['heavy_modules_checked'])}).",
        "",
        *_table(
            ["command", "median seconds"],
            [
                [f"python -c '{_IMPORT_DEFS}'", s["definitions_seconds"]],
                [f"python -c '{_EMPTY_PROJECT}'", s["empty_dagster_seconds"]],
                ["python -c 'pass'", s["python_seconds"]],
            ],
        ),
    ]


def _render_scale(s: dict[str, Any]) -> list[str]:
    rows = []
    for size in s["sizes"]:
        for name, stage in size["stages"].items():
            rows.append(
                [
                    size["airings_per_day"],
                    name,
                    stage.get("rows", ""),
                    stage["seconds"],
                    stage["peak_rss_mib"],
                ]
            )
        rows.append(
            [size["airings_per_day"], "**whole day**", "", size["seconds"], size["peak_rss_mib"]]
        )
    return [
        f"Each size in its own process; training fits {s['candidate']} on at most "
        f"{s['max_train_rows']:,} rows; the drift report samples the current side. Peak RSS "
        f"is the process's, libraries included (about {s['sizes'][0]['baseline_rss_mib']:,.0f}"
        " MiB before the first stage).",
        "",
        *_table(["airings/day", "stage", "rows", "seconds", "peak RSS MiB"], rows),
    ]


def _render_training(s: dict[str, Any]) -> list[str]:
    return [
        f"The backfill's training stage ({s['dates']} training date(s), every candidate, MLflow "
        "logging, the fresh-process serve check, the champion and the decision history): "
        f"{s['seconds_per_date']:.2f} s per date, of which the candidates' fits "
        f"{s['fit_seconds_per_date']:.2f} s (their logged `fit_seconds`) and everything else "
        f"{s['other_seconds_per_date']:.2f} s.",
        "",
        *_table(
            ["training date", "fit seconds"], [[k, v] for k, v in s["fit_seconds_by_date"].items()]
        ),
    ]


_SECTION_RENDERERS: dict[str, Callable[[dict[str, Any]], list[str]]] = {
    "endpoint": _render_endpoint,
    "batch_inference": _render_batch,
    "orchestration": _render_orchestration,
    "backfill": _render_backfill,
    "definitions_load": _render_definitions,
    "scale": _render_scale,
    "training": _render_training,
}


# The run ------------------------------------------------------------------------------------


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("dagster", "mlflow", "lightgbm", "polars", "duckdb", "evidently", "uvicorn"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out
