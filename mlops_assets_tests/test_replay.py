"""Replay-exact history: the same days and training dates, produced four ways, give the same
facts. (a) the demo's order (ranges, training dates in order); (b) every day as its own run;
(c) training dates in reverse order, then every scoring and metric partition as its own run in a
shuffled order; (d) the demo's order twice on one data folder.

"The same facts": every warehouse table but those that are no facts (``pipeline_health``, a
snapshot of now, which the demo's order refreshes at its end) equal after dropping what is run
metadata by nature, the same champion candidate in force on every day, the same alerts as
(asset, partition, cause), and the same metadata on every partition of the per-day assets (a
range run attaches to each day exactly what a run of that day alone attaches).
Registry version numbers differ between folders (they count registrations in the order they
happened), so every version is replaced by the candidate and training date it was trained as.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from mlops_assets.ml import history_queries, promotion
from mlops_assets.runner import (
    first_champion_day,
    run_days,
    run_training,
)
from mlops_assets_tests.helpers import Pipeline, day_range, simulator_spec

AS_OF = "2025-02-06T06:00"
DAYS = day_range(date(2025, 1, 7), 30)  # 2025-01-07 .. 2025-02-05
TRAINING = ["2025-01-20", "2025-01-27"]
DRIFT_DAYS = 4
LAG = 2
# Run metadata by nature, each for one reason.
RUN_METADATA = {
    "run_id": "an MLflow run id is drawn at random",
    "run_url": "links to that run id",
    "recorded_at": "wall-clock time of a person's decision",
    "evaluation_key": "a fingerprint that includes registry version numbers",
    "serve_p50_ms": "latency measured on the wall clock",
    "serve_p99_ms": "latency measured on the wall clock",
    "serve_load_s": "load time measured on the wall clock",
    "serving_gate": "compares latencies measured on the wall clock",
}
# Tables that are not facts of the history, each for one reason.
NOT_FACTS = {
    "pipeline_health": "a snapshot of now: alerts within the wall-clock cooldown, run times",
}
VERSION_COLUMNS = ("model_version", "to_version", "from_version", "proposed_version", "version")


def _spec() -> dict:
    # A drift from 2025-01-31 on, so that drift and persistent-drift alerts are part of the facts.
    # (Two of the three watched columns shift: the day's drift share crosses dev's line.)
    raw = simulator_spec(
        airings_per_day=200,
        drifts=[{"kind": "audience_shift", "date": "2025-01-31", "factor": 3.0}],
        monitored_features=["hour", "spend", "audience_k"],
    )
    raw["training"].update(train_days=14, holdout_days=5)
    return raw


def _job(p: Pipeline, job: str, assets: list[str], day: date) -> None:
    result = (
        p.definitions()
        .resolve_job_def(job)
        .execute_in_process(
            instance=p.instance,
            partition_key=day.isoformat(),
            asset_selection=[dg.AssetKey(a) for a in assets],
            raise_on_error=False,
        )
    )
    assert result.success, f"{job} {assets} {day} failed"


def _served(p: Pipeline) -> list[date]:
    first = first_champion_day(p.settings)
    assert first is not None, "no champion was ever in force"
    return [d for d in DAYS if d >= first]


def _landed(days: list[date]) -> list[date]:
    today = date.fromisoformat(AS_OF[:10])
    return [d for d in days if (today - d).days >= LAG]


def demo_order(p: Pipeline) -> None:
    from mlops_assets.runner import run_health, run_metrics, run_scoring

    defs, instance, settings = p.definitions(), p.instance, p.settings
    assert not run_days(defs, instance, settings, DAYS).failed_runs
    assert not run_training(defs, instance, TRAINING).failed_runs
    served = _served(p)
    assert not run_scoring(defs, instance, served, drift_days=DRIFT_DAYS).failed_runs
    assert not run_metrics(defs, instance, settings, served).failed_runs
    assert run_health(defs, instance, lambda _: None).success


def _scoring_runs(p: Pipeline, order) -> None:
    served = _served(p)
    for day in order(served):
        _job(p, "daily_scoring", ["predictions"], day)
    for day in order(served[-DRIFT_DAYS:]):
        _job(p, "daily_scoring", ["drift_report"], day)
    for day in order(served[-DRIFT_DAYS:]):
        _job(p, "daily_scoring", ["data_profile"], day)
    for day in order(_landed(served)):
        _job(p, "metric_refresh", ["serving_log", "business_metrics"], day)


def day_by_day(p: Pipeline) -> None:
    defs, instance, settings = p.definitions(), p.instance, p.settings
    for day in DAYS:
        assert not run_days(defs, instance, settings, [day]).failed_runs
    for key in TRAINING:
        assert not run_training(defs, instance, [key]).failed_runs
    _scoring_runs(p, list)


def reverse_and_shuffled(p: Pipeline) -> None:
    defs, instance, settings = p.definitions(), p.instance, p.settings
    assert not run_days(defs, instance, settings, DAYS).failed_runs
    for key in reversed(TRAINING):
        assert not run_training(defs, instance, [key]).failed_runs
    rng = random.Random(12)
    _scoring_runs(p, lambda days: rng.sample(days, len(days)))


def _versions(p: Pipeline) -> dict[str, str]:
    board = p.warehouse.read("champion")
    return {
        str(r["model_version"]): f"{r['candidate']}@{r['training_date']}"
        for r in board.iter_rows(named=True)
    }


def facts(p: Pipeline) -> dict[str, object]:
    """Every table (version numbers named, run metadata dropped, rows sorted), the candidate in
    force per day and the alerts."""
    names = _versions(p)
    pattern = re.compile(r"\bv(\d+)\b")
    wh = p.warehouse
    tables = wh.query(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'mlops'"
    )["table_name"].to_list()
    out: dict[str, object] = {}
    for table in sorted(set(tables) - set(NOT_FACTS)):
        frame = wh.read(table)
        frame = frame.drop([c for c in RUN_METADATA if c in frame.columns])
        mapped = []
        for column, dtype in frame.schema.items():
            expr = pl.col(column)
            if column in VERSION_COLUMNS:
                expr = expr.cast(pl.String).replace(names)
            elif dtype == pl.String:
                expr = expr.map_elements(
                    lambda text: pattern.sub(lambda m: names.get(m.group(1), m.group(0)), text),
                    return_dtype=pl.String,
                )
            mapped.append(expr)
        frame = frame.select(mapped) if frame.width else frame
        out[table] = frame.sort(frame.columns) if frame.height else frame
    history = wh.read(promotion.HISTORY_TABLE)
    out["in_force"] = [names.get(history_queries.champion_in_force(history, d) or "") for d in DAYS]
    out["metadata"] = partition_metadata(p, names, pattern)
    alerts = p.settings.alerts_path
    lines = [json.loads(x) for x in alerts.read_text().splitlines()] if alerts.exists() else []
    out["alerts"] = sorted({(a["asset"], a["partition"], a["cause"]) for a in lines})
    return out


PER_DAY = ("predictions", "drift_report", "data_profile", "business_metrics")


def partition_metadata(p: Pipeline, names: dict[str, str], pattern) -> dict:
    """The metadata of the latest materialization of each partition of the per-day assets:
    what a range run attaches to each day must be what that day alone attaches. Paths are
    taken relative to the data folder; what the IO manager adds about the table (its name, row
    count, the DuckLake snapshots written and read: storage bookkeeping, numbered in commit
    order) is dropped."""
    root = str(p.data_dir)
    out = {}
    for asset in PER_DAY:
        records = p.instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset)), limit=1000
        ).records
        for record in sorted(records, key=lambda r: r.storage_id):
            event = record.asset_materialization
            values = {}
            for key, value in event.metadata.items():
                if key.startswith(("dagster/", "ducklake/")) or key == "warehouse":
                    continue
                raw = value.value
                if key == "model_versions":
                    raw = ", ".join(names.get(v, v) for v in str(raw).split(", "))
                elif isinstance(raw, str):
                    raw = pattern.sub(lambda m: names.get(m.group(1), m.group(0)), raw)
                    raw = raw.replace(root, "<data>")
                values[key] = raw
            out[(asset, event.partition)] = values
    return out


def _world(root: Path, *plays) -> list[dict[str, object]]:
    patch = pytest.MonkeyPatch()
    pipeline = Pipeline(patch, root, as_of=AS_OF)
    try:
        pipeline.use_spec(_spec())
        seen = []
        for play in plays:
            play(pipeline)
            seen.append(facts(pipeline))
        return seen
    finally:
        pipeline.close()
        patch.undo()


@pytest.fixture(scope="module")
def replays(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, dict]]:
    first, twice = _world(tmp_path_factory.mktemp("demo"), demo_order, demo_order)
    (by_day,) = _world(tmp_path_factory.mktemp("by_day"), day_by_day)
    (shuffled,) = _world(tmp_path_factory.mktemp("shuffled"), reverse_and_shuffled)
    yield {"demo": first, "day_by_day": by_day, "reverse_shuffled": shuffled, "twice": twice}


def _diff(a: dict, b: dict) -> list[str]:
    differ = []
    for key in sorted(set(a) | set(b)):
        x, y = a.get(key), b.get(key)
        same = (
            x.equals(y) if isinstance(x, pl.DataFrame) and isinstance(y, pl.DataFrame) else x == y
        )
        if not same:
            differ.append(key)
    return differ


def test_the_demo_world_is_not_trivial(replays: dict[str, dict]) -> None:
    demo = replays["demo"]
    history = demo[promotion.HISTORY_TABLE]
    assert history.filter(pl.col("kind") == "training").height == len(TRAINING)
    assert demo["predictions"]["air_date"].n_unique() >= 8
    assert demo["business_metrics"].height > 0
    assert set(demo["in_force"][-5:]) != {None}
    assert any(a[2] == "persistent drift" for a in demo["alerts"]), demo["alerts"]
    assert demo["data_profile"]["day"].to_list()[-1] == DAYS[-1]
    assert demo["data_profile"]["day"].n_unique() == DRIFT_DAYS


@pytest.mark.parametrize("other", ["day_by_day", "reverse_shuffled", "twice"])
def test_every_replay_gives_the_same_facts(replays: dict[str, dict], other: str) -> None:
    assert _diff(replays["demo"], replays[other]) == []
