"""Dagster IO manager storing polars frames in the DuckDB warehouse, one table per asset.

Partitioned assets name their date column in ``metadata={"partition_column": ...}``; a partition
(or a range of them) is replaced in one transaction. Reading a range that was never written gives
the rows that exist, so history windows work from the first day on.
"""

from __future__ import annotations

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


def _window(context: dg.InputContext | dg.OutputContext) -> tuple[date, date]:
    window = context.asset_partitions_time_window
    return window.start.date(), window.end.date()


class DuckDBPolarsIOManager(dg.ConfigurableIOManager):
    """Polars frames in and out of ``<schema>.<asset name>`` of one DuckDB file."""

    database: str
    schema_name: str = "mlops"

    @field_validator("schema_name")
    @classmethod
    def _plain_schema(cls, value: str) -> str:
        return validate_identifier(value, "schema_name")

    @property
    def warehouse(self) -> Warehouse:
        return Warehouse(self.database, self.schema_name)

    def handle_output(self, context: dg.OutputContext, obj: pl.DataFrame | None) -> None:
        import polars as pl

        if obj is None:
            return
        if not isinstance(obj, pl.DataFrame):
            raise TypeError(f"{context.asset_key.to_user_string()} must return a polars DataFrame")
        table = context.asset_key.path[-1]
        column = (context.definition_metadata or {}).get(PARTITION_COLUMN)
        if context.has_asset_partitions:
            if not column:
                raise dg.DagsterInvariantViolationError(
                    f"partitioned asset {table} needs metadata {PARTITION_COLUMN!r}"
                )
            start, end = _window(context)
            rows = self.warehouse.replace_partition(table, obj, column, start, end)
        else:
            rows = self.warehouse.replace_table(table, obj)
        context.add_output_metadata(
            {
                "dagster/row_count": rows,
                "dagster/table_name": f"{self.schema_name}.{table}",
                "warehouse": dg.MetadataValue.path(str(self.database)),
            }
        )

    def load_input(self, context: dg.InputContext) -> pl.DataFrame:
        table = context.asset_key.path[-1]
        upstream = context.upstream_output
        column = ((upstream.definition_metadata if upstream else None) or {}).get(PARTITION_COLUMN)
        if context.has_asset_partitions and column:
            if not context.asset_partition_keys:
                # A history window lying wholly before the first partition maps to no
                # partition: no rows yet, with the table's columns.
                return self.warehouse.read(table, column, date.min, date.min)
            start, end = _window(context)
            return self.warehouse.read(table, column, start, end)
        return self.warehouse.read(table)
