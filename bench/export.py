"""Benchmark the exporter against a real Prometheus loaded with a synthetic cluster (issue 3's figures).

Measured in one run, on the same Prometheus and the same windows:
  1. rollup export (the real ``export_window``: catalog rollups, Parquet files, manifest) vs raw export
     (every catalog metric's series at a 60 s step): wall time, bytes received decoded and on the wire (gzip);
  2. exporter wall time / Prometheus's own execution time (``stats.timings.execTotalTime``), one query at a
     time (queries_batch_size=1, so the ratio is the exporter's overhead, not hidden by concurrency), and the
     wall time with the default five concurrent queries;
  3. peak RSS of an export process for 1 day of windows vs 7 days of windows.

The cluster is written one hour of OpenMetrics at a time (``write_openmetrics_hours``), each hour loaded with
promtool and deleted, so a day of a 6,000-pod cluster (~200 M samples) needs ~3 GB of text at a time, not ~70 GB.

    .venv/bin/python bench/export.py --nodes 200 --pods 6000 --hours 24
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests


def _cost_center(batch: int, out: Path):
    from podledger.config import ClusterConfig, CostCenterConfig

    return CostCenterConfig(name="bench", queries_batch_size=batch, query_timeout_seconds=600,
                            clusters=(ClusterConfig(name="bench-eks", prometheus_conn_id="bench"),),
                            storage={"uri": f"file://{out}"})


def _peak_rss_mib() -> float:
    """This process's peak RSS (VmHWM). Not ru_maxrss: Linux carries that over fork+exec from the parent, which
    here holds the generated cluster (GBs), so every child would report the parent's peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def _child(args: argparse.Namespace) -> None:
    """Export ``args.windows`` windows (cycling over the loaded hours) in this process; print totals as JSON."""
    from podledger.catalog import CATALOG
    from podledger.connections import ConnectionInfo
    from podledger.export import export_window, query_raw
    from podledger.layout import plan_windows, to_utc
    from podledger.promclient import client_from_connection
    from podledger.storage import FsspecStore

    client = client_from_connection(ConnectionInfo("bench", host="127.0.0.1", port=args.port), timeout=600)
    begin = to_utc(args.start)
    loaded = plan_windows(begin, begin + dt.timedelta(hours=args.hours), 3600)
    out = Path(tempfile.mkdtemp(prefix="podledger-bench-out-"))
    cost_center = _cost_center(args.batch, out)
    cluster = cost_center.clusters[0]
    store = FsspecStore("file", str(out))
    totals = {"windows": args.windows, "bytes": 0, "wire_bytes": 0, "prometheus_exec": 0.0, "rows": 0, "series": 0}
    started = time.perf_counter()
    for i in range(args.windows):
        window = loaded[i % len(loaded)]
        if args.raw:
            frames = [query_raw(client, spec, cluster, window, 60, cluster_label=None, timeout=600) for spec in CATALOG]
            entries = [{"bytes_received": f.bytes_received, "wire_bytes": f.wire_bytes, "rows": f.table.num_rows,
                        "series": f.series} for f in frames]
            totals["prometheus_exec"] += sum(f.prometheus_seconds for f in frames)
        else:
            manifest = export_window(client, store, cost_center, cluster, window)
            entries = list(manifest["metrics"].values())
            # Everything the window asked Prometheus: metric queries, counter-reset checks, probes.
            totals["prometheus_exec"] += manifest["prometheus_exec_seconds"]
        for e in entries:
            totals["bytes"] += e["bytes_received"]
            totals["wire_bytes"] += e["wire_bytes"]
            totals["rows"] += e["rows"]
            totals["series"] += e["series"]
    totals["wall"] = time.perf_counter() - started
    totals["peak_rss_mib"] = _peak_rss_mib()
    print(json.dumps(totals))


def _run_child(port: int, hours: int, start: str, windows: int, *, raw: bool = False, batch: int = 1) -> dict:
    cmd = [sys.executable, __file__, "--child", "--port", str(port), "--hours", str(hours), "--start", start,
           "--windows", str(windows), "--batch", str(batch)] + (["--raw"] if raw else [])
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def _wait_for_compaction(url: str, quiet_seconds: float = 30.0) -> int:
    """Wait until Prometheus's block count has not changed for ``quiet_seconds`` (start-up compaction done)."""
    def blocks() -> int:
        for line in requests.get(f"{url}/metrics", timeout=10).text.splitlines():
            if line.startswith("prometheus_tsdb_blocks_loaded "):
                return int(float(line.split()[1]))
        return -1

    last, since = blocks(), time.monotonic()
    while time.monotonic() - since < quiet_seconds:
        time.sleep(5)
        now = blocks()
        if now != last:
            last, since = now, time.monotonic()
    return last


