"""Compiled models (mlops_assets.ml.compiled): compile + verify + cache keyed by version (a second
call reuses the library), predictions equal to Booster.predict within 1e-9, and a tampered
library or a mismatching model hash is refused so the booster is used."""

from __future__ import annotations

import json

import lightgbm as lgb
import numpy as np
import pytest

from mlops_assets.ml import compiled


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(400, 5))
    y = x[:, 0] * 2 + x[:, 1] ** 2 + rng.normal(scale=0.1, size=400)
    booster = lgb.train(
        {"objective": "regression", "num_leaves": 15, "verbose": -1},
        lgb.Dataset(x, y),
        num_boost_round=15,
    )
    path = tmp_path_factory.mktemp("m") / "model.txt"
    booster.save_model(str(path))
    return path


def test_compile_verify_and_reuse_cache(model_file, tmp_path):
    lib = compiled.compile_model(model_file, "3", tmp_path)
    meta = json.loads((lib.parent / "model.json").read_text())
    assert meta["version"] == "3" and meta["verified"] and meta["max_abs_diff"] <= 1e-9
    assert meta["model_hash"] == compiled.model_hash(model_file)
    stat = lib.stat()
    again = compiled.compile_model(model_file, "3", tmp_path)
    assert again == lib and again.stat().st_ino == stat.st_ino
    assert again.stat().st_mtime_ns == stat.st_mtime_ns

    predictor = compiled.load_predictor("3", model_file, tmp_path)
    assert predictor.kind == "compiled"
    x = np.random.default_rng(2).normal(size=(1000, 5))
    want = lgb.Booster(model_file=str(model_file)).predict(x, num_threads=1)
    assert np.max(np.abs(predictor.predict(x, n_jobs=2) - want)) <= 1e-9


def test_tampered_library_and_other_model_are_refused(model_file, tmp_path):
    lib = compiled.compile_model(model_file, "4", tmp_path)
    assert compiled.load_predictor("5", model_file, tmp_path).kind == "booster"
    other = tmp_path / "other.txt"
    other.write_text(model_file.read_text() + "\n")
    refused = compiled.load_predictor("4", other, tmp_path)
    assert refused.kind == "booster" and "does not match" in refused.reason
    lib.write_bytes(lib.read_bytes() + b"\0")
    tampered = compiled.load_predictor("4", model_file, tmp_path)
    assert tampered.kind == "booster" and "library" in tampered.reason


def test_verify_refuses_a_differing_model(model_file):
    booster = lgb.Booster(model_file=str(model_file))

    class Off:
        def predict(self, x, n_jobs=1):
            return booster.predict(x) + 1e-6

    with pytest.raises(compiled.CompiledModelRefused, match="max difference"):
        compiled.verify(Off(), booster, np.zeros((4, 5)))
