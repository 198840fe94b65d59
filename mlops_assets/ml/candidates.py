"""The candidate registry: every model the training stage fits, baselines included.

A candidate is a name, a role (``baseline`` competes on the leaderboard but can never become
champion; ``model`` can), its parameters and a ``fit(train, spec, seed) -> TabularModel``
function. Each one becomes a Dagster asset ``candidate_<name>``. Adding a candidate is one entry
in :data:`CANDIDATES`, e.g. ``lightgbm_candidate("lgbm_deep", num_leaves=127, ...)``.

A dataset spec can change a candidate's parameters without code, in ``training.candidate_params``
(e.g. ``lgbm_large: {num_boost_round: 2000}``): :func:`check_candidate_params` refuses an
unknown candidate or parameter, or a value of another type than the default, at spec load, and
:func:`candidates_for` gives the candidates with the spec's values. The parameters are part of a
candidate's code version, so a changed value trains anew rather than reusing a logged run.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from functools import partial
from typing import TYPE_CHECKING, Any, cast

from mlops_assets.dataset import DatasetSpec, SpecError
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
    # The fit function for other values of ``params`` (None: nothing to override).
    fit_with: Callable[[dict[str, Any]], FitFn] | None = field(
        default=None, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        validate_identifier(self.name, "candidate name")
        if self.role not in ROLES:
            raise ValueError(f"candidate {self.name!r}: role {self.role!r} is not one of {ROLES}")

    @property
    def asset_name(self) -> str:
        return f"candidate_{self.name}"

    def with_params(self, overrides: Mapping[str, Any]) -> Candidate:
        """This candidate with some parameters changed (names checked by
        :func:`check_candidate_params`); its description says which."""
        if not overrides:
            return self
        if self.fit_with is None:
            raise ValueError(f"candidate {self.name!r} has no parameters to change")
        params = {**self.params, **overrides}
        changed = ", ".join(f"{k}={v!r}" for k, v in sorted(overrides.items()))
        return replace(
            self,
            params=params,
            fit=self.fit_with(params),
            description=f"{self.description} The dataset spec sets {changed}.".strip(),
        )


def fit_global_mean(train: pl.DataFrame, spec: DatasetSpec, seed: int) -> TabularModel:
    """Predict the training mean of the target for every event."""
    import numpy as np

    from mlops_assets.ml.model import TabularModel, fit_categories

    return TabularModel(
        kind="global_mean",
        feature_columns=spec.model_feature_columns,
        categories=fit_categories(train, spec.categorical_features),
        table=np.array(float(cast(float, train[spec.target].mean()))),
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
    table = np.full(
        tuple(len(categories[c]) + 1 for c in cols), float(cast(float, train[spec.target].mean()))
    )
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

    def fit_with(values: dict[str, Any]) -> FitFn:
        return partial(fit_lightgbm, name=name, params=values)

    return Candidate(
        name=name,
        role="model",
        params=params,
        fit=fit_with(params),
        description=description,
        fit_with=fit_with,
    )


def _fit_segment_mean_with(values: dict[str, Any]) -> FitFn:
    return partial(fit_segment_mean, **values)


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
        fit=_fit_segment_mean_with(_SEGMENT_PARAMS),
        description="Predicts the historical average outcome of the event's segment.",
        fit_with=_fit_segment_mean_with,
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


def _kind(value: Any) -> str:
    """A parameter value's kind, as the spec check compares them: an integer may stand for a
    number, nothing else converts."""
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    return "a string" if isinstance(value, str) else type(value).__name__


def check_candidate_params(
    raw: Mapping[str, Any] | None,
    where: str = "training.candidate_params",
    candidates: tuple[Candidate, ...] = CANDIDATES,
) -> dict[str, dict[str, Any]]:
    """A spec's parameter overrides per candidate, checked: every candidate and parameter
    exists and every value has the default's kind (an integer may stand for a number). A
    :class:`SpecError` names the field, suggests the closest name and lists the known ones."""
    by_name = {c.name: c for c in candidates}
    out: dict[str, dict[str, Any]] = {}
    for name, values in (raw or {}).items():
        field_name = f"{where}.{name}"
        candidate = by_name.get(name)
        if candidate is None:
            raise SpecError(
                f"dataset spec field '{field_name}' is not a candidate; "
                f"{_did_you_mean(name, by_name, where)}(candidates: {', '.join(by_name)})"
            )
        if values and candidate.fit_with is None:
            raise SpecError(
                f"dataset spec field '{field_name}': candidate {name} has no parameters to "
                "change; remove it"
            )
        for key, value in values.items():
            if key not in candidate.params:
                raise SpecError(
                    f"dataset spec field '{field_name}.{key}' is not a parameter of candidate "
                    f"{name}; {_did_you_mean(key, candidate.params, field_name)}"
                    f"(its parameters: {', '.join(candidate.params)})"
                )
            default = candidate.params[key]
            wanted, got = _kind(default), _kind(value)
            if got != wanted and not (wanted == "a number" and got == "an integer"):
                raise SpecError(
                    f"dataset spec field '{field_name}.{key}' must be {wanted} like its default "
                    f"{default!r}, got {value!r}"
                )
        out[name] = dict(values)
    return out


def _did_you_mean(name: str, known: Mapping[str, Any], where: str) -> str:
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f"did you mean '{where}.{close[0]}'? " if close else "remove it or fix its name "


def candidates_for(spec: DatasetSpec) -> tuple[Candidate, ...]:
    """The candidates with the spec's ``training.candidate_params`` applied."""
    overrides = spec.training.candidate_params
    return tuple(c.with_params(overrides.get(c.name, {})) for c in CANDIDATES)
