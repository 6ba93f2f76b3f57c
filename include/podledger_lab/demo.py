"""The demo: a synthetic cluster in a real Prometheus, a CUR 2.0 export in S3, the DAGs end to end.

Recipe: 1. synthesize the cluster and its bill; 2. load the series into TSDB blocks and start
Prometheus and the S3 endpoint on loopback; 3. upload the bill; 4. run the export and enrichment DAGs
with ``airflow dags test`` (or the stages directly); 5. print cost by namespace, the reconciliation and
where everything is; 6. stop the servers by PID.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import polars as pl

from podledger.config import SAMPLE_CONFIG, load_cost_center
from podledger.connections import env_var_name
from podledger_lab.stack import Server, load_blocks, start_moto, start_prometheus, write_state

REPO = Path(__file__).resolve().parents[2]
COST_CENTER = "demo"


def _step(message: str) -> None:
    print(f"==> {message}", flush=True)


def stack_env(prometheus: Server, moto: Server, home: Path, config: Path = SAMPLE_CONFIG) -> dict[str, str]:
    """Return the environment that points podledger and Airflow at the local stack."""
    aws = {"conn_type": "aws", "login": "podledger", "password": "podledger-secret",
           "extra": {"endpoint_url": moto.url, "region_name": "us-east-1"}}
    prom = {"conn_type": "http", "host": "127.0.0.1", "port": prometheus.port, "extra": {"scheme": "http"}}
    return {
        env_var_name("aws_default"): json.dumps(aws),
        env_var_name("prometheus_demo"): json.dumps(prom),
        "PODLEDGER_HOME": str(home),
        "PODLEDGER_CONFIG": str(config),
        "AIRFLOW_HOME": str(home / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        "PYTHONPATH": os.pathsep.join([str(REPO / "plugins"), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        "AWS_ACCESS_KEY_ID": "podledger", "AWS_SECRET_ACCESS_KEY": "podledger-secret", "AWS_DEFAULT_REGION": "us-east-1",
    }


def ensure_bucket(moto: Server, bucket: str):  # noqa: ANN201 - a boto3 S3 client
    """Create ``bucket`` on the S3 endpoint if missing; return the client."""
    import boto3

    s3 = boto3.client("s3", endpoint_url=moto.url, aws_access_key_id="podledger",
                      aws_secret_access_key="podledger-secret", region_name="us-east-1")
    if bucket not in {b["Name"] for b in s3.list_buckets().get("Buckets", [])}:
        s3.create_bucket(Bucket=bucket)
    return s3


def upload_tree(moto: Server, bucket: str, key_prefix: str, root: Path) -> int:
    """Upload every file under ``root`` below ``key_prefix`` into ``bucket`` (created if missing)."""
    s3 = ensure_bucket(moto, bucket)
    count = 0
    for path in sorted(root.rglob("*")):
        if path.is_file():
            s3.upload_file(str(path), bucket, f"{key_prefix.strip('/')}/{path.relative_to(root)}".lstrip("/"))
            count += 1
    return count


def _airflow(args: list[str], env: dict[str, str], log: Path) -> None:
    airflow = shutil.which("airflow", path=str(Path(sys.executable).parent)) or "airflow"
    started = time.perf_counter()
    with log.open("a") as out:
        out.write(f"\n$ airflow {' '.join(args)}\n")
        out.flush()
        try:
            result = subprocess.run([airflow, *args], env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT,
                                    timeout=600)
        except subprocess.TimeoutExpired:
            raise SystemExit(f"airflow {' '.join(args)} did not finish within 10 minutes; see {log}") from None
    if result.returncode:
        tail = "".join(log.read_text().splitlines(keepends=True)[-40:])
        raise SystemExit(f"airflow {' '.join(args)} failed (exit {result.returncode}); last lines of {log}:\n{tail}")
    print(f"    airflow {args[0]} {args[1] if len(args) > 1 else ''} ok ({time.perf_counter() - started:.0f}s)", flush=True)


def run_pipeline_in_airflow(env: dict[str, str], start: dt.datetime, end: dt.datetime, log: Path) -> None:
    """Run the export DAG for the demo interval and the enrichment DAG for its hours with ``airflow dags test``."""
    _airflow(["db", "migrate"], env, log)
    conf = json.dumps({"start": start.isoformat(), "end": end.isoformat()})
    # The logical date is the demo interval's end: the sample cost center ends on the demo day (end_date), and a
    # run dated after a DAG's end_date runs no task.
    for dag_id in (f"podledger_export__{COST_CENTER}", f"podledger_enrich__{COST_CENTER}"):
        _airflow(["dags", "test", dag_id, end.isoformat(), "-c", conf], env, log)


def run_pipeline_directly(env: dict[str, str], start: dt.datetime, end: dt.datetime, home: Path) -> None:
    """Run the same stages through the ``podledger`` command's functions (no Airflow)."""
    from podledger.cli import main

    os.environ.update(env)
    span = ["--cost-center", COST_CENTER, "--start", start.isoformat(), "--end", end.isoformat()]
    rows = str(home / "allocation.parquet")
    for argv in (["export", *span], ["validate", *span], ["allocate", *span, "--out", rows], ["load", *span, "--rows", rows]):
        if main(argv):
            raise SystemExit(f"podledger {argv[0]} failed")


