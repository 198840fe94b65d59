"""Session fixtures of the deployment tests: the story of ``scenario.py``, played once, one
fixture per step. Each step depends on the one before, so asking for a late step plays the
story up to it, and each returns snapshots rather than live state."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator

import dagster as dg
import pytest

from mlops_assets.run_instance import ensure_instance
from mlops_assets_tests.deployment.scenario import (
    AS_OF,
    BASE_DAYS,
    CANDIDATE_KEYS,
    CHAMPION,
    DECISIONS,
    MODELS,
    NOISE_DAYS,
    P1,
    P2,
    P3,
    SCORED_DAYS,
    Corruption,
    DryRun,
    NoSignal,
    Rerun,
    Scored,
    Step,
    World,
    board,
    noise_spec,
    small_spec,
    write_noise_csv,
)
from mlops_assets_tests.helpers import Pipeline, failure_messages

# As in ml/conftest.py: LightGBM's OpenMP threads otherwise spin on a busy machine. Timing only.
os.environ.setdefault("OMP_WAIT_POLICY", "passive")

DRY_RUN_CONFIG = {"ops": {"champion_history": {"config": {"dry_run": True}}}}


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """The dev environment with the base days of simulated daily assets materialized."""
    patch = pytest.MonkeyPatch()
    pipeline = Pipeline(patch, tmp_path_factory.mktemp("deployment"), as_of=AS_OF)
    try:
        pipeline.use_spec(small_spec())
        patch.setenv("DAGSTER_HOME", str(pipeline.settings.dagster_home))
        story = World(pipeline, ensure_instance(pipeline.settings))
        story.run_days(BASE_DAYS)
        yield story
    finally:
        pipeline.close()
        patch.undo()
        if "mlflow" in sys.modules:
            import mlflow

            mlflow.set_tracking_uri(None)
            mlflow.set_registry_uri(None)


@pytest.fixture(scope="session")
def corruption(world: World) -> Corruption:
    """P1's candidates, then its champion step while the LightGBM versions' model files hold
    garbage; the files are put back afterwards so the story can go on."""
    candidates = world.train(P1, CANDIDATE_KEYS)
    assert candidates.result.success, failure_messages(candidates.result)
    versions = [
        str(candidates.metadata(dg.AssetKey(f"candidate_{name}"))["model_version"].value)
        for name in MODELS
    ]
    files = {version: world.model_file(version) for version in versions}
    originals = {path: path.read_bytes() for path in files.values()}
    try:
        for path in originals:
            path.write_text("this is not a LightGBM model\n")
        champion = world.train(P1, [CHAMPION, *DECISIONS])
    finally:
        for path, content in originals.items():
            path.write_bytes(content)
    return Corruption(candidates, champion, files)


@pytest.fixture(scope="session")
def first_champion(corruption: Corruption, world: World) -> Step:
    """The whole training job of P1 once the model files are intact again."""
    return world.train(P1)


@pytest.fixture(scope="session")
def dry_run(first_champion: Step, world: World) -> DryRun:
    """P2's candidates, then its champion step and the decision history launched with
    ``dry_run``."""
    assert first_champion.result.success, failure_messages(first_champion.result)
    candidates = world.train(P2, CANDIDATE_KEYS)
    assert candidates.result.success, failure_messages(candidates.result)
    dry = world.train(P2, [CHAMPION, *DECISIONS], run_config=DRY_RUN_CONFIG)
    return DryRun(candidates, dry)


@pytest.fixture(scope="session")
def promoted(dry_run: DryRun, world: World) -> Step:
    """The whole training job of P2, for real."""
    return world.train(P2)


@pytest.fixture(scope="session")
def rerun(promoted: Step, world: World) -> Rerun:
    """The whole training job of P2 once more."""
    board_before, versions_before = board(world.read("champion"), P2), world.version_count()
    step = world.train(P2)
    return Rerun(
        step,
        board_before,
        board(world.read("champion"), P2),
        versions_before,
        world.version_count(),
    )


@pytest.fixture(scope="session")
def scored(rerun: Rerun, world: World, tmp_path_factory: pytest.TempPathFactory) -> Scored:
    """Predictions of the days around P2's cut-off, in one scoring run."""
    step = world.score(SCORED_DAYS)
    copy = world.copy_data(tmp_path_factory.mktemp("rollback") / "data")
    return Scored(step, world.read("predictions"), world.history(), copy)


@pytest.fixture(scope="session")
def no_signal(scored: Scored, world: World) -> NoSignal:
    """P3 after its days were re-materialized from the noise CSV dataset."""
    before = world.aliases()
    csv = write_noise_csv(world.pipeline.root / "noise" / "tv_ad_noise.csv", NOISE_DAYS)
    world.use_spec(noise_spec(csv))
    world.run_days(NOISE_DAYS)
    step = world.train(P3)
    return NoSignal(
        csv, before, step, board(world.read("champion"), P3), world.read("drift_reference")
    )
