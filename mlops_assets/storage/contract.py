"""The contract of a warehouse table, checked before anything is stored.

A table's contract is its column schema as the catalog declares it (``dagster/column_schema``:
column name, type word and description, rendered in the UI). The IO manager compares every frame
an asset returns with it: the same set of columns, each of a dtype of the declared kind. A frame
that breaks it is refused with the difference spelled out, and the stored partitions stay as they
were.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import polars as pl


class ContractError(ValueError):
    """A frame does not have the columns (or dtypes) its table declares."""


def _kinds() -> dict[str, tuple[type, ...]]:
    import polars as pl

    integer = (pl.Int8, pl.Int16, pl.Int32, pl.Int64, pl.UInt8, pl.UInt16, pl.UInt32, pl.UInt64)
    text = (pl.String, pl.Categorical, pl.Enum)
    return {
        "date": (pl.Date,),
        "timestamp": (pl.Datetime,),
        "double": (pl.Float32, pl.Float64, *integer),
        "int": integer,
        "bool": (pl.Boolean,),
        "string": text,
        "json": text,
        "list": (pl.List, pl.Array),
    }


def check_frame(table: str, frame: pl.DataFrame, columns: Iterable[tuple[str, str]]) -> None:
    """Raise :class:`ContractError` unless ``frame`` has exactly the declared ``(name, kind)``
    columns, each of a dtype of its kind (an all-empty column of no dtype fits any kind)."""
    import polars as pl

    declared = dict(columns)
    have, want = list(frame.columns), set(declared)
    missing = [c for c in declared if c not in have]
    extra = [c for c in have if c not in want]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing {missing}")
        if extra:
            parts.append(f"undeclared {extra}")
        raise ContractError(
            f"table {table}: the frame's columns do not match its contract ({'; '.join(parts)}); "
            f"the contract declares {list(declared)}. Nothing was stored: make the stage return "
            "exactly these columns, or declare the change in mlops_assets/defs/catalog.py"
        )
    kinds = _kinds()
    wrong = []
    for name, kind in declared.items():
        dtype = frame.schema[name]
        allowed = kinds.get(kind)
        if allowed is None or dtype == pl.Null:
            continue
        if not isinstance(dtype, allowed):
            wrong.append(f"{name} is {dtype}, declared {kind}")
    if wrong:
        raise ContractError(
            f"table {table}: {'; '.join(wrong)}. Nothing was stored: cast the column in the "
            "stage that makes it, or change its declared type in mlops_assets/defs/catalog.py"
        )
