"""End-to-end fixtures: a throwaway PostgreSQL database for Airflow's metadata (as production runs it)."""

from __future__ import annotations

import uuid

import pytest

PG_DSN = "host=127.0.0.1 user=postgres dbname=test"


@pytest.fixture
def metadata_db():
    """A throwaway PostgreSQL database for Airflow's metadata, dropped (connections and all) afterwards."""
    import psycopg

    name = f"airflow_e2e_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_DSN, autocommit=True) as con:
        con.execute(f"CREATE DATABASE {name}")
    yield f"postgresql+psycopg2://postgres@127.0.0.1:5432/{name}"
    with psycopg.connect(PG_DSN, autocommit=True) as con:
        con.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
