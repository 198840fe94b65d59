"""TabularModel: the one serializable model format every candidate produces.

A model holds its kind (``lightgbm``, ``global_mean`` or ``segment_mean``), the feature order it
was trained on, the categorical encodings learned in training (level -> integer code; an unseen or
null level becomes NaN), and either a LightGBM Booster or a baseline lookup table. It saves to a
folder as ``model.txt`` (the Booster's text format) plus ``tabular_model.json``; nothing is
pickled.

Two ways to predict:

- :meth:`TabularModel.predict` takes a polars or pandas frame (batch inference, MLflow pyfunc);
- :meth:`TabularModel.encode_rows` + :meth:`TabularModel.predict_matrix` serve single requests
  without pandas on the path (30-50 us per row for a LightGBM model on one thread).

``PyfuncTabularModel`` wraps a saved folder for MLflow so ``mlflow.pyfunc.load_model`` and
``mlflow models serve`` work. It is built on first access so that importing this module does not
import mlflow (about 2 s), which the online endpoint never needs.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import polars as pl

if TYPE_CHECKING:
    import lightgbm as lgb

KINDS = ("lightgbm", "global_mean", "segment_mean")
FORMAT_VERSION = 1
BOOSTER_FILE = "model.txt"
META_FILE = "tabular_model.json"
# Below this many rows LightGBM predicts on one thread: a thread pool costs more than the trees.
SMALL_BATCH_ROWS = 512


class ModelFormatError(ValueError):
    """A saved model folder is missing, incomplete or corrupt; the message names the file."""


class ModelInputError(ValueError):
    """Input rows do not match the model's features; the message names the column."""