def report(home: Path, env: dict[str, str], start: dt.datetime, end: dt.datetime) -> bool:
    """Print cost by namespace, the reconciliation with the CUR, and where the data lives; return balanced."""
    from podledger.bill_check import bill_lines, cluster_bill
    from podledger.billing import delivery_keys
    from podledger.cli import store_for
    from podledger.warehouse import DuckDBLoader

    os.environ.update(env)
    cc = load_cost_center(COST_CENTER)
    loader = DuckDBLoader(cc.warehouse.resolved_path(), cc.warehouse.table)
    rows = loader.query(f"SELECT * FROM {cc.warehouse.table} WHERE cost_center = ? AND hour_start >= ? AND hour_start < ?",
                        [COST_CENTER, start, end])
    from podledger.report import cost_report

    # The same numbers as `podledger report --by namespace`.
    by_namespace = cost_report(rows, by="namespace").select(
        "namespace", pl.col("total_cost").round(4).alias("cost_usd"), "pods",
        *(pl.col(c).round(4) for c in ("cpu_cost", "memory_cost", "gpu_cost", "network_cost", "unused_cost")),
        pl.col("efficiency").round(3))
    with pl.Config(tbl_rows=50, tbl_cols=-1, tbl_width_chars=160, tbl_hide_dataframe_shape=True,
                   tbl_hide_column_data_types=True):
        print(f"\nCost by namespace, cluster demo-eks, {start:%Y-%m-%d %H:%M} to {end:%H:%M} UTC ({cc.billing.cost_basis}):")
        print(by_namespace)
        # The bill side straight from the delivered files (manifest, DuckDB SQL), not from the allocation's frames;
        # the allocated side read back from the warehouse.
        billing_prefix = cc.billing.location.prefix
        billing_store = store_for(cc.billing.uri, cc.billing.aws_conn_id)
        keys = delivery_keys(billing_store, billing_prefix, cc.billing.format, start, end)
        lines = bill_lines(billing_store, keys, fmt=cc.billing.format, basis=cc.billing.cost_basis,
                           tag_keys=cc.billing.cluster_tag_keys)
        seen = (rows.filter(~pl.col("namespace").is_in(["__unallocated__"])).select("hour_start", "instance_id")
                .drop_nulls().unique())
        billed = (cluster_bill(lines, seen, cluster="demo-eks", account_id=None, region=None, start=start, end=end)
                  .group_by("hour_start").agg(pl.col("billed").sum().alias("cur_cost")))
        owners = pl.col("namespace")
        allocated = rows.group_by("hour_start").agg(
            pl.col("total_cost").filter(~owners.str.starts_with("__")).sum().alias("pods"),
            pl.col("total_cost").filter(owners == "__idle__").sum().alias("idle"),
            pl.col("total_cost").filter(owners == "__unallocated__").sum().alias("unallocated"),
            pl.col("total_cost").filter(owners == "__cluster_overhead__").sum().alias("overhead"),
            pl.col("network_cost").sum().alias("of_which_network"),
            pl.col("total_cost").sum().alias("allocated"))
        recon = allocated.join(billed, on="hour_start", how="full", coalesce=True).fill_null(0.0).with_columns(
            (pl.col("allocated") - pl.col("cur_cost")).alias("difference")).sort("hour_start")
        print("\nReconciliation per hour (Σ pods + idle + unallocated + overhead, read back from the warehouse, vs the "
              "cluster's instances, their data transfer and its control plane summed from the CUR files the "
              "manifest lists):")
        print(recon.with_columns(pl.col("hour_start").dt.strftime("%Y-%m-%d %H:%M"),
                                 *(pl.col(c).round(6) for c in recon.columns if c != "hour_start")))
    total_alloc, total_cur = recon["allocated"].sum(), recon["cur_cost"].sum()
    balanced = (round(total_alloc, 2) == round(total_cur, 2)
                and (recon["difference"].abs() <= 1e-9 * recon["cur_cost"].abs().max()).all())
    print(f"\nTotal allocated ${total_alloc:.2f} vs CUR ${total_cur:.2f}: "
          f"{'balanced to the cent' if balanced else 'NOT BALANCED'} (max |difference| {recon['difference'].abs().max():.2e})")
    scheme, bucket, prefix = cc.storage.location
    keys = store_for(cc.storage.uri, cc.storage.aws_conn_id).list(prefix)
    endpoint = json.loads(env[env_var_name("aws_default")])["extra"]["endpoint_url"]
    print(f"\nExported objects: {len(keys)} under {cc.storage.uri}/ on the S3 endpoint {endpoint}")
    for key in [k for k in keys if "/metric=cpu_usage/" in k][:2] + [k for k in keys if "_manifest.json" in k][:1]:
        print(f"  s3://{bucket}/{key}")
    print(f"Warehouse: DuckDB {loader.path}, table {loader.table} ({rows.height} rows for the demo window)")
    sql = f"select namespace, round(sum(total_cost),4) from {loader.table} group by 1 order by 2 desc"
    print(f"  try: PODLEDGER_HOME={home} .venv/bin/podledger report --cost-center {COST_CENTER} --start "
          f"{start:%Y-%m-%dT%H:%MZ} --end {end:%Y-%m-%dT%H:%MZ} --by label:team --step hour   (or --csv)")
    print(f"  or SQL: python -c \"import duckdb; print(duckdb.connect('{loader.path}').sql('{sql}'))\"")
    return balanced


