"""Constants and builders shared by the tests (fixtures live in conftest.py)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from podledger.config import CostCenterConfig
from podledger.storage import FsspecStore

UTC = dt.UTC
ROOT = Path(__file__).resolve().parents[1]  # the repository
SYNTH_START = dt.datetime(2026, 11, 2, tzinfo=UTC)
SYNTH_HOURS = 4
ACCESS_KEY, SECRET_KEY = "podledger-test", "podledger-test-secret"


def s3_options(url: str) -> dict:
    """fsspec/s3fs options for the moto server at ``url``."""
    return {"key": ACCESS_KEY, "secret": SECRET_KEY, "client_kwargs": {"endpoint_url": url, "region_name": "us-east-1"}}


def s3_store(moto, bucket: str) -> FsspecStore:
    """The ``bucket`` of the moto server ``moto`` (created when missing) as an object store."""
    from podledger_lab.demo import ensure_bucket

    ensure_bucket(moto, bucket)
    return FsspecStore("s3", bucket, s3_options(moto.url))


def prometheus_client(server):
    """A query client for the Prometheus-compatible ``server`` on loopback (no auth)."""
    from podledger.connections import ConnectionInfo
    from podledger.promclient import client_from_connection

    return client_from_connection(ConnectionInfo("p", host="127.0.0.1", port=server.port))


def make_cost_center(bucket: str, name: str = "test", **overrides) -> CostCenterConfig:
    """A cost center pointed at the synthetic cluster, the given metrics bucket and the billing bucket."""
    data = {
        "name": name,
        "clusters": [{"name": "demo-eks", "prometheus_conn_id": "prometheus_test"}],
        "storage": {"uri": f"s3://{bucket}/k8s/prometheus"},
        "billing": {"uri": "s3://billing/cur/podledger-cur"},
        "retries": 0,
        "query_retries": 0,
        **overrides,
    }
    return CostCenterConfig.model_validate(data)


def put_tree(store: FsspecStore, root, key_prefix: str) -> None:  # noqa: ANN001 - a pathlib.Path
    """Copy every file under ``root`` into ``store`` below ``key_prefix`` (a CUR export, as delivered)."""
    for path in sorted(root.rglob("*")):
        if path.is_file():
            store.put(f"{key_prefix.strip('/')}/{path.relative_to(root)}", path.read_bytes())


PG_TEST_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=test"


def drop_warehouse_tables(table: str, dsn: str = PG_TEST_DSN) -> None:
    """Drop a PostgreSQL warehouse table and every table a load creates beside it."""
    import psycopg

    with psycopg.connect(dsn) as con:
        con.execute(f"DROP TABLE IF EXISTS {table} CASCADE")
        for suffix in ("split_line_items", "reconciliation", "daily_rollup", "hourly_labels"):
            con.execute(f"DROP TABLE IF EXISTS {table}_{suffix}")


def block_airflow_imports(monkeypatch) -> None:  # noqa: ANN001 - pytest's MonkeyPatch
    """Make ``import airflow…`` fail for the rest of the test: the CLI as installed without Airflow."""
    import builtins

    real_import = builtins.__import__

    def no_airflow(name, *args, **kwargs):  # noqa: ANN001, ANN202
        if name.startswith("airflow"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_airflow)
