"""Reproduce a past batch prediction from what was recorded when it was made.

The ``predictions`` materialization of day D records the DuckLake snapshot it wrote and the
snapshot it read its features at. Reproducing the prediction of one event re-reads that event's
features at the read snapshot (not today's rows, which may have been recomputed since), loads the
model version recorded on the prediction's row from the registry, predicts again and compares.
The answer names the chain: feature partition and snapshot -> the candidate's MLflow run -> the
champion decision that put that version in force (and who approved it, when a person did).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

from mlops_assets.storage.io_manager import READ_SNAPSHOTS, SNAPSHOT
from mlops_assets.storage.warehouse import Warehouse

if TYPE_CHECKING:
    import dagster as dg

    from mlops_assets.dataset import DatasetSpec
    from mlops_assets.environments import Settings

# Two predictions match when they differ by at most this, relative to their size (a compiled
# model and the booster agree within 1e-9).
TOLERANCE = 1e-9


class ReproduceError(RuntimeError):
    """A record, snapshot or artifact the reproduction needs is missing; the message names it."""


@dataclass(frozen=True)
class Recorded:
    """What the predictions materialization of a day recorded."""

    run_id: str
    written: int
    features_read: int


def recorded_predictions(instance: dg.DagsterInstance, day: date) -> Recorded:
    import dagster as dg

    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(dg.AssetKey("predictions"), asset_partitions=[day.isoformat()]),
        limit=1,
    ).records
    event = records[0].event_log_entry if records else None
    materialization = records[0].asset_materialization if records else None
    if event is None or materialization is None:
        raise ReproduceError(f"no materialization of predictions for {day} is recorded")
    metadata = materialization.metadata
    reads = metadata.get(READ_SNAPSHOTS)
    read = reads.value if reads is not None and isinstance(reads.value, dict) else {}
    written = metadata.get(SNAPSHOT)
    if written is None or "features" not in read:
        raise ReproduceError(
            f"the predictions materialization of {day} (run {event.run_id}) records no "
            "warehouse snapshot; it predates snapshot lineage: materialize it again"
        )
    return Recorded(event.run_id, int(written.value), int(read["features"]))  # type: ignore[arg-type]


def _read(wh: Warehouse, table: str, column: str, day: date, snapshot: int):
    try:
        return wh.read(table, column, day, day + timedelta(days=1), snapshot=snapshot)
    except Exception as exc:
        raise ReproduceError(
            f"snapshot {snapshot} of {wh.schema}.{table} cannot be read ({exc}); "
            "it was expired (mlops-assets maintain) or the warehouse was replaced"
        ) from exc


def _decision(history, version: str, day: date) -> dict[str, Any] | None:
    """The decision that put ``version`` in force on or before ``day``."""
    import polars as pl

    if not history.height:
        return None
    rows = history.filter(
        (pl.col("to_version") == version) & (pl.col("effective_from") <= day)
    ).sort("seq")
    if not rows.height:
        return None
    row = rows.row(-1, named=True)
    keep = ("seq", "kind", "training_date", "effective_from", "action", "reason", "approved_by")
    return {k: (str(row[k]) if isinstance(row[k], date) else row[k]) for k in keep}


def reproduce_batch(
    settings: Settings,
    spec: DatasetSpec,
    instance: dg.DagsterInstance,
    day: date,
    event_key: str,
) -> dict[str, Any]:
    """Reproduce the stored prediction of ``event_key`` on ``day``; the JSON-ready answer."""
    import polars as pl

    from mlops_assets.ml import registry
    from mlops_assets.ml.promotion import HISTORY_TABLE

    wh = Warehouse.for_settings(settings)
    rec = recorded_predictions(instance, day)
    key = pl.col(spec.event_key).cast(pl.String) == event_key
    stored = _read(wh, "predictions", spec.date_column, day, rec.written).filter(key)
    if not stored.height:
        raise ReproduceError(f"no prediction of {spec.event_key} {event_key!r} on {day}")
    row = stored.row(0, named=True)
    version = str(row["model_version"])
    features = _read(wh, "features", spec.date_column, day, rec.features_read).filter(key)
    if not features.height:
        raise ReproduceError(
            f"features snapshot {rec.features_read} has no row of {event_key!r} on {day}"
        )
    name = settings.registered_model_name
    uri = settings.mlflow_tracking_uri
    try:
        model = registry.load_model_version(name, version, uri)
    except Exception as exc:
        raise ReproduceError(
            f"model version {version} of {name} cannot be loaded from the registry: its "
            f"artifact {registry.version_artifact_uri(name, version, uri)} is missing or "
            f"unreadable ({type(exc).__name__}: {str(exc)[:300]})"
        ) from exc
    again = float(model.predict(features)[0])
    recorded = float(row["prediction"])
    match = math.isclose(again, recorded, rel_tol=TOLERANCE, abs_tol=TOLERANCE)
    tags = registry.version_tags(name, version, uri)
    return {
        "match": match,
        "recorded": recorded,
        "reproduced": again,
        "date": day.isoformat(),
        "event_key": event_key,
        "chain": {
            "features": {"partition": day.isoformat(), "snapshot": rec.features_read},
            "predictions": {"run_id": rec.run_id, "snapshot": rec.written},
            "model": {
                "name": name,
                "version": version,
                "candidate": tags.get("candidate"),
                "mlflow_run_id": registry.version_run_id(name, version, uri),
            },
            "decision": _decision(wh.read(HISTORY_TABLE), version, day),
        },
    }
