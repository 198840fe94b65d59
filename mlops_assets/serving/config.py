"""Limits and timers of the online endpoint (light: no web framework imported)."""

from __future__ import annotations

from dataclasses import dataclass, fields

from mlops_assets.ml.promotion import CHAMPION_ALIAS


@dataclass(frozen=True)
class ServingConfig:
    """Limits and timers of the endpoint (``serve(**options)`` takes these names)."""

    alias: str = CHAMPION_ALIAS
    max_keys: int = 1000
    max_body_bytes: int = 1 << 20
    model_poll_seconds: float = 1.5
    store_poll_seconds: float = 1.0
    retry_seconds: float = 30.0
    log_flush_seconds: float = 0.5
    log_flush_entries: int = 1000

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
