"""The warehouse: a DuckLake per environment, one table per asset, partitions by date.

DuckLake keeps each table as Parquet files under a data path and records every commit, as a
numbered snapshot, in a catalog database: SQLite on one machine (several writer processes at
once), PostgreSQL across machines. DuckDB is the engine; its DuckLake, SQLite and PostgreSQL
extensions come from their PyPI packages and never from a download
(:mod:`mlops_assets.storage.extensions`).

A partition is replaced in one transaction (delete its rows, insert the new ones, commit), so a
crash between the two leaves the previous rows. Two writers committing at once may conflict;
the loser rolls back and runs its whole transaction again, waiting a little longer each time, so
no row is lost or doubled. The partition column is a DATE and the filter compares typed dates, so
it selects exactly the partition's days. Every write returns the snapshot it committed, and a
read can name the snapshot it reads (``AT (VERSION => n)``).

A process keeps one DuckDB connection per warehouse (loading the extensions and attaching the
catalog cost about 0.2 s) and gives each call its own cursor.
"""

from __future__ import annotations

import atexit
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
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

    from mlops_assets.environments import Settings

# The name the warehouse is attached under in every connection (and the default catalog of
# each cursor, so queries name tables ``<schema>.<table>``).
LAKE = "lake"
# A commit that loses to another writer's is retried with exponential backoff for this long.
COMMIT_RETRY_SECONDS = 120.0


class WarehouseError(RuntimeError):
    """A write or read the warehouse refuses, with the reason."""


@dataclass(frozen=True)
class Commit:
    """What one write stored: its row count and the DuckLake snapshot it committed."""

    rows: int
    snapshot: int


def _frame(table: pa.Table) -> pl.DataFrame:
    import polars as pl

    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame), "an arrow table converts to a frame"
    return frame


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _is_conflict(exc: BaseException) -> bool:
    """A commit another writer's commit beat, or the SQLite catalog busy with one: retry."""
    import duckdb

    text = str(exc).lower()
    return isinstance(exc, duckdb.Error) and (
        "failed to commit" in text
        or "database is locked" in text
        or "conflict" in text
        or "busy" in text
    )


# What a process attaching a catalog another one is creating fails with.
_CREATING = ("locked", "duplicate key", "already exists")


def _use_wal(catalog_file: Path) -> None:
    """Put the SQLite catalog in write-ahead-log mode (kept in the file): readers then never wait
    for a committing writer, and writers wait for each other only while one commits."""
    import sqlite3

    for attempt in tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(sqlite3.OperationalError),
        wait=tenacity.wait_random_exponential(multiplier=0.05, max=1.0),
        stop=tenacity.stop_after_delay(COMMIT_RETRY_SECONDS),
        reraise=True,
    ):
        with attempt:
            con = sqlite3.connect(catalog_file, timeout=30)
            try:
                con.execute("PRAGMA journal_mode=WAL")
            finally:
                con.close()


def _busy(exc: BaseException) -> bool:
    import duckdb

    return isinstance(exc, duckdb.Error) and "database is locked" in str(exc).lower()


# A read run again while the SQLite catalog is busy with another process's commit.
_busy_retried = tenacity.retry(
    retry=tenacity.retry_if_exception(_busy),
    wait=tenacity.wait_random_exponential(multiplier=0.05, max=1.0),
    stop=tenacity.stop_after_delay(COMMIT_RETRY_SECONDS),
    reraise=True,
)


_CONNECTIONS: dict[tuple[str, str, bool], duckdb.DuckDBPyConnection] = {}
# Guards _CONNECTIONS, and each write with its snapshot lookup (DuckDB reports the snapshot a
# process last committed, not a cursor's).
_LOCK = threading.RLock()


def close_all() -> None:
    """Close this process's warehouse connections (also done at exit)."""
    with _LOCK:
        for con in _CONNECTIONS.values():
            con.close()
        _CONNECTIONS.clear()


atexit.register(close_all)


