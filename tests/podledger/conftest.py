"""Fixtures of the library's tests: a warehouse loader of each kind."""

from __future__ import annotations

import uuid

import pytest

from helpers import PG_TEST_DSN, drop_warehouse_tables
from podledger.warehouse import DuckDBLoader, PostgresLoader


@pytest.fixture(params=["duckdb", "postgres"])
def loader(request, tmp_path):
    """A DuckDB loader on a fresh file, or a PostgreSQL loader on a fresh table (dropped with its side tables)."""
    if request.param == "duckdb":
        yield DuckDBLoader(tmp_path / "w.duckdb", "alloc")
        return
    table = f"alloc_{uuid.uuid4().hex[:8]}"
    yield PostgresLoader(PG_TEST_DSN, table)
    drop_warehouse_tables(table)