def run_demo(workdir: Path, *, use_airflow: bool = True, keep_running: bool = False, nodes: int = 8, pods: int = 80,
             hours: int = 6) -> int:
    """Run the demo end to end in ``workdir``; return 0 when the reconciliation balances."""
    from podledger_lab.synth import synthesize

    started = time.perf_counter()
    home = workdir.resolve()
    if home.exists():
        shutil.rmtree(home)
    home.mkdir(parents=True)
    _step(f"1/6 synthesizing a {nodes}-node, ~{pods}-pod EKS cluster and its CUR 2.0 bill ({hours} h)")
    synth = synthesize(home / "synth", nodes=nodes, pods=pods, hours=hours)
    _step("2/6 loading the series into Prometheus TSDB blocks (promtool) and starting Prometheus + S3 on loopback")
    load_blocks(synth.openmetrics, home / "tsdb")
    prometheus = start_prometheus(home / "tsdb", home / "prometheus")
    moto = start_moto(home / "moto")
    write_state(home / "stack.json", [prometheus, moto])
    try:
        print(f"    Prometheus {prometheus.url} (pid {prometheus.pid}), S3 endpoint {moto.url} (pid {moto.pid})")
        env = stack_env(prometheus, moto, home)
        _step("3/6 delivering the CUR 2.0 export to s3://podledger-billing/cur/")
        upload_tree(moto, "podledger-billing", "cur", synth.cur_root)
        ensure_bucket(moto, "podledger-demo")
        start, end = synth.start, synth.end
        if use_airflow:
            _step(f"4/6 running the DAGs with airflow dags test (log: {home / 'airflow.log'})")
            run_pipeline_in_airflow(env, start, end, home / "airflow.log")
            print(f"    the cost explorer: AIRFLOW_HOME={home / 'airflow'} PODLEDGER_HOME={home} "
                  f"PODLEDGER_CONFIG={SAMPLE_CONFIG} AIRFLOW__CORE__PLUGINS_FOLDER={REPO / 'plugins'} "
                  ".venv/bin/airflow standalone, then open http://127.0.0.1:8080/plugin/podledger-costs", flush=True)
        else:
            _step("4/6 running the stages with the podledger command")
            run_pipeline_directly(env, start, end, home)
        _step("5/6 results")
        balanced = report(home, env, start, end)
    finally:
        if keep_running:
            print(f"    servers left running; stop them with: kill {prometheus.pid} {moto.pid}")
        else:
            _step("6/6 stopping Prometheus and the S3 endpoint")
            prometheus.stop()
            moto.stop()
            (home / "stack.json").unlink(missing_ok=True)
    print(f"demo finished in {time.perf_counter() - started:.0f}s")
    return 0 if balanced else 1
