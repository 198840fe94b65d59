"""`serve --alias`: the endpoint serves the version a stage alias points at (here `butterfly`,
as staging's registry holds it after a promotion to prod), not the environment's champion, and
refuses an alias that is no stage."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from mlops_assets.ml import registry
from mlops_assets.storage import champion_pointer
from mlops_assets_tests.helpers import REPO_ROOT, clean_env
from mlops_assets_tests.serving.harness import World, running_server, wait_until


def test_serve_alias_serves_that_stage(world: World) -> None:
    champion, butterfly = world.versions
    uri = world.settings.mlflow_tracking_uri
    # As a promotion to prod records it in staging: the registry alias and the pointer.
    registry.set_aliases(world.model_name, butterfly, ["butterfly"], uri)
    champion_pointer.publish_aliases(
        world.settings.champion_pointer_path, world.model_name, {"butterfly": butterfly}
    )
    assert registry.get_alias_version(world.model_name, "champion", uri) == champion
    log = world.data_dir.parent / "alias-server.log"
    with running_server(world.data_dir, log, "--alias", "butterfly") as server:
        wait_until(lambda: server.model().get("version") == butterfly, 60, "butterfly served")
        keys = world.keys[:5]
        answer = server.post({"keys": keys})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["model_version"] == butterfly
        expected = world.models[butterfly].predict(world.rows(keys))
        got = np.array([p["prediction"] for p in body["predictions"]])
        assert np.max(np.abs(got - expected)) <= 1e-9


def test_serve_refuses_an_alias_that_is_no_stage() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "mlops_assets.cli", "serve", "--alias", "pupa"],
        env=clean_env(),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "invalid choice: 'pupa'" in done.stderr and "butterfly" in done.stderr
