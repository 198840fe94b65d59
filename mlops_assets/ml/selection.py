"""The leaderboard and the promotion rule, as pure functions.

Lower metric is better (wape, mae, rmse). For a training date the leaderboard holds every
candidate scored on the holdout, baselines included, and the incumbent champion re-scored on the
same holdout. The rule:

1. A baseline can never become champion.
2. If a baseline tops the leaderboard (the incumbent included; a tie counts as topping), the
   incumbent is kept and ``baseline_topped`` is set: nothing we have beats a naive average.
3. Otherwise the best non-baseline candidate is promoted only if it beats the best baseline by
   ``baseline_margin`` and the incumbent by ``promotion_margin``. "Beats by m" means
   ``value < reference * (1 - m)`` (relative and strict, so a tie never promotes).
4. With no incumbent the best non-baseline becomes the first champion if it beats the baselines.

A missing or non-finite metric counts as the worst possible score.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

ACTIONS = ("promote", "keep", "first")
BASELINE = "baseline"
MODEL = "model"


class SelectionError(ValueError):
    """The leaderboard cannot be ranked (empty, unknown role or metric)."""


@dataclass(frozen=True)
class Entry:
    """One scored model: a candidate of this training date or the incumbent champion."""

    name: str
    role: str
    version: str | None
    metrics: dict[str, float]
    run_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.role not in (BASELINE, MODEL):
            raise SelectionError(f"entry {self.name!r}: role {self.role!r} is not baseline/model")

    @property
    def is_baseline(self) -> bool:
        return self.role == BASELINE

    def value(self, metric: str) -> float:
        """The entry's metric; missing or non-finite is +inf (worst)."""
        raw = self.metrics.get(metric)
        if raw is None:
            return math.inf
        value = float(raw)
        return value if math.isfinite(value) else math.inf


@dataclass(frozen=True)
class Decision:
    """What the champion step does and why."""

    action: str
    chosen: Entry | None
    reason: str
    baseline_topped: bool
    best_baseline: Entry | None
    best_model: Entry | None
    incumbent: Entry | None
    metric: str
    improvement_vs_baseline: float | None
    improvement_vs_incumbent: float | None

    @property
    def promoted(self) -> bool:
        """True when the champion changes (``promote`` or ``first``)."""
        return self.action in ("promote", "first")

    def metadata(self) -> dict[str, Any]:
        """Flat numbers and labels for Dagster metadata."""

        def num(value: float | None) -> float:
            return float("nan") if value is None or not math.isfinite(value) else float(value)

        def label(entry: Entry | None) -> str:
            return "none" if entry is None else f"{entry.name} v{entry.version or '-'}"

        return {
            "action": self.action,
            "champion": label(self.chosen),
            "reason": self.reason,
            "baseline_topped": self.baseline_topped,
            "best_baseline": label(self.best_baseline),
            "best_model": label(self.best_model),
            "incumbent": label(self.incumbent),
            "metric": self.metric,
            "improvement_vs_baseline": num(self.improvement_vs_baseline),
            "improvement_vs_incumbent": num(self.improvement_vs_incumbent),
        }


def relative_improvement(value: float, reference: float) -> float:
    """How much lower ``value`` is than ``reference``, relative: 0.1 = 10% better."""
    if math.isinf(reference):
        return 0.0 if math.isinf(value) else math.inf
    if reference == 0:
        return 0.0 if value == 0 else -math.inf
    return (reference - value) / reference


def beats(value: float, reference: float, margin: float) -> bool:
    """``value`` is lower than ``reference`` by more than the relative ``margin``."""
    if math.isinf(value):
        return False
    if math.isinf(reference):
        return True
    return value < reference * (1.0 - margin)


def rank(leaderboard: Sequence[Entry], metric: str, incumbent: Entry | None = None) -> list[Entry]:
    """Entries best first (ties: baselines first, then by name); the incumbent is included."""
    entries = list(leaderboard) + ([incumbent] if incumbent is not None else [])
    return sorted(entries, key=lambda e: (e.value(metric), not e.is_baseline, e.name))


def _best(entries: Sequence[Entry], metric: str) -> Entry | None:
    ranked = rank(entries, metric)
    return ranked[0] if ranked else None


def _label(entry: Entry) -> str:
    return f"{entry.name} (v{entry.version})" if entry.version else entry.name


