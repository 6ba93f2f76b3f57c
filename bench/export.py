"""Benchmark the exporter against a real Prometheus loaded with a synthetic cluster.

Measured side by side in one run, on the same windows:
  1. rollup export (the catalog's PromQL rollups) vs raw export (every metric's series at a 60 s step):
     wall time and bytes received;
  2. exporter wall time / Prometheus's own execution time (``stats.timings.execTotalTime``) for rollups;
  3. peak RSS of an export process for 1 window vs all windows (memory is bounded by one window).

    .venv/bin/python bench/export.py --nodes 20 --pods 600 --hours 6
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

UTC = dt.UTC


def _export_windows(url_port: int, hours: int, start: str, rollup: bool, raw_step: int | None) -> dict:
    """Export ``hours`` windows (rollups and/or raw) with no storage; return timings and bytes."""
    from podledger.catalog import CATALOG
    from podledger.config import ClusterConfig
    from podledger.connections import ConnectionInfo
    from podledger.export import query_metric, query_raw
    from podledger.layout import plan_windows, to_utc
    from podledger.promclient import client_from_connection

    client = client_from_connection(ConnectionInfo("bench", host="127.0.0.1", port=url_port), timeout=600)
    cluster = ClusterConfig(name="bench-eks")
    begin = to_utc(start)
    totals = {"wall": 0.0, "bytes": 0, "prometheus_exec": 0.0, "rows": 0, "series": 0}
    started = time.perf_counter()
    for window in plan_windows(begin, begin + dt.timedelta(hours=hours), 3600):
        for spec in CATALOG:
            frame = (query_metric(client, spec, cluster, window, cluster_label=None, timeout=600) if rollup
                     else query_raw(client, spec, cluster, window, raw_step, cluster_label=None, timeout=600))
            totals["bytes"] += frame.bytes_received
            totals["prometheus_exec"] += frame.prometheus_seconds
            totals["rows"] += frame.table.num_rows
            totals["series"] += frame.series
    totals["wall"] = time.perf_counter() - started
    totals["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return totals


def _child(args: argparse.Namespace) -> None:
    print(json.dumps(_export_windows(args.port, args.hours, args.start, not args.raw, 60 if args.raw else None)))


def _run_child(port: int, hours: int, start: str, raw: bool = False) -> dict:
    cmd = [sys.executable, __file__, "--child", "--port", str(port), "--hours", str(hours), "--start", start]
    if raw:
        cmd.append("--raw")
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=20)
    parser.add_argument("--pods", type=int, default=600)
    parser.add_argument("--hours", type=int, default=6)
    parser.add_argument("--start", default="2026-11-02T00:00:00+00:00")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--raw", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args)
        return

    from podledger.layout import to_utc
    from podledger.stack import load_blocks, start_prometheus
    from podledger.synth import synthesize

    work = Path(tempfile.mkdtemp(prefix="podledger-bench-export-"))
    t = time.perf_counter()
    out = synthesize(work / "synth", nodes=args.nodes, pods=args.pods, hours=args.hours, start=to_utc(args.start))
    summary = json.loads((work / "synth" / "demo-eks-summary.json").read_text())
    print(f"synthetic cluster: {summary['nodes']} nodes, {summary['pods']} pods, {args.hours} h, "
          f"{summary['series']} series, {summary['samples']:,} samples ({time.perf_counter() - t:.0f}s to generate)")
    t = time.perf_counter()
    load_blocks(out.openmetrics, work / "tsdb")
    out.openmetrics.unlink()
    print(f"promtool create-blocks-from openmetrics: {time.perf_counter() - t:.0f}s")
    server = start_prometheus(work / "tsdb", work)
    try:
        _run_child(server.port, 1, args.start)  # warm Prometheus's page cache once for both modes
        rollup = _run_child(server.port, args.hours, args.start)
        raw = _run_child(server.port, args.hours, args.start, raw=True)
        one = _run_child(server.port, 1, args.start)
    finally:
        server.stop()
    print(f"\n{args.hours} windows of 1 h, {len(__import__('podledger.catalog').catalog.CATALOG)} metrics each:")
    print(f"  rollup export: {rollup['wall']:.2f}s, {rollup['bytes'] / 1e6:.2f} MB received, {rollup['rows']:,} rows")
    print(f"  raw export (60 s step): {raw['wall']:.2f}s, {raw['bytes'] / 1e6:.2f} MB received, {raw['rows']:,} rows")
    print(f"  rollup vs raw: {raw['wall'] / rollup['wall']:.1f}x faster, {raw['bytes'] / max(rollup['bytes'], 1):.1f}x fewer bytes")
    print(f"  exporter wall / Prometheus execTotalTime (rollup): {rollup['wall']:.2f}s / {rollup['prometheus_exec']:.2f}s "
          f"= {rollup['wall'] / max(rollup['prometheus_exec'], 1e-9):.2f}")
    print(f"  peak RSS: 1 window {one['peak_rss_mib']:.0f} MiB, {args.hours} windows {rollup['peak_rss_mib']:.0f} MiB "
          f"(ratio {rollup['peak_rss_mib'] / one['peak_rss_mib']:.2f})")


if __name__ == "__main__":
    main()
