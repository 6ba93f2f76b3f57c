"""Benchmark enrichment on the path users run: exported-layout files and a CUR 2.0 delivery on disk, per-day output.

    .venv/bin/python bench/enrich.py --nodes 500 --pods 15000 --days 1 7 30 --repeat 2

Builds (once, cached in --workdir) a cluster's exported windows as the exporter writes them (Parquet with the
podledger mark and a manifest per hour: labels, owners, init containers and sidecars, GPU nodes, pods restarted
under the same name every day) and its CUR 2.0 export (manifest + Parquet). Then, in a child process per run
(wall time and peak RSS of that process), for 1, 7 and 30 days:

- podledger: ``enrich_days`` from the files (bill rows of each day, allocation, reconciliation, the independent
  check against the bill's files) writing each day's rows, split line items and reconciliation as Parquet
  with the DAG task's own `put_outputs`;
- the peer: the same split rule (AWS Split Cost Allocation Data: allocated = max(request, usage), weights CPU 9 :
  memory 1, GPU nodes 9 : 0.9 : 0.1, denominator max(capacity, Σ allocated), unused redistributed by allocation)
  written as one DuckDB SQL query per day over the same files, writing Parquet: the same rows (average requests
  over the pod's present seconds, Kubernetes' effective request with init containers and sidecars, usage per
  incarnation, network bytes, owners through the ReplicaSet, pod/namespace/node labels as JSON, idle rows) and,
  since 2026-12-05, the same split line items (two per pod row, ``enrich_peer_split.sql``: podledger's task writes
  both, so a peer writing only the rows did less work); without podledger's checks (reconciliation, the
  independent bill check) or its reconciliation file.

Runs are interleaved (podledger, peer, rows-only peer, podledger, ...) so a noisy neighbour hits all alike; the
rows-only peer (the peer as it was before 2026-12-05) is printed beside the others, so the figures recorded before
stay comparable.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

# podledger first, as in the DAGs and the CLI: it sets polars' allocator (podledger/__init__.py)
import podledger  # noqa: F401

# isort: split
import polars as pl

GIB = 2**30
START = dt.datetime(2026, 10, 1, tzinfo=dt.UTC)
CLUSTER = "bench-eks"
COST_CENTER = "bench"
PREFIX = "k8s/prometheus"
UTC = pl.Datetime("us", "UTC")


def _config(root: Path):  # noqa: ANN202 - a CostCenterConfig
    from podledger.config import CostCenterConfig

    return CostCenterConfig.model_validate({
        "name": COST_CENTER, "clusters": [{"name": CLUSTER, "account_id": "111122223333", "region": "us-east-1"}],
        "storage": {"uri": f"file://{root}/metrics/{PREFIX}"}, "billing": {"uri": f"file://{root}/billing/cur/bench-cur"},
        "allocation": {"accelerators": ["nvidia_com_gpu"]}})


def _nodes(nodes: int) -> pl.DataFrame:
    i = pl.int_range(nodes, eager=True).alias("i")
    return pl.DataFrame(i).select(
        ("ip-10-0-" + (pl.col("i") // 250).cast(pl.String) + "-" + (pl.col("i") % 250).cast(pl.String)
         + ".ec2.internal").alias("node"),
        ("i-" + pl.col("i").cast(pl.String).str.zfill(17)).alias("instance_id"),
        (pl.col("i") % 50 == 49).alias("gpu"),  # 2 % GPU nodes
    ).with_columns(pl.when(pl.col("gpu")).then(pl.lit("g5.12xlarge")).otherwise(pl.lit("m5.4xlarge")).alias("instance_type"),
                   pl.when(pl.col("gpu")).then(5.672).otherwise(0.768).alias("cost"))


def _pods(nodes: pl.DataFrame, pods: int, day: int, names: str = "short") -> pl.DataFrame:
    """The day's pods. ``names="kubernetes"``: names as long as a cluster's (a Deployment's pod
    ``<workload>-<template hash>-<suffix>``, a 36-character UID), which no string column keeps inline (polars and
    DuckDB both store strings of up to 12 bytes inside the row); "short" (``pod-17``, ``uid-17-00``; ``uid-17-0`` before the
    day had two digits, 2026-12-05 08:10 UTC): the default."""
    p = pl.int_range(pods, eager=True)
    node_index = p % nodes.height
    frame = pl.DataFrame({"p": p, "node": nodes["node"].gather(node_index), "gpu": nodes["gpu"].gather(node_index)})
    digits = pl.col("p").cast(pl.String)
    workload = ("app-" + (pl.col("p") % 400).cast(pl.String)).alias("workload")
    if names == "kubernetes":
        pod = pl.concat_str(pl.lit("checkout-"), workload, pl.lit("-5d8f7c9b4-"), digits.str.zfill(5))
        uid = pl.concat_str(digits.str.zfill(8), pl.lit(f"-{day:04d}-4a1e-8b2c-"), (pl.col("p") * 7919).cast(pl.String)
                            .str.zfill(12))
        uid_b = pl.concat_str(digits.str.zfill(8), pl.lit(f"-{day:04d}-4a1e-9c3d-"), (pl.col("p") * 7919)
                              .cast(pl.String).str.zfill(12))
    else:
        # the day in two digits: a UID's length does not change with the day (a cluster's UIDs are all 36 long)
        pod, uid, uid_b = "pod-" + digits, "uid-" + digits + f"-{day:02d}", "uid-" + digits + f"-{day:02d}b"
    return frame.with_columns(
        ("ns-" + (pl.col("p") % 40).cast(pl.String)).alias("namespace"), pod.alias("pod"), uid.alias("uid"),
        uid_b.alias("uid_b"),
        (pl.col("p") % 20 == 0).alias("restarts"),  # 5 % of pods are recreated under the same name at 12:00 daily
        workload, (pl.col("p") % 10 == 3).alias("init"), (pl.col("p") % 10 == 7).alias("sidecar"))


def _hour_frames(nodes: pl.DataFrame, base: pl.DataFrame, hour: dt.datetime) -> dict[str, pl.DataFrame]:
    """One hour of every metric as the exporter's files hold it (keys, value columns, labels as entries)."""
    shift = ((pl.col("p") * 7919 + hour.hour * 104729) % 1000) / 1000.0
    at_noon = hour.hour == 12
    running = pl.when(pl.col("restarts") & at_noon).then(1800.0).otherwise(3600.0)
    first = base.with_columns(pl.when(pl.col("restarts") & (hour.hour > 12)).then(pl.col("uid_b"))
                              .otherwise(pl.col("uid")).alias("uid"), running.alias("running"))
    incarnations = pl.concat([first, base.filter(pl.col("restarts")).with_columns(
        pl.col("uid_b").alias("uid"), pl.lit(1800.0).alias("running"))]) if at_noon else first
    pods = incarnations.with_columns(shift.alias("shift"))
    containers = pl.concat([pods.with_columns(pl.lit("app").alias("container"), pl.lit(0.25).alias("cpu"),
                                              pl.lit(0.5).alias("mem")),
                            pods.filter(pl.col("sidecar")).with_columns(pl.lit("proxy").alias("container"),
                                                                        pl.lit(0.05).alias("cpu"),
                                                                        pl.lit(0.125).alias("mem"))])
    request = containers.select("namespace", "pod", "uid", "container", "node",
                                (pl.col("cpu") * pl.col("running") * (1 + pl.col("shift"))).alias("request_core_seconds"),
                                (pl.col("mem") * GIB * pl.col("running")).alias("request_byte_seconds"))
    init = pods.filter(pl.col("init") | pl.col("sidecar")).with_columns(
        pl.when(pl.col("sidecar")).then(pl.lit("proxy")).otherwise(pl.lit("migrate")).alias("container"))

    def entries(pairs: list[tuple[str, pl.Expr]]) -> pl.Expr:
        return pl.concat_list([pl.struct(pl.lit(k).alias("key"), v.alias("value")) for k, v in pairs])

    node_names = nodes["node"]
    capacity = pl.concat([
        nodes.select("node", pl.lit("cpu").alias("resource"), pl.lit(16 * 3600.0).alias("unit_seconds")),
        nodes.select("node", pl.lit("memory").alias("resource"), pl.lit(64.0 * GIB * 3600).alias("unit_seconds")),
        nodes.filter("gpu").select("node", pl.lit("nvidia_com_gpu").alias("resource"),
                                   pl.lit(4 * 3600.0).alias("unit_seconds"))]).with_columns(
        pl.lit(3600.0).alias("present_seconds"))
    return {
        "node_info": nodes.select("node", ("aws:///us-east-1a/" + pl.col("instance_id")).alias("provider_id"),
                                  pl.lit("10.0.0.1").alias("internal_ip"), pl.lit("v1.31.0").alias("kubelet_version"),
                                  pl.lit(3600.0).alias("present_seconds")),
        "node_capacity": capacity,
        "cpu_requests": request.drop("request_byte_seconds"),
        "memory_requests": request.drop("request_core_seconds"),
        "gpu_requests": pods.filter("gpu").select("namespace", "pod", "uid", pl.lit("app").alias("container"), "node",
                                                  pl.lit("nvidia_com_gpu").alias("resource"),
                                                  pl.col("running").alias("request_gpu_seconds")),
        "init_cpu_requests": init.select("namespace", "pod", "uid", "container", "node",
                                         (0.5 * pl.col("running")).alias("request_core_seconds")),
        "init_memory_requests": init.select("namespace", "pod", "uid", "container", "node",
                                            (0.25 * GIB * pl.col("running")).alias("request_byte_seconds")),
        "init_container_info": init.select("namespace", "pod", "uid", "container", pl.when(pl.col("sidecar")).then(
            pl.lit("Always")).otherwise(pl.lit("")).alias("restart_policy"), pl.lit(1.0).alias("value")),
        "pod_running": pods.select("namespace", "pod", "uid", pl.col("running").alias("running_seconds"),
                                   pl.col("running").alias("present_seconds")),
        "pod_info": pods.select("namespace", "pod", "uid", "node", pl.lit("ReplicaSet").alias("created_by_kind"),
                                (pl.col("workload") + "-5d8f7").alias("created_by_name"), pl.lit(1.0).alias("value"),
                                pl.col("running").alias("present_seconds")),
        "cpu_usage": containers.select("namespace", "pod", "uid", "container",
                                       (pl.col("cpu") * 1.2 * pl.col("running") * pl.col("shift")).alias("usage_core_seconds")),
        "memory_usage": containers.select("namespace", "pod", "uid", "container",
                                          (pl.col("mem") * GIB * pl.col("running") * (0.5 + pl.col("shift"))).alias(
                                              "usage_byte_seconds"),
                                          (pl.col("mem") * GIB * (0.6 + pl.col("shift"))).alias("peak_bytes")),
        "network_transmit": pods.select("namespace", "pod", "uid", (1e6 * (1 + pl.col("shift"))).alias("bytes")),
        "network_receive": pods.select("namespace", "pod", "uid", (2e6 * (1 + pl.col("shift"))).alias("bytes")),
        "pod_owner": pods.select("namespace", "pod", "uid", pl.lit("ReplicaSet").alias("owner_kind"),
                                 (pl.col("workload") + "-5d8f7").alias("owner_name"), pl.lit(1.0).alias("value")),
        "replicaset_owner": pods.select("namespace", (pl.col("workload") + "-5d8f7").alias("replicaset"),
                                        pl.lit("Deployment").alias("owner_kind"), pl.col("workload").alias("owner_name"),
                                        pl.lit(1.0).alias("value")).unique(),
        "pod_labels": pods.select("namespace", "pod", "uid", pl.lit(1.0).alias("value"), entries([
            ("label_app", pl.col("workload")), ("label_team", "team-" + (pl.col("p") % 25).cast(pl.String)),
            ("label_pod_template_hash", pl.lit("5d8f7"))]).alias("labels")),
        "namespace_labels": pods.select("namespace").unique().select(
            "namespace", pl.lit(1.0).alias("value"), entries([("label_team", pl.col("namespace") + "-owners")]).alias("labels")),
        "node_labels": pl.DataFrame({"node": node_names}).select(
            "node", pl.lit(1.0).alias("value"), entries([("label_nodegroup", pl.lit("general"))]).alias("labels")),
    }


