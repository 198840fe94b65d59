"""DuckDB connections that load the DuckLake, SQLite, PostgreSQL and httpfs extensions from their
PyPI packages (``duckdb-extension-ducklake``, ``-sqlite``, ``-postgres``, ``-httpfs``, versions
equal to DuckDB's), never from the network.

The packages ship the binaries as ``extensions/v<version>/<name>.duckdb_extension``. DuckDB loads
an extension by name from ``<extension_directory>/v<version>/<platform>/<canonical name>``, and the
SQLite and PostgreSQL binaries must carry their entry point's name (``sqlite_scanner``,
``postgres_scanner``), so each process links them into such a directory once. Every connection
has extension auto-install and auto-load switched off: an extension missing from the packages is
an error naming the package, not a download.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import tempfile
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import duckdb

# extension -> (PyPI package, module, the binary's canonical name)
PACKAGES = {
    "ducklake": ("duckdb-extension-ducklake", "duckdb_extension_ducklake", "ducklake"),
    "sqlite": ("duckdb-extension-sqlite", "duckdb_extension_sqlite", "sqlite_scanner"),
    "postgres": ("duckdb-extension-postgres", "duckdb_extension_postgres", "postgres_scanner"),
    "httpfs": ("duckdb-extension-httpfs", "duckdb_extension_httpfs", "httpfs"),
}
# Data paths DuckDB reaches through httpfs.
OBJECT_STORE_PREFIXES = ("s3://", "gs://", "gcs://", "r2://", "http://", "https://")


class ExtensionError(RuntimeError):
    """An extension the warehouse needs is not installed for this DuckDB."""


def _binary(name: str, version: str) -> Path:
    package, module, _ = PACKAGES[name]
    found = importlib.util.find_spec(module)
    path = (
        Path(found.origin).parent / "extensions" / f"v{version}" / f"{name}.duckdb_extension"
        if found is not None and found.origin
        else None
    )
    if path is None or not path.is_file():
        raise ExtensionError(
            f"DuckDB {version}'s {name} extension is not installed: install the package "
            f"{package}=={version} (`pip install -r requirements.lock`)"
        )
    return path


@cache
def extension_directory() -> Path:
    """A directory laid out as DuckDB looks for extensions, linking the packages' binaries."""
    import duckdb

    version = duckdb.__version__
    platform = duckdb.execute("PRAGMA platform").fetchone()
    assert platform is not None
    # Inside the environment DuckDB is installed in (beside the packages it links to), or, when
    # that is not writable, in the user's temporary folder.
    root = Path(sys.prefix) / "share" / "mlops-assets" / "duckdb-extensions"
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError:
        root = Path(tempfile.gettempdir()) / f"mlops-assets-duckdb-extensions-{os.getuid()}"
    target = root / f"v{version}" / str(platform[0])
    target.mkdir(parents=True, exist_ok=True)
    for name, (_, _, canonical) in PACKAGES.items():
        link = target / f"{canonical}.duckdb_extension"
        source = _binary(name, version)
        if link.is_symlink() and link.resolve() == source.resolve():
            continue
        # Link aside, then rename over: a concurrent process sees the old link or the new one.
        aside = target / f".{canonical}.{os.getpid()}"
        aside.unlink(missing_ok=True)
        aside.symlink_to(source)
        aside.replace(link)
    return root


def connect(catalog_kind: str, object_store: bool = False) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with DuckLake and the catalog's extension loaded (and
    httpfs for an object-store data path)."""
    import duckdb

    con = duckdb.connect(
        config={
            "autoinstall_known_extensions": False,
            "autoload_known_extensions": False,
            "extension_directory": str(extension_directory()),
        }
    )
    con.execute("LOAD ducklake")
    con.execute(f"LOAD {'postgres' if catalog_kind == 'postgres' else 'sqlite'}")
    if object_store:
        con.execute("LOAD httpfs")
    return con
