"""Compiled LightGBM models (lleaves): compile once per model version into a cache folder,
verify against ``Booster.predict`` on a sample, and load the compiled predictor only when a
verified library for that exact version and model hash is present; the booster otherwise.

A version's library lives in ``cache_dir/v<version>/`` (``Settings.compiled_models_dir``, beside
the registry's artifacts). The ``compile_model`` job writes it (:func:`compile_version`), launched
by the sensor that watches the champion pointer; batch inference and the endpoint attach it to the
loaded model (:func:`with_compiled`) when it is there and verified, and predict with the booster
until then.

``lleaves`` is imported inside functions only, so loading the definitions never needs it."""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from mlops_assets.atomic import write_atomic, write_text_atomic
from mlops_assets.ml.model import BOOSTER_FILE, PYFUNC_ARTIFACT, TabularModel

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


def sidecar_path(version: str, cache_dir: str | Path) -> Path:
    """The sidecar of a version's library: present once a compile of it ended (verified or
    refused)."""
    return _paths(version, cache_dir)[1]


def verification_sample(booster: Any, rows: int = 512, seed: int = 0) -> np.ndarray:
    """Rows that walk both sides of the model's splits: each numeric feature takes split
    thresholds exactly and nudged either way, each categorical one the codes its splits name
    and a few more; 5% of the values are missing."""
    n = booster.num_feature()
    thresholds: list[list[float]] = [[] for _ in range(n)]
    categorical = [False] * n
    pending = [tree["tree_structure"] for tree in booster.dump_model()["tree_info"]]
    while pending:
        node = pending.pop()
        if "split_feature" not in node:
            continue
        feature = node["split_feature"]
        if node.get("decision_type") == "==":
            categorical[feature] = True
            thresholds[feature] += [float(c) for c in str(node["threshold"]).split("||")]
        else:
            thresholds[feature].append(float(node["threshold"]))
        pending += [node["left_child"], node["right_child"]]
    rng = np.random.default_rng(seed)
    sample = np.empty((rows, n), dtype=np.float64)
    for j in range(n):
        values = np.asarray(thresholds[j] or [0.0])
        if categorical[j]:
            pool = np.union1d(values, np.arange(values.max() + 2))
            sample[:, j] = rng.choice(pool, rows)
        else:
            picked = rng.choice(values, rows)
            nudge = rng.choice([-1.0, 0.0, 1.0], rows) * np.maximum(np.abs(picked), 1.0) * 1e-6
            sample[:, j] = picked + nudge
        sample[rng.random(rows) < 0.05, j] = np.nan
    return sample


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
        sample = verification_sample(booster)
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


def registry_model_file(name: str, version: str, tracking_uri: str | None) -> Path:
    """The booster file of a registered version in the local artifact store (RegistryError
    when the version is stored elsewhere)."""
    from mlops_assets.ml import registry

    folder = registry.version_artifacts_dir(name, version, tracking_uri)
    return folder / "artifacts" / PYFUNC_ARTIFACT / BOOSTER_FILE


def with_compiled(
    model: TabularModel, version: str, model_file: str | Path, cache_dir: str | Path
) -> tuple[TabularModel, str]:
    """``model`` predicting through the compiled library of ``version`` when one is present,
    matches ``model_file`` and agrees with ``model``'s booster within 1e-9 on a verification
    sample; else ``model`` itself. The second value says why the booster is kept ("" when
    compiled)."""
    if model.kind != "lightgbm" or model.booster is None:
        return model, "not a tree model"
    try:
        predictor = load_predictor(version, model_file, cache_dir)
        if predictor.kind != "compiled":
            return model, predictor.reason
        verify(predictor.model, model.booster, verification_sample(model.booster))
    except CompiledModelRefused as exc:
        return model, str(exc)
    except (OSError, ValueError) as exc:  # an unreadable library or sidecar: the booster serves
        return model, f"compiled library unusable: {exc}"
    return replace(model, compiled=predictor.model), ""


def load_version(
    name: str, version: str, tracking_uri: str | None, cache_dir: str | Path
) -> TabularModel:
    """A registered version, predicting through its verified compiled library when present."""
    from mlops_assets.ml import registry

    model = registry.load_model_version(name, version, tracking_uri)
    try:
        model_file = registry_model_file(name, version, tracking_uri)
    except registry.RegistryError:
        return model
    return with_compiled(model, version, model_file, cache_dir)[0]


def compile_version(
    name: str, version: str, tracking_uri: str | None, cache_dir: str | Path
) -> dict[str, Any]:
    """Compile and verify a registered version into ``cache_dir`` (reused when already there);
    what the sidecar records plus the seconds it took. A baseline has nothing to compile."""
    model_file = registry_model_file(name, version, tracking_uri)
    model = TabularModel.load(model_file.parent)
    if model.kind != "lightgbm" or model.booster is None:
        return {"version": str(version), "compiled": False, "reason": f"a {model.kind} model"}
    started = time.perf_counter()
    compile_model(model_file, version, cache_dir, sample=verification_sample(model.booster))
    meta = json.loads(sidecar_path(version, cache_dir).read_text())
    return {**meta, "compiled": True, "seconds": round(time.perf_counter() - started, 3)}