def _to_map(column):  # noqa: ANN001, ANN202 - a pyarrow (large) list<struct<key, value>> column -> map<string, string>
    import pyarrow as pa

    array = column.combine_chunks()
    entries = array.values
    return pa.MapArray.from_arrays(array.offsets.cast(pa.int32()), entries.field("key").cast(pa.string()),
                                   entries.field("value").cast(pa.string()), mask=array.is_null())


def build(root: Path, nodes: int, pods: int, days: int, names: str = "short") -> None:
    """Write the exported windows and the CUR 2.0 delivery of ``days`` days under ``root`` (skipped when present;
    ``names``: see :func:`_pods`; a directory holds one kind)."""
    from podledger.catalog import CATALOG_BY_NAME
    from podledger.layout import Window, manifest_key, metric_key
    from podledger.metric_files import serialise
    from podledger.storage import FsspecStore
    kind = "" if names == "short" else f"{names}-"
    # "fixed-": files in key order and UIDs of one length, since 2026-12-05 (a directory marked "built-" or
    # "sorted-" by an older bench is rewritten)
    done = root / f"fixed-{kind}{nodes}-{pods}-{days}"
    if any(int(p.name.rsplit("-", 1)[1]) >= days for p in root.glob(f"fixed-{kind}{nodes}-{pods}-*")):
        return
    if [p for p in root.glob("fixed-*") if p.name.startswith("fixed-kubernetes-") != (names == "kubernetes")]:
        raise SystemExit(f"{root} holds a cluster with the other kind of names: give another --workdir")
    store = FsspecStore("file", str(root / "metrics" / PREFIX))  # file:// stores keep the whole path as the bucket
    node_frame = _nodes(nodes)
    for day in range(days):
        base = _pods(node_frame, pods, day, names)
        for h in range(24):
            hour = START + dt.timedelta(days=day, hours=h)
            window = Window(hour, hour + dt.timedelta(hours=1))
            entries = {}
            for name, frame in _hour_frames(node_frame, base, hour).items():
                spec = CATALOG_BY_NAME[name]
                # in key order, as export.rollup_table writes every file
                frame = frame.sort(list(spec.keys)).with_columns(
                    pl.lit(CLUSTER).alias("cluster"), pl.lit(window.start).cast(UTC).alias("window_start"),
                    pl.lit(window.end).cast(UTC).alias("window_end"))
                table = frame.to_arrow(compat_level=pl.CompatLevel.oldest())
                if "labels" in table.column_names:  # the exporter writes labels as a map column
                    index = table.column_names.index("labels")
                    table = table.set_column(index, "labels", _to_map(table.column("labels")))
                key = metric_key("", CLUSTER, window, name)
                store.put(key, serialise(table, "parquet", metric=name, keys=spec.keys, window=window,
                                         labels_map=spec.labels_map))
                entries[name] = {"key": key, "rows": table.num_rows, "required": spec.required}
            manifest = {"schema_version": 1, "cost_center": "bench", "cluster": CLUSTER, "window": window.to_dict(),
                        "format": "parquet", "scrape_interval_seconds": 60, "metrics": entries, "raw": {},
                        "probes": {}, "exporter": {"name": "bench/enrich.py"}}
            store.put(manifest_key("", CLUSTER, window), json.dumps(manifest).encode())
    write_cur(root, node_frame, days)
    done.touch()


