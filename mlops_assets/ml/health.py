"""One health status per pipeline stage, in business words: Healthy, Warning or Degraded, with
the reason. The rule, per asset, worst first:

- **Degraded**: the latest evaluation of an ERROR check failed, its freshness policy failed,
  or a run that built it failed and alerted within the alert window;
- **Warning**: the latest evaluation of a WARN check failed, its freshness policy warns, it
  raised any other alert within the window (e.g. persistent drift), or it was never built;
- **Healthy** otherwise.

A stage takes the worst status of its assets, with every reason. Pure: the caller reads the
Dagster instance and the alert log into :class:`AssetState` values.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import polars as pl

HEALTHY, WARNING, DEGRADED = "Healthy", "Warning", "Degraded"
RANK = {HEALTHY: 0, WARNING: 1, DEGRADED: 2}
# The write-up's order of the stages; any other group follows, by name.
STAGE_ORDER = (
    "sources",
    "feature_refresh",
    "model_training",
    "model_deployment",
    "inference",
    "model_monitoring",
    "metric_refresh",
)
RUN_FAILURE = "run_failure"


@dataclass(frozen=True)
class FailedCheck:
    """The latest evaluation of a check failed: ``reason`` in words, ``days`` it failed on."""

    check: str
    blocking: bool
    reason: str
    days: str = ""


@dataclass(frozen=True)
class AssetState:
    """What the instance and the alert log say about one asset."""

    asset: str
    stage: str
    last_materialized: datetime | None
    freshness: str | None = None  # PASS, WARN, FAIL, UNKNOWN, or None without a policy
    failed_checks: Sequence[FailedCheck] = ()
    alerts: Sequence[tuple[str, str]] = ()  # (kind, message) within the alert window


@dataclass(frozen=True)
class AssetHealth:
    state: AssetState
    status: str
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class StageHealth:
    stage: str
    status: str
    assets: tuple[AssetHealth, ...]

    @property
    def reasons(self) -> tuple[str, ...]:
        return tuple(r for a in self.assets for r in a.reasons)

    @property
    def last_materialized(self) -> datetime | None:
        seen = [a.state.last_materialized for a in self.assets if a.state.last_materialized]
        return max(seen) if seen else None


def asset_health(state: AssetState) -> AssetHealth:
    """The status of one asset and the reasons for it (none when healthy)."""
    degraded: list[str] = []
    warning: list[str] = []
    for failed in state.failed_checks:
        on = f" (failed on {failed.days})" if failed.days and failed.days != "none" else ""
        (degraded if failed.blocking else warning).append(f"{failed.reason}{on}")
    if state.freshness == "FAIL":
        degraded.append("not refreshed within its freshness window")
    elif state.freshness == "WARN":
        warning.append("close to missing its freshness window")
    for kind, message in state.alerts:
        where = degraded if kind == RUN_FAILURE else warning
        where.append(f"alert {kind.replace('_', ' ')}: {message}")
    if state.last_materialized is None:
        warning.append("never built yet")
    status = DEGRADED if degraded else WARNING if warning else HEALTHY
    named = tuple(f"{state.asset}: {r}" for r in degraded + warning)
    return AssetHealth(state, status, named)


def stage_health(states: Iterable[AssetState]) -> list[StageHealth]:
    """The health of every stage named by ``states``, in the pipeline's order."""
    stages: dict[str, list[AssetHealth]] = {}
    for state in sorted(states, key=lambda s: s.asset):
        stages.setdefault(state.stage, []).append(asset_health(state))
    rank = {name: i for i, name in enumerate(STAGE_ORDER)}
    ordered = sorted(stages, key=lambda s: (rank.get(s, len(rank)), s))
    return [
        StageHealth(s, max((a.status for a in stages[s]), key=RANK.__getitem__), tuple(stages[s]))
        for s in ordered
    ]


def markdown(stages: Sequence[StageHealth]) -> str:
    """A table a product manager reads: one row per stage, its status and why."""
    lines = ["| stage | status | last refreshed | why |", "|---|---|---|---|"]
    for s in stages:
        when = s.last_materialized.strftime("%Y-%m-%d %H:%M UTC") if s.last_materialized else "-"
        why = "; ".join(s.reasons) or "every asset built, fresh, every check passed, no alert"
        lines.append(f"| {s.stage} | **{s.status}** | {when} | {why} |")
    return "\n".join(lines)


def frame(stages: Sequence[StageHealth]) -> pl.DataFrame:
    """One row per asset with its stage's status (the ``pipeline_health`` table)."""
    rows = [
        {
            "stage": s.stage,
            "stage_status": s.status,
            "asset": a.state.asset,
            "status": a.status,
            "reason": "; ".join(a.reasons),
            "last_materialized": a.state.last_materialized,
            "freshness": a.state.freshness,
            "failed_checks": len(a.state.failed_checks),
            "open_alerts": len(a.state.alerts),
        }
        for s in stages
        for a in s.assets
    ]
    schema: dict[str, Any] = {
        "stage": pl.String,
        "stage_status": pl.String,
        "asset": pl.String,
        "status": pl.String,
        "reason": pl.String,
        "last_materialized": pl.Datetime("us", "UTC"),
        "freshness": pl.String,
        "failed_checks": pl.Int64,
        "open_alerts": pl.Int64,
    }
    return pl.DataFrame(rows, schema=schema)


def stage_metrics(stages: Sequence[StageHealth]) -> dict[str, str | int]:
    """Per stage its status, and how many stages are Degraded or Warning (asset metadata)."""
    return {
        **{f"status_{s.stage}": s.status for s in stages},
        "degraded_stages": sum(s.status == DEGRADED for s in stages),
        "warning_stages": sum(s.status == WARNING for s in stages),
    }
