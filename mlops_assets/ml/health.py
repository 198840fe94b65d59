"""One health status per pipeline stage, in business words: Healthy, Warning or Degraded, with
the reason. The rule, per asset, worst first:

- **Degraded**: a blocking (ERROR) check failed on its latest evaluation, its freshness policy
  failed, or it raised a run-failure alert within the alert window;
- **Warning**: a WARN check failed on its latest evaluation, its freshness policy warns, it
  raised any other alert within the window (e.g. persistent drift), or it was never
  materialized;
- **Healthy** otherwise.

A stage takes the worst status of its assets and lists every reason. Pure: the caller reads the
Dagster instance and the alert log into :class:`AssetState` values.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

HEALTHY, WARNING, DEGRADED = "Healthy", "Warning", "Degraded"
ORDER = {HEALTHY: 0, WARNING: 1, DEGRADED: 2}


@dataclass(frozen=True)
class FailedCheck:
    check: str
    blocking: bool
    reason: str
    partition: str = ""


@dataclass(frozen=True)
class AssetState:
    """What the instance and the alert log say about one asset."""

    asset: str
    stage: str
    last_materialized: datetime | None
    freshness: str | None = None  # PASS, WARN, FAIL, UNKNOWN or None (no policy)
    failed_checks: Sequence[FailedCheck] = ()
    # (kind, message) of the alerts it raised within the window
    alerts: Sequence[tuple[str, str]] = ()


@dataclass(frozen=True)
class StageHealth:
    stage: str
    status: str
    reasons: tuple[str, ...]
    assets: int
    last_materialized: datetime | None = None
    statuses: dict[str, str] = field(default_factory=dict)


def asset_status(state: AssetState) -> tuple[str, list[str]]:
    """The status of one asset and the reasons for it (empty when healthy)."""
    degraded: list[str] = []
    warning: list[str] = []
    for failed in state.failed_checks:
        where = f" ({failed.partition})" if failed.partition else ""
        text = f"{state.asset}: {failed.reason}{where}"
        (degraded if failed.blocking else warning).append(text)
    if state.freshness == "FAIL":
        degraded.append(f"{state.asset}: not refreshed within its freshness window")
    elif state.freshness == "WARN":
        warning.append(f"{state.asset}: close to missing its freshness window")
    for kind, message in state.alerts:
        (degraded if kind == "run_failure" else warning).append(
            f"{state.asset}: alert {kind}: {message}"
        )
    if state.last_materialized is None:
        warning.append(f"{state.asset}: never materialized")
    if degraded:
        return DEGRADED, degraded + warning
    return (WARNING, warning) if warning else (HEALTHY, [])


# The write-up's order of the stages; others follow, by name.
STAGE_ORDER = (
    "sources",
    "feature_refresh",
    "model_training",
    "model_deployment",
    "inference",
    "model_monitoring",
    "metric_refresh",
)


def stage_health(states: Iterable[AssetState]) -> list[StageHealth]:
    """The health of every stage named by ``states``, in the pipeline's order."""
    stages: dict[str, list[AssetState]] = {}
    for state in sorted(states, key=lambda s: s.asset):
        stages.setdefault(state.stage, []).append(state)
    rank = {name: i for i, name in enumerate(STAGE_ORDER)}
    stages = dict(sorted(stages.items(), key=lambda kv: (rank.get(kv[0], len(rank)), kv[0])))
    out = []
    for stage, members in stages.items():
        statuses, reasons = {}, []
        for state in members:
            status, why = asset_status(state)
            statuses[state.asset] = status
            reasons += why
        worst = max(statuses.values(), key=ORDER.__getitem__)
        seen = [s.last_materialized for s in members if s.last_materialized is not None]
        out.append(
            StageHealth(
                stage=stage,
                status=worst,
                reasons=tuple(reasons),
                assets=len(members),
                last_materialized=max(seen) if seen else None,
                statuses=statuses,
            )
        )
    return out


def markdown(stages: Sequence[StageHealth]) -> str:
    """A table a product manager reads: one row per stage, its status and why."""
    lines = ["| stage | status | last refreshed | why |", "|---|---|---|---|"]
    for s in stages:
        when = s.last_materialized.strftime("%Y-%m-%d %H:%M UTC") if s.last_materialized else "-"
        why = "; ".join(s.reasons) if s.reasons else "all assets fresh, every check passed"
        lines.append(f"| {s.stage} | **{s.status}** | {when} | {why} |")
    return "\n".join(lines)


# The stored table's columns, described for the catalog.
HEALTH_COLUMNS = {
    "stage": ("string", "pipeline stage (asset group)"),
    "status": ("string", "Healthy, Warning or Degraded"),
    "reasons": ("string", "why, in business words (empty when healthy)"),
    "assets": ("bigint", "assets in the stage"),
    "last_materialized": ("timestamp", "the stage's latest materialization (UTC)"),
}


def rows(stages: Sequence[StageHealth]) -> list[dict[str, object]]:
    return [
        {
            "stage": s.stage,
            "status": s.status,
            "reasons": "; ".join(s.reasons),
            "assets": s.assets,
            "last_materialized": s.last_materialized,
        }
        for s in stages
    ]