def write_cur(root: Path, node_frame: pl.DataFrame, days: int) -> None:
    """The CUR 2.0 export: one usage line per instance-hour (on-demand), tagged for the cluster, with its manifest."""
    from podledger_lab.synth.cur import EXPORT_NAME, write_cur_export

    hours = pl.datetime_range(START, START + dt.timedelta(days=days), "1h", closed="left", eager=True, time_zone="UTC")
    cur = node_frame.join(pl.DataFrame({"hour": hours}), how="cross").with_columns(
        period=pl.col("hour").dt.truncate("1mo"))
    n = cur.height
    text = {c: pl.lit(None, pl.String) for c in (
        "line_item_unblended_rate", "line_item_line_item_description", "pricing_public_on_demand_rate", "pricing_term",
        "reservation_reservation_a_r_n", "savings_plan_savings_plan_a_r_n")}
    cur = cur.select(
        pl.col("period").alias("bill_billing_period_start_date"),
        pl.col("period").dt.offset_by("1mo").alias("bill_billing_period_end_date"),
        pl.col("hour").alias("line_item_usage_start_date"),
        pl.col("hour").dt.offset_by("1h").alias("line_item_usage_end_date"),
        pl.lit("111122223333").alias("bill_payer_account_id"),
        ("li-" + pl.col("instance_id") + "-" + pl.col("hour").dt.strftime("%Y%m%d%H")).alias("identity_line_item_id"),
        (pl.col("hour").dt.strftime("%Y-%m-%dT%H:%M:%SZ") + "/"
         + pl.col("hour").dt.offset_by("1h").dt.strftime("%Y-%m-%dT%H:%M:%SZ")).alias("identity_time_interval"),
        pl.lit("111122223333").alias("line_item_usage_account_id"), pl.lit("Usage").alias("line_item_line_item_type"),
        pl.lit("AmazonEC2").alias("line_item_product_code"),
        ("BoxUsage:" + pl.col("instance_type")).alias("line_item_usage_type"),
        pl.lit("RunInstances").alias("line_item_operation"), pl.lit("us-east-1a").alias("line_item_availability_zone"),
        pl.col("instance_id").alias("line_item_resource_id"), pl.lit("USD").alias("line_item_currency_code"),
        pl.lit("Hrs").alias("pricing_unit"), pl.col("instance_type").alias("product_instance_type"),
        pl.lit("Compute Instance").alias("product_product_family"), pl.lit("us-east-1").alias("product_region_code"),
        pl.lit("AmazonEC2").alias("product_servicecode"), *(v.alias(k) for k, v in text.items()),
        pl.lit(1.0).alias("line_item_usage_amount"), pl.col("cost").alias("line_item_unblended_cost"),
        pl.col("cost").alias("line_item_net_unblended_cost"), pl.col("cost").alias("pricing_public_on_demand_cost"),
        *(pl.lit(None, pl.Float64).alias(c) for c in (
            "reservation_effective_cost", "reservation_net_effective_cost",
            "reservation_unused_amortized_upfront_fee_for_billing_period", "reservation_unused_recurring_fee",
            "savings_plan_savings_plan_effective_cost", "savings_plan_net_savings_plan_effective_cost",
            "savings_plan_total_commitment_to_date", "savings_plan_used_commitment")),
        pl.lit([{"key": "region", "value": "us-east-1"}]).alias("product"),
        pl.lit([{"key": "user_eks_cluster_name", "value": CLUSTER}]).alias("resource_tags"))
    table = cur.to_arrow(compat_level=pl.CompatLevel.oldest())
    for name in ("product", "resource_tags"):
        table = table.set_column(table.column_names.index(name), name, _to_map(table.column(name)))
    assert table.num_rows == n
    write_cur_export(table, root / "billing" / "cur", EXPORT_NAME.replace("podledger-cur", "bench-cur"))


