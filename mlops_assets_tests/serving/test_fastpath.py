"""The endpoint's cheap paths, in process: the one-row LightGBM predictor gives exactly the
batch prediction, and the refresher reads the champion pointer only when its file changed, keeps
the champion when the pointer is unreadable or names another model, and drops it when the
pointer names no version (a real registry and real LightGBM versions from the serving harness)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mlops_assets.ml import registry
from mlops_assets.ml.model import TabularModel
from mlops_assets.ml.promotion import CHAMPION_ALIAS
from mlops_assets.serving.fastpath import RowPredictor, row_predictor
from mlops_assets.serving.state import Refresher, ServingState
from mlops_assets.storage import champion_pointer
from mlops_assets_tests.serving.harness import World, move_champion


def _matrix(world: World, model: TabularModel) -> np.ndarray:
    rows = world.store.select(model.feature_columns).to_dicts()
    # Unseen and missing values too: an unknown creative, a null number, a negative spend.
    rows += [
        {**rows[0], "creative_id": "cr_never_seen"},
        {**rows[1], "spend": None, "hour": None},
        {**rows[2], "spend": -1e9},
    ]
    return model.encode_rows(rows)


def test_one_row_predictions_equal_the_batch_predictions_bit_for_bit(world: World) -> None:
    for version, model in world.models.items():
        predictor = row_predictor(model)
        assert isinstance(predictor, RowPredictor), f"v{version} is LightGBM"
        matrix = _matrix(world, model)
        batch = model.predict_matrix(matrix)
        one_by_one = np.array([predictor.predict(row) for row in matrix])
        assert matrix.shape[0] > 50 and np.isnan(matrix).any()
        assert np.array_equal(one_by_one, batch), f"v{version}: fast path differs"
        assert all(math.isfinite(v) and v >= 0.0 for v in one_by_one)


def test_a_row_of_the_wrong_width_is_refused(world: World) -> None:
    model = world.models[world.versions[0]]
    predictor = row_predictor(model)
    assert predictor is not None
    with pytest.raises(ValueError, match=f"expects {model.n_features}"):
        predictor.predict(np.zeros(model.n_features - 1))


def test_baselines_have_no_fast_path() -> None:
    baseline = TabularModel(
        kind="global_mean", feature_columns=("spend",), categories={}, table=np.array(3.0)
    )
    assert row_predictor(baseline) is None


def test_the_pointer_is_read_only_when_its_file_changes(world: World) -> None:
    settings = world.settings
    first, second = world.versions
    move_champion(settings, first)
    state = ServingState()
    refresher = Refresher(
        state,
        world.spec,
        store_path=settings.online_store_path,
        pointer_path=settings.champion_pointer_path,
        tracking_uri=settings.mlflow_tracking_uri,
        model_name=world.model_name,
        alias=CHAMPION_ALIAS,
    )
    assert refresher.check_store()
    assert refresher.check_model() and state.snapshot.champion is not None
    assert state.snapshot.champion.version == first
    assert state.snapshot.champion.row_predictor is not None
    assert refresher.pointer_reads == 1

    # The registry alone moving is not a signal: only the published pointer is.
    registry.set_aliases(world.model_name, second, [CHAMPION_ALIAS], settings.mlflow_tracking_uri)
    for _ in range(5):
        assert not refresher.check_model()
    assert refresher.pointer_reads == 1, "an unchanged pointer file was read again"
    assert state.model_problem is None and state.snapshot.champion.version == first

    move_champion(settings, second)
    assert refresher.check_model(), "the moved pointer was not picked up"
    assert refresher.pointer_reads == 2
    assert state.snapshot.champion is not None and state.snapshot.champion.version == second

    # A pointer that is not JSON keeps the champion and names the file.
    settings.champion_pointer_path.write_text("{not json")
    assert not refresher.check_model()
    assert state.snapshot.champion.version == second
    assert "is not JSON" in (state.model_problem or "")
    # One naming another environment's model is refused the same way.
    champion_pointer.publish(settings.champion_pointer_path, "other_model", first, [CHAMPION_ALIAS])
    assert not refresher.check_model()
    assert "names model 'other_model'" in (state.model_problem or "")
    assert state.snapshot.champion.version == second

    move_champion(settings, None)
    assert refresher.check_model() and state.snapshot.champion is None
    assert "has no alias 'champion'" in (state.model_problem or "")
    move_champion(settings, first)


def test_a_snapshot_holds_every_store_row_encoded_for_its_champion(world: World) -> None:
    from datetime import UTC, datetime

    from mlops_assets.serving.state import Champion, paired
    from mlops_assets.serving.store import load_online_store

    store = load_online_store(world.settings.online_store_path, world.spec)
    model = world.models[world.versions[1]]
    champion = Champion(model, world.versions[1], datetime.now(UTC), row_predictor(model))
    snapshot = paired(champion, store)
    assert snapshot.encoded is not None and set(snapshot.encoded) == set(store.rows)
    for key, row in store.rows.items():
        assert np.array_equal(snapshot.encoded[key], model.encode_rows([row])[0], equal_nan=True)
    assert paired(None, store).encoded is None and paired(champion, None).encoded is None
