"""The data profile and the pipeline's health on a day one network goes dark (the simulator's
``segment_outage`` incident), in real Dagster runs on a small world: with the day before
profiled, the sources stage is Healthy; the outage day's profile (one range run of both days)
names the vanished network and how often it was seen, each day carrying its own numbers; the
WARN check ``segments_present`` fails with that reason; the Evidently report is saved and linked;
and ``pipeline_health`` then turns the sources stage to Warning with the same reason, while the
profile read the days before it through its declared dependency on ``raw_events``."""

from __future__ import annotations

from datetime import date

import dagster as dg
import pytest

from mlops_assets.runner import range_tags
from mlops_assets_tests.helpers import Pipeline, check_evaluations, day_range

START = date(2025, 1, 1)
OUTAGE = date(2025, 1, 10)
BEFORE = date(2025, 1, 9)
REASON = f"network ESPN had no TV ad airings on {OUTAGE} (it had some on 9 of the 9 days before)"


@pytest.fixture
def outage(make_pipeline) -> Pipeline:
    pipeline = make_pipeline(
        airings_per_day=100,
        incidents=[{"kind": "segment_outage", "date": OUTAGE.isoformat(), "network": "ESPN"}],
    )
    assert pipeline.run_days(day_range(START, (OUTAGE - START).days + 1)).failed_runs == []
    return pipeline


def _profile(pipeline: Pipeline, first: date, last: date) -> dg.ExecuteInProcessResult:
    job = pipeline.definitions().resolve_job_def("daily_scoring")
    return job.execute_in_process(
        instance=pipeline.instance,
        tags=range_tags(first, last),
        asset_selection=[dg.AssetKey("data_profile")],
    )


def _health(pipeline: Pipeline) -> dict[str, dict]:
    keys = [dg.AssetKey("pipeline_health")]
    job = pipeline.definitions().resolve_implicit_job_def_def_for_assets(keys)
    assert job.execute_in_process(instance=pipeline.instance, asset_selection=keys).success
    rows = pipeline.rows("pipeline_health").iter_rows(named=True)
    return {r["asset"]: r for r in rows}


def _metadata(pipeline: Pipeline, day: date) -> dict:
    records = pipeline.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("data_profile"), asset_partitions=[str(day)]),
        limit=1,
    ).records
    return {k: v.value for k, v in records[0].asset_materialization.metadata.items()}


def test_the_outage_shows_in_that_days_profile_and_turns_sources_to_warning(
    outage: Pipeline,
) -> None:
    assert check_evaluations(_profile(outage, BEFORE, BEFORE))["segments_present"].passed
    before = _health(outage)
    assert before["data_profile"]["status"] == "Healthy", before["data_profile"]
    assert before["raw_events"]["stage_status"] == "Healthy", before

    result = _profile(outage, BEFORE, OUTAGE)
    check = check_evaluations(result)["segments_present"]
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    meta = {k: v.value for k, v in check.metadata.items()}
    assert (meta["days_failed"], meta["vanished"], meta["reason"]) == (str(OUTAGE), "ESPN", REASON)

    on_day, day_before = _metadata(outage, OUTAGE), _metadata(outage, BEFORE)
    assert (on_day["segments_vanished"], day_before["segments_vanished"]) == (1, 0)
    assert on_day["reference_days"] == 9 and on_day["rows"] < day_before["rows"]
    assert REASON in on_day["summary"] and "ESPN had no" not in day_before["summary"]
    assert on_day["report"] == f"{outage.settings.reports_url}/profile_{OUTAGE}.html"
    html = open(on_day["report_file"], encoding="utf-8").read()
    assert len(html) > 100_000 and "audience_k" in html

    network = outage.rows("data_profile", OUTAGE, column="day").filter(column="network")
    assert network["absent_values"].to_list() == ["ESPN"]
    assert "ESPN" not in network["top_values"][0]

    after = _health(outage)
    profile = after["data_profile"]
    assert (profile["stage"], profile["status"], profile["stage_status"]) == (
        "sources",
        "Warning",
        "Warning",
    )
    assert f"data_profile: {REASON} (failed on {OUTAGE})" in profile["reason"]
    assert after["raw_events"]["status"] == "Healthy"
    assert after["raw_events"]["stage_status"] == "Warning"
