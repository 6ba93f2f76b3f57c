"""Warehouse loaders: the slice is replaced atomically; a failure mid-load keeps the previous rows."""

from __future__ import annotations

import datetime as dt
import threading
import uuid

import polars as pl
import pytest

from helpers import drop_warehouse_tables
from podledger.allocation import OUTPUT_SCHEMA
from podledger.warehouse import DuckDBLoader, PostgresLoader

UTC = dt.UTC
START = dt.datetime(2026, 11, 2, tzinfo=UTC)
DSN = "host=127.0.0.1 port=5432 user=postgres dbname=test"


def rows_for(cluster: str, hours: int, pods: int, cost: float = 1.0) -> pl.DataFrame:
    records = []
    for h in range(hours):
        for p in range(pods):
            records.append({name: None for name in OUTPUT_SCHEMA} | {
                "hour_start": START + dt.timedelta(hours=h), "cost_center": "cc", "cluster": cluster,
                "namespace": "ns", "pod": f"pod-{p}", "total_cost": cost, "cpu_cost": cost})
    return pl.DataFrame(records, schema=OUTPUT_SCHEMA)


def test_reload_replaces_exactly_the_slice(loader):
    end = START + dt.timedelta(hours=3)
    loader.load(rows_for("a", 3, 4), cost_center="cc", cluster="a", start=START, end=end)
    loader.load(rows_for("b", 3, 2), cost_center="cc", cluster="b", start=START, end=end)
    loader.load(rows_for("a", 3, 4, cost=2.0), cost_center="cc", cluster="a", start=START, end=end)
    totals = dict(loader.query(f"SELECT cluster, sum(total_cost) FROM {loader.table} GROUP BY cluster").iter_rows())
    assert totals == {"a": 24.0, "b": 6.0}


def test_failure_mid_load_keeps_previous_rows(loader):
    end = START + dt.timedelta(hours=2)
    loader.load(rows_for("a", 2, 3), cost_center="cc", cluster="a", start=START, end=end)
    bad = rows_for("a", 2, 3).with_columns(pl.when(pl.int_range(pl.len()) == 4).then(pl.lit("not-a-number"))
                                           .otherwise(pl.col("total_cost").cast(pl.String)).alias("total_cost"))
    with pytest.raises(Exception, match=r"(?i)not-a-number|conversion|invalid|insufficient data"):  # noqa: B017 - engine-specific error types
        loader.load(bad, cost_center="cc", cluster="a", start=START, end=end)
    count = loader.query(f"SELECT count(*) AS n, sum(total_cost) AS c FROM {loader.table}")
    assert count.row(0) == (6, 6.0)


def test_two_clusters_loading_at_once_do_not_clobber_each_other():
    table = f"alloc_{uuid.uuid4().hex[:8]}"
    loaders = [PostgresLoader(DSN, table) for _ in range(2)]
    errors: list[Exception] = []

    def run(loader: PostgresLoader, cluster: str) -> None:
        try:
            loader.load(rows_for(cluster, 24, 200), cost_center="cc", cluster=cluster, start=START,
                        end=START + dt.timedelta(hours=24))
        except Exception as exc:  # noqa: BLE001 - surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(loader, name)) for loader, name in zip(loaders, ("x", "y"), strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    try:
        assert not errors
        counts = dict(loaders[0].query(f"SELECT cluster, count(*) FROM {table} GROUP BY cluster").iter_rows())
        assert counts == {"x": 4800, "y": 4800}
    finally:
        drop_warehouse_tables(table)


def test_older_table_without_new_columns_still_loads(loader):
    old_columns = [c for c in OUTPUT_SCHEMA if c not in ("node_labels", "namespace_labels")]
    if isinstance(loader, DuckDBLoader):
        from podledger.warehouse import _DUCKDB_TYPES as types

        con = loader.connect()
        con.execute(f"CREATE TABLE {loader.table} ({', '.join(f'{c} {types[OUTPUT_SCHEMA[c]]}' for c in old_columns)})")
        con.close()
    else:
        import psycopg

        from podledger.warehouse import _POSTGRES_TYPES as types
        with psycopg.connect(DSN) as con:
            con.execute(f"CREATE TABLE {loader.table} ({', '.join(f'{c} {types[OUTPUT_SCHEMA[c]]}' for c in old_columns)})")
    rows = rows_for("a", 1, 2).with_columns(pl.lit('{"team": "x"}').alias("node_labels"))
    loader.load(rows, cost_center="cc", cluster="a", start=START, end=START + dt.timedelta(hours=1))
    assert loader.query(f"SELECT node_labels FROM {loader.table} LIMIT 1").item() == '{"team": "x"}'


def test_views_answer_daily_questions(loader):
    rows = rows_for("a", 3, 2).with_columns(pl.lit(0.5).alias("efficiency"), pl.lit(0.0).alias("memory_cost"))
    idle = rows_for("a", 3, 1, cost=0.25).with_columns(pl.lit("__idle__").alias("namespace"), pl.lit("__idle__").alias("pod"))
    loader.load(pl.concat([rows, idle]), cost_center="cc", cluster="a", start=START, end=START + dt.timedelta(hours=3))
    ns = loader.query(f"SELECT namespace, total_cost FROM {loader.table}_daily_namespace ORDER BY namespace")
    assert ns.rows() == [("__idle__", 0.75), ("ns", 6.0)]
    idle_view = loader.query(f"SELECT idle_cost, total_cost FROM {loader.table}_daily_idle")
    assert idle_view.rows() == [(0.75, 6.75)]
    efficiency = loader.query(f"SELECT efficiency FROM {loader.table}_daily_efficiency").item()
    assert efficiency == pytest.approx(0.5)
    workload = loader.query(f"SELECT pods FROM {loader.table}_daily_workload").item()
    assert workload == 2
