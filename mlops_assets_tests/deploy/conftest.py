"""Fixtures of the deploy tests: one private PostgreSQL server for the whole session, and a fresh
database with its own password login per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mlops_assets_tests.deploy.harness import Database, PostgresServer


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    server = PostgresServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_db(postgres_server: PostgresServer) -> Database:
    return postgres_server.create_database("dagster")
