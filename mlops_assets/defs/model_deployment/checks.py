"""Sanity rules on the champion. They can only be decided while `champion` runs (before any alias
moves), so they are check specs on the asset, reported from its body."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import dagster as dg

from mlops_assets.defs.common import Project, severity

if TYPE_CHECKING:
    # The promotion module imports polars, which loading the definitions does without.
    from mlops_assets.ml.promotion import PromotionOutcome

BASELINE_NEVER_CHAMPION = "baseline_never_champion"
CHAMPION_BEATS_BASELINES = "champion_beats_baselines"
NO_REGRESSION = "no_regression_vs_incumbent"
CHAMPION_SERVES = "champion_serves"


def champion_check_specs(p: Project) -> list[dg.AssetCheckSpec]:
    margin = p.spec.training.baseline_margin
    described = {
        BASELINE_NEVER_CHAMPION: (
            "A baseline can never become champion. Fails (and keeps the incumbent) when a "
            "baseline tops the leaderboard: the models are no better than an average."
        ),
        CHAMPION_BEATS_BASELINES: (
            f"The champion beats the best baseline by at least {margin:.0%} on the holdout."
        ),
        NO_REGRESSION: (
            "The champion after this decision is no worse than the incumbent on the same holdout."
        ),
        CHAMPION_SERVES: (
            "The chosen model version loads from the registry in a fresh process and predicts "
            "sample rows before any alias moves; if not, the incumbent stays."
        ),
    }
    return [
        dg.AssetCheckSpec(name, asset="champion", blocking=True, description=text)
        for name, text in described.items()
    ]


def _num(value: float | None) -> float:
    return float(value) if value is not None and math.isfinite(value) else float("nan")


def champion_check_results(p: Project, outcome: PromotionOutcome) -> list[dg.AssetCheckResult]:
    decision, metric = outcome.decision, outcome.decision.metric
    limits = p.settings.thresholds
    margin = p.spec.training.baseline_margin
    top = sorted(outcome.leaderboard, key=lambda e: e.value(metric))[0]
    champion = outcome.champion_entry
    baseline = decision.best_baseline
    beats = (
        champion is not None
        and baseline is not None
        and champion.value(metric) <= baseline.value(metric) * (1 - margin)
    )
    incumbent = outcome.incumbent
    regression = (
        champion is not None
        and incumbent is not None
        and champion.value(metric) > incumbent.value(metric) * (1 + 1e-9)
    )
    return [
        dg.AssetCheckResult(
            check_name=BASELINE_NEVER_CHAMPION,
            passed=not decision.baseline_topped,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata={
                "observed": f"{top.name} ({top.role}) tops the leaderboard",
                "threshold": "the top candidate is not a baseline",
                "top_score": _num(top.value(metric)),
                "champion_version": outcome.champion_version or "none",
                "reason": decision.reason,
            },
        ),
        dg.AssetCheckResult(
            check_name=CHAMPION_BEATS_BASELINES,
            passed=beats,
            severity=severity(limits.strict),
            metadata={
                "observed": _num(champion.value(metric) if champion else None),
                "threshold": _num(baseline.value(metric) * (1 - margin) if baseline else None),
                "best_baseline": baseline.name if baseline else "none",
                "margin": margin,
                "metric": metric,
            },
        ),
        dg.AssetCheckResult(
            check_name=NO_REGRESSION,
            passed=not regression,
            severity=severity(limits.strict),
            metadata={
                "observed": _num(champion.value(metric) if champion else None),
                "threshold": _num(incumbent.value(metric) if incumbent else None),
                "incumbent_version": incumbent.version if incumbent else "none",
                "metric": metric,
            },
        ),
        dg.AssetCheckResult(
            check_name=CHAMPION_SERVES,
            passed=outcome.serves_ok,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata={
                "observed": "loads and predicts" if outcome.serves_ok else "failed",
                "threshold": "loads from its registry URI and predicts sample rows",
                "version": outcome.serves_version or "none",
                "detail": outcome.serves_detail[-2000:],
            },
        ),
    ]