class DayPeaks:
    """Each day's peak RSS in one process: the kernel's high-water mark (VmHWM) read after the day and reset for the
    next (``/proc/self/clear_refs``); every moment of the run falls in exactly one day's span, so the largest day
    is the run's peak. Empty when not asked for or where the kernel offers neither (the run's peak is then
    getrusage's). Asked for by this script's own runs only: the reset also lowers the peak another tool reads from
    the finished process (/usr/bin/time, a harness timing whole runs)."""

    def __init__(self, enabled: bool) -> None:
        self.peaks: list[float] = []
        self.enabled = enabled and Path("/proc/self/clear_refs").exists()

    def mark(self) -> None:
        if not self.enabled:
            return
        status = Path("/proc/self/status").read_text()
        self.peaks.append(int(status.split("VmHWM:")[1].split()[0]) / 1024)
        try:
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            self.enabled, self.peaks = False, []


def run_podledger(root: Path, days: int, day_peaks: bool = False) -> dict:
    from podledger.enrich import enrich_days
    from podledger.outputs import put_outputs
    from podledger.storage import FsspecStore

    cc = _config(root)
    metrics = FsspecStore("file", str(root / "metrics" / PREFIX))
    billing = FsspecStore("file", str(root / "billing" / "cur" / "bench-cur"))
    out = FsspecStore("file", str(root / "out-podledger"))
    rows = 0
    total = 0.0
    peaks = DayPeaks(day_peaks)
    for result in enrich_days(cc, cc.clusters[0], START, START + dt.timedelta(days=days), metrics_store=metrics,
                              billing_store=billing):
        day = result.rows["hour_start"].min()
        # as the DAG task does: the day's rows, split line items and reconciliation written as Parquet objects and
        # released before the next day
        put_outputs(out, f"{day:%Y%m%d}.parquet", result, cc.name)
        rows += result.rows.height
        total += float(result.rows["total_cost"].sum())
        del result
        peaks.mark()
    return {"rows": rows, "total_cost": total, "day_peaks_mib": peaks.peaks}


