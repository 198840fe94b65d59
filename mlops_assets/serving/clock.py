"""The endpoint's clock: the pipeline clock of the environment, so that requests answered
during a replay belong to the replayed day.

Without ``MLOPS_AS_OF`` it is the wall clock (``time.time()``). With it, the clock starts at the
as-of instant (a date alone is its midnight, UTC) when the endpoint starts and runs forward at
the pace of real time (``time.monotonic()``), so the entries of a replay keep their order and
their real spacing, and all fall on the as-of day unless the endpoint keeps running past that
day's midnight (then they fall on the next day, as they would on a wall clock).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime


def serving_clock(as_of: datetime | None) -> Callable[[], float]:
    """A function returning the endpoint's current time as ``time.time()``-style seconds (UTC):
    the wall clock, or ``as_of`` (naive UTC, as ``Settings.as_of``) plus the time elapsed since
    this call."""
    if as_of is None:
        return time.time
    base = as_of.replace(tzinfo=UTC).timestamp()
    started = time.monotonic()

    def now() -> float:
        return base + (time.monotonic() - started)

    return now