def _generate(args: argparse.Namespace, work: Path) -> None:
    """Build the cluster and load it into ``work/tsdb`` one hour of OpenMetrics at a time."""
    from podledger.layout import to_utc
    from podledger_lab.stack import load_blocks
    from podledger_lab.synth.cluster import build_cluster
    from podledger_lab.synth.openmetrics import write_openmetrics_hours

    cluster = build_cluster("bench-eks", nodes=args.nodes, pods=args.pods, start=to_utc(args.start), hours=args.hours)
    writing = loading = 0.0
    files = write_openmetrics_hours(cluster, work / "om")
    while True:
        t = time.perf_counter()
        path = next(files, None)
        if path is None:
            break
        writing += time.perf_counter() - t
        t = time.perf_counter()
        load_blocks(path, work / "tsdb")
        loading += time.perf_counter() - t
        path.unlink()
    print(f"synthetic cluster: {len(cluster.nodes)} nodes, {len(cluster.pods)} pods, {args.hours} h "
          f"(generated and written hour by hour in {writing:.0f}s, promtool {loading:.0f}s)", flush=True)


def ensure_tsdb(args: argparse.Namespace, work: Path) -> Path:
    """Return ``work`` holding the cluster's TSDB: reused when ``loaded.json`` there names the same shape."""
    work.mkdir(parents=True, exist_ok=True)
    marker = work / "loaded.json"
    shape = {"nodes": args.nodes, "pods": args.pods, "hours": args.hours, "start": args.start}
    if marker.exists() and json.loads(marker.read_text()) == shape:
        print(f"reusing the TSDB in {work} ({shape})", flush=True)
    else:
        _generate(args, work)
        marker.write_text(json.dumps(shape))
    return work


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=20)
    parser.add_argument("--pods", type=int, default=600)
    parser.add_argument("--hours", type=int, default=6, help="hours of data loaded (1 day = 24)")
    parser.add_argument("--memory-days", type=int, default=7, help="days of windows for the second memory figure")
    parser.add_argument("--start", default="2026-11-02T00:00:00+00:00")
    parser.add_argument("--work", type=Path, help="keep the TSDB here; a later run with the same --work reuses it")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--raw", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--windows", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args)
        return

    from podledger_lab.stack import start_prometheus

    work = ensure_tsdb(args, args.work or Path(tempfile.mkdtemp(prefix="podledger-bench-export-")))
    server = start_prometheus(work / "tsdb", work, timeout=600)
    try:
        print(f"Prometheus up; {_wait_for_compaction(server.url)} blocks after start-up compaction", flush=True)
        _run_child(server.port, args.hours, args.start, 1)  # warm the page cache once for both modes
        rollup = _run_child(server.port, args.hours, args.start, args.hours)
        concurrent = _run_child(server.port, args.hours, args.start, args.hours, batch=5)
        raw = _run_child(server.port, args.hours, args.start, args.hours, raw=True)
        week = _run_child(server.port, args.hours, args.start, 24 * args.memory_days)
    finally:
        server.stop()
    print(f"\n{args.hours} windows of 1 h, {raw['rows']:,} raw samples at 60 s:")
    for name, r in (("rollup export (export_window, 1 query at a time)", rollup), ("raw export (60 s step)", raw)):
        print(f"  {name}: {r['wall']:.2f}s, {r['bytes'] / 1e6:.2f} MB decoded, {r['wire_bytes'] / 1e6:.2f} MB on the "
              f"wire, {r['rows']:,} rows, {r['series']:,} series")
    print(f"  rollup vs raw: {raw['wall'] / rollup['wall']:.1f}x faster, {raw['bytes'] / max(rollup['bytes'], 1):.1f}x "
          f"fewer bytes decoded, {raw['wire_bytes'] / max(rollup['wire_bytes'], 1):.1f}x fewer on the wire")
    for name, r in (("5 concurrent queries, the default", concurrent), ("1 query at a time", rollup)):
        print(f"  exporter wall / Prometheus execTotalTime ({name}): {r['wall']:.2f}s / {r['prometheus_exec']:.2f}s "
              f"= {r['wall'] / max(r['prometheus_exec'], 1e-9):.2f}")
    print(f"  peak RSS: {args.hours} windows {rollup['peak_rss_mib']:.0f} MiB, {week['windows']} windows "
          f"({args.memory_days} days, cycling over the loaded hours) {week['peak_rss_mib']:.0f} MiB "
          f"(ratio {week['peak_rss_mib'] / rollup['peak_rss_mib']:.2f}); {week['wall']:.0f}s for those windows")


if __name__ == "__main__":
    main()
