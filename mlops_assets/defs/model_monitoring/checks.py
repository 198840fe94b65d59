"""Monitoring rules on `drift_report`, with thresholds from the environment's settings."""

from collections.abc import Iterator
from typing import TYPE_CHECKING

import dagster as dg

from mlops_assets.defs.common import Project, severity
from mlops_assets.environments import Thresholds

if TYPE_CHECKING:
    from mlops_assets.ml.monitoring import DriftStageResult

DRIFT_SHARE = "feature_drift_share"
PREDICTION_DRIFT = "prediction_drift"
NULL_SHARE = "monitored_null_share"
PERSISTENT = "drift_persistent"
# Each drift check and the rule of the stage function it reports.
RULES = {DRIFT_SHARE: "drift_share", PREDICTION_DRIFT: "prediction_drift", NULL_SHARE: "null_share"}


def drift_check_specs(p: Project) -> list[dg.AssetCheckSpec]:
    t = p.settings.thresholds
    described = {
        DRIFT_SHARE: (
            f"At most {t.drift_share_max:.0%} of the feature columns drift from the champion's "
            "reference (Evidently data drift)."
        ),
        PREDICTION_DRIFT: "The distribution of predictions does not drift from the reference's.",
        NULL_SHARE: (
            f"No feature column is more than {t.null_share_max:.0%} empty: drift tests drop "
            "nulls, so a null storm is only seen here."
        ),
        PERSISTENT: (
            f"Drift did not persist: drifted on fewer than {t.drift_persist_n} of the last "
            f"{t.drift_persist_m} days (single noisy days do not alert)."
        ),
    }
    return [
        dg.AssetCheckSpec(name, asset="drift_report", description=text)
        for name, text in described.items()
    ]


def drift_check_results(
    result: "DriftStageResult", limits: Thresholds
) -> Iterator[dg.AssetCheckResult]:
    """The result of every drift check from the drift stage's result: errors where the
    environment is strict, warnings elsewhere."""
    sev = severity(limits.strict)
    for name, rule in RULES.items():
        passed, metadata = result.verdict(rule)
        yield dg.AssetCheckResult(check_name=name, passed=passed, severity=sev, metadata=metadata)
    passed, metadata = result.persistence(limits)
    yield dg.AssetCheckResult(check_name=PERSISTENT, passed=passed, severity=sev, metadata=metadata)
