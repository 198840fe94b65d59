"""The serve check: load a registered model version in a fresh Python process from its registry
URI, predict sample rows, and time single-row predictions through the endpoint's path.

It proves the registered artifacts alone serve (nothing of this process helps) and measures
what serving them costs; promotion refuses a proposal that fails it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

if TYPE_CHECKING:
    pass


def write_sample_csv(
    frame: pl.DataFrame, columns: Sequence[str], path: str | Path, rows: int = 20
) -> Path:
    """Write the first ``rows`` rows of the model's input columns as CSV (for check_serves)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.select(list(columns)).head(rows).write_csv(path)
    return path


_SERVE_SCRIPT = """
import json, sys, tempfile, time
from pathlib import Path
import numpy as np, pandas as pd, mlflow
from mlflow.types import DataType
mlflow.set_tracking_uri(sys.argv[1])
calls = int(sys.argv[4])
started = time.perf_counter()
with tempfile.TemporaryDirectory() as tmp:
    local = mlflow.artifacts.download_artifacts(artifact_uri=sys.argv[2], dst_path=tmp)
    model = mlflow.pyfunc.load_model(local)
    load_seconds = time.perf_counter() - started
    files = [f for f in (Path(local) / "artifacts").rglob("*") if f.is_file()]
    model_bytes = sum(f.stat().st_size for f in files)
schema = model.metadata.get_input_schema()
text = {c.name: str for c in schema.inputs if c.type == DataType.string} if schema else {}
frame = pd.read_csv(sys.argv[3], dtype=text)
pred = np.asarray(model.predict(frame), dtype=float).ravel()
if len(pred) != len(frame):
    sys.exit(f"{len(pred)} predictions for {len(frame)} rows")
if not np.isfinite(pred).all() or (pred < 0).any():
    sys.exit(f"predictions are not finite and >= 0: {pred[:10].tolist()}")
# Single-row latency through the endpoint's own path: encode the request row, then LightGBM's
# single-row API (or the baseline's lookup).
from mlops_assets.serving.fastpath import row_predictor
tabular = model.unwrap_python_model()._model
predictor = row_predictor(tabular)
rows = [{k: (None if pd.isna(v) else v) for k, v in r.items()} for r in frame.to_dict("records")]
took = []
for i in range(calls):
    row = rows[i % len(rows)]
    t0 = time.perf_counter()
    encoded = tabular.encode_rows([row])
    if predictor is not None:
        predictor.predict(encoded[0])
    else:
        tabular.predict_matrix(encoded)
    took.append(time.perf_counter() - t0)
took = np.asarray(took) * 1000.0
sys.stdout.write(json.dumps({
    "rows": len(frame), "mean_prediction": float(pred.mean()), "calls": calls,
    "p50_ms": float(np.percentile(took, 50)), "p99_ms": float(np.percentile(took, 99)),
    "load_seconds": load_seconds, "model_bytes": float(model_bytes),
}))
"""

SERVE_CALLS = 300


def check_serves(
    tracking_uri: str,
    name: str,
    version: str,
    sample_csv_path: str | Path,
    timeout: float = 180,
    calls: int = SERVE_CALLS,
) -> tuple[bool, str]:
    """Load ``models:/<name>/<version>`` in a fresh Python process, predict the sample rows,
    then time ``calls`` single-row predictions through the endpoint's prediction path.

    Returns (True, a JSON summary: rows, mean prediction, p50 and p99 latency in ms, load
    seconds, model bytes) or (False, the error text): proof that the registered artifacts alone
    serve, independent of anything in this process, and what serving them costs.
    """
    sample = Path(sample_csv_path).resolve()
    command = [sys.executable, "-c", _SERVE_SCRIPT, tracking_uri, f"models:/{name}/{version}"]
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri}
    try:
        done = subprocess.run(
            [*command, str(sample), str(int(calls))],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            cwd=sample.parent,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return False, f"loading and predicting took longer than {timeout:.0f} s"
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        return False, "\n".join(lines[-25:]) or f"exit code {done.returncode}"
    return True, done.stdout.strip()


def serve_measurements(detail: str) -> dict[str, float | None]:
    """p50/p99 ms, load seconds and model bytes from a successful check_serves summary."""
    try:
        summary = json.loads(detail)
    except (TypeError, ValueError):
        summary = {}
    keys = ("p50_ms", "p99_ms", "load_seconds", "model_bytes")
    return {k: (float(summary[k]) if k in summary else None) for k in keys}
