"""Warehouse maintenance: merge the small Parquet files daily partitions leave, expire snapshots
older than the environment's retention, and delete the files no snapshot needs any more.

A snapshot a recorded materialization names (the snapshot it wrote or read, in its
``ducklake/...`` metadata) within the retention window is kept, however old: what a recent
prediction or decision was computed from stays readable, so it can be reproduced.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from mlops_assets.storage.io_manager import READ_SNAPSHOTS, SNAPSHOT
from mlops_assets.storage.warehouse import LAKE, Warehouse

if TYPE_CHECKING:
    import dagster as dg

    from mlops_assets.environments import Settings

# Days of snapshots kept per environment, unless `mlops-assets maintain --retention-days` says.
RETENTION_DAYS = {"dev": 7, "staging": 14, "prod": 30}


@dataclass
class MaintenanceReport:
    retention_days: int
    dry_run: bool
    snapshots_before: int = 0
    expired: list[int] = field(default_factory=list)
    kept_referenced: list[int] = field(default_factory=list)
    files_before: int = 0
    files_after: int = 0

    def describe(self) -> str:
        verb = "would expire" if self.dry_run else "expired"
        kept = ", ".join(map(str, self.kept_referenced)) or "none"
        return (
            f"retention {self.retention_days} days: {verb} {len(self.expired)} of "
            f"{self.snapshots_before} snapshots; kept as referenced by a recorded "
            f"materialization: {kept}; data files {self.files_before} -> {self.files_after}"
        )


def referenced_snapshots(instance: dg.DagsterInstance, since: datetime) -> set[int]:
    """Every snapshot a materialization recorded since ``since`` wrote or read."""
    import dagster as dg

    found: set[int] = set()
    for key in instance.get_asset_keys():
        cursor = None
        while True:
            page = instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=key, after_timestamp=since.timestamp()),
                limit=500,
                cursor=cursor,
            )
            for record in page.records:
                event = record.asset_materialization
                metadata = event.metadata if event is not None else {}
                written = metadata[SNAPSHOT].value if SNAPSHOT in metadata else None
                if isinstance(written, int):
                    found.add(written)
                reads = metadata.get(READ_SNAPSHOTS)
                if reads is not None and isinstance(reads.value, dict):
                    found.update(int(v) for v in reads.value.values())
            if not page.has_more:
                break
            cursor = page.cursor
    return found


def maintain(
    wh: Warehouse,
    settings: Settings,
    retention_days: int | None = None,
    dry_run: bool = False,
    instance: dg.DagsterInstance | None = None,
    now: datetime | None = None,
) -> MaintenanceReport:
    """Merge small files, expire the snapshots past ``retention_days`` that no materialization
    recorded within them names, and delete the files left unneeded."""
    import dagster as dg

    days = RETENTION_DAYS[settings.env] if retention_days is None else retention_days
    report = MaintenanceReport(retention_days=days, dry_run=dry_run)
    cutoff = (now or datetime.now(UTC)) - timedelta(days=days)
    own = instance is None
    if instance is None:
        instance = dg.DagsterInstance.from_config(str(settings.dagster_home))
    try:
        keep = referenced_snapshots(instance, cutoff)
    finally:
        if own:
            instance.dispose()
    with wh.connect() as con:
        rows = con.execute(
            f"SELECT snapshot_id, snapshot_time FROM ducklake_snapshots('{LAKE}') "
            "ORDER BY snapshot_id"
        ).fetchall()
        report.snapshots_before = len(rows)
        latest = rows[-1][0] if rows else None
        old = [sid for sid, at in rows if at < cutoff and sid != latest]
        report.expired = [sid for sid in old if sid not in keep]
        report.kept_referenced = [sid for sid in old if sid in keep]
        report.files_before = _data_files(wh)
        if dry_run:
            report.files_after = report.files_before
            return report
        con.execute(f"CALL ducklake_merge_adjacent_files('{LAKE}')")
        if report.expired:
            listed = ", ".join(str(int(sid)) for sid in report.expired)
            con.execute(f"CALL ducklake_expire_snapshots('{LAKE}', versions => [{listed}])")
        con.execute(f"CALL ducklake_cleanup_old_files('{LAKE}', cleanup_all => true)")
    report.files_after = _data_files(wh)
    return report


def _data_files(wh: Warehouse) -> int:
    """Parquet files (data and deletes) under a local data path; -1 for an object store."""
    path = Path(wh.data_path)
    if "://" in wh.data_path:
        return -1
    return sum(1 for _ in path.rglob("*.parquet")) if path.exists() else 0
