"""Run the real pipeline over many days of the synthetic cluster and check every hour reconciles.

Synthetic cluster -> promtool blocks -> Prometheus -> export every window to the S3 endpoint -> CUR 2.0 in
S3 -> enrichment day by day -> Σ rows vs billed cost per hour (1e-9 relative).

    .venv/bin/python bench/reconcile.py --days 30 --nodes 4 --pods 20
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--nodes", type=int, default=4)
    parser.add_argument("--pods", type=int, default=20)
    args = parser.parse_args()

    import polars as pl

    from podledger.config import CostCenterConfig
    from podledger.connections import ConnectionInfo
    from podledger.enrich import enrich_cluster
    from podledger.export import export_window
    from podledger.layout import plan_windows
    from podledger.promclient import client_from_connection
    from podledger.storage import FsspecStore
    from podledger_lab.demo import ensure_bucket, upload_tree
    from podledger_lab.stack import load_blocks, start_moto, start_prometheus
    from podledger_lab.synth import synthesize

    work = Path(tempfile.mkdtemp(prefix="podledger-bench-reconcile-"))
    start = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    t = time.perf_counter()
    out = synthesize(work / "synth", nodes=args.nodes, pods=args.pods, hours=24 * args.days, start=start)
    summary = json.loads((work / "synth" / "demo-eks-summary.json").read_text())
    print(f"synthetic cluster: {summary['nodes']} nodes, {summary['pods']} pods over {args.days} days, "
          f"{summary['samples']:,} samples ({time.perf_counter() - t:.0f}s)", flush=True)
    t = time.perf_counter()
    load_blocks(out.openmetrics, work / "tsdb", max_block_duration=f"{24 * (args.days + 1)}h")
    out.openmetrics.unlink()
    print(f"promtool: {time.perf_counter() - t:.0f}s", flush=True)
    prometheus = start_prometheus(work / "tsdb", work / "prometheus")
    moto = start_moto(work / "moto")
    try:
        options = {"key": "k", "secret": "s", "client_kwargs": {"endpoint_url": moto.url, "region_name": "us-east-1"}}
        ensure_bucket(moto, "metrics")
        upload_tree(moto, "billing", "cur", out.cur_root)
        cc = CostCenterConfig.model_validate({"name": "bench", "clusters": [{"name": "demo-eks"}],
                                              "storage": {"uri": "s3://metrics/k8s/prometheus"},
                                              "billing": {"uri": "s3://billing/cur/podledger-cur"}})
        store, billing = FsspecStore("s3", "metrics", options), FsspecStore("s3", "billing", options)
        client = client_from_connection(ConnectionInfo("p", host="127.0.0.1", port=prometheus.port), timeout=600)
        t = time.perf_counter()
        windows = plan_windows(start, start + dt.timedelta(days=args.days), 3600)
        for window in windows:
            export_window(client, store, cc, cc.clusters[0], window)
        print(f"exported {len(windows)} windows: {time.perf_counter() - t:.0f}s", flush=True)
        t = time.perf_counter()
        result = enrich_cluster(cc, cc.clusters[0], start, start + dt.timedelta(days=args.days), metrics_store=store,
                                billing_store=billing)
        report = result.reconciliation
        worst = report.select((pl.col("difference") / pl.col("billed_cost")).max()).item()
        print(f"enriched {report.height} hours, {result.rows.height:,} rows: {time.perf_counter() - t:.0f}s")
        print(f"reconciliation: {report['ok'].sum()}/{report.height} hours within 1e-9; allocated "
              f"${report['allocated_cost'].sum():,.6f} vs billed ${report['billed_cost'].sum():,.6f}; "
              f"worst relative difference {worst:.2e}")
    finally:
        prometheus.stop()
        moto.stop()


if __name__ == "__main__":
    main()
