"""Both DAGs under dag.test() against the real local stack: export -> sensor -> validate -> enrich -> load."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import polars as pl

from helpers import SYNTH_START, drop_warehouse_tables, make_cost_center
from podledger.warehouse import PostgresLoader

DAGS = Path(__file__).resolve().parents[2] / "dags"


def test_export_then_enrich_dags(airflow_db, stack_env, fresh_bucket, store_factory, synth, tmp_path, monkeypatch):
    import uuid

    from airflow.dag_processing.dagbag import DagBag
    from airflow.utils.state import DagRunState

    table = f"alloc_dag_{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE_PG", "postgres://postgres@127.0.0.1:5432/test")
    cc = make_cost_center(fresh_bucket, name="dagtest", warehouse={"kind": "postgres", "conn_id": "warehouse_pg",
                                                                   "table": table})
    config = tmp_path / "cost_centers.yaml"
    config.write_text(json.dumps({"cost_centers": [json.loads(cc.model_dump_json())]}))
    monkeypatch.setenv("PODLEDGER_CONFIG", str(config))
    dagbag = DagBag(dag_folder=str(DAGS))
    end = SYNTH_START + dt.timedelta(hours=3)
    conf = {"start": SYNTH_START.isoformat(), "end": end.isoformat()}

    run = dagbag.get_dag("podledger_export__dagtest").test(run_conf=conf)
    assert run.state == DagRunState.SUCCESS
    keys = store_factory(fresh_bucket).list("k8s/prometheus")
    assert sum(k.endswith("_manifest.json") for k in keys) == 3
    assert sum(k.endswith("_validation.json") for k in keys) == 3

    run = dagbag.get_dag("podledger_enrich__dagtest").test(run_conf=conf)
    assert run.state == DagRunState.SUCCESS
    loader = PostgresLoader("host=127.0.0.1 user=postgres dbname=test", table)
    rows = loader.query(f"SELECT hour_start, sum(total_cost) AS allocated FROM {table} WHERE cost_center = 'dagtest' GROUP BY 1")
    rows = rows.with_columns(pl.col("hour_start").dt.convert_time_zone("UTC"))
    truth = pl.read_parquet(synth.truth_instances).group_by("hour_start").agg(pl.col("amortized_cost").sum())
    check = rows.join(truth.with_columns(pl.col("hour_start").cast(pl.Datetime("us", "UTC"))), on="hour_start")
    assert check.height == 3
    assert ((check["allocated"] - check["amortized_cost"]).abs() <= 1e-9 * check["amortized_cost"]).all()
    import psycopg

    with psycopg.connect("host=127.0.0.1 user=postgres dbname=test") as con:
        items = con.execute(f"SELECT count(*) FROM {table}_split_line_items").fetchone()[0]
        assert items > 0
    drop_warehouse_tables(table)
