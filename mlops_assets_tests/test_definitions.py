"""The definitions as a whole: `dagster definitions validate -w workspace.yaml` passes,
build_definitions() loads every stage with its jobs, every asset has a description, owners, kinds
and a group, every asset check has a description, partitioned assets name their partition column
and take their stage's pool (the defaults of `Stage.asset`, checked on an asset of its own),
and importing the definitions does not import the data or ML
libraries: mlflow, evidently and lightgbm cost seconds and are only needed when a model is trained
or a report is built; polars, duckdb, numpy, pandas and pyarrow are only needed when an asset
runs, and together add about 0.4 s to loading the definitions."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from mlops_assets.defs.common import (
    REGISTRY_POOL,
    SINGLE_RUN,
    TRAINING_DATE,
    Project,
    Stage,
    code_version,
)
from mlops_assets.defs.feature_refresh.checks import (
    NON_EMPTY,
    NULL_SHARE,
    POINT_IN_TIME,
    SCHEMA,
    UNIQUE_KEYS,
)
from mlops_assets.environments import REPO_ROOT, load_settings
from mlops_assets.storage.io_manager import COLUMN_SCHEMA, PARTITION_COLUMN
from mlops_assets.storage.sources import SIMULATOR_KINDS, _kind
from mlops_assets_tests.helpers import Pipeline, clean_env, copy_dagster_yaml, run_python
from mlops_assets_tests.worlds import small_spec

FOUNDATION_ASSETS = {
    "raw_events": "sources",
    "raw_outcomes": "sources",
    "outcome_stats": "feature_refresh",
    "features": "feature_refresh",
    "labeled_examples": "feature_refresh",
    "online_features": "feature_refresh",
}
HEAVY_MODULES = (
    "polars",
    "duckdb",
    "numpy",
    "pandas",
    "pyarrow",
    "mlflow",
    "evidently",
    "lightgbm",
)


@pytest.fixture
def defs(pipeline: Pipeline) -> dg.Definitions:
    return pipeline.definitions()


def test_definitions_load(defs: dg.Definitions) -> None:
    dg.Definitions.validate_loadable(defs)
    keys = {key.to_user_string() for key in defs.resolve_all_asset_keys()}
    assert set(FOUNDATION_ASSETS) <= keys
    daily = defs.resolve_job_def("daily_refresh")
    assert daily.partitions_def is not None
    selected = {key.to_user_string() for key in daily.asset_layer.executable_asset_keys}
    assert set(FOUNDATION_ASSETS) - {"online_features"} <= selected


def test_the_data_profile_follows_the_events_and_health_is_refreshed_on_purpose(
    defs: dg.Definitions,
) -> None:
    """``data_profile`` (an Evidently report per day) follows each new day's events and runs
    with the watched days, not with every day's refresh; ``pipeline_health`` reads wall-clock
    state, so no automation condition requests it: its schedule does (stopped in dev)."""
    graph = defs.resolve_asset_graph()
    profile = graph.get(dg.AssetKey("data_profile"))
    assert profile.group_name == "sources"
    assert profile.parent_keys == {dg.AssetKey("raw_events")}
    assert profile.automation_condition is not None
    assert profile.pools == set()  # the warehouse takes it beside other writers
    assert {k.name for k in profile.check_keys} == {"segments_present", "no_new_categories"}

    def selected(job: str) -> set[str]:
        layer = defs.resolve_job_def(job).asset_layer
        return {k.to_user_string() for k in layer.executable_asset_keys}

    assert "data_profile" in selected("daily_scoring")
    assert "data_profile" not in selected("daily_refresh") | selected("daily_cycle")

    health = graph.get(dg.AssetKey("pipeline_health"))
    assert health.automation_condition is None and health.partitions_def is None
    schedule = defs.resolve_schedule_def("pipeline_health_hourly")
    assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED
    assert schedule.cron_schedule == "0 * * * *"


def test_the_decision_history_is_upstream_of_what_it_decides(defs: dg.Definitions) -> None:
    graph = defs.resolve_asset_graph()
    history = dg.AssetKey("champion_history")
    assert graph.get(history).parent_keys == {
        dg.AssetKey("champion"),
        dg.AssetKey("release_decisions"),
        dg.AssetKey("labeled_examples"),
    }
    for reader in ("predictions", "drift_reference"):
        assert history in graph.get(dg.AssetKey(reader)).parent_keys, reader


def test_code_versions_are_derived_from_the_code(defs: dg.Definitions) -> None:
    versions = {s.key.to_user_string(): s.code_version for s in defs.resolve_all_asset_specs()}
    assert all(v and len(v) == 12 and v != "1" for v in versions.values()), versions
    # Different code, different versions; the same module set, the same version.
    assert versions["features"] == versions["labeled_examples"]
    assert versions["features"] != versions["predictions"]
    assert versions["candidate_lgbm_small"] != versions["candidate_global_mean"]


def test_every_asset_is_catalogued(defs: dg.Definitions) -> None:
    specs = list(defs.resolve_all_asset_specs())
    assert specs
    for spec in specs:
        name = spec.key.to_user_string()
        assert spec.description and len(spec.description) > 40, name
        assert spec.owners, name
        assert spec.kinds, name
        assert spec.group_name and spec.group_name != "default", name
        if name in FOUNDATION_ASSETS:
            assert spec.group_name == FOUNDATION_ASSETS[name], name


def test_every_table_has_a_described_column_schema(defs: dg.Definitions) -> None:
    """Every asset stored in the warehouse carries dagster/column_schema, each column described,
    and the schema of a partitioned table names its partition column."""
    for spec in defs.resolve_all_asset_specs():
        name = spec.key.to_user_string()
        schema = spec.metadata.get("dagster/column_schema")
        assert isinstance(schema, dg.TableSchema), name
        assert schema.columns, name
        for column in schema.columns:
            assert column.description and column.type, (name, column.name)
        partition_column = spec.metadata.get("partition_column")
        if partition_column:
            assert partition_column in {c.name for c in schema.columns}, name


def test_descriptions_use_the_dataset_words(defs: dg.Definitions) -> None:
    specs = {s.key.to_user_string(): s for s in defs.resolve_all_asset_specs()}
    assert "TV ad airing" in specs["raw_events"].description
    assert "web visits" in specs["raw_outcomes"].description
    assert "{" not in "".join(s.description for s in specs.values())


def test_partitioned_assets_name_their_column_and_pool(defs: dg.Definitions) -> None:
    """Only the stages that change the registry and the champion share a pool; the warehouse
    takes the daily stages' writes at once."""
    graph = defs.resolve_asset_graph()
    partitioned = []
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        if node.partitions_def is not None and key.to_user_string() in FOUNDATION_ASSETS:
            partitioned.append(key.to_user_string())
            assert node.metadata.get(PARTITION_COLUMN), key
        pooled = node.group_name in ("model_training", "model_deployment")
        assert node.pools == ({REGISTRY_POOL} if pooled else set()), key
    assert sorted(partitioned) == sorted(set(FOUNDATION_ASSETS) - {"online_features"})


