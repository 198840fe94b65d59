"""TabularModel: save/load round trip for every kind (text + JSON, no pickle), the single-row
serving path against the batch path, polars vs pandas input, categorical encoding of unseen and
null levels, clipping at zero, input and file errors, and the lazily built MLflow wrapper."""

from __future__ import annotations

import math
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from mlops_assets.dataset import DatasetSpec
from mlops_assets.ml.model import (
    BOOSTER_FILE,
    META_FILE,
    ModelFormatError,
    ModelInputError,
    TabularModel,
)
from mlops_assets.ml.training import TrainResult

KINDS = {"global_mean": "global_mean", "segment_mean": "segment_mean", "lgbm_small": "lightgbm"}


@pytest.mark.parametrize("name", sorted(KINDS))
def test_save_load_round_trip_predicts_identically(
    name: str, fitted: dict[str, TrainResult], holdout: pl.DataFrame, tmp_path: Path
) -> None:
    model = fitted[name].model
    assert model.kind == KINDS[name]
    folder = model.save(tmp_path / name)
    files = sorted(p.name for p in folder.iterdir())
    assert files == ([BOOSTER_FILE, META_FILE] if model.kind == "lightgbm" else [META_FILE])
    loaded = TabularModel.load(folder)
    assert loaded.kind == model.kind
    assert loaded.feature_columns == model.feature_columns
    assert loaded.categories == model.categories
    np.testing.assert_array_equal(loaded.predict(holdout), model.predict(holdout))


@pytest.mark.parametrize("name", sorted(KINDS))
def test_single_row_path_equals_batch_path(
    name: str, fitted: dict[str, TrainResult], holdout: pl.DataFrame, spec: DatasetSpec
) -> None:
    model = fitted[name].model
    rows = holdout.head(200).select(spec.model_feature_columns).to_dicts()
    batch = model.predict(holdout.head(200))
    one_by_one = np.array([model.predict_matrix(model.encode_rows([row]))[0] for row in rows])
    np.testing.assert_array_equal(one_by_one, batch)
    np.testing.assert_array_equal(model.predict_matrix(model.encode_rows(rows)), batch)


def test_pandas_input_predicts_like_polars(
    fitted: dict[str, TrainResult], holdout: pl.DataFrame, spec: DatasetSpec
) -> None:
    model = fitted["lgbm_small"].model
    frame = holdout.select(spec.model_feature_columns)
    np.testing.assert_array_equal(model.predict(frame.to_pandas()), model.predict(frame))
    assert model.encode(frame).shape == (frame.height, len(spec.model_feature_columns))


def test_unseen_and_null_levels_encode_as_missing(
    fitted: dict[str, TrainResult], holdout: pl.DataFrame, spec: DatasetSpec
) -> None:
    model = fitted["lgbm_small"].model
    row = holdout.select(spec.model_feature_columns).row(0, named=True)
    network = spec.model_feature_columns.index("network")
    daypart = spec.model_feature_columns.index("daypart")
    odd = {**row, "network": "NOT_A_NETWORK", "daypart": None}
    del odd["hist_creative_id_mean"]
    encoded = model.encode_rows([row, odd])
    assert encoded[0, network] == model.categories["network"].index(row["network"])
    assert math.isnan(encoded[1, network]) and math.isnan(encoded[1, daypart])
    assert math.isnan(encoded[1, spec.model_feature_columns.index("hist_creative_id_mean")])
    schema = {c: holdout.schema[c] for c in spec.model_feature_columns}
    frame = pl.DataFrame([odd | {"hist_creative_id_mean": None}], schema=schema)
    np.testing.assert_array_equal(model.encode(frame)[0], encoded[1])
    assert np.isfinite(model.predict_matrix(encoded)).all()


def test_segment_baseline_falls_back_to_global_mean_for_unseen_segment(
    fitted: dict[str, TrainResult], train: pl.DataFrame, spec: DatasetSpec
) -> None:
    model = fitted["segment_mean"].model
    row = train.select(spec.model_feature_columns).row(0, named=True)
    unseen = {**row, "network": "NOT_A_NETWORK", "daypart": "NOT_A_DAYPART"}
    prediction = model.predict_matrix(model.encode_rows([unseen]))[0]
    assert prediction == pytest.approx(train[spec.target].mean())


def test_predictions_are_clipped_at_zero(spec: DatasetSpec, holdout: pl.DataFrame) -> None:
    negative = TabularModel(
        kind="global_mean",
        feature_columns=spec.model_feature_columns,
        categories={c: [] for c in spec.categorical_features},
        table=np.array(-3.0),
    )
    assert (negative.predict(holdout.head(5)) == 0.0).all()


def test_input_errors_name_the_problem(
    fitted: dict[str, TrainResult], holdout: pl.DataFrame
) -> None:
    model = fitted["lgbm_small"].model
    with pytest.raises(ModelInputError, match="spend"):
        model.predict(holdout.drop("spend"))
    with pytest.raises(ModelInputError, match=f"expects {model.n_features} columns"):
        model.predict_matrix(np.zeros((2, 3)))


def test_corrupt_or_missing_files_raise_model_format_error(
    fitted: dict[str, TrainResult], tmp_path: Path
) -> None:
    folder = fitted["lgbm_small"].model.save(tmp_path / "m")
    (folder / BOOSTER_FILE).write_text("this is not a LightGBM model\n")
    with pytest.raises(ModelFormatError, match=BOOSTER_FILE):
        TabularModel.load(folder)
    with pytest.raises(ModelFormatError, match=META_FILE):
        TabularModel.load(tmp_path / "nowhere")


def test_importing_model_does_not_import_mlflow() -> None:
    code = "import sys, mlops_assets.ml.model; sys.exit('mlflow' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_pyfunc_wrapper_is_a_python_model_pickled_by_reference() -> None:
    import mlflow.pyfunc

    from mlops_assets.ml.model import PyfuncTabularModel

    assert issubclass(PyfuncTabularModel, mlflow.pyfunc.PythonModel)
    payload = pickle.dumps(PyfuncTabularModel())
    assert b"mlops_assets.ml.model" in payload and len(payload) < 1000
    assert type(pickle.loads(payload)) is PyfuncTabularModel
