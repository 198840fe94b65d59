"""The online feature store: one Parquet file per environment, published atomically.

The endpoint reads it; Dagster writes a new file aside and renames it over the old one, so a
reader sees either the old or the new content, never a half-written file.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from mlops_assets.atomic import write_atomic


def publish(frame: pl.DataFrame, path: str | Path) -> Path:
    return write_atomic(path, frame.write_parquet)


def read(path: str | Path) -> pl.DataFrame:
    return pl.read_parquet(path)
