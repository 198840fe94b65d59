"""One-row predictions through LightGBM's single-row C API, for the endpoint's request path.

``Booster.predict`` prepares a predictor on every call (parameter parsing, buffers, the thread
team) and costs about 70 us warm for one row of the 400-tree champion here, and 0.5-1.4 ms on a
CPU that was idle between two requests, which is what every request meets at 200 requests/s. The
"fast" single-row API prepares that once per model (``LGBM_BoosterPredictForMatSingleRowFastInit``)
and then only walks the trees: about 55 us warm and 0.25-0.45 ms cold. The answers are the same
numbers as ``Booster.predict`` (tests compare them bit for bit).

The prepared configuration is tied to one Booster and is not safe for two threads at once, so
each predictor holds a lock (uncontended on the endpoint: requests run on the event loop thread).

Once a verified compiled library of the version is loaded (:mod:`mlops_assets.ml.compiled`),
:class:`CompiledRowPredictor` calls it instead: about 11 us for one row of a 400-tree model.
"""

from __future__ import annotations

import ctypes
import threading
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from mlops_assets.ml.model import TabularModel

# LightGBM C API constants (c_api.h): C_API_PREDICT_NORMAL and C_API_DTYPE_FLOAT64.
_PREDICT_NORMAL = 0
_DTYPE_FLOAT64 = 1


class RowPredictor:
    """``predict(row)`` for one encoded row (float64, the model's feature order) of a LightGBM
    model: the same value as ``model.predict_matrix(row[None, :])[0]``."""

    def __init__(self, model: TabularModel):
        if model.kind != "lightgbm" or model.booster is None:
            raise ValueError(f"a {model.kind} model has no LightGBM booster to predict with")
        from lightgbm.basic import _LIB, _safe_call

        self._lib, self._safe_call = _LIB, _safe_call
        self._booster = model.booster  # keeps the booster alive as long as the config
        self.n_features = model.n_features
        iteration = model.booster.best_iteration
        self._config = ctypes.c_void_p()
        _safe_call(
            _LIB.LGBM_BoosterPredictForMatSingleRowFastInit(
                model.booster._handle,  # noqa: SLF001 (the C API needs the booster's handle)
                ctypes.c_int(_PREDICT_NORMAL),
                ctypes.c_int(0),
                ctypes.c_int(iteration if iteration > 0 else -1),
                ctypes.c_int(_DTYPE_FLOAT64),
                ctypes.c_int32(self.n_features),
                ctypes.c_char_p(b"num_threads=1"),
                ctypes.byref(self._config),
            )
        )
        self._out = np.empty(1, dtype=np.float64)
        self._out_ptr = self._out.ctypes.data_as(ctypes.POINTER(ctypes.c_double))
        self._out_len = ctypes.c_int64(0)
        self._lock = threading.Lock()

    def predict(self, row: np.ndarray) -> float:
        """The prediction (clipped at 0, as ``predict_matrix``) for one encoded row."""
        row = np.ascontiguousarray(row, dtype=np.float64).reshape(-1)
        if row.shape[0] != self.n_features:
            raise ValueError(f"row has {row.shape[0]} values; the model expects {self.n_features}")
        with self._lock:
            self._safe_call(
                self._lib.LGBM_BoosterPredictForMatSingleRowFast(
                    self._config,
                    row.ctypes.data_as(ctypes.c_void_p),
                    ctypes.byref(self._out_len),
                    self._out_ptr,
                )
            )
            value = float(self._out[0])
        return 0.0 if value < 0.0 else value  # NaN stays NaN, as np.clip leaves it

    def close(self) -> None:
        with self._lock:
            if self._config:
                self._lib.LGBM_FastConfigFree(self._config)
                self._config = ctypes.c_void_p()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown: the library may be gone already
            pass


class CompiledRowPredictor:
    """``predict(row)`` for one encoded row through a model's verified compiled library
    (:mod:`mlops_assets.ml.compiled`): its entry function called on the row in place, no
    per-call allocation. The same value as ``model.predict_matrix(row[None, :])[0]``."""

    def __init__(self, model: TabularModel):
        if model.compiled is None:
            raise ValueError("the model has no compiled library")
        self._compiled = model.compiled  # keeps the library's execution engine alive
        self._entry = model.compiled._c_entry_func  # noqa: SLF001 (lleaves' C entry point)
        self.n_features = model.n_features
        self._out = np.empty(1, dtype=np.float64)
        self._out_ptr = self._out.ctypes.data_as(ctypes.POINTER(ctypes.c_double))
        self._lock = threading.Lock()

    def predict(self, row: np.ndarray) -> float:
        """The prediction (clipped at 0, as ``predict_matrix``) for one encoded row."""
        row = np.ascontiguousarray(row, dtype=np.float64).reshape(-1)
        if row.shape[0] != self.n_features:
            raise ValueError(f"row has {row.shape[0]} values; the model expects {self.n_features}")
        with self._lock:
            self._entry(row.ctypes.data_as(ctypes.POINTER(ctypes.c_double)), self._out_ptr, 0, 1)
            value = float(self._out[0])
        return 0.0 if value < 0.0 else value


AnyRowPredictor = RowPredictor | CompiledRowPredictor


def row_predictor(model: TabularModel) -> AnyRowPredictor | None:
    """The compiled row predictor of a model with a verified compiled library, else a
    :class:`RowPredictor` for a LightGBM model; None for a baseline (its lookup is cheap)."""
    if model.compiled is not None:
        return CompiledRowPredictor(model)
    return RowPredictor(model) if model.kind == "lightgbm" and model.booster is not None else None
