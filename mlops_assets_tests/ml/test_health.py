"""The health rule (``ml/health.py``) on hand-made asset states, without Dagster: each cause
gives its status and a reason naming the asset, a stage takes its worst asset's status in the
pipeline's order, and the stored frame has the columns the catalog declares."""

from __future__ import annotations

from datetime import UTC, datetime

from mlops_assets.defs.catalog import column_schemas
from mlops_assets.ml import health
from mlops_assets_tests.worlds import small_spec

NOW = datetime(2025, 3, 10, 6, tzinfo=UTC)


def _state(asset: str = "raw_events", stage: str = "sources", **kwargs) -> health.AssetState:
    return health.AssetState(asset=asset, stage=stage, last_materialized=NOW, **kwargs)


def test_each_cause_gives_its_status_and_reason() -> None:
    warn = health.FailedCheck(
        "segments_present", False, "network ESPN had no airings", "2025-03-09"
    )
    error = health.FailedCheck("non_empty", True, "check non_empty failed", "none")
    cases = [
        (_state(), health.HEALTHY, ()),
        (
            _state(failed_checks=[warn]),
            health.WARNING,
            ("raw_events: network ESPN had no airings (failed on 2025-03-09)",),
        ),
        (
            _state(failed_checks=[error, warn]),
            health.DEGRADED,
            (
                "raw_events: check non_empty failed",
                "raw_events: network ESPN had no airings (failed on 2025-03-09)",
            ),
        ),
        (
            _state(freshness="FAIL"),
            health.DEGRADED,
            ("raw_events: not refreshed within its freshness window",),
        ),
        (
            _state(freshness="WARN"),
            health.WARNING,
            ("raw_events: close to missing its freshness window",),
        ),
        (
            _state(alerts=[("run_failure", "source down")]),
            health.DEGRADED,
            ("raw_events: alert run failure: source down",),
        ),
        (
            _state(alerts=[("drift_persistent", "drifted 3 of 5 days")]),
            health.WARNING,
            ("raw_events: alert drift persistent: drifted 3 of 5 days",),
        ),
        (
            health.AssetState("raw_events", "sources", None),
            health.WARNING,
            ("raw_events: never built yet",),
        ),
    ]
    for state, status, reasons in cases:
        got = health.asset_health(state)
        assert (got.status, got.reasons) == (status, reasons), state


def test_a_stage_takes_its_worst_asset_in_pipeline_order() -> None:
    warn = health.FailedCheck("segments_present", False, "a network vanished")
    stages = health.stage_health(
        [
            _state("business_metrics", "metric_refresh"),
            _state("data_profile", "sources", failed_checks=[warn]),
            _state("raw_events", "sources"),
            _state("features", "feature_refresh", freshness="FAIL"),
        ]
    )
    assert [(s.stage, s.status) for s in stages] == [
        ("sources", health.WARNING),
        ("feature_refresh", health.DEGRADED),
        ("metric_refresh", health.HEALTHY),
    ]
    assert stages[0].reasons == ("data_profile: a network vanished",)
    assert health.stage_metrics(stages) == {
        "status_sources": "Warning",
        "status_feature_refresh": "Degraded",
        "status_metric_refresh": "Healthy",
        "degraded_stages": 1,
        "warning_stages": 1,
    }
    table = health.markdown(stages)
    assert (
        "| sources | **Warning** | 2025-03-10 06:00 UTC | data_profile: a network vanished |"
        in table
    )

    frame = health.frame(stages)
    assert frame.columns == [
        c.name for c in column_schemas(small_spec())["pipeline_health"].columns
    ]
    assert frame.filter(asset="raw_events").row(0, named=True)["stage_status"] == "Warning"
