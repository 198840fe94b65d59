"""Dagster IO manager storing polars frames in the DuckLake warehouse, one table per asset.

Partitioned assets name their date column in ``metadata={"partition_column": ...}``; a partition
(or a range of them) is replaced in one transaction. Reading a range that was never written gives
the rows that exist, so history windows work from the first day on.

Lineage by snapshot: a step reads each input at the snapshot current when it reads, and its
materialization records the snapshot its write committed (``ducklake/snapshot``) and the snapshot
each input was read at (``ducklake/read_snapshots``), so what a partition was computed from can be
read back as it was (``mlops-assets reproduce``).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import TYPE_CHECKING

import dagster as dg
from pydantic import field_validator

from mlops_assets.environments import validate_identifier
from mlops_assets.storage.warehouse import Warehouse

if TYPE_CHECKING:
    # Imported where used, so that loading the definitions does not import polars.
    import polars as pl

PARTITION_COLUMN = "partition_column"
COLUMN_SCHEMA = "dagster/column_schema"
SNAPSHOT = "ducklake/snapshot"
READ_SNAPSHOTS = "ducklake/read_snapshots"

# (run id, step key) -> {upstream table: snapshot read}, filled by load_input and taken by the
# same step's handle_output.
_READS: dict[tuple[str, str], dict[str, int]] = {}


def _window(context: dg.InputContext | dg.OutputContext) -> tuple[date, date]:
    window = context.asset_partitions_time_window
    return window.start.date(), window.end.date()


def _step(context: dg.InputContext | dg.OutputContext) -> tuple[str, str]:
    step = context.step_context
    return (step.run_id, step.step.key)


class DuckDBPolarsIOManager(dg.ConfigurableIOManager):
    """Polars frames in and out of ``<schema>.<asset name>`` of the DuckLake warehouse.

    ``database`` is the embedded warehouse's folder; ``catalog`` and ``data_path``, when set,
    replace its SQLite catalog and its data folder (see :class:`Warehouse`)."""

    database: str
    schema_name: str = "mlops"
    catalog: str = ""
    data_path: str = ""

    @field_validator("schema_name")
    @classmethod
    def _plain_schema(cls, value: str) -> str:
        return validate_identifier(value, "schema_name")

    @property
    def warehouse(self) -> Warehouse:
        return Warehouse(
            self.database, self.schema_name, catalog=self.catalog, data_path=self.data_path
        )

    def handle_output(self, context: dg.OutputContext, obj: pl.DataFrame | None) -> None:
        import polars as pl

        if obj is None:
            return
        if not isinstance(obj, pl.DataFrame):
            raise TypeError(f"{context.asset_key.to_user_string()} must return a polars DataFrame")
        table = context.asset_key.path[-1]
        _check_contract(context, table, obj)
        column = (context.definition_metadata or {}).get(PARTITION_COLUMN)
        if context.has_asset_partitions:
            if not column:
                raise dg.DagsterInvariantViolationError(
                    f"partitioned asset {table} needs metadata {PARTITION_COLUMN!r}"
                )
            start, end = _window(context)
            commit = self.warehouse.replace_partition(table, obj, column, start, end)
        else:
            commit = self.warehouse.replace_table(table, obj)
        metadata: dict[str, dg.RawMetadataValue] = {
            "dagster/row_count": commit.rows,
            "dagster/table_name": f"{self.schema_name}.{table}",
            "warehouse": self.warehouse.describe(),
            SNAPSHOT: commit.snapshot,
        }
        reads = _READS.pop(_step(context), None)
        if reads:
            metadata[READ_SNAPSHOTS] = dg.MetadataValue.json(reads)
        context.add_output_metadata(metadata)

    def load_input(self, context: dg.InputContext) -> pl.DataFrame:
        table = context.asset_key.path[-1]
        upstream = context.upstream_output
        column = ((upstream.definition_metadata if upstream else None) or {}).get(PARTITION_COLUMN)
        warehouse = self.warehouse
        snapshot = warehouse.current_snapshot()
        if snapshot is not None and warehouse.table_exists(table):
            _READS.setdefault(_step(context), {})[table] = snapshot
        else:
            snapshot = None
        if context.has_asset_partitions and column:
            if not context.asset_partition_keys:
                # A history window lying wholly before the first partition maps to no
                # partition: no rows yet, with the table's columns.
                return warehouse.read(table, column, date.min, date.min, snapshot)
            start, end = _window(context)
            frame = warehouse.read(table, column, start, end, snapshot)
            _name_failed_upstream(context, frame, column)
            return frame
        return warehouse.read(table, snapshot=snapshot)


def _check_contract(context: dg.OutputContext, table: str, frame: pl.DataFrame) -> None:
    """Refuse a frame whose columns differ from the table's declared schema, before storing."""
    from mlops_assets.storage.contract import ContractError, check_frame

    schema = (context.definition_metadata or {}).get(COLUMN_SCHEMA)
    if isinstance(schema, dg.TableSchemaMetadataValue):
        schema = schema.schema
    if not isinstance(schema, dg.TableSchema):
        return
    try:
        check_frame(table, frame, ((c.name, c.type) for c in schema.columns))
    except ContractError as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from exc


def _failure_reason(instance: dg.DagsterInstance, key: dg.AssetKey, partition: str) -> str:
    """Why the latest attempt at ``partition`` of ``key`` failed: its own step's failure, or
    (when the step was skipped because a step before it failed) that step's, for that day."""
    planned = instance.get_latest_planned_materialization_info(key, partition)
    if planned is None:
        return "no run of it is recorded"
    day = partition[:10]
    own, others = [], []
    for record in instance.all_logs(planned.run_id, of_type=dg.DagsterEventType.STEP_FAILURE):
        event = record.dagster_event
        if event is None:
            continue
        data = event.step_failure_data.user_failure_data
        days = (data.metadata or {}).get("failed_days") if data is not None else None
        by_day = days.value if days is not None and isinstance(days.value, Mapping) else {}
        if day in by_day:
            reason = str(by_day[day])
        elif data is not None and data.description:
            reason = data.description
        elif event.step_failure_data.error is not None:
            reason = event.step_failure_data.error.message.strip()
        else:
            continue
        if event.step_key == key.path[-1]:
            own.append(reason)
        else:
            others.append(f"{event.step_key} of {day} failed: {reason}")
    return (own or others or ["its run failed"])[0]


def _name_failed_upstream(context: dg.InputContext, frame: pl.DataFrame, column: str) -> None:
    """A step that reads its own days of an upstream asset (not a history window) fails naming
    each of those days the upstream asset failed to store, with the upstream failure's reason,
    rather than computing on missing rows."""
    import polars as pl

    step = context.step_context
    if (
        not step.has_partitions
        or step.partition_time_window != context.asset_partitions_time_window
    ):
        return
    present = (
        {str(d) for d in frame[column].cast(pl.Date).unique().to_list()}
        if column in frame.columns
        else set()
    )
    missing = [k for k in context.asset_partition_keys if k[:10] not in present]
    if not missing:
        return
    statuses = (
        context.instance.get_status_by_partition(
            context.asset_key, missing, context.asset_partitions_def
        )
        or {}
    )
    name = context.asset_key.to_user_string()
    failed = []
    for key in missing:
        if statuses.get(key) == dg.AssetPartitionStatus.FAILED:
            reason = _failure_reason(context.instance, context.asset_key, key)
            failed.append(f"upstream partition {key} of {name} failed: {reason}")
    if failed:
        raise dg.Failure(
            description="; ".join(failed)
            + f" (materialize {name} for those days again once its source is fixed)",
            allow_retries=False,
        )
