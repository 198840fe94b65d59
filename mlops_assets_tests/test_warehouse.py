"""The DuckLake warehouse (mlops_assets.storage.warehouse) on real files under tmp_path:
replacing a partition is idempotent, rows read back as polars with their dtypes, the partition
filter selects exactly one day, a process killed between the DELETE and the INSERT leaves the
previous rows (and a re-run completes), a partition of another shape is refused, hostile
identifiers are refused, every write returns the snapshot it committed and a read at that
snapshot gives the rows as they were, the extensions come from their packages with auto-install
and auto-load off, and four processes replacing partitions of one table at once lose and double
no row."""

from __future__ import annotations

import json
import signal
from datetime import date, timedelta
from pathlib import Path

import duckdb
import polars as pl
import pytest

from mlops_assets.environments import SettingsError
from mlops_assets.storage.warehouse import Warehouse, WarehouseError
from mlops_assets_tests.helpers import clean_env, run_python

DAY = date(2025, 3, 10)
NEXT = DAY + timedelta(days=1)
SCHEMA = {
    "air_date": pl.Date,
    "airing_id": pl.String,
    "network": pl.String,
    "hour": pl.Int32,
    "spend": pl.Float64,
}


def day_frame(day: date, n: int = 5, version: int = 1) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "air_date": [day] * n,
            "airing_id": [f"{day:%Y%m%d}-{i:03d}" for i in range(n)],
            "network": ["ABC", "ESPN", "FOX", "CBS", "NBC"][:n] * (n // 5 or 1),
            "hour": list(range(n)),
            "spend": [100.0 * version + i for i in range(n)],
        },
        schema=SCHEMA,
    )


def write_day(wh: Warehouse, frame: pl.DataFrame, day: date, table: str = "raw_events") -> int:
    return wh.replace_partition(table, frame, "air_date", day, day + timedelta(days=1)).rows


def read_day(wh: Warehouse, day: date, table: str = "raw_events") -> pl.DataFrame:
    return wh.read(table, "air_date", day, day + timedelta(days=1)).sort("airing_id")


@pytest.fixture
def wh(tmp_path: Path) -> Warehouse:
    return Warehouse(tmp_path / "warehouse", "mlops")


def test_replacing_a_partition_twice_is_idempotent(wh: Warehouse) -> None:
    frame = day_frame(DAY)
    assert write_day(wh, frame, DAY) == 5
    first = read_day(wh, DAY)
    assert write_day(wh, frame, DAY) == 5
    second = read_day(wh, DAY)
    assert first.equals(second)
    counts = wh.query(
        "SELECT count(*) AS n, count(DISTINCT airing_id) AS k FROM mlops.raw_events"
    ).row(0)
    assert counts == (5, 5)


def test_partition_reads_back_as_polars_with_dtypes(wh: Warehouse) -> None:
    frame = day_frame(DAY)
    write_day(wh, frame, DAY)
    back = read_day(wh, DAY)
    assert isinstance(back, pl.DataFrame)
    assert dict(back.schema) == SCHEMA
    assert back.equals(frame.sort("airing_id"))
    with wh.connect(read_only=True) as con:
        column_type = con.execute(
            "SELECT data_type FROM information_schema.columns "
            "WHERE table_name = 'raw_events' AND column_name = 'air_date'"
        ).fetchone()[0]
    assert column_type == "DATE"


def test_partition_filter_selects_exactly_one_day(wh: Warehouse) -> None:
    before, after = DAY - timedelta(days=1), NEXT
    for day in (before, DAY, after):
        write_day(wh, day_frame(day), day)
    got = read_day(wh, DAY)
    assert got["air_date"].unique().to_list() == [DAY]
    assert got.equals(day_frame(DAY))

    # Replacing D leaves its neighbours untouched.
    write_day(wh, day_frame(DAY, n=3, version=2), DAY)
    assert read_day(wh, DAY).equals(day_frame(DAY, n=3, version=2))
    assert read_day(wh, before).equals(day_frame(before))
    assert read_day(wh, after).equals(day_frame(after))
    assert wh.query("SELECT count(*) AS n FROM mlops.raw_events")["n"][0] == 13


def test_rows_outside_the_partition_are_refused(wh: Warehouse) -> None:
    write_day(wh, day_frame(DAY), DAY)
    stray = pl.concat([day_frame(DAY), day_frame(NEXT)])
    with pytest.raises(WarehouseError, match="5 rows for raw_events fall outside"):
        write_day(wh, stray, DAY)
    assert read_day(wh, DAY).equals(day_frame(DAY))
    assert read_day(wh, NEXT).is_empty()


