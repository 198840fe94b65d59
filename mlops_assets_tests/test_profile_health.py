"""The data profile and the pipeline's health on a day one network goes dark (the simulator's
``segment_outage`` incident): that day's profile names the vanished network and how often it was
seen, the day before is clean (each day of the range run carries its own numbers), the WARN check
``segments_present`` fails with the reason, the Evidently report is saved and linked, and
``pipeline_health`` then shows the sources stage as Warning with the same reason."""

from __future__ import annotations

from datetime import date

import dagster as dg
import pytest

from mlops_assets_tests.helpers import Pipeline, check_evaluations

OUTAGE = date(2025, 1, 10)
BEFORE = date(2025, 1, 9)
REASON = "network ESPN had no events today (present on 9 of the last 9 days)"


@pytest.fixture
def outage(make_pipeline) -> Pipeline:
    pipeline = make_pipeline(
        airings_per_day=100,
        incidents=[{"kind": "segment_outage", "date": OUTAGE.isoformat(), "network": "ESPN"}],
    )
    assert pipeline.materialize(date(2025, 1, 1), ["raw_events"], last=OUTAGE).success
    return pipeline


def _metadata(pipeline: Pipeline, day: date) -> dict:
    records = pipeline.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("data_profile"), asset_partitions=[str(day)]),
        limit=1,
    ).records
    return {k: v.value for k, v in records[0].asset_materialization.metadata.items()}


def test_the_outage_shows_in_that_days_profile_and_turns_sources_to_warning(
    outage: Pipeline,
) -> None:
    result = outage.materialize(BEFORE, ["data_profile"], last=OUTAGE)
    assert result.success

    check = check_evaluations(result)["segments_present"]
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    meta = {k: v.value for k, v in check.metadata.items()}
    assert meta["days_failed"] == str(OUTAGE) and meta["reason"] == REASON

    on_day, day_before = _metadata(outage, OUTAGE), _metadata(outage, BEFORE)
    assert (on_day["segments_vanished"], day_before["segments_vanished"]) == (1, 0)
    assert "ESPN" in on_day["summary"] and "ESPN" not in day_before["summary"].split("today")[-1]
    assert on_day["report"] == f"{outage.settings.reports_url}/profile_{OUTAGE}.html"
    html = open(on_day["report_file"], encoding="utf-8").read()
    assert len(html) > 100_000 and "audience_k" in html  # Evidently's report of the columns

    rows = outage.rows("data_profile", OUTAGE, column="day").filter(column="network")
    assert "ESPN" not in rows["top_values"][0]
    assert set(outage.rows("data_profile")["day"].to_list()) == {BEFORE, OUTAGE}

    job = outage.definitions().resolve_implicit_global_asset_job_def()
    health = job.execute_in_process(
        instance=outage.instance, asset_selection=[dg.AssetKey("pipeline_health")]
    )
    assert health.success
    stages = {r["stage"]: r for r in outage.rows("pipeline_health").iter_rows(named=True)}
    assert stages["sources"]["status"] == "Warning"
    assert f"data_profile: {REASON}" in stages["sources"]["reasons"]
    event = health.get_asset_materialization_events()[0].materialization
    assert event.metadata["status_sources"].value == "Warning"
