"""The endpoint's copy of the online store: the file's signature (what says it changed) and
loading the file whole into memory, checked (every serving key and model feature column, one row
per key), as the :class:`OnlineStore` the endpoint answers from (see ``serving.state``)."""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import polars as pl

from mlops_assets.dataset import DatasetSpec

# (st_mtime_ns, st_size, st_ino) of the online store file.
Signature = tuple[int, int, int]


class StoreError(ValueError):
    """The online store file cannot be served; the message names the problem."""


def _now() -> datetime:
    return datetime.now(UTC)


def file_signature(path: str | Path) -> Signature | None:
    """(mtime_ns, size, inode) of ``path``, or None when it does not exist."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


@dataclass(frozen=True)
class OnlineStore:
    """The online store in memory: key tuple (serving key order) -> model feature row."""

    path: Path
    signature: Signature
    rows: dict[tuple[str, ...], dict[str, Any]]
    loaded_at: datetime
    features_through: date | None

    @property
    def row_count(self) -> int:
        return len(self.rows)

    @property
    def mtime(self) -> datetime:
        return datetime.fromtimestamp(self.signature[0] / 1e9, UTC)

    def describe(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "rows": self.row_count,
            "mtime": self.mtime.isoformat(),
            "size_bytes": self.signature[1],
            "inode": self.signature[2],
            "loaded_at": self.loaded_at.isoformat(),
            "features_through": None
            if self.features_through is None
            else self.features_through.isoformat(),
        }


def load_online_store(path: str | Path, spec: DatasetSpec) -> OnlineStore:
    """Read the store file once and index it; StoreError naming a missing column or a duplicate.

    The signature is taken from the open file, so it belongs to exactly the content read even if
    the file is replaced meanwhile.
    """
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            st = os.fstat(fh.fileno())
            data = fh.read()
    except FileNotFoundError:
        raise StoreError(f"online store file {path} does not exist") from None
    signature = (st.st_mtime_ns, st.st_size, st.st_ino)
    try:
        frame = pl.read_parquet(io.BytesIO(data))
    except Exception as exc:  # polars raises several error types for a corrupt file
        raise StoreError(f"online store file {path} is not readable Parquet: {exc}") from exc
    keys = list(spec.serving_keys)
    features = list(spec.model_feature_columns)
    missing = [c for c in dict.fromkeys(keys + features) if c not in frame.columns]
    if missing:
        raise StoreError(f"online store file {path} lacks columns {missing}")
    key_frame = frame.select(pl.col(k).cast(pl.String) for k in keys)
    null_keys = key_frame.null_count().row(0)
    if any(null_keys):
        raise StoreError(f"online store file {path} has rows with a null serving key")
    rows = dict(
        zip(
            key_frame.iter_rows(),
            frame.select(features).to_dicts(),
            strict=True,
        )
    )
    if len(rows) != frame.height:
        raise StoreError(
            f"online store file {path} has {frame.height - len(rows)} duplicate serving keys"
        )
    through = None
    if spec.date_column in frame.columns and frame.height:
        through = frame[spec.date_column].max()
        if isinstance(through, datetime):
            through = through.date()
    return OnlineStore(
        path=path,
        signature=signature,
        rows=rows,
        loaded_at=_now(),
        features_through=through if isinstance(through, date) else None,
    )
