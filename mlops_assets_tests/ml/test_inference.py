"""The ``predictions`` stage function on a few simulated rows, without Dagster: each day is
predicted by the version in force that day, with its metadata numbers and its three rule results
(one per row, finite, plausible range, which fails above 3x the largest outcome seen in
training); a day without features and a day without a champion are refused, naming the day. A
champion with a verified compiled library predicts the same rows as its booster within 1e-9 (on
two threads) and the day's metadata says ``compiled``."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import polars as pl
import pytest

from mlops_assets.ml import compiled, inference
from mlops_assets.ml.model import BOOSTER_FILE, SMALL_BATCH_ROWS, TabularModel
from mlops_assets.ml.training import TrainResult
from mlops_assets_tests.worlds import FIRST_DAY, simulated_examples, small_spec

SPEC = small_spec()
DAYS = [FIRST_DAY, FIRST_DAY + timedelta(days=1)]
WINDOW = (date(2025, 1, 1), date(2025, 1, 28))


def features() -> pl.DataFrame:
    return simulated_examples(SPEC, FIRST_DAY, 2, airings_per_day=6).drop(SPEC.target)


def constant(value: float) -> TabularModel:
    return TabularModel(
        kind="global_mean", feature_columns=("spend",), categories={}, table=np.array(value)
    )


MODELS = {"1": constant(3.0), "2": constant(5.0)}


def stage(frame: pl.DataFrame, version_for_day, max_outcome: float = 10.0):
    return inference.predictions_stage(
        SPEC,
        frame,
        DAYS,
        version_for_day,
        MODELS.__getitem__,
        lambda version: WINDOW,
        lambda start, end: max_outcome if (start, end) == WINDOW else None,
    )


def test_each_day_is_predicted_by_its_champion_with_numbers_and_rules() -> None:
    frame = features()
    result = stage(frame, lambda day: "1" if day == DAYS[0] else "2")
    assert result.frame.height == frame.height == 12
    by_day = dict(
        result.frame.group_by(SPEC.date_column).agg(pl.col(inference.MODEL_VERSION).first()).rows()
    )
    assert by_day == {DAYS[0]: "1", DAYS[1]: "2"}
    assert result.per_day[DAYS[0]] == {
        "model_versions": "1",
        "predictor": "lookup",
        "mean_prediction": 3.0,
        "rows": 6,
    }
    assert result.per_day[DAYS[1]]["mean_prediction"] == 5.0
    assert result.one_per_row.passed and result.finite.passed and result.in_range.passed
    assert result.in_range.observed == 5.0


def test_a_prediction_above_three_times_the_largest_outcome_fails_the_range_rule() -> None:
    result = stage(features(), lambda day: "2", max_outcome=1.0)
    assert not result.in_range.passed
    assert result.in_range.details["rows_out_of_range"] == 12
    assert "3.0" in str(result.in_range.threshold)


def test_a_day_without_features_or_champion_is_refused_naming_it() -> None:
    frame = features().filter(pl.col(SPEC.date_column) == DAYS[0])
    with pytest.raises(inference.NoFeaturesError, match=f"no features for {DAYS[1]}"):
        stage(frame, lambda day: "1")
    with pytest.raises(inference.NoChampionError, match=f"no champion was in force on {DAYS[1]}"):
        stage(features(), lambda day: "1" if day == DAYS[0] else None)


def test_a_compiled_champion_predicts_its_booster_s_rows_and_says_so(
    fitted: dict[str, TrainResult], examples: pl.DataFrame, tmp_path
) -> None:
    model = fitted["lgbm_small"].model
    model_file = model.save(tmp_path / "model") / BOOSTER_FILE
    cache = tmp_path / "compiled"
    compiled.compile_model(model_file, "1", cache)
    fast, problem = compiled.with_compiled(model, "1", model_file, cache)
    assert problem == "" and fast.predictor == "compiled"
    days = sorted(examples[SPEC.date_column].unique().to_list())[-4:]
    frame = examples.filter(pl.col(SPEC.date_column).is_in(days)).drop(SPEC.target)

    def run(chosen: TabularModel) -> inference.PredictionsResult:
        return inference.predictions_stage(
            SPEC,
            frame,
            days,
            lambda day: "1",
            {"1": chosen}.__getitem__,
            lambda version: WINDOW,
            lambda start, end: 1e9,
        )

    booster, fast_run = run(model), run(fast)
    assert {n["predictor"] for n in booster.per_day.values()} == {"booster"}
    assert {n["predictor"] for n in fast_run.per_day.values()} == {"compiled"}
    assert max(n["rows"] for n in fast_run.per_day.values()) > 0
    assert booster.frame.drop(inference.PREDICTION).equals(
        fast_run.frame.drop(inference.PREDICTION)
    )
    got, want = fast_run.frame[inference.PREDICTION], booster.frame[inference.PREDICTION]
    assert float((got - want).abs().max()) <= 1e-9
    assert fast_run.one_per_row.passed and fast_run.finite.passed
    # The whole matrix at once takes the two-thread path of both predictors.
    matrix = model.encode(frame)
    assert matrix.shape[0] > SMALL_BATCH_ROWS
    assert np.max(np.abs(fast.predict_matrix(matrix) - model.predict_matrix(matrix))) <= 1e-9
