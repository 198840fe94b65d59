"""Monitoring rules on `drift_report`, with thresholds from the environment's settings."""

import dagster as dg

from mlops_assets.defs.common import Project

DRIFT_SHARE = "feature_drift_share"
PREDICTION_DRIFT = "prediction_drift"
NULL_SHARE = "monitored_null_share"
PERSISTENT = "drift_persistent"


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
