"""Benchmark the cost explorer's API path: p50/p95 latency on 30 days of a 500-node / 15,000-pod cluster in DuckDB.

    .venv/bin/python bench/explorer.py --days 30 --nodes 500 --pods-per-node 30 --requests 40

Builds the warehouse with DuckDB SQL (rows shaped like the allocation table: labels, owners, sentinels), then runs
the functions the plugin's /api/allocation endpoint runs (aggregation in the warehouse, the top groups over time,
label keys), in the mix a user clicks: namespace / controller / pod / label, day / week / hour, idle separate /
shared, over the whole range. Prints each request's time and the p50 / p95, against the 1 s target.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import tempfile
import time
from pathlib import Path


def build(path: Path, days: int, nodes: int, pods_per_node: int) -> int:
    import duckdb

    from podledger.rollups import refresh_rollups
    from podledger.warehouse import _DUCKDB_TYPES, ddl, view_statements

    con = duckdb.connect(str(path))
    con.execute("SET TimeZone = 'UTC'")
    con.execute(ddl("k8s_cost_allocation", _DUCKDB_TYPES))
    hours, pods = days * 24, nodes * pods_per_node
    con.execute(f"""
        INSERT INTO k8s_cost_allocation BY NAME
        SELECT TIMESTAMPTZ '2026-10-01 00:00:00+00' + to_hours(h) AS hour_start, 'bench' AS cost_center,
               'bench-eks' AS cluster, 'node-' || (p % {nodes}) AS node, 'i-' || (p % {nodes}) AS instance_id,
               ['m5.xlarge', 'c5.2xlarge', 'r5.xlarge'][1 + p % 3] AS instance_type,
               CASE WHEN p % {pods_per_node} = 0 THEN '__idle__' ELSE 'ns-' || (p % 40) END AS namespace,
               'pod-' || p AS pod, 'uid-' || p AS uid, 'Deployment' AS controller_kind, 'app-' || (p % 400) AS controller_name,
               '{{"team": "team-' || (p % 25) || '", "app": "app-' || (p % 400) || '"}}' AS pod_labels,
               '{{"team": "team-' || (p % 40) || '"}}' AS namespace_labels, '{{}}' AS node_labels,
               1.0 AS running_hours, 0.5 AS cpu_request_core_hours, 0.3 + (p % 7) / 10 AS cpu_usage_core_hours,
               0.5 AS cpu_allocated_core_hours, 1.0 AS memory_request_gib_hours, 0.8 AS memory_usage_gib_hours,
               1.0 AS memory_allocated_gib_hours, 0.0 AS gpu_allocated_hours, 1e6 AS network_transmit_bytes,
               2e6 AS network_receive_bytes, 0.01 + (p % 13) / 1000 AS cpu_cost, 0.002 AS memory_cost, 0.0 AS gpu_cost,
               0.003 AS unused_cost, 0.0001 AS network_cost, 0.0 AS overhead_cost,
               0.0151 + (p % 13) / 1000 AS total_cost, 'USD' AS currency, 'amortized' AS cost_basis, 0.6 AS efficiency
        FROM range({hours}) t(h), range({pods}) q(p)""")
    for statement in view_statements("k8s_cost_allocation"):
        con.execute(statement)
    # The rollups the loader maintains with every load (daily per pod, hourly per label set), here in one go.
    first = dt.datetime(2026, 10, 1, tzinfo=dt.UTC)
    refresh_rollups(lambda sql, params: con.execute(sql, params or None).fetchall(), "k8s_cost_allocation", False,
                    "bench", "bench-eks", first, first + dt.timedelta(days=days))
    rows = con.execute("SELECT count(*) FROM k8s_cost_allocation").fetchone()[0]
    con.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--nodes", type=int, default=500)
    parser.add_argument("--pods-per-node", type=int, default=30)
    parser.add_argument("--requests", type=int, default=40)
    args = parser.parse_args()

    from podledger.config import CostCenterConfig
    from podledger.explorer import allocation_from_warehouse, freshness, label_keys_sql, reconciliation
    from podledger.rightsizing import recommendations_sql
    from podledger.warehouse import DuckDBLoader

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.duckdb"
        started = time.perf_counter()
        rows = build(path, args.days, args.nodes, args.pods_per_node)
        print(f"warehouse: {rows:,} rows ({args.days} days x {args.nodes} nodes x {args.pods_per_node} pods per node), "
              f"built in {time.perf_counter() - started:.0f}s, {path.stat().st_size / 2**20:,.0f} MiB")
        cc = CostCenterConfig.model_validate({"name": "bench", "clusters": [{"name": "bench-eks"}],
                                              "warehouse": {"path": str(path)}})
        loader = DuckDBLoader(path)
        start = dt.datetime(2026, 10, 1, tzinfo=dt.UTC)
        end = start + dt.timedelta(days=args.days)
        # What the page asks: the allocation tab in the mix a user clicks, and the other tabs.
        mix = [("namespace", "day", "separate"), ("controller", "week", "separate"), ("label:team", "day", "shared"),
               ("namespace", "hour", "separate"), ("pod", "day", "separate"), ("instance_type", "week", "shared"),
               ("label:team", "hour", "shared"), ("reconciliation", "hour", ""), ("rightsizing", "", ""),
               ("freshness", "", "")]
        timings, kinds = [], {}
        for i in range(args.requests):
            by, step, idle = mix[i % len(mix)]
            began = time.perf_counter()
            if by == "reconciliation":
                size = reconciliation(loader, cc, start, end).height
            elif by == "rightsizing":
                size = recommendations_sql(loader, loader.table, cc.name, end - dt.timedelta(days=7), end,
                                           postgres=False).height  # the page's window: the last 7 days
            elif by == "freshness":
                size = freshness(loader, cc).height
            else:
                result = allocation_from_warehouse(loader, cc, start, end, by=by, step=step, idle=idle)
                label_keys_sql(loader, cc, start, end)
                size = result["table"].height
            timings.append(time.perf_counter() - began)
            kinds.setdefault(f"{by} {step} {idle}".strip(), []).append(timings[-1])
            print(f"  request {i + 1:2d}: {by:14s} {step:5s} {idle:8s} {timings[-1]:6.3f}s ({size:,} rows)")
        for kind, values in kinds.items():
            print(f"  median {kind:32s} {statistics.median(values):6.3f}s")
        ordered = sorted(timings)
        p95 = ordered[min(len(ordered) - 1, int(round(0.95 * len(ordered))) - 1)]
        print(f"p50 {statistics.median(timings):.3f}s, p95 {p95:.3f}s over {len(timings)} requests "
              f"(target: p95 under 1 s; p95 / target = {p95:.2f})")


if __name__ == "__main__":
    main()
