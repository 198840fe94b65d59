"""The alert sink: every alert becomes one JSON line in the environment's alert log and, when a
webhook is configured, one POST (Slack's `{"text": ...}` format or the raw JSON).

Duplicates are suppressed: an alert for the same asset, partition and cause within the cooldown
is not sent again (keyed by partition, so the alerts of a history do not depend on the order or
batching of the runs that replay it). The log itself is the memory of what was sent, so
suppression holds across processes.
"""

from __future__ import annotations

import fcntl
import json
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from mlops_assets.environments import WEBHOOK_FORMATS

KINDS = ("run_failure", "check_failed", "freshness", "drift_persistent")


@dataclass(frozen=True)
class Alert:
    env: str
    kind: str
    asset: str
    partition: str
    cause: str
    message: str
    run_id: str = ""
    run_url: str = ""
    asset_url: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    def dedup_key(self) -> str:
        return f"{self.asset}|{self.partition}|{self.cause}"

    def text(self) -> str:
        where = f"{self.asset}" + (f" [{self.partition}]" if self.partition else "")
        if self.run_url:
            link = f" <{self.run_url}|run>"
        elif self.asset_url:
            link = f" <{self.asset_url}|asset>"
        else:
            link = ""
        return f":rotating_light: [{self.env}] {self.kind} on {where}: {self.message}{link}"


class AlertSink:
    """Writes alerts to a JSONL file and optionally posts them to a webhook."""

    def __init__(
        self,
        path: str | Path,
        webhook_url: str | None = None,
        webhook_format: str = "slack",
        cooldown: timedelta = timedelta(hours=6),
        timeout_s: float = 5.0,
    ):
        if webhook_format not in WEBHOOK_FORMATS:
            raise ValueError(f"webhook format {webhook_format!r} is not one of {WEBHOOK_FORMATS}")
        self.path = Path(path)
        self.webhook_url = webhook_url or None
        self.webhook_format = webhook_format
        self.cooldown = cooldown
        self.timeout_s = timeout_s

    def read(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        with open(self.path) as fh:
            return [json.loads(line) for line in fh if line.strip()]

    def _recent(self, key: str, now: datetime) -> bool:
        since = now - self.cooldown
        return any(
            row.get("dedup_key") == key
            and not row.get("suppressed")
            and datetime.fromisoformat(row["ts"]) >= since
            for row in self.read()
        )

    def _post(self, alert: Alert, webhook_url: str) -> str:
        payload = {"text": alert.text()} if self.webhook_format == "slack" else asdict(alert)
        request = urllib.request.Request(
            webhook_url,
            data=json.dumps(payload).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                return f"posted ({response.status})"
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            return f"webhook failed: {exc}"

    def send(self, alert: Alert, now: datetime | None = None) -> bool:
        """Record (and post) ``alert`` unless the same asset and cause alerted within the
        cooldown. Returns whether it was sent."""
        now = now or datetime.now(UTC)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if self._recent(alert.dedup_key(), now):
                return False
            delivery = self._post(alert, self.webhook_url) if self.webhook_url else "log only"
            row = {
                "ts": now.isoformat(),
                "dedup_key": alert.dedup_key(),
                "delivery": delivery,
                **asdict(alert),
            }
            with open(self.path, "a") as fh:
                fh.write(json.dumps(row, default=str) + "\n")
        return True
