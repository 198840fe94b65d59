"""The candidate registry: every model the training stage fits, baselines included.

A candidate is a name, a role (``baseline`` competes on the leaderboard but can never become
champion; ``model`` can), its parameters and a ``fit(train, spec, seed) -> TabularModel``
function. Each one becomes a Dagster asset ``candidate_<name>``. Adding a candidate is one entry
in :data:`CANDIDATES`, e.g. ``lightgbm_candidate("lgbm_deep", num_leaves=127, ...)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

from mlops_assets.dataset import DatasetSpec
from mlops_assets.environments import validate_identifier

if TYPE_CHECKING:
    # Definitions load this registry for names and roles only, so numpy, polars and the model
    # module (pandas and LightGBM's helpers) are imported by the fit functions when they run.
    import polars as pl

    from mlops_assets.ml.model import TabularModel

ROLES = ("baseline", "model")
FitFn = Callable[["pl.DataFrame", DatasetSpec, int], "TabularModel"]


@dataclass(frozen=True)
class Candidate:
    """One entry of the leaderboard: how to fit it and what it is allowed to become."""

    name: str
    role: str
    params: dict[str, Any]
    fit: FitFn = field(repr=False, compare=False)
    description: str = ""

    def __post_init__(self) -> None:
        validate_identifier(self.name, "candidate name")
        if self.role not in ROLES:
            raise ValueError(f"candidate {self.name!r}: role {self.role!r} is not one of {ROLES}")

    @property
    def asset_name(self) -> str:
        return f"candidate_{self.name}"


def fit_global_mean(train: pl.DataFrame, spec: DatasetSpec, seed: int) -> TabularModel:
    """Predict the training mean of the target for every event."""
    import numpy as np

    from mlops_assets.ml.model import TabularModel, fit_categories

    return TabularModel(
        kind="global_mean",
        feature_columns=spec.model_feature_columns,
        categories=fit_categories(train, spec.categorical_features),
        table=np.array(float(train[spec.target].mean())),
        target=spec.target,
        candidate="global_mean",
    )


def segment_columns(spec: DatasetSpec) -> tuple[str, ...]:
    """The segment baseline's grouping: the spec's segment column and the next categorical."""
    others = [c for c in spec.categorical_features if c != spec.segment_column]
    return (spec.segment_column, *others[:1])


def fit_segment_mean(
    train: pl.DataFrame, spec: DatasetSpec, seed: int, *, min_rows: int = 20
) -> TabularModel:
    """Historical mean per segment (e.g. network x daypart).

    A combination seen fewer than ``min_rows`` times, unseen or null falls back to the mean of
    its first column's level (same rule), then to the global mean.
    """
    import numpy as np
    import polars as pl

    from mlops_assets.ml.model import TabularModel, fit_categories

    cols = segment_columns(spec)
    categories = fit_categories(train, spec.categorical_features)
    table = np.full(tuple(len(categories[c]) + 1 for c in cols), float(train[spec.target].mean()))
    for depth in range(1, len(cols) + 1):
        by = list(cols[:depth])
        stats = (
            train.drop_nulls(by)
            .group_by([pl.col(c).cast(pl.String) for c in by])
            .agg(pl.col(spec.target).mean().alias("mean"), pl.len().alias("n"))
            .filter(pl.col("n") >= min_rows)
        )
        index = tuple(
            stats[c].replace_strict(categories[c], list(range(len(categories[c])))).to_numpy()
            for c in by
        )
        # Broadcast over the deeper axes, which the next depth refines.
        table[index] = stats["mean"].to_numpy().reshape(-1, *[1] * (len(cols) - depth))
    return TabularModel(
        kind="segment_mean",
        feature_columns=spec.model_feature_columns,
        categories=categories,
        table=table,
        segment_columns=cols,
        target=spec.target,
        candidate="segment_mean",
        params={"min_rows": min_rows},
    )


# One thread: LightGBM's OpenMP threads busy-wait, and on a shared 2-core machine a second
# thread made fits 10-30x slower while other work ran, for the same model.
LIGHTGBM_DEFAULTS: dict[str, Any] = {
    # Tweedie beat poisson, regression_l1, regression and gamma on the simulator's holdout WAPE.
    "objective": "tweedie",
    "tweedie_variance_power": 1.5,
    "learning_rate": 0.05,
    "num_leaves": 31,
    "min_data_in_leaf": 20,
    "feature_fraction": 0.9,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambda_l2": 1.0,
    "cat_smooth": 10.0,
    "num_boost_round": 300,
    "deterministic": True,
    "force_col_wise": True,
    "num_threads": 1,
    "verbosity": -1,
}


def fit_lightgbm(
    train: pl.DataFrame, spec: DatasetSpec, seed: int, *, name: str, params: dict[str, Any]
) -> TabularModel:
    """Gradient-boosted trees on every model feature; categoricals as LightGBM categoricals."""
    import lightgbm as lgb
    import polars as pl

    from mlops_assets.ml.model import TabularModel, encode_frame, fit_categories

    feature_columns = spec.model_feature_columns
    categories = fit_categories(train, spec.categorical_features)
    matrix = encode_frame(train, feature_columns, categories)
    label = train[spec.target].cast(pl.Float64).to_numpy()
    booster_params = {k: v for k, v in params.items() if k != "num_boost_round"}
    booster_params["seed"] = seed
    dataset = lgb.Dataset(
        matrix,
        label=label,
        feature_name=list(feature_columns),
        categorical_feature=[feature_columns.index(c) for c in categories],
        params={"verbosity": -1},
        free_raw_data=True,
    )
    booster = lgb.train(booster_params, dataset, num_boost_round=int(params["num_boost_round"]))
    return TabularModel(
        kind="lightgbm",
        feature_columns=feature_columns,
        categories=categories,
        booster=booster,
        target=spec.target,
        candidate=name,
        params={**params, "seed": seed},
        predict_threads=int(params.get("num_threads", 2)),
    )


def lightgbm_candidate(name: str, description: str = "", **overrides: Any) -> Candidate:
    """A LightGBM candidate: :data:`LIGHTGBM_DEFAULTS` with ``overrides``."""
    params = {**LIGHTGBM_DEFAULTS, **overrides}
    return Candidate(
        name=name,
        role="model",
        params=params,
        fit=partial(fit_lightgbm, name=name, params=params),
        description=description,
    )


_SEGMENT_PARAMS = {"min_rows": 20}

CANDIDATES: tuple[Candidate, ...] = (
    Candidate(
        name="global_mean",
        role="baseline",
        params={},
        fit=fit_global_mean,
        description="Predicts the average outcome of the training window for every event.",
    ),
    Candidate(
        name="segment_mean",
        role="baseline",
        params=_SEGMENT_PARAMS,
        fit=partial(fit_segment_mean, **_SEGMENT_PARAMS),
        description="Predicts the historical average outcome of the event's segment.",
    ),
    lightgbm_candidate(
        "lgbm_small",
        "Small gradient-boosted tree model: 200 trees of 15 leaves.",
        num_leaves=15,
        learning_rate=0.05,
        num_boost_round=200,
    ),
    lightgbm_candidate(
        "lgbm_large",
        "Larger gradient-boosted tree model: 400 trees of 63 leaves, slower learning rate.",
        num_leaves=63,
        min_data_in_leaf=40,
        learning_rate=0.03,
        num_boost_round=400,
    ),
)


def candidate_by_name(name: str, candidates: tuple[Candidate, ...] = CANDIDATES) -> Candidate:
    """The candidate called ``name``; KeyError naming the known ones otherwise."""
    for candidate in candidates:
        if candidate.name == name:
            return candidate
    raise KeyError(f"unknown candidate {name!r}; known: {', '.join(c.name for c in candidates)}")
