"""The candidate registry: names become asset names, roles are checked, LightGBM beats the
baselines on simulated airings, training is reproducible (also from shuffled rows), and the
segment baseline's lookup and fallbacks, and a dataset spec's parameter overrides (applied to
the named candidate only, in its fit, description and code version)."""

from __future__ import annotations

from datetime import date

import numpy as np
import polars as pl
import pytest

from mlops_assets.dataset import DatasetSpec
from mlops_assets.environments import SettingsError
from mlops_assets.ml.candidates import (
    CANDIDATES,
    Candidate,
    candidate_by_name,
    candidates_for,
    fit_global_mean,
    fit_segment_mean,
    lightgbm_candidate,
    segment_columns,
)
from mlops_assets.ml.training import TrainResult, train_and_score


def test_registry_has_baselines_and_two_lightgbm_models() -> None:
    names = [c.name for c in CANDIDATES]
    assert len(names) == len(set(names))
    assert {"global_mean", "segment_mean", "lgbm_small", "lgbm_large"} <= set(names)
    roles = {c.name: c.role for c in CANDIDATES}
    assert roles["global_mean"] == roles["segment_mean"] == "baseline"
    assert roles["lgbm_small"] == roles["lgbm_large"] == "model"
    assert all(c.asset_name == f"candidate_{c.name}" and c.name.isidentifier() for c in CANDIDATES)
    small, large = candidate_by_name("lgbm_small"), candidate_by_name("lgbm_large")
    assert small.params != large.params
    for lgbm in (small, large):
        assert lgbm.params["deterministic"] is True and lgbm.params["force_col_wise"] is True
        assert lgbm.params["num_threads"] == 1


def test_bad_names_and_roles_are_refused() -> None:
    with pytest.raises(SettingsError, match="candidate name"):
        Candidate(name="lgbm-small", role="model", params={}, fit=fit_global_mean)
    with pytest.raises(ValueError, match="role 'champion'"):
        Candidate(name="x", role="champion", params={}, fit=fit_global_mean)
    with pytest.raises(KeyError, match="lgbm_small"):
        candidate_by_name("nope")


def test_adding_a_lightgbm_candidate_is_one_call() -> None:
    extra = lightgbm_candidate("lgbm_tiny", "Tiny.", num_leaves=7, num_boost_round=50)
    assert extra.role == "model" and extra.asset_name == "candidate_lgbm_tiny"
    assert extra.params["num_leaves"] == 7 and extra.params["objective"] == "tweedie"


def test_spec_overrides_change_one_candidates_fit_description_and_code_version(
    spec: DatasetSpec, train: pl.DataFrame, holdout: pl.DataFrame
) -> None:
    from dataclasses import replace

    from mlops_assets.defs.model_training.assets import candidate_code_version

    overrides = {"lgbm_small": {"num_boost_round": 20}, "segment_mean": {"min_rows": 1000}}
    changed = replace(spec, training=replace(spec.training, candidate_params=overrides))
    before = {c.name: c for c in candidates_for(spec)}
    after = {c.name: c for c in candidates_for(changed)}
    assert [c.name for c in candidates_for(changed)] == [c.name for c in CANDIDATES]
    assert after["lgbm_small"].params == {**before["lgbm_small"].params, "num_boost_round": 20}
    assert after["lgbm_small"].description.endswith("The dataset spec sets num_boost_round=20.")
    for name in ("lgbm_small", "segment_mean"):
        assert candidate_code_version(after[name]) != candidate_code_version(before[name])
    for name in ("global_mean", "lgbm_large"):
        assert after[name] is before[name]
    small = train_and_score(after["lgbm_small"], train, holdout, spec, seed=3)
    assert small.model.booster.num_trees() == 20
    assert small.model.params["num_boost_round"] == 20
    # No segment has 1000 rows: the segment baseline falls back to the global mean everywhere.
    segment = train_and_score(after["segment_mean"], train, holdout, spec, seed=3)
    assert np.unique(segment.model.predict(holdout)).size == 1


def test_lightgbm_beats_the_best_baseline_wape(
    fitted: dict[str, TrainResult], spec: DatasetSpec
) -> None:
    wape = {name: r.metrics["wape"] for name, r in fitted.items()}
    best_baseline = min(wape["global_mean"], wape["segment_mean"])
    assert wape["segment_mean"] < wape["global_mean"]
    for name in ("lgbm_small", "lgbm_large"):
        assert wape[name] < best_baseline * (1 - spec.training.baseline_margin), wape


def test_training_is_reproducible_from_shuffled_rows(
    fitted: dict[str, TrainResult],
    train: pl.DataFrame,
    holdout: pl.DataFrame,
    spec: DatasetSpec,
) -> None:
    shuffled = train.sample(fraction=1.0, shuffle=True, seed=3)
    assert not shuffled[spec.event_key].equals(train[spec.event_key])
    seed = fitted["lgbm_small"].seed
    again = train_and_score(candidate_by_name("lgbm_small"), shuffled, holdout, spec, seed=seed)
    np.testing.assert_array_equal(
        again.model.predict(holdout), fitted["lgbm_small"].model.predict(holdout)
    )
    assert again.metrics == fitted["lgbm_small"].metrics


def _frame(spec: DatasetSpec, rows: list[tuple[str, str, float]]) -> pl.DataFrame:
    """Rows of (network, daypart, target) with every other model column filled."""
    data: dict[str, list] = {c: [0.0] * len(rows) for c in spec.model_feature_columns}
    for col in spec.categorical_features:
        data[col] = ["x"] * len(rows)
    data["network"] = [r[0] for r in rows]
    data["daypart"] = [r[1] for r in rows]
    data[spec.target] = [r[2] for r in rows]
    data[spec.date_column] = [date(2025, 1, 1)] * len(rows)
    return pl.DataFrame(data)


def test_segment_baseline_uses_segment_then_first_column_then_global_mean(
    spec: DatasetSpec,
) -> None:
    assert segment_columns(spec) == ("network", "daypart")
    train = _frame(
        spec,
        [("ABC", "prime", 10.0)] * 3 + [("ABC", "morning", 4.0)] * 1 + [("CBS", "prime", 1.0)] * 2,
    )
    model = fit_segment_mean(train, spec, seed=0, min_rows=2)
    queries = _frame(
        spec,
        [
            ("ABC", "prime", 0.0),  # its own segment: mean 10
            ("ABC", "morning", 0.0),  # 1 row < min_rows: ABC's mean (3*10 + 4) / 4
            ("CBS", "late_night", 0.0),  # unseen daypart: CBS's mean 1
            ("NBC", "prime", 0.0),  # unseen network: global mean (34 + 2) / 6
        ],
    )
    np.testing.assert_allclose(model.predict(queries), [10.0, 8.5, 1.0, 6.0])
    assert model.segment_table().height == 3 * 3  # (2 networks + unseen) x (2 dayparts + unseen)
