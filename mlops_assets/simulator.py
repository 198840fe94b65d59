"""The embedded dataset: a simulated TV advertising business.

Each row is one TV ad airing: a network, a daypart, an hour, a creative (with its launch date and
wear-out), a duration, the spend and the estimated audience. The response, web visits attributed to
the airing, depends on them non-linearly with noise and lands ``label_lag_days`` after the airing.

Everything is deterministic for a seed and a date, any date can be generated on demand, and the
scale runs from about a hundred to a million airings a day. Drift and data incidents can be
injected on chosen dates through the options of the dataset spec's source.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np
import polars as pl

NETWORKS = ("ABC", "CBS", "NBC", "FOX", "ESPN", "CNN", "HGTV", "TLC", "AMC", "BRAVO", "FX", "TBS")
DAYPARTS = ("morning", "daytime", "early_fringe", "prime", "late_night")
_DAYPART_HOURS = {
    "morning": (6, 9),
    "daytime": (9, 16),
    "early_fringe": (16, 20),
    "prime": (20, 23),
    "late_night": (23, 26),
}
_DAYPART_WEIGHT = np.array([0.15, 0.30, 0.20, 0.20, 0.15])
_DAYPART_RESPONSE = np.array([0.8, 0.6, 1.0, 1.6, 1.3])
_DAYPART_COST = np.array([0.7, 0.5, 0.9, 1.8, 0.8])
_DURATIONS = np.array([15, 30, 60])
_DURATION_RESPONSE = np.array([0.7, 1.0, 1.3])
_EPOCH = date(2024, 1, 1)
_CREATIVE_EVERY_DAYS = 9
_CREATIVE_LIFETIME_DAYS = 120

INCIDENT_KINDS = (
    "null_storm",
    "schema_change",
    "empty_day",
    "negative_target",
    "duplicate_keys",
    "segment_outage",
)
DRIFT_KINDS = ("audience_shift", "creative_mix", "response_shift")


class SimulatorError(ValueError):
    """The simulator's options are invalid."""


@dataclass(frozen=True)
class Injection:
    """A drift (from its date on) or a data incident (on its date only)."""

    kind: str
    on: date
    column: str | None = None
    network: str | None = None
    factor: float = 3.0
    share: float = 0.6
    rename_to: str | None = None


@dataclass(frozen=True)
class SimulatorConfig:
    seed: int = 7
    airings_per_day: int = 400
    label_lag_days: int = 2
    drifts: tuple[Injection, ...] = field(default_factory=tuple)
    incidents: tuple[Injection, ...] = field(default_factory=tuple)
    # A numeric event column holding the day's outcome plus a little noise: a target leak, for
    # the leak guard's tests. None (the default) adds nothing.
    leak_column: str | None = None

    @classmethod
    def from_options(cls, options: dict[str, Any], label_lag_days: int) -> SimulatorConfig:
        """Build a config from the ``source.options`` mapping of a dataset spec."""
        try:
            drifts = tuple(_injection(d, DRIFT_KINDS) for d in options.get("drifts") or [])
            incidents = tuple(_injection(d, INCIDENT_KINDS) for d in options.get("incidents") or [])
            per_day = int(options.get("airings_per_day", 400))
        except (TypeError, ValueError, KeyError) as exc:
            raise SimulatorError(f"simulator options: {exc}") from exc
        if not 0 < per_day <= 2_000_000:
            raise SimulatorError("simulator option 'airings_per_day' must be in 1..2,000,000")
        return cls(
            seed=int(options.get("seed", 7)),
            airings_per_day=per_day,
            label_lag_days=label_lag_days,
            drifts=drifts,
            incidents=incidents,
            leak_column=options.get("leak_column") or None,
        )


def _injection(raw: dict[str, Any], kinds: tuple[str, ...]) -> Injection:
    kind = raw["kind"]
    if kind not in kinds:
        raise ValueError(f"unknown kind {kind!r}; known: {', '.join(kinds)}")
    on = raw["date"] if isinstance(raw["date"], date) else date.fromisoformat(str(raw["date"]))
    return Injection(
        kind=kind,
        on=on,
        column=raw.get("column"),
        network=raw.get("network"),
        factor=float(raw.get("factor", 3.0)),
        share=float(raw.get("share", 0.6)),
        rename_to=raw.get("rename_to"),
    )