@dataclass(eq=False)
class TabularModel:
    """A fitted model with its feature order and categorical encodings.

    For the baselines, ``table`` has one axis per column of ``segment_columns`` (global mean: no
    axis, a scalar). Axis ``i`` has ``len(levels) + 1`` entries: the last one answers for a level
    unseen in training or null, so the fallbacks are decided at fit time and lookup never fails.
    """

    kind: str
    feature_columns: tuple[str, ...]
    categories: dict[str, list[str]]
    booster: lgb.Booster | None = None
    table: np.ndarray | None = None
    segment_columns: tuple[str, ...] = ()
    target: str = ""
    candidate: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    predict_threads: int = 2
    # A verified compiled predictor of the booster (``mlops_assets.ml.compiled``), used by
    # ``predict_matrix`` when set; never saved with the model.
    compiled: Any = field(default=None, repr=False)
    _codes: dict[str, dict[str, int]] = field(init=False, repr=False)
    _cat_positions: frozenset[int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ModelFormatError(f"model kind {self.kind!r} is not one of {KINDS}")
        self.feature_columns = tuple(self.feature_columns)
        self.segment_columns = tuple(self.segment_columns)
        unknown = [c for c in self.categories if c not in self.feature_columns]
        unknown += [c for c in self.segment_columns if c not in self.categories]
        if unknown:
            raise ModelFormatError(f"categorical/segment columns {unknown} are not model features")
        if self.kind == "lightgbm" and self.booster is None:
            raise ModelFormatError("a lightgbm model needs a booster")
        if self.kind != "lightgbm":
            if self.table is None:
                raise ModelFormatError(f"a {self.kind} model needs a lookup table")
            self.table = np.asarray(self.table, dtype=np.float64)
            expected = tuple(len(self.categories[c]) + 1 for c in self.segment_columns)
            if self.table.shape != expected:
                raise ModelFormatError(
                    f"lookup table shape {self.table.shape} does not match segments {expected}"
                )
        self._codes = {c: {v: i for i, v in enumerate(lv)} for c, lv in self.categories.items()}
        self._cat_positions = frozenset(self.feature_columns.index(c) for c in self.categories)

    @property
    def n_features(self) -> int:
        return len(self.feature_columns)

    @property
    def predictor(self) -> str:
        """What ``predict_matrix`` predicts with: ``compiled``, ``booster`` or ``lookup``."""
        if self.kind != "lightgbm":
            return "lookup"
        return "compiled" if self.compiled is not None else "booster"

    @property
    def categorical_columns(self) -> tuple[str, ...]:
        return tuple(c for c in self.feature_columns if c in self.categories)

    # Encoding -------------------------------------------------------------------------------

    def encode(self, frame: pl.DataFrame | pd.DataFrame) -> np.ndarray:
        """The model matrix of a polars or pandas frame: float64, one column per feature."""
        return encode_frame(frame, self.feature_columns, self.categories)

    def encode_rows(self, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Encode request rows (dicts of feature -> value) without pandas or polars.

        A feature absent from a row, or None, is missing (NaN), as a null is in a frame.
        """
        matrix = np.empty((len(rows), self.n_features), dtype=np.float64)
        cats = self._cat_positions
        for i, row in enumerate(rows):
            for j, col in enumerate(self.feature_columns):
                value: Any = row.get(col)
                if _is_null(value):
                    matrix[i, j] = math.nan
                elif j in cats:
                    matrix[i, j] = self._codes[col].get(_as_level(value), math.nan)
                else:
                    matrix[i, j] = float(value)
        return matrix

    # Prediction -----------------------------------------------------------------------------

    def predict(self, frame: pl.DataFrame | pd.DataFrame) -> np.ndarray:
        """Predictions (clipped at 0) for every row of a polars or pandas frame."""
        return self.predict_matrix(self.encode(frame))

    def predict_matrix(self, matrix: np.ndarray) -> np.ndarray:
        """Predictions (clipped at 0) for a matrix from :meth:`encode` or :meth:`encode_rows`."""
        matrix = np.asarray(matrix, dtype=np.float64)
        if matrix.ndim == 1:
            matrix = matrix.reshape(1, -1)
        if matrix.ndim != 2 or matrix.shape[1] != self.n_features:
            raise ModelInputError(
                f"matrix has shape {matrix.shape}; the model expects {self.n_features} columns "
                f"({', '.join(self.feature_columns)})"
            )
        if matrix.shape[0] == 0:
            return np.empty(0, dtype=np.float64)
        if self.kind == "lightgbm":
            assert self.booster is not None  # __post_init__ requires it for lightgbm
            threads = 1 if matrix.shape[0] <= SMALL_BATCH_ROWS else self.predict_threads
            if self.compiled is not None:
                raw = self.compiled.predict(matrix, n_jobs=threads)
            else:
                raw = self.booster.predict(matrix, num_threads=threads)
        else:
            raw = self._lookup(matrix)
        return np.clip(np.asarray(raw, dtype=np.float64), 0.0, None)

    def _lookup(self, matrix: np.ndarray) -> np.ndarray:
        table = self.table
        assert table is not None  # __post_init__ requires it for the baselines
        if not self.segment_columns:
            return np.full(matrix.shape[0], float(table))
        index = []
        for col in self.segment_columns:
            codes = matrix[:, self.feature_columns.index(col)]
            unseen = len(self.categories[col])
            index.append(np.where(np.isnan(codes), unseen, codes).astype(np.int64))
        return table[tuple(index)]

    def feature_importance(self) -> dict[str, float]:
        """Total gain per feature for LightGBM (empty for baselines), largest first."""
        if self.booster is None:
            return {}
        gains = self.booster.feature_importance(importance_type="gain")
        pairs = sorted(zip(self.feature_columns, gains, strict=True), key=lambda p: -p[1])
        return {name: float(gain) for name, gain in pairs}

    def segment_table(self) -> pl.DataFrame:
        """A baseline's lookup table as rows: segment levels ('unseen' = fallback) -> prediction."""
        if self.table is None:
            raise ModelInputError(f"a {self.kind} model has no lookup table")
        if not self.segment_columns:
            return pl.DataFrame({"prediction": [float(self.table)]})
        axes = [self.categories[c] + ["unseen"] for c in self.segment_columns]
        grids = np.meshgrid(*[np.arange(len(a)) for a in axes], indexing="ij")
        data: dict[str, Any] = {
            col: [axes[k][i] for i in grids[k].ravel()]
            for k, col in enumerate(self.segment_columns)
        }
        data["prediction"] = self.table.ravel().tolist()
        return pl.DataFrame(data)

    # Persistence ----------------------------------------------------------------------------

    def save(self, directory: str | Path) -> Path:
        """Write the model to ``directory`` (created): model.txt for LightGBM + the JSON file."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        meta = {
            "format_version": FORMAT_VERSION,
            "kind": self.kind,
            "candidate": self.candidate,
            "target": self.target,
            "feature_columns": list(self.feature_columns),
            "categories": self.categories,
            "segment_columns": list(self.segment_columns),
            "table": None if self.table is None else self.table.tolist(),
            "params": self.params,
            "predict_threads": self.predict_threads,
        }
        if self.booster is not None:
            self.booster.save_model(str(directory / BOOSTER_FILE))
        (directory / META_FILE).write_text(json.dumps(meta, indent=1, sort_keys=True))
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> TabularModel:
        """Read a model written by :meth:`save`; ModelFormatError if a file is missing/corrupt."""
        directory = Path(directory)
        meta_path = directory / META_FILE
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ModelFormatError(f"cannot read {meta_path}: {exc}") from exc
        if meta.get("format_version") != FORMAT_VERSION:
            raise ModelFormatError(
                f"{meta_path}: format_version {meta.get('format_version')!r} is not "
                f"{FORMAT_VERSION}"
            )
        booster = None
        if meta["kind"] == "lightgbm":
            booster = _load_booster(directory / BOOSTER_FILE, len(meta["feature_columns"]))
        table = meta.get("table")
        return cls(
            kind=meta["kind"],
            feature_columns=tuple(meta["feature_columns"]),
            categories={c: list(v) for c, v in meta["categories"].items()},
            booster=booster,
            table=None if table is None else np.asarray(table, dtype=np.float64),
            segment_columns=tuple(meta.get("segment_columns", ())),
            target=meta.get("target", ""),
            candidate=meta.get("candidate", ""),
            params=dict(meta.get("params", {})),
            predict_threads=int(meta.get("predict_threads", 2)),
        )


def _load_booster(path: Path, n_features: int) -> lgb.Booster:
    import lightgbm as lgb

    try:
        booster = lgb.Booster(model_str=path.read_text())
    except (OSError, UnicodeDecodeError, lgb.basic.LightGBMError) as exc:
        raise ModelFormatError(f"cannot read LightGBM model {path}: {exc}") from exc
    if booster.num_feature() != n_features:
        raise ModelFormatError(
            f"{path} has {booster.num_feature()} features; the model file lists {n_features}"
        )
    return booster


def encode_frame(
    frame: pl.DataFrame | pd.DataFrame,
    feature_columns: Sequence[str],
    categories: Mapping[str, Sequence[str]],
) -> np.ndarray:
    """Encode a polars or pandas frame: categoricals to codes (unseen/null -> NaN), numbers to
    float64 (null -> NaN), columns in ``feature_columns`` order."""
    columns = list(frame.columns)
    missing = [c for c in feature_columns if c not in columns]
    if missing:
        raise ModelInputError(f"input lacks model feature columns {missing}")
    if isinstance(frame, pl.DataFrame):
        return _encode_polars(frame, feature_columns, categories)
    return _encode_pandas(frame, feature_columns, categories)


def _encode_polars(
    frame: pl.DataFrame, feature_columns: Sequence[str], categories: Mapping[str, Sequence[str]]
) -> np.ndarray:
    if frame.height == 0:
        return np.empty((0, len(feature_columns)), dtype=np.float64)
    exprs = []
    for col in feature_columns:
        if col in categories:
            levels = list(categories[col])
            codes = (
                pl.col(col)
                .cast(pl.String)
                .replace_strict(
                    levels, list(range(len(levels))), default=None, return_dtype=pl.Float64
                )
            )
            exprs.append(codes)
        else:
            exprs.append(pl.col(col).cast(pl.Float64))
    return np.ascontiguousarray(frame.select(exprs).to_numpy(), dtype=np.float64)


def _encode_pandas(
    frame: pd.DataFrame, feature_columns: Sequence[str], categories: Mapping[str, Sequence[str]]
) -> np.ndarray:
    matrix = np.empty((len(frame), len(feature_columns)), dtype=np.float64)
    for j, col in enumerate(feature_columns):
        values = frame[col]
        if col in categories:
            codes = {v: i for i, v in enumerate(categories[col])}
            matrix[:, j] = [
                math.nan if _is_null(v) else codes.get(_as_level(v), math.nan)
                for v in values.tolist()
            ]
        else:
            matrix[:, j] = values.astype("float64").to_numpy(na_value=np.nan)
    return matrix


def _is_null(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def _as_level(value: Any) -> str:
    return value if isinstance(value, str) else str(value)


def fit_categories(frame: pl.DataFrame, columns: Sequence[str]) -> dict[str, list[str]]:
    """The sorted non-null levels of each categorical column (code = position in the list)."""
    return {
        col: sorted(frame[col].cast(pl.String).drop_nulls().unique().to_list()) for col in columns
    }


def _make_pyfunc_class() -> type:
    from mlflow.pyfunc import PythonModel

    class PyfuncTabularModel(PythonModel):
        """MLflow wrapper: loads the TabularModel folder logged as artifact ``tabular_model``."""

        def load_context(self, context: Any) -> None:
            self._model = TabularModel.load(context.artifacts[PYFUNC_ARTIFACT])

        # A pd.DataFrame hint tells MLflow not to derive a signature from the hints: the
        # signature logged with the model (from the feature columns) describes the input.
        def predict(
            self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
        ) -> np.ndarray:
            if not hasattr(model_input, "columns"):
                model_input = pd.DataFrame(model_input)
            return self._model.predict(model_input)

    PyfuncTabularModel.__module__ = __name__
    PyfuncTabularModel.__qualname__ = "PyfuncTabularModel"
    return PyfuncTabularModel


PYFUNC_ARTIFACT = "tabular_model"


def __getattr__(name: str) -> Any:
    # PEP 562: the mlflow wrapper class exists only once someone asks for it (see module doc).
    # Pickles of it refer to ``mlops_assets.ml.model.PyfuncTabularModel`` and resolve here.
    if name == "PyfuncTabularModel":
        cls = _make_pyfunc_class()
        globals()[name] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