def decide(
    leaderboard: Sequence[Entry],
    incumbent: Entry | None,
    metric: str,
    promotion_margin: float,
    baseline_margin: float,
) -> Decision:
    """Apply the promotion rule of the module docstring to one training date's leaderboard."""
    if not leaderboard:
        raise SelectionError("the leaderboard is empty: no candidate was scored")
    if incumbent is not None and incumbent.is_baseline:
        raise SelectionError(
            f"incumbent {incumbent.name!r} is a baseline, which cannot be champion"
        )
    best_baseline = _best([e for e in leaderboard if e.is_baseline], metric)
    best_model = _best([e for e in leaderboard if not e.is_baseline], metric)
    top = rank(leaderboard, metric, incumbent)[0]

    vs_baseline = vs_incumbent = None
    if best_model is not None and best_baseline is not None:
        vs_baseline = relative_improvement(best_model.value(metric), best_baseline.value(metric))
    if best_model is not None and incumbent is not None:
        vs_incumbent = relative_improvement(best_model.value(metric), incumbent.value(metric))

    def decision(action: str, chosen: Entry | None, reason: str, topped: bool = False) -> Decision:
        return Decision(
            action=action,
            chosen=chosen,
            reason=reason,
            baseline_topped=topped,
            best_baseline=best_baseline,
            best_model=best_model,
            incumbent=incumbent,
            metric=metric,
            improvement_vs_baseline=vs_baseline,
            improvement_vs_incumbent=vs_incumbent,
        )

    keeping = f"keeping {_label(incumbent)}" if incumbent else "no champion yet"
    if top.is_baseline:
        return decision(
            "keep",
            incumbent,
            f"baseline {top.name} tops the leaderboard ({metric} {top.value(metric):.4f}); "
            f"{keeping}",
            topped=True,
        )
    if best_model is None:
        return decision("keep", incumbent, f"no non-baseline candidate was scored; {keeping}")
    value = best_model.value(metric)
    if best_baseline is not None and not beats(value, best_baseline.value(metric), baseline_margin):
        return decision(
            "keep",
            incumbent,
            f"best model {best_model.name} ({metric} {value:.4f}) does not beat baseline "
            f"{best_baseline.name} ({best_baseline.value(metric):.4f}) by {baseline_margin:.1%}; "
            f"{keeping}",
        )
    against = (
        f"beats baseline {best_baseline.name} by {vs_baseline:.1%}"
        if best_baseline is not None and vs_baseline is not None
        else "no baseline on the leaderboard"
    )
    if incumbent is None:
        return decision(
            "first",
            best_model,
            f"first champion: {best_model.name} ({metric} {value:.4f}) {against}",
        )
    if not beats(value, incumbent.value(metric), promotion_margin):
        return decision(
            "keep",
            incumbent,
            f"best model {_label(best_model)} ({metric} {value:.4f}) does not beat the incumbent "
            f"{_label(incumbent)} ({incumbent.value(metric):.4f}) by {promotion_margin:.1%}; "
            f"{keeping}",
        )
    return decision(
        "promote",
        best_model,
        f"promote {_label(best_model)}: {metric} {value:.4f} beats the incumbent "
        f"{_label(incumbent)} ({incumbent.value(metric):.4f}) by {vs_incumbent:.1%} and {against}",
    )


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.4f}" if math.isfinite(value) else "n/a"


def leaderboard_markdown(
    leaderboard: Sequence[Entry],
    incumbent: Entry | None,
    metric: str,
    decision: Decision | None = None,
) -> str:
    """The leaderboard as a markdown table, best first, with the decision's champion marked."""
    names = [
        metric,
        *sorted({m for e in [*leaderboard, incumbent] if e for m in e.metrics} - {metric}),
    ]
    header = ["rank", "candidate", "role", "version", *names, "note"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for i, entry in enumerate(rank(leaderboard, metric, incumbent), 1):
        role = "incumbent" if entry is incumbent else entry.role
        notes = []
        if decision is not None and entry is decision.chosen:
            notes.append("**champion**")
        if entry.is_baseline and i == 1:
            notes.append("baseline on top")
        values = [_fmt(entry.metrics.get(m)) for m in names]
        row = [str(i), entry.name, role, entry.version or "-", *values, ", ".join(notes)]
        lines.append("| " + " | ".join(row) + " |")
    if decision is not None:
        lines += ["", f"**Decision: {decision.action}** — {decision.reason}"]
    return "\n".join(lines)
