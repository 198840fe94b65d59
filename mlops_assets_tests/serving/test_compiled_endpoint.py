"""The endpoint and compiled champions, with a real compile of the small LightGBM version: it
answers with the booster (``"predictor": "booster"``) while no library exists, switches to the
compiled library once one appears (no restart; requests keep being answered) with predictions
equal within 1e-9, logs the predictor of every request, and refuses a tampered library (the
booster serves, and ``/model`` says why)."""

from __future__ import annotations

import json
import shutil
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from mlops_assets.environments import Settings
from mlops_assets.ml import compiled
from mlops_assets.serving.fastpath import CompiledRowPredictor, RowPredictor, row_predictor
from mlops_assets.storage import online_store, request_log
from mlops_assets_tests.helpers import FIXED_AS_OF
from mlops_assets_tests.serving.harness import (
    Load,
    World,
    copy_registry,
    running_server,
    wait_until,
)

SWITCH_DEADLINE_S = 60


@pytest.fixture(scope="module")
def compiled_dir(world: World, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The champion version (lgbm_small) compiled once, in a folder of its own."""
    folder = tmp_path_factory.mktemp("compiled")
    champion = world.versions[0]
    result = compiled.compile_version(
        world.model_name, champion, world.settings.mlflow_tracking_uri, folder
    )
    assert result["compiled"] and result["verified"], result
    return folder


def _environment(world: World, data_dir: Path) -> Settings:
    settings = copy_registry(world, data_dir)
    online_store.publish(world.store, settings.online_store_path)
    return settings


def test_the_compiled_row_predictor_equals_the_booster(world: World, compiled_dir: Path) -> None:
    version = world.versions[0]
    model = world.models[version]
    model_file = compiled.registry_model_file(
        world.model_name, version, world.settings.mlflow_tracking_uri
    )
    fast, problem = compiled.with_compiled(model, version, model_file, compiled_dir)
    assert problem == "" and fast.predictor == "compiled" and model.predictor == "booster"
    assert isinstance(row_predictor(fast), CompiledRowPredictor)
    assert isinstance(row_predictor(model), RowPredictor)
    matrix = model.encode(world.store)
    booster, compiled_row = row_predictor(model), row_predictor(fast)
    assert booster is not None and compiled_row is not None
    got = np.array([compiled_row.predict(row) for row in matrix])
    want = np.array([booster.predict(row) for row in matrix])
    assert np.max(np.abs(got - want)) <= 1e-9
    assert np.max(np.abs(fast.predict_matrix(matrix) - model.predict_matrix(matrix))) <= 1e-9


def test_endpoint_switches_to_the_compiled_library_when_it_appears(
    world: World, compiled_dir: Path, tmp_path: Path
) -> None:
    settings = _environment(world, tmp_path / "data")
    version = world.versions[0]
    keys = world.keys[:5]
    with running_server(settings.data_dir, tmp_path / "server.log") as server:
        wait_until(lambda: server.model().get("version") == version, 60, "the champion loaded")
        assert server.model()["predictor"] == "booster"
        before = [server.post({"keys": [key]}).json() for key in keys]
        many = server.post({"keys": keys}).json()
        assert {b["predictor"] for b in before} == {many["predictor"]} == {"booster"}

        bodies = [json.dumps({"keys": [key]}).encode() for key in keys]
        with Load(server, lambda n: bodies[n % len(bodies)], threads=2) as load:
            # The job's output appears: library first, then its sidecar (as compile_model writes).
            target = settings.compiled_models_dir / f"v{version}"
            shutil.copytree(compiled_dir / f"v{version}", target)
            wait_until(
                lambda: server.model().get("predictor") == "compiled",
                SWITCH_DEADLINE_S,
                "the endpoint to load the compiled library",
            )
            wait_until(lambda: load.count() > 20, 30, "requests answered after the switch")
        answers = load.snapshot()
        assert all(a.status == 200 for a in answers), [a for a in answers if a.status != 200][:3]
        kinds = [a.body["predictor"] for a in answers if a.body]
        assert kinds[-1] == "compiled", kinds[-5:]

        after = [server.post({"keys": [key]}).json() for key in keys]
        many_after = server.post({"keys": keys}).json()
        assert {a["predictor"] for a in after} == {many_after["predictor"]} == {"compiled"}
        want = world.models[version].predict(world.rows(keys))
        for got in (
            np.array([a["predictions"][0]["prediction"] for a in after]),
            np.array([b["predictions"][0]["prediction"] for b in before]),
            np.array([p["prediction"] for p in many_after["predictions"]]),
        ):
            assert np.max(np.abs(got - want)) <= 1e-9
        assert server.model()["version"] == version
        assert server.model()["compiled_problem"] is None
    logged = request_log.read_day(
        settings.request_log_dir, datetime.fromisoformat(FIXED_AS_OF).date()
    )
    assert set(logged["predictor"].to_list()) == {"booster", "compiled"}


def test_a_tampered_library_is_refused(world: World, compiled_dir: Path, tmp_path: Path) -> None:
    settings = _environment(world, tmp_path / "data")
    version = world.versions[0]
    target = settings.compiled_models_dir / f"v{version}"
    shutil.copytree(compiled_dir / f"v{version}", target)
    library = target / "model.so"
    library.write_bytes(library.read_bytes() + b"\0")
    with running_server(settings.data_dir, tmp_path / "server.log") as server:
        wait_until(lambda: server.model().get("version") == version, 60, "the champion loaded")
        described = server.model()
        assert described["predictor"] == "booster"
        assert "library bytes do not match" in described["compiled_problem"]
        answer = server.post({"keys": world.keys[:1]}).json()
        assert answer["predictor"] == "booster"
        want = world.models[version].predict(world.rows(world.keys[:1]))
        assert abs(answer["predictions"][0]["prediction"] - want[0]) <= 1e-9