def test_a_stage_asset_carries_the_stage_defaults() -> None:
    p = Project(settings=load_settings("dev"), spec=small_spec())
    stage = Stage(p, "sources", ["team:data-engineering"], REGISTRY_POOL)

    @stage.asset("raw_events", code=("mlops_assets.ml.features",), partitions="daily")
    def daily() -> None: ...

    @stage.asset("champion", version="v1", partitions="training", kinds={"mlflow"})
    def weekly() -> None: ...

    @stage.asset("release_decisions", code=("mlops_assets.ml.promotion",))
    def unpartitioned() -> None: ...

    for made in (daily, weekly, unpartitioned):
        spec = next(iter(made.specs))
        assert (spec.group_name, spec.owners) == ("sources", ["team:data-engineering"])
        assert made.op.pools == {REGISTRY_POOL} and COLUMN_SCHEMA in spec.metadata
    day, week, other = (next(iter(a.specs)) for a in (daily, weekly, unpartitioned))
    assert daily.partitions_def == p.daily and daily.backfill_policy == SINGLE_RUN
    assert day.metadata[PARTITION_COLUMN] == p.spec.date_column
    assert set(day.kinds) == {"duckdb", "polars"}
    assert day.code_version == code_version("mlops_assets.ml.features")
    assert weekly.partitions_def == p.training and weekly.backfill_policy is None
    assert week.metadata[PARTITION_COLUMN] == TRAINING_DATE and week.code_version == "v1"
    assert set(week.kinds) == {"mlflow"}
    assert unpartitioned.partitions_def is None and PARTITION_COLUMN not in other.metadata
    with pytest.raises(ValueError, match="either the code modules or the code version"):
        stage.asset("raw_events", code=("mlops_assets.ml.features",), version="v1")


def test_every_check_has_a_description(defs: dg.Definitions) -> None:
    graph = defs.resolve_asset_graph()
    check_keys = graph.asset_check_keys
    names = {key.name for key in check_keys}
    assert {NON_EMPTY, UNIQUE_KEYS, SCHEMA, NULL_SHARE, POINT_IN_TIME} <= names
    for key in check_keys:
        description = graph.get_check_spec(key).description
        assert description and len(description) > 20, key


def test_dagster_definitions_validate(pipeline: Pipeline, tmp_path: Path) -> None:
    home = tmp_path / "dagster_home"
    copy_dagster_yaml(home)
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "dagster"),
            "definitions",
            "validate",
            "-w",
            "workspace.yaml",
        ],
        env=clean_env(DAGSTER_HOME=str(home), **pipeline.env),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    assert "Validation successful for code location mlops_assets" in output


def test_definitions_import_no_heavy_library(pipeline: Pipeline) -> None:
    code = (
        "import json, sys\n"
        "import mlops_assets.definitions as d\n"
        "assert d.defs.resolve_all_asset_keys()\n"
        f"print(json.dumps([m for m in {HEAVY_MODULES!r} if m in sys.modules]))\n"
    )
    done = run_python(code, clean_env(**pipeline.env))
    assert done.returncode == 0, done.stderr[-3000:]
    imported = json.loads(done.stdout.splitlines()[-1])
    assert imported == [], f"loading the definitions imported {imported}"


def test_simulator_kinds_match_the_simulator() -> None:
    """Checking a simulated dataset's spec reads the column kinds from a copy, so that loading the
    definitions does not import the simulator: the copy must say what the simulator produces."""
    from mlops_assets.simulator import EVENT_SCHEMA, OUTCOME_SCHEMA

    schema = {**EVENT_SCHEMA, **OUTCOME_SCHEMA}
    assert SIMULATOR_KINDS == {name: _kind(dtype) for name, dtype in schema.items()}