# The peer's query, filled with the day's files by str.format ({{ and }} are literal braces).
PEER_SQL = (Path(__file__).with_name("enrich_peer.sql")).read_text()
PEER_SPLIT_SQL = (Path(__file__).with_name("enrich_peer_split.sql")).read_text()
# A labels map as JSON text, KSM's label_ prefix removed, keys sorted.
LABELS_JSON = ("to_json(map_from_entries(list_sort(list_transform(map_entries(labels), "
               "lambda e: {{'key': regexp_replace(e.key, '^label_', ''), 'value': e.value}}))))")


def run_peer(root: Path, days: int, rows_only: bool = False) -> dict:
    import duckdb

    from podledger.layout import billing_period_end
    from podledger.split_line_items import REGION_PREFIXES

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET preserve_insertion_order = false")  # no output order is promised: let every thread write
    out = root / ("out-peer-rows" if rows_only else "out-peer")
    out.mkdir(exist_ok=True)
    cur = sorted(str(p) for p in (root / "billing").rglob("*.parquet"))
    region_prefix = ("CASE region " + " ".join(f"WHEN '{r}' THEN '{p}'" for r, p in REGION_PREFIXES.items())
                     + " ELSE upper(replace(region, '-', '')) END")
    split_sql = PEER_SPLIT_SQL.format(cluster=repr(CLUSTER), cost_center=repr(COST_CENTER),
                                      region_prefix=region_prefix, rows="{rows}")  # (the day's file, below)
    rows, total = 0, 0.0
    for day in range(days):
        moment = START + dt.timedelta(days=day)
        period_end = billing_period_end(moment)
        folder = root / "metrics" / PREFIX / CLUSTER / f"end={period_end:%Y%m%d}" / f"day={moment.day}"
        files = {name: str(folder / f"metric={name}" / "*.parquet") for name in (
            "node_capacity", "node_info", "cpu_requests", "memory_requests", "cpu_usage", "memory_usage", "gpu_requests",
            "init_cpu_requests", "init_memory_requests", "init_container_info", "pod_running", "pod_info",
            "network_transmit", "network_receive", "pod_owner", "replicaset_owner", "pod_labels", "namespace_labels",
            "node_labels")}
        sql = PEER_SQL.format(cur=cur, labels_json=LABELS_JSON.format(), **{k: repr(v) for k, v in files.items()})
        target = out / f"{moment:%Y%m%d}.parquet"
        # as podledger's task: the day's rows and their split line items, each its own Parquet file (the items read
        # back from the rows' file: streaming the query to its file is faster than keeping the day in a table)
        con.execute(f"COPY ({sql}) TO '{target}' (FORMAT parquet)", {"start": moment, "end": moment + dt.timedelta(days=1)})
        if not rows_only:  # (rows only: the peer before 2026-12-05, to compare with the figures recorded before)
            con.execute(f"COPY ({split_sql.format(rows=repr(str(target)))}) TO "
                        f"'{target.with_suffix('')}.split_line_items.parquet' (FORMAT parquet)")
        n, s = con.execute(f"SELECT count(*), sum(total_cost) FROM '{target}'").fetchone()
        rows += n
        total += s
    return {"rows": rows, "total_cost": total}


