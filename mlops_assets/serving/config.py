"""Limits and timers of the online endpoint (light: no web framework imported)."""

from __future__ import annotations

from dataclasses import dataclass, fields

from mlops_assets.ml.promotion import CHAMPION_ALIAS


@dataclass(frozen=True)
class ServingConfig:
    """Limits and timers of the endpoint (``serve(**options)`` takes these names).

    ``keep_alive_seconds``: a kept-alive connection with no new request for this long is closed.
    ``read_timeout_seconds``: a /predict body must have fully arrived this long after the
    request reached the endpoint, else the answer is 408 and the connection is closed.
    ``max_log_entry_bytes``: a request log line above this is capped (see
    :mod:`mlops_assets.storage.request_log`).
    """

    alias: str = CHAMPION_ALIAS
    max_keys: int = 1000
    max_body_bytes: int = 1 << 20
    model_poll_seconds: float = 1.5
    store_poll_seconds: float = 1.0
    retry_seconds: float = 30.0
    keep_alive_seconds: float = 5.0
    read_timeout_seconds: float = 10.0
    # The request log's default (storage.request_log.DEFAULT_MAX_ENTRY_BYTES; not imported
    # here, as the log module loads polars and this one is read by the command line).
    max_log_entry_bytes: int = 64 * 1024

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name != "alias" and not value > 0:
                raise ValueError(f"serving option {f.name} must be > 0, got {value!r}")
        if not self.alias:
            raise ValueError("serving option alias must not be empty")

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))