class Warehouse:
    """Reads and writes polars frames in one DuckLake.

    ``path`` is the embedded warehouse's folder: its SQLite catalog is ``<path>/catalog.sqlite``
    and its data ``<path>/data/``. ``catalog`` (``sqlite:<file>`` or ``postgres:<libpq
    connection string>``) and ``data_path`` (a folder or an object-store URL) replace either.
    """

    def __init__(
        self,
        path: str | Path,
        schema: str = "mlops",
        *,
        catalog: str = "",
        data_path: str = "",
    ):
        self.path = Path(path)
        self.schema = validate_identifier(schema, "warehouse schema")
        self.catalog = catalog or f"sqlite:{self.path / 'catalog.sqlite'}"
        self.data_path = data_path or f"{self.path / 'data'}/"
        # The embedded warehouse's data is always its folder's data/, wherever the folder moved
        # (DuckLake keeps file paths relative to the data path).
        self._embedded_data = not data_path
        kind = self.catalog.split(":", 1)[0]
        if kind not in ("sqlite", "postgres") or ":" not in self.catalog:
            raise WarehouseError(
                f"warehouse catalog {self.catalog!r} is neither 'sqlite:<file>' nor "
                "'postgres:<connection string>' (MLOPS_WAREHOUSE_CATALOG)"
            )
        self.kind = kind

    @classmethod
    def for_settings(cls, settings: Settings) -> Warehouse:
        """The warehouse of one environment."""
        return cls(
            settings.warehouse_path,
            settings.schema,
            catalog=settings.warehouse_catalog,
            data_path=settings.warehouse_data_path,
        )

    def __repr__(self) -> str:
        return f"Warehouse(catalog={self.catalog!r}, data_path={self.data_path!r})"

    def describe(self) -> str:
        """Where the warehouse lives, for messages and metadata (no password)."""
        if self.kind == "sqlite":
            return f"{self.data_path} (catalog {self.catalog.split(':', 1)[1]})"
        shown = " ".join(
            part
            for part in self.catalog.split(":", 1)[1].split()
            if not part.startswith("password")
        )
        return f"{self.data_path} (catalog postgres {shown})"

    def exists(self) -> bool:
        """Whether the catalog exists (a PostgreSQL catalog is assumed to)."""
        return self.kind != "sqlite" or Path(self.catalog.split(":", 1)[1]).exists()

    def _open(self, read_only: bool) -> duckdb.DuckDBPyConnection:
        import duckdb

        from mlops_assets.storage.extensions import OBJECT_STORE_PREFIXES, connect

        object_store = self.data_path.startswith(OBJECT_STORE_PREFIXES)
        con = connect(self.kind, object_store)
        if self.kind == "sqlite":
            Path(self.catalog.split(":", 1)[1]).parent.mkdir(parents=True, exist_ok=True)
        if not object_store:
            Path(self.data_path).mkdir(parents=True, exist_ok=True)
        # No rows inlined into the catalog: every row is Parquet under the data path, and a write
        # touches the catalog only when it commits (with inlined rows, an open transaction that
        # deleted some holds the SQLite catalog's lock and stops every other writer).
        options = f"DATA_PATH {_literal(self.data_path)}, DATA_INLINING_ROW_LIMIT 0"
        options += ", READ_ONLY" if read_only else ""
        options += ", OVERRIDE_DATA_PATH true" if self._embedded_data else ""
        attach = f"ATTACH {_literal('ducklake:' + self.catalog)} AS {LAKE} ({options})"
        # Several processes creating the same SQLite catalog at once: all but one fail with
        # "database is locked"; they retry and attach the catalog the first one made.
        # (With a PostgreSQL catalog the losers fail on a duplicate key of its new tables.)
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(
                lambda exc: (
                    isinstance(exc, duckdb.Error)
                    and any(
                        t in str(exc).lower() for t in ("locked", "duplicate key", "already exists")
                    )
                )
            ),
            wait=tenacity.wait_random_exponential(multiplier=0.05, max=1.0),
            stop=tenacity.stop_after_delay(COMMIT_RETRY_SECONDS),
            reraise=True,
        )
        retrying(con.execute, attach)
        if self.kind == "sqlite" and not read_only:
            _use_wal(Path(self.catalog.split(":", 1)[1]))
        return con

    @contextmanager
    def connect(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """A cursor on this process's connection to the warehouse, its default catalog the
        warehouse (opened and attached unless it is already)."""
        if read_only and not self.exists():
            raise WarehouseError(f"warehouse {self.describe()} does not exist yet")
        key = (self.catalog, self.data_path, read_only)
        with _LOCK:
            con = _CONNECTIONS.get(key)
            if con is None:
                con = _CONNECTIONS[key] = self._open(read_only)
            cursor = con.cursor()
        try:
            cursor.execute(f"USE {LAKE}")
            yield cursor
        finally:
            cursor.close()

    def _table(self, table: str) -> str:
        return f"{_quote(self.schema)}.{_quote(validate_identifier(table, 'table name'))}"

    def _columns(self, con: duckdb.DuckDBPyConnection, table: str) -> dict[str, str]:
        rows = con.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_catalog = ? AND table_schema = ? AND table_name = ? "
            "ORDER BY ordinal_position",
            [LAKE, self.schema, table],
        ).fetchall()
        return dict(rows)

    @_busy_retried
    def table_exists(self, table: str) -> bool:
        if not self.exists():
            return False
        with self.connect() as con:
            return bool(self._columns(con, table))

    @_busy_retried
    def tables(self) -> list[str]:
        """The warehouse's tables in its schema, sorted."""
        if not self.exists():
            return []
        with self.connect() as con:
            rows = con.execute(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_catalog = ? AND table_schema = ? ORDER BY table_name",
                [LAKE, self.schema],
            ).fetchall()
        return [name for (name,) in rows]

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

    def _commit(
        self, frame: pl.DataFrame, body: Callable[[duckdb.DuckDBPyConnection], None]
    ) -> Commit:
        """Run ``body`` in one transaction with ``frame`` registered as ``_incoming`` and commit
        it: rolled back (the stored rows untouched) if anything in it raises, and run again from
        the start when the commit loses to another writer's."""

        def attempt() -> Commit:
            with _LOCK, self.connect() as con:
                con.register("_incoming", frame)
                con.execute("BEGIN TRANSACTION")
                try:
                    body(con)
                    con.execute("COMMIT")
                except BaseException:
                    try:
                        con.execute("ROLLBACK")
                    except Exception:  # a failed commit has rolled back already
                        pass
                    raise
                row = con.execute(f"FROM ducklake_last_committed_snapshot('{LAKE}')").fetchone()
            return Commit(frame.height, int(row[0]) if row and row[0] is not None else -1)

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(_is_conflict),
            wait=tenacity.wait_random_exponential(multiplier=0.05, max=2.0),
            stop=tenacity.stop_after_delay(COMMIT_RETRY_SECONDS),
            reraise=True,
        )
        try:
            return retrying(attempt)
        except Exception as exc:
            if not _is_conflict(exc):
                raise
            raise WarehouseError(
                f"the write kept conflicting with other writers of {self.describe()} for "
                f"{COMMIT_RETRY_SECONDS:.0f} s ({exc}); a SQLite catalog holds its lock from a "
                "write's first statement to its commit, so a writer stalled mid-write stops the "
                "others: end or kill it (its rows are rolled back), then run this again"
            ) from exc

    def _insert(self, con: duckdb.DuckDBPyConnection, table: str) -> None:
        con.execute(f"INSERT INTO {self._table(table)} BY NAME SELECT * FROM _incoming")

    def replace_partition(
        self, table: str, frame: pl.DataFrame, column: str, start: date, end: date
    ) -> Commit:
        """Replace the rows with ``start <= column < end`` by ``frame``, atomically."""
        import polars as pl

        validate_identifier(column, "partition column")
        target = self._table(table)
        if column not in frame.columns:
            raise WarehouseError(f"rows for {table} have no partition column {column!r}")
        if frame.height:
            outside = frame.filter((pl.col(column) < start) | (pl.col(column) >= end)).height
            if outside:
                raise WarehouseError(
                    f"{outside} rows for {table} fall outside the partition [{start}, {end})"
                )

        def body(con: duckdb.DuckDBPyConnection) -> None:
            self._prepare(con, table, frame)
            con.execute(
                f"DELETE FROM {target} WHERE {_quote(column)} >= ? AND {_quote(column)} < ?",
                [start, end],
            )
            self._insert(con, table)

        return self._commit(frame, body)

    def replace_table(self, table: str, frame: pl.DataFrame) -> Commit:
        """Replace a whole (unpartitioned) table atomically."""
        target = self._table(table)

        def body(con: duckdb.DuckDBPyConnection) -> None:
            con.execute(f"CREATE SCHEMA IF NOT EXISTS {_quote(self.schema)}")
            con.execute(f"CREATE OR REPLACE TABLE {target} AS SELECT * FROM _incoming")

        return self._commit(frame, body)

    def append(self, table: str, frame: pl.DataFrame) -> Commit:
        """Append rows (history and log tables)."""
        validate_identifier(table, "table name")

        def body(con: duckdb.DuckDBPyConnection) -> None:
            self._prepare(con, table, frame)
            self._insert(con, table)

        return self._commit(frame, body)

    @_busy_retried
    def current_snapshot(self) -> int | None:
        """The newest committed snapshot, or None before the catalog exists."""
        if not self.exists():
            return None
        with self.connect() as con:
            row = con.execute(f"FROM {LAKE}.current_snapshot()").fetchone()
        return int(row[0]) if row else None

    @_busy_retried
    def read(
        self,
        table: str,
        column: str | None = None,
        start: date | None = None,
        end: date | None = None,
        snapshot: int | None = None,
    ) -> pl.DataFrame:
        """Rows of a table, optionally ``start <= column < end``, as of ``snapshot`` (the
        newest when None); empty if there is no table (then or now)."""
        import polars as pl

        target = self._table(table)
        if not self.exists():
            return pl.DataFrame()
        with self.connect() as con:
            if snapshot is None and not self._columns(con, table):
                return pl.DataFrame()
            source = target + (f" AT (VERSION => {int(snapshot)})" if snapshot is not None else "")
            query = f"SELECT * FROM {source}"
            params: list[date | None] = []
            if column is not None:
                col = _quote(validate_identifier(column, "partition column"))
                # Ordered by the partition column, then by every column, so the order does not
                # depend on how the writes split the rows into files (DuckDB's sort is not
                # stable).
                query = (
                    f"SELECT * EXCLUDE (_part) FROM (SELECT {col} AS _part, * FROM {source} "
                    f"WHERE {col} >= ? AND {col} < ? ORDER BY ALL)"
                )
                params = [start, end]
            return _frame(con.sql(query, params=params or None).to_arrow_table())

    @_busy_retried
    def query(self, sql: str, params: list | None = None, read_only: bool = False) -> pl.DataFrame:
        """Run a read query against the warehouse (tables are ``<schema>.<table>``)."""
        import polars as pl

        if not self.exists():
            return pl.DataFrame()
        with self.connect(read_only=read_only) as con:
            return _frame(con.sql(sql, params=params).to_arrow_table())