EVENT_SCHEMA = {
    "air_date": pl.Date,
    "airing_id": pl.String,
    "network": pl.String,
    "daypart": pl.String,
    "creative_id": pl.String,
    "hour": pl.Int32,
    "duration_s": pl.Int32,
    "creative_age_days": pl.Int32,
    "spend": pl.Float64,
    "audience_k": pl.Float64,
}
OUTCOME_SCHEMA = {
    "air_date": pl.Date,
    "airing_id": pl.String,
    "visits": pl.Float64,
    "landed_on": pl.Date,
}


def _network_params(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng([seed, 1])
    base_rate = rng.lognormal(mean=np.log(0.08), sigma=0.5, size=len(NETWORKS))
    audience = rng.lognormal(mean=np.log(300.0), sigma=0.7, size=len(NETWORKS))
    cpm = rng.uniform(8.0, 30.0, size=len(NETWORKS))
    # Networks respond differently by daypart: an interaction trees pick up and averages miss.
    interaction = rng.lognormal(mean=0.0, sigma=0.45, size=(len(NETWORKS), len(DAYPARTS)))
    return base_rate, audience, cpm, interaction


def _creative_quality(seed: int, index: np.ndarray) -> np.ndarray:
    # Stable per creative, independent of the day it is drawn on.
    return np.exp(np.sin(index * 12.9898 + seed * 78.233) * 0.6)


def simulate_day(day: date, config: SimulatorConfig) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Return (events, outcomes) of one day; identical for the same seed, date and options."""
    incidents = {i.kind: i for i in config.incidents if i.on == day}
    if "empty_day" in incidents:
        schema = dict(EVENT_SCHEMA)
        if config.leak_column:
            schema[config.leak_column] = pl.Float64
        return pl.DataFrame(schema=schema), pl.DataFrame(schema=OUTCOME_SCHEMA)

    rng = np.random.default_rng([config.seed, day.toordinal()])
    n = config.airings_per_day
    base_rate, net_audience, cpm, interaction = _network_params(config.seed)
    active = [d for d in config.drifts if d.on <= day]

    net_idx = rng.integers(0, len(NETWORKS), size=n)
    dp_idx = rng.choice(len(DAYPARTS), size=n, p=_DAYPART_WEIGHT)
    lo = np.array([_DAYPART_HOURS[d][0] for d in DAYPARTS])[dp_idx]
    hi = np.array([_DAYPART_HOURS[d][1] for d in DAYPARTS])[dp_idx]
    hour = (lo + np.floor(rng.random(n) * (hi - lo)).astype(int)) % 24
    dur_idx = rng.choice(3, size=n, p=[0.3, 0.55, 0.15])

    # Creatives: one launches every few days and airs for a few months.
    day_num = (day - _EPOCH).days
    newest = day_num // _CREATIVE_EVERY_DAYS
    oldest = max(0, newest - _CREATIVE_LIFETIME_DAYS // _CREATIVE_EVERY_DAYS)
    pool = np.arange(oldest, newest + 1)
    weights = np.linspace(1.0, 2.0, len(pool))
    if any(d.kind == "creative_mix" for d in active):
        weights = np.where(pool >= newest - 1, 10.0, 0.2)
    creative = rng.choice(pool, size=n, p=weights / weights.sum())
    age = day_num - creative * _CREATIVE_EVERY_DAYS

    audience = net_audience[net_idx] * rng.lognormal(0.0, 0.6, size=n)
    audience *= np.where(dp_idx == 3, 2.2, 1.0) * np.where(dp_idx == 1, 0.6, 1.0)
    for drift in active:
        if drift.kind == "audience_shift":
            hit = net_idx == NETWORKS.index(drift.network) if drift.network else True
            audience = np.where(hit, audience * drift.factor, audience)
    spend = audience * cpm[net_idx] * _DAYPART_COST[dp_idx] * rng.lognormal(0.0, 0.2, size=n)
    spend *= _DURATIONS[dur_idx] / 30.0

    wear = 0.35 + 0.65 * np.exp(-age / 40.0)
    hour_shape = 1.0 + 0.25 * np.sin((hour + 3) / 24.0 * 2 * np.pi)
    saturation = 1.0 / (1.0 + audience / 3000.0)
    rate = (
        base_rate[net_idx]
        * _DAYPART_RESPONSE[dp_idx]
        * interaction[net_idx, dp_idx]
        * _creative_quality(config.seed, creative)
        * wear
        * _DURATION_RESPONSE[dur_idx]
        * hour_shape
        * saturation
    )
    for drift in active:
        if drift.kind == "response_shift":
            hit = net_idx == NETWORKS.index(drift.network) if drift.network else True
            rate = np.where(hit, rate * drift.factor, rate)
    expected = audience * rate
    visits = rng.poisson(expected * rng.gamma(8.0, 1.0 / 8.0, size=n)).astype(float)

    prefix = day.strftime("%Y%m%d-")
    events = pl.DataFrame(
        {
            "airing_id": pl.int_range(0, n, eager=True).cast(pl.String).str.zfill(7),
            "network": np.array(NETWORKS)[net_idx],
            "daypart": np.array(DAYPARTS)[dp_idx],
            "creative_id": np.char.add("cr_", creative.astype(str)),
            "hour": hour.astype(np.int32),
            "duration_s": _DURATIONS[dur_idx].astype(np.int32),
            "creative_age_days": age.astype(np.int32),
            "spend": np.round(spend, 2),
            "audience_k": np.round(audience, 3),
        }
    ).select(
        pl.lit(day, dtype=pl.Date).alias("air_date"),
        (pl.lit(prefix) + pl.col("airing_id")).alias("airing_id"),
        pl.exclude("airing_id"),
    )
    outcomes = pl.DataFrame(
        {
            "air_date": events["air_date"],
            "airing_id": events["airing_id"],
            "visits": visits,
        }
    ).with_columns(
        pl.lit(day + timedelta(days=config.label_lag_days), dtype=pl.Date).alias("landed_on")
    )
    if config.leak_column:
        noise = rng.normal(0.0, 0.5, size=n)
        events = events.with_columns(pl.Series(config.leak_column, np.round(visits + noise, 3)))
    return _apply_incidents(events, outcomes, incidents, rng)


def _apply_incidents(
    events: pl.DataFrame,
    outcomes: pl.DataFrame,
    incidents: dict[str, Injection],
    rng: np.random.Generator,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    if (storm := incidents.get("null_storm")) is not None:
        col = storm.column or "audience_k"
        mask = rng.random(events.height) < storm.share
        events = events.with_columns(
            pl.when(pl.Series(mask)).then(None).otherwise(pl.col(col)).alias(col)
        )
    if (neg := incidents.get("negative_target")) is not None:
        mask = rng.random(outcomes.height) < neg.share
        outcomes = outcomes.with_columns(
            pl.when(pl.Series(mask)).then(-pl.col("visits") - 1).otherwise(pl.col("visits"))
        )
    if (outage := incidents.get("segment_outage")) is not None:
        # One network airs nothing that day (a feed outage): its airings and outcomes are gone.
        network = outage.network or "ESPN"
        events = events.filter(pl.col("network") != network)
        outcomes = outcomes.filter(pl.col("airing_id").is_in(events["airing_id"].implode()))
    if "duplicate_keys" in incidents and events.height:
        events = pl.concat([events, events.head(max(1, events.height // 10))])
    if (change := incidents.get("schema_change")) is not None:
        col = change.column or "spend"
        events = events.rename({col: change.rename_to or f"{col}_v2"})
    return events, outcomes


def simulate_events(day: date, config: SimulatorConfig) -> pl.DataFrame:
    return simulate_day(day, config)[0]


def outcomes_landed(day: date, label_lag_days: int, as_of: datetime) -> bool:
    """Outcomes of ``day`` are known once the day they land on has begun."""
    return as_of.date() >= day + timedelta(days=label_lag_days)


def simulate_outcomes(day: date, config: SimulatorConfig) -> pl.DataFrame:
    return simulate_day(day, config)[1]
