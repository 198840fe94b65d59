"""Section 2, batch inference: ``predict_days`` against a bare ``Booster.predict`` on the same
rows, and the champion compiled (``mlops_assets.ml.compiled``) against the booster: the compile
is timed once, then both predict the same encoded rows on 1 thread and on the model's threads."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from benchmarks.common import _r

# 2. Batch inference -------------------------------------------------------------------------


def _batch_worker(args: dict[str, Any]) -> dict[str, Any]:
    """``predict_days`` (the predictions asset's function) on the batch frame against a bare
    ``Booster.predict`` on the same rows already encoded, same thread count; best of n."""
    import numpy as np
    import polars as pl

    from mlops_assets.defs.common import project
    from mlops_assets.ml import registry
    from mlops_assets.ml.inference import PREDICTION, predict_days

    spec, settings = project().spec, project().settings
    model = registry.load_model_version(
        args["model_name"], args["version"], settings.mlflow_tracking_uri
    )
    frame = pl.read_parquet(args["batch_path"]).sort(spec.date_column, spec.event_key)
    threads = model.predict_threads
    version = args["version"]

    def ours(rows: Any) -> Any:
        return predict_days(spec, rows, lambda _day: version, lambda _v: model)

    def bare(matrix: Any) -> Any:
        return model.booster.predict(matrix, num_threads=threads)

    warm = frame.head(1000)
    ours(warm), bare(model.encode(warm))
    timings: dict[str, list[float]] = {"ours": [], "bare": [], "encode": []}
    for _ in range(args["repeats"]):
        started = time.perf_counter()
        predicted = ours(frame)
        timings["ours"].append(time.perf_counter() - started)
        started = time.perf_counter()
        matrix = model.encode(frame)
        timings["encode"].append(time.perf_counter() - started)
        started = time.perf_counter()
        raw = bare(matrix)
        timings["bare"].append(time.perf_counter() - started)
    diff = float(np.max(np.abs(predicted[PREDICTION].to_numpy() - np.clip(raw, 0.0, None))))
    rows = frame.height
    best = {k: min(v) for k, v in timings.items()}
    compiled = _compiled(args, spec, frame, model, matrix, raw)
    return {
        "compiled": compiled,
        "rows": rows,
        "threads": threads,
        "repeats": args["repeats"],
        "predict_days": {"seconds": _r(best["ours"]), "rows_per_s": round(rows / best["ours"])},
        "booster_predict": {
            "seconds": _r(best["bare"]),
            "rows_per_s": round(rows / best["bare"]),
        },
        "encode_seconds": _r(best["encode"]),
        "ratio": _r(best["bare"] / best["ours"], 3),
        "max_abs_prediction_difference": diff,
    }


def _compiled(
    args: dict[str, Any], spec: Any, frame: Any, model: Any, matrix: Any, raw: Any
) -> dict[str, Any]:
    """Compile the version once (as the ``compile_model`` job does), then, best of n on the
    same rows: ``predict_days`` through the compiled champion (both cores), and the compiled
    library against ``Booster.predict`` on the encoded matrix, 1 thread each."""
    import numpy as np

    from mlops_assets.defs.common import project
    from mlops_assets.ml import compiled
    from mlops_assets.ml.inference import PREDICTION, predict_days

    uri, name, version = project().settings.mlflow_tracking_uri, args["model_name"], args["version"]
    cache = args["compiled_dir"]
    info = compiled.compile_version(name, version, uri, cache)
    fast = compiled.load_version(name, version, uri, cache)
    if fast.compiled is None:
        raise RuntimeError(f"the compiled library of v{version} was not used: {info}")
    booster = model.booster
    runs: dict[str, Callable[[], Any]] = {
        "predict_days": lambda: predict_days(spec, frame, lambda _d: version, lambda _v: fast),
        "compiled_1_thread": lambda: fast.compiled.predict(matrix, n_jobs=1),
        "booster_1_thread": lambda: booster.predict(matrix, num_threads=1),
    }
    best: dict[str, float] = {}
    out: dict[str, Any] = {}
    for key, run in runs.items():
        run()
        times = []
        for _ in range(args["repeats"]):
            started = time.perf_counter()
            out[key] = run()
            times.append(time.perf_counter() - started)
        best[key] = min(times)
    diff = float(np.max(np.abs(out["predict_days"][PREDICTION].to_numpy() - np.clip(raw, 0, None))))
    rows = frame.height
    return {
        "compile_seconds": info.get("seconds"),
        "verified_max_abs_diff": info.get("max_abs_diff"),
        "threads": fast.predict_threads,
        "seconds": _r(best["predict_days"]),
        "rows_per_s": round(rows / best["predict_days"]),
        "one_thread": {
            "compiled_rows_per_s": round(rows / best["compiled_1_thread"]),
            "booster_rows_per_s": round(rows / best["booster_1_thread"]),
        },
        "ratio_vs_booster": _r(best["booster_1_thread"] / best["compiled_1_thread"], 3),
        "max_abs_prediction_difference": diff,
    }
