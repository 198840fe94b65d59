"""Pure tests of ``ml/health.py``: an asset's status from its failed checks, freshness, alerts
and whether it was ever materialized; a stage takes its worst asset and lists every reason; stages
come in the pipeline's order."""

from __future__ import annotations

from datetime import UTC, datetime

from mlops_assets.ml import health

NOW = datetime(2025, 1, 10, 6, tzinfo=UTC)


def _state(asset: str, stage: str = "sources", **kwargs) -> health.AssetState:
    return health.AssetState(asset=asset, stage=stage, last_materialized=NOW, **kwargs)


def test_statuses_of_one_asset() -> None:
    assert health.asset_status(_state("a")) == (health.HEALTHY, [])
    warn = health.FailedCheck(
        "segments_present", blocking=False, reason="network C vanished", partition="2025-01-09"
    )
    assert health.asset_status(_state("a", failed_checks=[warn])) == (
        health.WARNING,
        ["a: network C vanished (2025-01-09)"],
    )
    block = health.FailedCheck("non_empty", blocking=True, reason="no rows")
    status, why = health.asset_status(_state("a", failed_checks=[warn, block]))
    assert status == health.DEGRADED and why[0] == "a: no rows"
    assert health.asset_status(_state("a", freshness="FAIL"))[0] == health.DEGRADED
    assert health.asset_status(_state("a", freshness="WARN"))[0] == health.WARNING
    assert health.asset_status(_state("a", alerts=[("run_failure", "boom")]))[0] == health.DEGRADED
    assert (
        health.asset_status(_state("a", alerts=[("drift_persistent", "3 of 5")]))[0]
        == health.WARNING
    )
    never = health.AssetState(asset="a", stage="sources", last_materialized=None)
    assert health.asset_status(never) == (health.WARNING, ["a: never materialized"])


def test_a_stage_takes_its_worst_asset_in_pipeline_order() -> None:
    warn = health.FailedCheck("x", blocking=False, reason="odd day")
    stages = health.stage_health(
        [
            _state("business_metrics", "metric_refresh"),
            _state("raw_events", "sources"),
            _state("data_profile", "sources", failed_checks=[warn]),
            _state("features", "feature_refresh"),
        ]
    )
    assert [s.stage for s in stages] == ["sources", "feature_refresh", "metric_refresh"]
    sources = stages[0]
    assert sources.status == health.WARNING and sources.reasons == ("data_profile: odd day",)
    assert sources.statuses == {"data_profile": health.WARNING, "raw_events": health.HEALTHY}
    assert [s.status for s in stages[1:]] == [health.HEALTHY, health.HEALTHY]
    table = health.markdown(stages)
    assert "| sources | **Warning** |" in table and "data_profile: odd day" in table
