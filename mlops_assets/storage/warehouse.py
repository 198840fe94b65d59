"""The DuckDB warehouse: one file per environment, one table per asset, partitions by date.

A partition is replaced in one transaction (delete its rows, insert the new ones, commit), so a
crash between the two leaves the previous rows. The partition column is a DATE and the filter
compares typed dates, so it selects exactly the partition's days. Connections are opened per call
and closed at once: long computation never holds the file.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

from mlops_assets.environments import validate_identifier

if TYPE_CHECKING:
    # Imported where used: loading the definitions builds a Warehouse but never opens it.
    import duckdb
    import polars as pl


class WarehouseError(RuntimeError):
    """A write or read the warehouse refuses, with the reason."""


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


class Warehouse:
    """Reads and writes polars frames in one DuckDB file."""

    def __init__(self, path: str | Path, schema: str = "mlops", lock_timeout_s: float = 180.0):
        self.path = Path(path)
        self.schema = validate_identifier(schema, "warehouse schema")
        self.lock_timeout_s = lock_timeout_s

    @contextmanager
    def connect(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """Open the file, waiting while another process holds its lock."""
        import duckdb

        if read_only and not self.path.exists():
            raise WarehouseError(f"warehouse {self.path} does not exist yet")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + self.lock_timeout_s
        delay = 0.05
        while True:
            try:
                con = duckdb.connect(str(self.path), read_only=read_only)
                break
            except duckdb.IOException as exc:
                if "lock" not in str(exc).lower() or time.monotonic() > deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 1.0)
        try:
            yield con
        finally:
            con.close()

    def _table(self, table: str) -> str:
        return f"{_quote(self.schema)}.{_quote(validate_identifier(table, 'table name'))}"

    def _columns(self, con: duckdb.DuckDBPyConnection, table: str) -> dict[str, str]:
        rows = con.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position",
            [self.schema, table],
        ).fetchall()
        return dict(rows)

    def table_exists(self, table: str) -> bool:
        if not self.path.exists():
            return False
        with self.connect() as con:
            return bool(self._columns(con, table))

    def _prepare(self, con: duckdb.DuckDBPyConnection, table: str, frame: pl.DataFrame) -> None:
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {_quote(self.schema)}")
        existing = self._columns(con, table)
        if not existing:
            con.execute(f"CREATE TABLE {self._table(table)} AS SELECT * FROM _incoming LIMIT 0")
            return
        missing = [c for c in existing if c not in frame.columns]
        if missing:
            raise WarehouseError(
                f"table {self.schema}.{table} has columns {missing} that the new rows lack; "
                "refusing to write a partition of another shape"
            )
        incoming = con.execute("DESCRIBE _incoming").fetchall()
        for name, dtype, *_ in incoming:
            if name not in existing:
                con.execute(f"ALTER TABLE {self._table(table)} ADD COLUMN {_quote(name)} {dtype}")

    def _insert(self, con: duckdb.DuckDBPyConnection, table: str) -> None:
        con.execute(f"INSERT INTO {self._table(table)} BY NAME SELECT * FROM _incoming")

    def replace_partition(
        self, table: str, frame: pl.DataFrame, column: str, start: date, end: date
    ) -> int:
        """Replace the rows with ``start <= column < end`` by ``frame``, atomically."""
        import polars as pl

        validate_identifier(column, "partition column")
        if column not in frame.columns:
            raise WarehouseError(f"rows for {table} have no partition column {column!r}")
        if frame.height:
            outside = frame.filter((pl.col(column) < start) | (pl.col(column) >= end)).height
            if outside:
                raise WarehouseError(
                    f"{outside} rows for {table} fall outside the partition [{start}, {end})"
                )
        with self.connect() as con:
            con.register("_incoming", frame)
            con.execute("BEGIN TRANSACTION")
            try:
                self._prepare(con, table, frame)
                con.execute(
                    f"DELETE FROM {self._table(table)} WHERE {_quote(column)} >= ? "
                    f"AND {_quote(column)} < ?",
                    [start, end],
                )
                self._insert(con, table)
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
        return frame.height

    def replace_table(self, table: str, frame: pl.DataFrame) -> int:
        """Replace a whole (unpartitioned) table atomically."""
        with self.connect() as con:
            con.register("_incoming", frame)
            con.execute("BEGIN TRANSACTION")
            try:
                con.execute(f"CREATE SCHEMA IF NOT EXISTS {_quote(self.schema)}")
                con.execute(
                    f"CREATE OR REPLACE TABLE {self._table(table)} AS SELECT * FROM _incoming"
                )
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
        return frame.height

    def append(self, table: str, frame: pl.DataFrame) -> int:
        """Append rows (history and log tables)."""
        with self.connect() as con:
            con.register("_incoming", frame)
            con.execute("BEGIN TRANSACTION")
            try:
                self._prepare(con, table, frame)
                self._insert(con, table)
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
        return frame.height

    def read(
        self,
        table: str,
        column: str | None = None,
        start: date | None = None,
        end: date | None = None,
    ) -> pl.DataFrame:
        """Rows of a table, optionally ``start <= column < end``; empty if there is no table."""
        import polars as pl

        validate_identifier(table, "table name")
        if not self.path.exists():
            return pl.DataFrame()
        with self.connect() as con:
            if not self._columns(con, table):
                return pl.DataFrame()
            query = f"SELECT * FROM {self._table(table)}"
            params: list[date] = []
            if column is not None:
                validate_identifier(column, "partition column")
                query += f" WHERE {_quote(column)} >= ? AND {_quote(column)} < ?"
                params = [start, end]
                query += f" ORDER BY {_quote(column)}"
            return pl.from_arrow(con.sql(query, params=params or None).to_arrow_table())

    def query(self, sql: str, params: list | None = None) -> pl.DataFrame:
        """Run a read query against the warehouse (tables are ``<schema>.<table>``)."""
        import polars as pl

        if not self.path.exists():
            return pl.DataFrame()
        with self.connect() as con:
            return pl.from_arrow(con.sql(sql, params=params).to_arrow_table())
