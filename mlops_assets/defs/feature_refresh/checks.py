"""Sanity rules on the feature stage, evaluated on the frame the `features` asset is about to
store (one step, no second read). The ones that would poison training block downstream steps."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import dagster as dg

from mlops_assets.defs.common import Project, rule_result, severity

if TYPE_CHECKING:
    # Imported where used, so that loading the definitions does not import polars.
    import polars as pl

    from mlops_assets.ml import rules

NON_EMPTY = "features_non_empty"
UNIQUE_KEYS = "features_unique_keys"
SCHEMA = "features_schema_matches_spec"
NULL_SHARE = "features_null_share"
POINT_IN_TIME = "features_point_in_time"


def feature_check_specs(p: Project) -> list[dg.AssetCheckSpec]:
    limits = p.settings.thresholds
    described = {
        NON_EMPTY: p.words("The day has at least one {event} to predict on."),
        UNIQUE_KEYS: p.words("Each {event} appears once (no duplicate keys)."),
        SCHEMA: "Every column the dataset spec promises is there with the right type.",
        NULL_SHARE: (
            f"No feature column is more than {limits.null_share_max:.0%} empty (drift tests "
            "ignore nulls, so they are counted here). Blocks downstream in prod only."
        ),
        POINT_IN_TIME: p.words("No feature uses {outcome} that had not landed before the day."),
    }
    return [
        dg.AssetCheckSpec(
            name,
            asset="features",
            # Only a rule that can fail with ERROR severity holds back the automation of the
            # day's downstream assets; one that only warns (null share outside prod) does not.
            blocking=name != NULL_SHARE or limits.strict,
            description=text,
            # Results are kept per day, so a bad day blocks its own downstream days only.
            partitions_def=p.daily,
        )
        for name, text in described.items()
    ]


def _worst_day_null_share(p: Project, frame: pl.DataFrame) -> rules.RuleResult:
    """Judge each day of a range run and report the worst, so one bad day is not averaged away."""
    from mlops_assets.ml import rules

    columns, max_share = list(p.spec.raw_feature_columns), p.settings.thresholds.null_share_max
    if frame.is_empty():
        return rules.null_share_under(frame, columns, max_share)
    per_day = {
        day: rules.null_share_under(part, columns, max_share)
        for (day,), part in frame.partition_by(p.spec.date_column, as_dict=True).items()
    }
    day, worst = max(per_day.items(), key=lambda item: (not item[1].passed, item[1].observed))
    return replace(worst, details={**worst.details, "worst_day": str(day)})


def evaluate_feature_checks(p: Project, frame: pl.DataFrame) -> list[dg.AssetCheckResult]:
    from mlops_assets.ml import rules

    spec, limits = p.spec, p.settings.thresholds
    nulls = _worst_day_null_share(p, frame)
    return [
        rule_result(rules.non_empty(frame), check_name=NON_EMPTY),
        rule_result(rules.unique_keys(frame, spec.event_key), check_name=UNIQUE_KEYS),
        rule_result(rules.schema_matches(spec, frame), check_name=SCHEMA),
        rule_result(nulls, check_name=NULL_SHARE, sev=severity(limits.strict)),
        rule_result(rules.point_in_time(spec, frame), check_name=POINT_IN_TIME),
    ]
