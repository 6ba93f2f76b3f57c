"""Benchmark the allocation step on exported-shape frames of a large synthetic cluster.

Frames are generated directly (vectorised), shaped exactly like the exporter's files, so the benchmark
measures allocation, not Prometheus. Each day is processed on its own (memory bounded by one day); the
figures printed are wall time and peak RSS for ``--days`` days, next to 1 day in a separate process.

    .venv/bin/python bench/allocate.py --nodes 500 --pods 15000 --days 30
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import resource
import subprocess
import sys
import time

import polars as pl

GIB = 2**30
START = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)


def hour_frames(nodes: int, pods: int, hour: dt.datetime, seed: int = 7) -> dict[str, pl.DataFrame]:
    """Return one hour of exported-shape frames: every pod running the whole hour on node i % nodes."""
    node_names = [f"ip-10-0-{i // 250}-{i % 250}.ec2.internal" for i in range(nodes)]
    p = pl.int_range(pods, eager=True)
    pod_frame = pl.DataFrame({"namespace": ("ns-" + (p % 40).cast(pl.String)), "pod": ("pod-" + p.cast(pl.String)),
                              "uid": ("uid-" + p.cast(pl.String)),
                              "node": pl.Series([node_names[i % nodes] for i in range(pods)])})
    shift = (p * 7919 + hour.hour * 104729 + seed) % 1000 / 1000.0
    requests = pod_frame.with_columns(pl.lit("app").alias("container"))
    return {
        "node_info": pl.DataFrame({"node": node_names, "provider_id": [f"aws:///us-east-1a/i-{i:017x}" for i in range(nodes)],
                                   "present_seconds": [3600.0] * nodes}),
        "node_capacity": pl.DataFrame({"node": node_names * 2, "resource": ["cpu"] * nodes + ["memory"] * nodes,
                                       "unit_seconds": [16 * 3600.0] * nodes + [64 * GIB * 3600.0] * nodes,
                                       "present_seconds": [3600.0] * (2 * nodes)}),
        "pod_running": pod_frame.select("namespace", "pod", "uid", pl.lit(3600.0).alias("running_seconds")),
        "pod_info": pod_frame,
        "cpu_requests": requests.with_columns((0.25 * 3600.0 * (1 + shift)).alias("request_core_seconds"),
                                              pl.lit(3600.0).alias("present_seconds")),
        "memory_requests": requests.with_columns((0.5 * GIB * 3600.0 * (1 + shift)).alias("request_byte_seconds"),
                                                 pl.lit(3600.0).alias("present_seconds")),
        "cpu_usage": requests.select("namespace", "pod", "container", (0.3 * 3600.0 * shift).alias("usage_core_seconds")),
        "memory_usage": requests.select("namespace", "pod", "container",
                                        (0.6 * GIB * 3600.0 * shift).alias("usage_byte_seconds")),
        "network_transmit": pod_frame.select("namespace", "pod", (1e6 * (1 + shift)).alias("bytes")),
    }


def run(nodes: int, pods: int, days: int) -> dict:
    from podledger.allocation import allocate_hour
    from podledger.config import AllocationConfig

    options = AllocationConfig()
    utc = pl.Datetime("us", "UTC")
    plane = pl.DataFrame(schema={"hour_start": utc, "cluster": pl.String, "cost": pl.Float64, "currency": pl.String})
    started = time.perf_counter()
    rows = total = 0.0
    for day in range(days):
        hours = [START + dt.timedelta(days=day, hours=h) for h in range(24)]
        costs = pl.DataFrame({"hour_start": [h for h in hours for _ in range(nodes)],
                              "instance_id": [f"i-{i:017x}" for _ in hours for i in range(nodes)],
                              "cost": [0.768] * (24 * nodes), "currency": ["USD"] * (24 * nodes),
                              "instance_type": ["m5.4xlarge"] * (24 * nodes), "cluster_tag": ["bench"] * (24 * nodes)},
                             schema_overrides={"hour_start": utc})
        for hour in hours:
            out = allocate_hour(hour_frames(nodes, pods, hour), hour=hour, cost_center="bench", cluster="bench",
                                instance_costs=costs, control_plane=plane, options=options, cost_basis="amortized")
            rows += out.height
            total += out["total_cost"].sum()
    return {"wall": time.perf_counter() - started, "rows": rows, "total_cost": total,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=500)
    parser.add_argument("--pods", type=int, default=15000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run(args.nodes, args.pods, args.days)))
        return

    def child(days: int) -> dict:
        cmd = [sys.executable, __file__, "--child", "--nodes", str(args.nodes), "--pods", str(args.pods), "--days", str(days)]
        return json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])

    one = child(1)
    many = child(args.days)
    billed = args.nodes * 0.768 * 24 * args.days
    print(f"{args.nodes} nodes, {args.pods} pods: {args.pods * 24 * args.days:,} pod-hours over {args.days} days")
    print(f"  1 day: {one['wall']:.1f}s, peak RSS {one['peak_rss_mib']:.0f} MiB")
    print(f"  {args.days} days: {many['wall']:.1f}s ({many['wall'] / args.days:.2f}s/day), "
          f"peak RSS {many['peak_rss_mib']:.0f} MiB, {many['rows']:,.0f} rows")
    print(f"  reconciliation: allocated ${many['total_cost']:,.6f} vs billed ${billed:,.6f} "
          f"(difference {abs(many['total_cost'] - billed):.2e})")


if __name__ == "__main__":
    main()
