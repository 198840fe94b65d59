"""Sanity rules on the feature stage. The ones that would poison training block downstream."""


import dagster as dg
import polars as pl

from mlops_assets.defs.common import Project, partition_day, project, rule_result, severity
from mlops_assets.ml import rules

NON_EMPTY = "features_non_empty"
UNIQUE_KEYS = "features_unique_keys"
SCHEMA = "features_schema_matches_spec"
NULL_SHARE = "features_null_share"
POINT_IN_TIME = "features_point_in_time"


def build_checks(p: Project) -> list[dg.AssetChecksDefinition]:
    spec, limits = p.spec, p.settings.thresholds

    def check(name: str, description: str):
        return dg.asset_check(
            asset="features",
            name=name,
            blocking=True,
            partitions_def=p.daily,
            description=description,
        )

    @check(NON_EMPTY, p.words("The day has at least one {event} to predict on."))
    def features_non_empty(features: pl.DataFrame) -> dg.AssetCheckResult:
        return rule_result(rules.non_empty(features))

    @check(UNIQUE_KEYS, p.words("Each {event} appears once (no duplicate keys)."))
    def features_unique_keys(features: pl.DataFrame) -> dg.AssetCheckResult:
        return rule_result(rules.unique_keys(features, spec.event_key))

    @check(SCHEMA, "Every column the dataset spec promises is there with the right type.")
    def features_schema_matches_spec(features: pl.DataFrame) -> dg.AssetCheckResult:
        return rule_result(rules.schema_matches(spec, features))

    @check(
        NULL_SHARE,
        f"No feature column is more than {limits.null_share_max:.0%} empty "
        "(drift tests ignore nulls, so they are counted here).",
    )
    def features_null_share(features: pl.DataFrame) -> dg.AssetCheckResult:
        result = rules.null_share_under(features, list(spec.raw_feature_columns), limits.null_share_max)
        return rule_result(result, sev=severity(limits.strict))

    @check(
        POINT_IN_TIME,
        p.words("No feature uses {outcome} that had not landed before the day began."),
    )
    def features_point_in_time(
        context: dg.AssetCheckExecutionContext, features: pl.DataFrame
    ) -> dg.AssetCheckResult:
        return rule_result(rules.point_in_time(spec, features, partition_day(context)))

    return [
        features_non_empty,
        features_unique_keys,
        features_schema_matches_spec,
        features_null_share,
        features_point_in_time,
    ]


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions(asset_checks=build_checks(project()))
