"""One day of a synthetic cluster through both DAGs (export, then enrichment into PostgreSQL), timed (issue 6).

Prometheus (Debian) holds the day (generated hour by hour, as bench/export.py does; ``--work`` reuses a TSDB it
left), moto serves S3 with the cluster's CUR 2.0 export, PostgreSQL (127.0.0.1:5432) is the warehouse. Both
DAGs run with ``airflow dags test`` and the day as their params: mapped tasks run one after another in one
process, so the figure is an upper bound for a scheduler with free worker slots.

    .venv/bin/python bench/e2e.py --nodes 200 --pods 6000 --work /work/bench-export-200
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from export import ensure_tsdb  # noqa: E402  (bench/export.py: the same hour-by-hour loading)

PG_DSN = "host=127.0.0.1 user=postgres dbname=test"


def _airflow(args: list[str], env: dict[str, str], log: Path) -> float:
    started = time.perf_counter()
    with log.open("a") as out:
        result = subprocess.run([str(Path(sys.executable).with_name("airflow")), *args], env={**os.environ, **env},
                                stdout=out, stderr=subprocess.STDOUT)
    if result.returncode:
        raise SystemExit(f"airflow {' '.join(args)} failed; see {log}")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=20)
    parser.add_argument("--pods", type=int, default=600)
    parser.add_argument("--start", default="2026-11-02T00:00:00+00:00")
    parser.add_argument("--work", type=Path, help="the TSDB directory of bench/export.py (reused when it matches)")
    args = parser.parse_args()
    args.hours = 24

    import psycopg

    from podledger.layout import to_utc
    from podledger_lab.demo import stack_env, upload_tree
    from podledger_lab.stack import start_moto, start_prometheus
    from podledger_lab.synth.cluster import build_cluster
    from podledger_lab.synth.cur import build_cur, write_cur_export

    work = ensure_tsdb(args, args.work or Path(tempfile.mkdtemp(prefix="podledger-bench-e2e-")))
    start = to_utc(args.start)
    end = start + dt.timedelta(days=1)
    cluster = build_cluster("bench-eks", nodes=args.nodes, pods=args.pods, start=start, hours=args.hours)
    table, truth = build_cur(cluster)
    run = Path(tempfile.mkdtemp(prefix="podledger-bench-e2e-run-"))
    write_cur_export(table, run / "cur")
    billed = sum(row["amortized_cost"] for row in truth)

    prometheus = start_prometheus(work / "tsdb", run / "prometheus", timeout=600)
    moto = start_moto(run / "moto")
    suffix = uuid.uuid4().hex[:8]
    table_name = f"bench_e2e_{suffix}"
    try:
        upload_tree(moto, "bench-billing", "cur", run / "cur")
        from podledger_lab.demo import ensure_bucket

        ensure_bucket(moto, "bench-metrics")
        config = run / "cost_centers.yaml"
        config.write_text(json.dumps({"cost_centers": [{
            "name": "bench", "initial_backfill_date": args.start[:10], "retries": 0,
            "clusters": [{"name": "bench-eks", "prometheus_conn_id": "prometheus_demo"}],
            "storage": {"uri": "s3://bench-metrics/k8s/prometheus"},
            "billing": {"uri": "s3://bench-billing/cur/podledger-cur"},
            "warehouse": {"kind": "postgres", "conn_id": "warehouse_bench", "table": table_name}}]}))
        env = stack_env(prometheus, moto, run, config)
        env["AIRFLOW_CONN_WAREHOUSE_BENCH"] = "postgres://postgres@127.0.0.1:5432/test"
        log = run / "airflow.log"
        _airflow(["db", "migrate"], env, log)
        conf = json.dumps({"start": start.isoformat(), "end": end.isoformat()})
        export_s = _airflow(["dags", "test", "podledger_export__bench", end.isoformat(), "-c", conf], env, log)
        print(f"export DAG (24 windows, validation): {export_s:.0f}s", flush=True)
        enrich_s = _airflow(["dags", "test", "podledger_enrich__bench", end.isoformat(), "-c", conf], env, log)
        print(f"enrichment DAG (allocation, reconciliation, PostgreSQL load): {enrich_s:.0f}s", flush=True)
        with psycopg.connect(PG_DSN) as con:
            rows, hours, allocated = con.execute(f"SELECT count(*), count(DISTINCT hour_start), sum(total_cost) "
                                                 f"FROM {table_name}").fetchone()
            con.execute(f"DROP TABLE IF EXISTS {table_name} CASCADE")
            con.execute(f"DROP TABLE IF EXISTS {table_name}_split_line_items")
    finally:
        prometheus.stop()
        moto.stop()
    print(f"\none day of {len(cluster.nodes)} nodes / {len(cluster.pods)} pods through both DAGs: "
          f"{export_s + enrich_s:.0f}s (export {export_s:.0f}s + enrichment {enrich_s:.0f}s)")
    print(f"  warehouse: {rows:,} rows over {hours} hours; allocated ${allocated:,.6f} vs billed ${billed:,.6f} "
          f"(difference {abs(allocated - billed):.2e})")


if __name__ == "__main__":
    main()
