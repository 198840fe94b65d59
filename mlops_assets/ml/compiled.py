"""Compiled LightGBM models (lleaves): compile once per model version into a cache folder,
verify against ``Booster.predict`` on a sample, and load the compiled predictor only when a
verified library for that exact version and model hash is present; the booster otherwise.

``lleaves`` is imported inside functions only, so loading the definitions never needs it."""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mlops_assets.atomic import write_atomic, write_text_atomic

TOLERANCE = 1e-9


class CompiledModelRefused(Exception):
    """A compiled model whose predictions or sidecar do not match its booster."""


def _model_file(booster_or_model_file: Any, folder: Path) -> Path:
    if isinstance(booster_or_model_file, (str, Path)):
        return Path(booster_or_model_file)
    path = folder / ".source_model.txt"
    write_atomic(path, lambda tmp: booster_or_model_file.save_model(str(tmp)))
    return path


def model_hash(model_file: str | Path) -> str:
    return hashlib.sha256(Path(model_file).read_bytes()).hexdigest()


def _paths(version: str, cache_dir: str | Path) -> tuple[Path, Path]:
    folder = Path(cache_dir) / f"v{version}"
    return folder / "model.so", folder / "model.json"


def verify(compiled: Any, booster: Any, sample: np.ndarray) -> float:
    """Max absolute difference between ``compiled`` and ``booster`` on ``sample``; raises
    :class:`CompiledModelRefused` if it exceeds 1e-9."""
    sample = np.asarray(sample, dtype=np.float64)
    got = np.asarray(compiled.predict(sample, n_jobs=1), dtype=np.float64)
    want = np.asarray(booster.predict(sample, num_threads=1), dtype=np.float64)
    diff = float(np.max(np.abs(got - want))) if len(want) else 0.0
    if not diff <= TOLERANCE:
        raise CompiledModelRefused(
            f"compiled model refused: max difference {diff:.3g} > {TOLERANCE:g} vs Booster.predict"
        )
    return diff


def compile_model(
    booster_or_model_file: Any,
    version: str,
    cache_dir: str | Path,
    sample: np.ndarray | None = None,
) -> Path:
    """Compile once per version into ``cache_dir/v<version>/model.so`` with a JSON sidecar
    (version, source model hash, verification). A cached, matching library is reused."""
    import lightgbm as lgb
    import lleaves

    lib, sidecar = _paths(version, cache_dir)
    lib.parent.mkdir(parents=True, exist_ok=True)
    source = _model_file(booster_or_model_file, lib.parent)
    digest = model_hash(source)
    if lib.exists() and sidecar.exists():
        meta = json.loads(sidecar.read_text())
        if meta.get("model_hash") == digest and meta.get("verified"):
            return lib
    compiled = lleaves.Model(model_file=str(source))
    tmp_lib = lib.parent / ".model.so.build"
    compiled.compile(cache=str(tmp_lib))
    booster = lgb.Booster(model_file=str(source))
    if sample is None:
        rng = np.random.default_rng(0)
        sample = rng.normal(size=(512, booster.num_feature()))
    meta = {"version": str(version), "model_hash": digest, "verified": False}
    try:
        meta["max_abs_diff"] = verify(compiled, booster, sample)
        meta["verified"] = True
    except CompiledModelRefused as exc:
        meta["refused"] = str(exc)
        tmp_lib.unlink(missing_ok=True)
        write_text_atomic(sidecar, json.dumps(meta, indent=2))
        raise
    write_atomic(lib, lambda tmp: shutil.copyfile(tmp_lib, tmp))
    tmp_lib.unlink(missing_ok=True)
    meta["library_sha256"] = hashlib.sha256(lib.read_bytes()).hexdigest()
    write_text_atomic(sidecar, json.dumps(meta, indent=2))
    return lib


@dataclass
class Predictor:
    kind: str  # "compiled" | "booster"
    model: Any
    reason: str = ""

    def predict(self, matrix: np.ndarray, n_jobs: int = 2) -> np.ndarray:
        matrix = np.asarray(matrix, dtype=np.float64)
        if self.kind == "compiled":
            return np.asarray(self.model.predict(matrix, n_jobs=n_jobs), dtype=np.float64)
        return np.asarray(self.model.predict(matrix, num_threads=n_jobs), dtype=np.float64)


def load_predictor(version: str, model_file: str | Path, cache_dir: str | Path) -> Predictor:
    """The compiled predictor when a verified library for this version and model hash is
    present (and its bytes match the sidecar), else the booster, with the reason."""
    import lightgbm as lgb

    lib, sidecar = _paths(version, cache_dir)
    booster = lgb.Booster(model_file=str(model_file))
    if not (lib.exists() and sidecar.exists()):
        return Predictor("booster", booster, "no compiled library")
    meta = json.loads(sidecar.read_text())
    if meta.get("version") != str(version) or meta.get("model_hash") != model_hash(model_file):
        return Predictor("booster", booster, "sidecar does not match the model")
    if not meta.get("verified"):
        return Predictor("booster", booster, "library not verified")
    if hashlib.sha256(lib.read_bytes()).hexdigest() != meta.get("library_sha256"):
        return Predictor("booster", booster, "library bytes do not match the sidecar")
    import lleaves

    compiled = lleaves.Model(model_file=str(model_file))
    compiled.compile(cache=str(lib))
    return Predictor("compiled", compiled)