def test_partition_of_another_shape_is_refused_and_keeps_rows(wh: Warehouse) -> None:
    write_day(wh, day_frame(DAY), DAY)
    with pytest.raises(WarehouseError, match=r"columns \['spend'\]"):
        write_day(wh, day_frame(DAY, version=2).drop("spend"), DAY)
    assert read_day(wh, DAY).equals(day_frame(DAY))


def test_new_column_is_added_to_the_table(wh: Warehouse) -> None:
    write_day(wh, day_frame(DAY), DAY)
    wider = day_frame(NEXT).with_columns(pl.lit(1.5).alias("audience_k"))
    write_day(wh, wider, NEXT)
    assert read_day(wh, NEXT)["audience_k"].to_list() == [1.5] * 5
    assert read_day(wh, DAY)["audience_k"].null_count() == 5


def test_error_between_delete_and_insert_rolls_back(
    wh: Warehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_day(wh, day_frame(DAY), DAY)

    def fail(self: Warehouse, con: duckdb.DuckDBPyConnection, table: str) -> None:
        raise RuntimeError("insert failed")

    monkeypatch.setattr(Warehouse, "_insert", fail)
    with pytest.raises(RuntimeError, match="insert failed"):
        write_day(wh, day_frame(DAY, version=2), DAY)
    assert read_day(wh, DAY).equals(day_frame(DAY))


KILL_BETWEEN_DELETE_AND_INSERT = """
import os, signal, sys
from datetime import date, timedelta
import polars as pl
from mlops_assets.storage.warehouse import Warehouse
from mlops_assets_tests.test_warehouse import day_frame, write_day

path, day = sys.argv[1], date.fromisoformat(sys.argv[2])
wh = Warehouse(path, "mlops")
write_day(wh, day_frame(day, version=1), day)

def die(self, con, table):
    left = con.execute(
        "SELECT count(*) FROM mlops.raw_events WHERE air_date = ?", [day]
    ).fetchone()[0]
    sys.stdout.write(f"rows_after_delete={left}\\n")
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)

Warehouse._insert = die
write_day(wh, day_frame(day, version=2), day)
sys.stdout.write("not killed\\n")
"""


def test_process_killed_between_delete_and_insert_keeps_previous_rows(tmp_path: Path) -> None:
    path = tmp_path / "warehouse"
    code = (
        "import sys; sys.argv[1:] = "
        + json.dumps([str(path), DAY.isoformat()])
        + KILL_BETWEEN_DELETE_AND_INSERT
    )
    done = run_python(code, clean_env(), timeout=120)
    assert done.returncode == -signal.SIGKILL, done.stderr
    # The child saw the partition emptied by its DELETE, then died before inserting.
    assert done.stdout.splitlines() == ["rows_after_delete=0"]

    wh = Warehouse(path, "mlops")
    assert read_day(wh, DAY).equals(day_frame(DAY, version=1))

    assert write_day(wh, day_frame(DAY, version=2), DAY) == 5
    assert read_day(wh, DAY).equals(day_frame(DAY, version=2))
    assert wh.query("SELECT count(*) AS n FROM mlops.raw_events")["n"][0] == 5


def test_replace_table_and_append(wh: Warehouse) -> None:
    wh.replace_table("online_features", day_frame(DAY))
    wh.replace_table("online_features", day_frame(NEXT, n=2))
    assert wh.read("online_features").equals(day_frame(NEXT, n=2))
    wh.append("alerts", day_frame(DAY, n=2))
    wh.append("alerts", day_frame(DAY, n=2))
    assert wh.read("alerts").height == 4


def test_read_of_a_missing_table_or_file_is_empty(tmp_path: Path, wh: Warehouse) -> None:
    assert wh.read("raw_events").is_empty()
    assert not wh.exists() and not wh.path.exists()
    write_day(wh, day_frame(DAY), DAY)
    assert wh.read("never_written").is_empty()
    assert not wh.table_exists("never_written")
    assert wh.table_exists("raw_events")


@pytest.mark.parametrize(
    "table",
    ['raw_events"; DROP TABLE mlops.raw_events; --', "raw_events;", "mlops.raw_events", "1table"],
)
def test_hostile_table_names_are_refused(wh: Warehouse, table: str) -> None:
    write_day(wh, day_frame(DAY), DAY)
    with pytest.raises((WarehouseError, SettingsError), match="table name"):
        write_day(wh, day_frame(DAY), DAY, table=table)
    with pytest.raises((WarehouseError, SettingsError), match="table name"):
        wh.replace_table(table, day_frame(DAY))
    with pytest.raises((WarehouseError, SettingsError), match="table name"):
        wh.append(table, day_frame(DAY))
    assert wh.tables() == ["raw_events"]
    assert read_day(wh, DAY).equals(day_frame(DAY))


def test_hostile_schema_and_partition_column_are_refused(tmp_path: Path, wh: Warehouse) -> None:
    with pytest.raises(SettingsError, match="warehouse schema"):
        Warehouse(tmp_path / "w", 'mlops"; DROP SCHEMA main; --')
    write_day(wh, day_frame(DAY), DAY)
    frame = day_frame(DAY).rename({"air_date": "air date"})
    with pytest.raises(SettingsError, match="partition column"):
        wh.replace_partition("raw_events", frame, "air date", DAY, NEXT)
    with pytest.raises(SettingsError, match="partition column"):
        wh.read("raw_events", 'air_date" OR 1=1 --', DAY, NEXT)


def test_every_write_names_its_snapshot_and_a_read_at_it_gives_the_rows_then(
    wh: Warehouse,
) -> None:
    first = wh.replace_partition("raw_events", day_frame(DAY), "air_date", DAY, NEXT)
    second = wh.replace_partition("raw_events", day_frame(DAY, version=2), "air_date", DAY, NEXT)
    assert (first.rows, second.rows) == (5, 5)
    assert second.snapshot > first.snapshot == wh.current_snapshot() - 1
    assert read_day(wh, DAY).equals(day_frame(DAY, version=2))
    then = wh.read("raw_events", "air_date", DAY, NEXT, snapshot=first.snapshot)
    assert then.sort("airing_id").equals(day_frame(DAY, version=1))
    with pytest.raises(Exception, match=r"snapshot|version"):
        wh.read("raw_events", snapshot=second.snapshot + 100)


def test_extensions_load_from_their_packages_with_auto_install_and_load_off(
    wh: Warehouse,
) -> None:
    write_day(wh, day_frame(DAY), DAY)
    with wh.connect() as con:
        settings = dict(
            con.execute(
                "SELECT name, value FROM duckdb_settings() WHERE name IN "
                "('autoinstall_known_extensions', 'autoload_known_extensions')"
            ).fetchall()
        )
        loaded = dict(
            con.execute(
                "SELECT extension_name, install_path FROM duckdb_extensions() WHERE loaded"
            ).fetchall()
        )
    assert settings == {
        "autoinstall_known_extensions": "false",
        "autoload_known_extensions": "false",
    }
    for name, package in (
        ("ducklake", "duckdb_extension_ducklake"),
        ("sqlite_scanner", "duckdb_extension_sqlite"),
    ):
        assert name in loaded, loaded
        assert package in str(Path(loaded[name]).resolve()), loaded


# One process replacing its own days of one table, each day several times, printing its
# commit count.
_WRITER = """
import sys
from datetime import date, timedelta
from mlops_assets.storage.warehouse import Warehouse
from mlops_assets_tests.test_warehouse import day_frame, write_day

path, first, days = sys.argv[1], date.fromisoformat(sys.argv[2]), int(sys.argv[3])
wh = Warehouse(path, "mlops")
for version in (1, 2, 3):
    for i in range(days):
        day = first + timedelta(days=i)
        assert write_day(wh, day_frame(day, n=5, version=version), day) == 5
print("done")
"""


def test_four_processes_replacing_partitions_at_once_lose_and_double_no_row(
    tmp_path: Path,
) -> None:
    import subprocess
    import sys

    path = tmp_path / "warehouse"
    Warehouse(path, "mlops").replace_partition(
        "raw_events", day_frame(DAY, n=5), "air_date", DAY, NEXT
    )
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(path), str(DAY + timedelta(days=1 + 5 * k)), "5"],
            env=clean_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for k in range(4)
    ]
    for writer in writers:
        out, err = writer.communicate(timeout=300)
        assert writer.returncode == 0 and out.strip() == "done", err[-3000:]
    wh = Warehouse(path, "mlops")
    counts = wh.query(
        "SELECT air_date, count(*) AS n, count(DISTINCT airing_id) AS k, min(spend) AS low "
        "FROM mlops.raw_events GROUP BY air_date ORDER BY air_date"
    )
    assert counts.height == 21
    assert counts["n"].to_list() == [5] * 21 and counts["k"].to_list() == [5] * 21
    # Every writer's last version of its days stands; the first day was left alone.
    assert counts["low"].to_list() == [100.0] + [300.0] * 20
