"""Every table's contract is its declared column schema, and the IO manager checks it on write:
a frame with a missing, undeclared or mistyped column is refused with the difference named and
nothing is stored, so the earlier partitions stay."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from mlops_assets.defs.catalog import column_schemas
from mlops_assets.defs.common import project
from mlops_assets.storage.contract import ContractError, check_frame
from mlops_assets.storage.io_manager import COLUMN_SCHEMA, PARTITION_COLUMN, DuckDBPolarsIOManager
from mlops_assets.storage.warehouse import Warehouse

DECLARED = [("day", "date"), ("n", "int"), ("score", "double"), ("name", "string")]


def _frame(**overrides: object) -> pl.DataFrame:
    columns: dict[str, object] = {
        "day": [date(2026, 1, 1)],
        "n": [3],
        "score": [0.5],
        "name": ["a"],
    }
    columns.update(overrides)
    return pl.DataFrame({k: v for k, v in columns.items() if v is not None})


def test_a_frame_of_the_declared_columns_passes_in_any_order() -> None:
    frame = _frame().select("name", "score", "n", "day")
    check_frame("t", frame, DECLARED)
    # An integer fits a double column, and an all-empty column of no dtype fits any kind.
    check_frame("t", _frame(score=[1], name=pl.Series([None])), DECLARED)


def test_a_missing_column_is_named_with_the_contract() -> None:
    with pytest.raises(ContractError) as err:
        check_frame("t", _frame(score=None), DECLARED)
    message = str(err.value)
    assert "missing ['score']" in message
    assert "['day', 'n', 'score', 'name']" in message
    assert "Nothing was stored" in message


def test_an_undeclared_column_is_named() -> None:
    with pytest.raises(ContractError, match=r"undeclared \['extra'\]"):
        check_frame("t", _frame(extra=[1]), DECLARED)


def test_a_mistyped_column_is_named_with_both_types() -> None:
    with pytest.raises(ContractError, match="n is String, declared int"):
        check_frame("t", _frame(n=["3"]), DECLARED)
    with pytest.raises(ContractError, match="day is String, declared date"):
        check_frame("t", _frame(day=["2026-01-01"]), DECLARED)


def test_every_asset_writing_a_table_declares_its_contract() -> None:
    from mlops_assets.definitions import defs

    declared = set(column_schemas(project().spec))
    graph = defs.resolve_asset_graph()
    checked = 0
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        if node.is_materializable and node.io_manager_key == "io_manager":
            checked += 1
            assert COLUMN_SCHEMA in node.metadata, f"{key.to_user_string()} has no column schema"
            assert key.path[-1] in declared or key.path[-1].startswith("candidate_")
    assert checked >= len(declared)


def test_the_io_manager_refuses_a_frame_breaking_the_contract_and_keeps_the_stored_day(
    tmp_path: Path,
) -> None:
    database = str(tmp_path / "warehouse")
    schema = dg.TableSchema(
        columns=[dg.TableColumn(name=n, type=k) for n, k in DECLARED]  # the contract
    )
    days = dg.DailyPartitionsDefinition(start_date="2026-01-01")
    good = {"frame": _frame()}

    @dg.asset(
        name="scores",
        partitions_def=days,
        metadata={PARTITION_COLUMN: "day", COLUMN_SCHEMA: schema},
    )
    def scores() -> pl.DataFrame:
        return good["frame"]

    io = DuckDBPolarsIOManager(database=database)
    first = dg.materialize([scores], partition_key="2026-01-01", resources={"io_manager": io})
    assert first.success
    good["frame"] = _frame(n=[99], extra=["x"])
    second = dg.materialize(
        [scores],
        partition_key="2026-01-01",
        resources={"io_manager": io},
        raise_on_error=False,
    )
    assert not second.success
    failure = next(e for e in second.all_events if e.is_step_failure)
    assert "undeclared ['extra']" in str(failure.event_specific_data.error)
    stored = Warehouse(database, "mlops").read("scores")
    assert stored["n"].to_list() == [3]
