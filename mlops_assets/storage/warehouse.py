"""The DuckDB warehouse: one file per environment, one table per asset, partitions by date.

A partition is replaced in one transaction (delete its rows, insert the new ones, commit), so a
crash between the two leaves the previous rows. The partition column is a DATE and the filter
compares typed dates, so it selects exactly the partition's days.

Opening a DuckDB file costs about 15 ms, and one Dagster step reads its inputs and writes its
output in several calls. A process therefore shares one connection per file between calls (each
call gets its own cursor, so transactions and registered frames stay apart) and closes it
``LINGER_SECONDS`` after the last call ends. Long computation between calls never holds the
file: another process waiting for it waits at most that much longer.
"""

from __future__ import annotations

import atexit
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

import tenacity

from mlops_assets.environments import validate_identifier

if TYPE_CHECKING:
    # Imported where used: loading the definitions builds a Warehouse but never opens it.
    import duckdb
    import polars as pl
    import pyarrow as pa


class WarehouseError(RuntimeError):
    """A write or read the warehouse refuses, with the reason."""


# How long a process keeps a warehouse file open after its last call.
LINGER_SECONDS = 0.25


class _Shared:
    """This process's open connection to one warehouse file."""

    def __init__(self, con: duckdb.DuckDBPyConnection, read_only: bool):
        self.con = con
        self.read_only = read_only
        self.users = 0
        self.timer: threading.Timer | None = None


_SHARED: dict[str, _Shared] = {}
_SHARED_LOCK = threading.Lock()


def _close_if_idle(key: str, shared: _Shared) -> None:
    with _SHARED_LOCK:
        if _SHARED.get(key) is shared and shared.users == 0:
            del _SHARED[key]
            shared.con.close()


def close_all() -> None:
    """Close every idle shared connection of this process now (also done at exit)."""
    with _SHARED_LOCK:
        for key, shared in list(_SHARED.items()):
            if shared.users == 0:
                if shared.timer is not None:
                    shared.timer.cancel()
                del _SHARED[key]
                shared.con.close()


atexit.register(close_all)


def _frame(table: pa.Table) -> pl.DataFrame:
    import polars as pl

    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame), "an arrow table converts to a frame"
    return frame


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


class Warehouse:
    """Reads and writes polars frames in one DuckDB file."""

    def __init__(self, path: str | Path, schema: str = "mlops", lock_timeout_s: float = 180.0):
        self.path = Path(path)
        self.schema = validate_identifier(schema, "warehouse schema")
        self.lock_timeout_s = lock_timeout_s

    def shared_connection(self) -> _Shared | None:
        """This process's open connection to the file, or None once it has closed
        (``LINGER_SECONDS`` after its last call)."""
        with _SHARED_LOCK:
            return _SHARED.get(str(self.path.resolve()))

    @contextmanager
    def connect(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """A cursor on this process's connection to the file, opened (waiting while another
        process holds the file's lock) unless it is open already."""
        if read_only and not self.path.exists():
            raise WarehouseError(f"warehouse {self.path} does not exist yet")
        key = str(self.path.resolve())
        with _SHARED_LOCK:
            shared = _SHARED.get(key)
            if shared is not None and shared.read_only and not read_only and not shared.users:
                # A write after reads: reopen the file for writing.
                if shared.timer is not None:
                    shared.timer.cancel()
                del _SHARED[key]
                shared.con.close()
                shared = None
            if shared is None:
                shared = _SHARED[key] = _Shared(self._open(read_only), read_only)
            elif shared.read_only and not read_only:
                raise WarehouseError(
                    f"warehouse {self.path} is open read-only in this process by another call; "
                    "a write must wait for it to end"
                )
            if shared.timer is not None:
                shared.timer.cancel()
                shared.timer = None
            shared.users += 1
            cursor = shared.con.cursor()
        try:
            yield cursor
        finally:
            cursor.close()
            with _SHARED_LOCK:
                shared.users -= 1
                if shared.users == 0:
                    shared.timer = threading.Timer(LINGER_SECONDS, _close_if_idle, (key, shared))
                    shared.timer.daemon = True
                    shared.timer.start()

    def _open(self, read_only: bool) -> duckdb.DuckDBPyConnection:
        import duckdb

        self.path.parent.mkdir(parents=True, exist_ok=True)
        # While another process holds the file's lock, wait 0.05 s, doubling up to 1 s, until
        # lock_timeout_s has passed; then (or on any other error) raise DuckDB's own error.
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(
                lambda exc: isinstance(exc, duckdb.IOException) and "lock" in str(exc).lower()
            ),
            wait=tenacity.wait_exponential(multiplier=0.05, max=1.0),
            stop=tenacity.stop_after_delay(self.lock_timeout_s),
            reraise=True,
        )
        return retrying(duckdb.connect, str(self.path), read_only=read_only)

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

    @contextmanager
    def _writing(self, frame: pl.DataFrame) -> Iterator[duckdb.DuckDBPyConnection]:
        """One transaction with ``frame`` registered as ``_incoming``: committed when the block
        ends, rolled back (the stored rows untouched) if anything in it raises."""
        with self.connect() as con:
            con.register("_incoming", frame)
            con.execute("BEGIN TRANSACTION")
            try:
                yield con
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise

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
        with self._writing(frame) as con:
            self._prepare(con, table, frame)
            con.execute(
                f"DELETE FROM {self._table(table)} WHERE {_quote(column)} >= ? "
                f"AND {_quote(column)} < ?",
                [start, end],
            )
            self._insert(con, table)
        return frame.height

    def replace_table(self, table: str, frame: pl.DataFrame) -> int:
        """Replace a whole (unpartitioned) table atomically."""
        with self._writing(frame) as con:
            con.execute(f"CREATE SCHEMA IF NOT EXISTS {_quote(self.schema)}")
            con.execute(f"CREATE OR REPLACE TABLE {self._table(table)} AS SELECT * FROM _incoming")
        return frame.height

    def append(self, table: str, frame: pl.DataFrame) -> int:
        """Append rows (history and log tables)."""
        with self._writing(frame) as con:
            self._prepare(con, table, frame)
            self._insert(con, table)
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
            params: list[date | None] = []
            if column is not None:
                validate_identifier(column, "partition column")
                query += f" WHERE {_quote(column)} >= ? AND {_quote(column)} < ?"
                params = [start, end]
                query += f" ORDER BY {_quote(column)}"
            return _frame(con.sql(query, params=params or None).to_arrow_table())

    def query(self, sql: str, params: list | None = None) -> pl.DataFrame:
        """Run a read query against the warehouse (tables are ``<schema>.<table>``)."""
        import polars as pl

        if not self.path.exists():
            return pl.DataFrame()
        with self.connect() as con:
            return _frame(con.sql(sql, params=params).to_arrow_table())
