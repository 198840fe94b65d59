"""The online feature store: one Parquet file per environment, published atomically.

The endpoint reads it; Dagster writes a new file aside and renames it over the old one, so a
reader sees either the old or the new content, never a half-written file.
"""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl


def publish(frame: pl.DataFrame, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    frame.write_parquet(tmp)
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return path


def read(path: str | Path) -> pl.DataFrame:
    return pl.read_parquet(path)