def compare_outputs(root: Path) -> str:
    """How far apart the two implementations are on the first day, pod-hour by pod-hour (idle rows by node-hour)."""
    day = f"{START:%Y%m%d}"
    key = ["hour_start", "namespace", "pod", "uid", "node"]
    ours = pl.read_parquet(root / "out-podledger" / f"{day}.parquet").select(*key, "total_cost", "pod_labels",
                                                                           "controller_name")
    peer = (pl.read_parquet(root / "out-peer" / f"{day}.parquet")
            .select(pl.col("hour").cast(UTC).alias("hour_start"), "namespace", "pod", pl.col("uid").fill_null(""),
                    "node", "total_cost", "pod_labels", "controller_name")
            .with_columns(pl.col("uid").replace("", None)))
    ours = ours.with_columns(pl.col("uid").replace("", None))
    both = ours.join(peer, on=key, how="full", nulls_equal=True, coalesce=True, suffix="_peer")
    alone = both.filter(pl.col("total_cost").is_null() | pl.col("total_cost_peer").is_null()).height
    worst = both.select((pl.col("total_cost") - pl.col("total_cost_peer")).abs().max()).item()
    owners = both.filter(pl.col("controller_name").ne_missing(pl.col("controller_name_peer"))).height
    labels = both.filter(pl.col("pod_labels").str.replace_all(" ", "").ne_missing(pl.col("pod_labels_peer"))).height
    items = [pl.read_parquet(root / side / f"{day}.split_line_items.parquet") for side in ("out-podledger", "out-peer")]
    item_key = ["line_item_usage_start_date", "line_item_resource_id", "line_item_usage_type", "node"]
    money = [c for c, dtype in items[0].schema.items() if dtype == pl.Float64]  # usages, ratios and costs
    paired = items[0].join(items[1].with_columns(pl.col("line_item_usage_start_date").cast(UTC)), on=item_key,
                           how="full", nulls_equal=True, coalesce=True, suffix="_peer")
    unpaired = paired.filter(pl.any_horizontal(pl.col(c).is_null() for c in ("resource", "resource_peer"))).height
    item_worst = paired.select(pl.max_horizontal((pl.col(c) - pl.col(f"{c}_peer")).abs().max() for c in money)).item()
    other = [c for c, dtype in items[0].schema.items() if c not in item_key and dtype == pl.String]
    texts = paired.filter(pl.any_horizontal(pl.col(c).ne_missing(pl.col(f"{c}_peer")) for c in other)).height
    return (f"first day, row by row: {both.height:,} rows, {alone} in one output only, largest cost difference "
            f"{worst:.1e}, {owners} owners and {labels} pod label texts differ; split line items: {paired.height:,}, "
            f"{unpaired} in one output only, largest difference of their {len(money)} number columns {item_worst:.1e}, "
            f"{texts} differ in text columns")


