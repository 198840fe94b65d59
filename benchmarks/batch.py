"""Section 2, batch inference: ``predict_days`` against a bare ``Booster.predict`` on the same
rows."""

from __future__ import annotations

import time
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
    return {
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