def day_peaks(runs: list[dict], one_day_peak: float | None) -> str:
    """Memory against the number of days in one process: each day's own peak (the first day's, then the later days'
    median and maximum), their trend, and the run's peak against a 1-day run's."""
    lines = []
    for run in runs:
        first, later = run["day_peaks_mib"][0], run["day_peaks_mib"][1:]
        slope = statistics.linear_regression(range(len(later)), later).slope if len(later) > 1 else 0.0
        text = (f"per-day peak: day 1 {first:,.0f} MiB, days 2-{len(later) + 1} median "
                f"{statistics.median(later):,.0f} max {max(later):,.0f} MiB, trend {slope:+.1f} MiB/day")
        if one_day_peak:
            text += (f"; vs the 1-day run ({one_day_peak:,.0f} MiB): peak {run['peak_rss_mib'] / one_day_peak - 1:+.1%}, "
                     f"later days' median {statistics.median(later) / one_day_peak - 1:+.1%}")
        lines.append(text)
    return "\n          ".join(lines)


def child(kind: str, root: Path, days: int) -> dict:
    cmd = [sys.executable, __file__, "--child", kind, "--workdir", str(root), "--days", str(days), "--day-peaks"]
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=500)
    parser.add_argument("--pods", type=int, default=15000)
    parser.add_argument("--days", type=int, nargs="+", default=[1, 7, 30])
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--workdir", default=".podledger/bench-enrich")
    parser.add_argument("--names", choices=["short", "kubernetes"], default="short",
                        help="pod names and UIDs: short (pod-17; the recorded figures) or as long as a cluster's")
    parser.add_argument("--child", choices=["podledger", "peer", "peer-rows"], help=argparse.SUPPRESS)
    parser.add_argument("--day-peaks", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--rows-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    root = Path(args.workdir).resolve()
    if args.child:
        started = time.perf_counter()
        result = (run_podledger(root, args.days[0], args.day_peaks) if args.child == "podledger"
                  else run_peer(root, args.days[0], args.rows_only or args.child == "peer-rows"))
        wall = time.perf_counter() - started
        result.update(wall=wall, peak_rss_mib=max(result.get("day_peaks_mib") or
                                                  [resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024]))
        print(json.dumps(result))
        return
    started = time.perf_counter()
    build(root, args.nodes, args.pods, max(args.days), args.names)
    print(f"{args.nodes} nodes, {args.pods} pods, {max(args.days)} days of exported windows and CUR in {root} "
          f"({time.perf_counter() - started:.0f}s to build or reuse)")
    billed_per_day = float(_nodes(args.nodes)["cost"].sum()) * 24
    one_day_peak = None
    for days in args.days:
        runs: dict[str, list[dict]] = {"podledger": [], "peer": [], "peer-rows": []}
        for _ in range(args.repeat):
            for kind in runs:
                runs[kind].append(child(kind, root, days))
        ours, peer = runs["podledger"], runs["peer"]
        wall = statistics.median(r["wall"] for r in ours)
        peer_wall = statistics.median(r["wall"] for r in peer)
        rows_wall = statistics.median(r["wall"] for r in runs["peer-rows"])
        print(f"{days:3d} day(s): podledger {wall:6.1f}s ({wall / days:5.2f}s/day, peak RSS "
              f"{max(r['peak_rss_mib'] for r in ours):,.0f} MiB, {ours[0]['rows']:,} rows) | DuckDB peer {peer_wall:6.1f}s "
              f"({peer_wall / days:5.2f}s/day, peak RSS {max(r['peak_rss_mib'] for r in peer):,.0f} MiB) | "
              f"peer/podledger {peer_wall / wall:.2f}x")
        print(f"          the peer writing only the rows (as before 2026-12-05): {rows_wall:6.1f}s "
              f"({rows_wall / days:5.2f}s/day), peer/podledger {rows_wall / wall:.2f}x")
        billed = billed_per_day * days
        if days == 1:
            print(f"          {compare_outputs(root)}")
            one_day_peak = statistics.median(r["peak_rss_mib"] for r in ours)
        elif ours[0]["day_peaks_mib"]:
            print(f"          {day_peaks(ours, one_day_peak)}")
        print(f"          allocated: podledger {ours[0]['total_cost']:,.6f}, peer {peer[0]['total_cost']:,.6f}, "
              f"billed {billed:,.6f} (podledger difference {abs(ours[0]['total_cost'] - billed):.1e})")


if __name__ == "__main__":
    main()
