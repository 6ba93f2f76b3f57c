"""Split each node-hour's billed cost onto pods (AWS Split Cost Allocation Data rules), in polars.

Per node-hour: allocated_r = max(request_r, usage_r) per resource r (requests alone when usage is
missing); ratio_r = allocated_r / max(capacity_r, Σ allocated_r); price_r = weight_r × cost /
Σ weight_r × capacity_r; unused capacity is redistributed to the node's pods in proportion to their
allocation, or kept as an ``__idle__`` row (``idle: separate``). Money with no pod goes to explicit
owners: ``__idle__``, ``__unallocated__`` (billed instance tagged for the cluster but absent from the
metrics), ``__unpriced__`` (node-hours with no billing row yet) and ``__cluster_overhead__`` (EKS
control plane). Every cent of the cluster's billed cost ends up in exactly one row.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

import polars as pl

from podledger.config import AllocationConfig
from podledger.exceptions import ExportIncompleteError
from podledger.hours import HOUR, stamp_hour
from podledger.usage import RESOURCES, node_hours, pod_hours

IDLE = "__idle__"
UNALLOCATED = "__unallocated__"
UNPRICED = "__unpriced__"
CLUSTER_OVERHEAD = "__cluster_overhead__"

OUTPUT_SCHEMA: dict[str, pl.DataType] = {
    "hour_start": pl.Datetime("us", "UTC"), "cost_center": pl.String(), "cluster": pl.String(), "node": pl.String(),
    "instance_id": pl.String(), "instance_type": pl.String(), "namespace": pl.String(), "pod": pl.String(), "uid": pl.String(),
    "controller_kind": pl.String(), "controller_name": pl.String(), "pod_labels": pl.String(),
    "namespace_labels": pl.String(), "node_labels": pl.String(),
    "running_hours": pl.Float64(), "cpu_request_core_hours": pl.Float64(), "cpu_usage_core_hours": pl.Float64(),
    "cpu_allocated_core_hours": pl.Float64(), "memory_request_gib_hours": pl.Float64(),
    "memory_usage_gib_hours": pl.Float64(), "memory_allocated_gib_hours": pl.Float64(), "gpu_allocated_hours": pl.Float64(),
    "network_transmit_bytes": pl.Float64(), "network_receive_bytes": pl.Float64(),
    "cpu_cost": pl.Float64(), "memory_cost": pl.Float64(), "gpu_cost": pl.Float64(), "unused_cost": pl.Float64(),
    "network_cost": pl.Float64(), "overhead_cost": pl.Float64(),
    # AWS split-cost detail per resource (feeds the split line items in the SCAD shape).
    "cpu_split_usage_ratio": pl.Float64(), "memory_split_usage_ratio": pl.Float64(),
    "cpu_unused_cost": pl.Float64(), "memory_unused_cost": pl.Float64(), "gpu_unused_cost": pl.Float64(),
    "public_on_demand_factor": pl.Float64(), "net_factor": pl.Float64(),
    "total_cost": pl.Float64(), "currency": pl.String(), "cost_basis": pl.String(), "efficiency": pl.Float64(),
}
NUMERIC = [k for k, v in OUTPUT_SCHEMA.items() if v == pl.Float64]


def _weights(options: AllocationConfig) -> tuple[pl.Expr, pl.Expr, pl.Expr]:
    # AWS: GPU:(CPU+memory) = 9:1 on accelerated instances, the 1 split 9:1 again (GPU 9, CPU 0.9, memory 0.1).
    cm = options.cpu_weight + options.memory_weight
    gpu_node = pl.col("gpu_capacity") > 0
    w_cpu = pl.when(gpu_node).then(options.cpu_weight / cm).otherwise(options.cpu_weight)
    w_mem = pl.when(gpu_node).then(options.memory_weight / cm).otherwise(options.memory_weight)
    w_gpu = pl.when(gpu_node).then(options.gpu_weight).otherwise(0.0)
    return w_cpu, w_mem, w_gpu


def split_node_costs(pods: pl.DataFrame, nodes: pl.DataFrame, options: AllocationConfig) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Split priced node-hours' cost onto their pods; return (pod rows with costs, node-hour idle rows)."""
    node = [HOUR, "node"]
    alloc = {"cpu": "cpu_allocated_core_hours", "memory": "memory_allocated_gib_hours", "gpu": "gpu_allocated_hours"}
    totals = pods.group_by(node).agg(*(pl.col(c).sum().alias(f"{r}_total") for r, c in alloc.items()))
    w_cpu, w_mem, w_gpu = _weights(options)
    priced = (nodes.join(totals, on=node, how="left", maintain_order="left")
              .with_columns(*(pl.col(f"{r}_total").fill_null(0.0) for r in RESOURCES))
              .with_columns((pl.col("cost") / (w_cpu * pl.col("cpu_capacity") + w_mem * pl.col("memory_capacity")
                                               + w_gpu * pl.col("gpu_capacity"))).alias("unit"))
              .with_columns((w_cpu * pl.col("unit")).alias("cpu_price"), (w_mem * pl.col("unit")).alias("memory_price"),
                            (w_gpu * pl.col("unit")).alias("gpu_price"))
              .with_columns(*((pl.max_horizontal(pl.col(f"{r}_capacity") - pl.col(f"{r}_total"), 0.0)
                               * pl.col(f"{r}_price")).alias(f"{r}_unused") for r in RESOURCES)))
    rows = pods.join(priced, on=node, how="inner", maintain_order="left")
    cost_cols = []
    for r, column in alloc.items():
        denominator = pl.max_horizontal(pl.col(f"{r}_capacity"), pl.col(f"{r}_total"))
        ratio = pl.when(denominator > 0).then(pl.col(column) / denominator).otherwise(0.0)
        share = pl.when(pl.col(f"{r}_total") > 0).then(pl.col(column) / pl.col(f"{r}_total")).otherwise(0.0)
        redistributed = share * pl.col(f"{r}_unused") if options.idle == "redistribute" else pl.lit(0.0)
        cost_cols += [(ratio * pl.col(f"{r}_capacity") * pl.col(f"{r}_price")).alias(f"{r}_cost"),
                      redistributed.alias(f"{r}_unused_cost"), ratio.alias(f"{r}_split_usage_ratio")]
    rows = rows.with_columns(cost_cols).with_columns(
        pl.sum_horizontal(*(f"{r}_unused_cost" for r in RESOURCES)).alias("unused_cost"),
        # The split is linear in the node's cost: other bases scale it by the node's cost ratio.
        *((pl.when(pl.col("cost") != 0).then(pl.col(c) / pl.col("cost")).otherwise(None)).alias(f)
          for c, f in (("public_cost", "public_on_demand_factor"), ("net_cost", "net_factor")) if c in nodes.columns))
    rows = rows.with_columns(pl.sum_horizontal("cpu_cost", "memory_cost", "gpu_cost", "unused_cost").alias("total_cost"))
    # A node-hour without pods keeps its whole cost as idle (exactly, not as the sum of its resources' prices).
    no_pods = pl.sum_horizontal(*(pl.col(f"{r}_total") for r in RESOURCES)) == 0
    if options.idle == "redistribute":
        # Unused capacity of a resource nobody on the node allocated has no pod to land on.
        idle_amount = pl.sum_horizontal(*(pl.when(pl.col(f"{r}_total") > 0).then(0.0).otherwise(pl.col(f"{r}_unused"))
                                          for r in RESOURCES))
    else:
        idle_amount = pl.sum_horizontal(*(pl.col(f"{r}_unused") for r in RESOURCES))
    idle_amount = pl.when(no_pods).then(pl.col("cost")).otherwise(idle_amount)
    idle = priced.with_columns(idle_amount.alias("unused_cost")).filter(pl.col("unused_cost") != 0).select(
        HOUR, "node", "instance_id", "instance_type", "currency", "unused_cost", pl.col("unused_cost").alias("total_cost"))
    return rows, idle


def efficiency_expr() -> pl.Expr:
    """Kubecost's cost-weighted efficiency: Σ_r (usage_r / request_r × cost_r) / Σ_r cost_r."""
    cpu = pl.when(pl.col("cpu_request_core_hours") > 0).then(
        pl.col("cpu_usage_core_hours") / pl.col("cpu_request_core_hours"))
    mem = pl.when(pl.col("memory_request_gib_hours") > 0).then(
        pl.col("memory_usage_gib_hours") / pl.col("memory_request_gib_hours"))
    weight = pl.col("cpu_cost") + pl.col("memory_cost")
    return pl.when(weight > 0).then(
        (cpu.fill_null(0.0) * pl.col("cpu_cost") + mem.fill_null(0.0) * pl.col("memory_cost")) / weight)


def _sentinel(frame: pl.DataFrame, owner: str) -> pl.DataFrame:
    return frame.with_columns(pl.lit(owner).alias("namespace"), pl.lit(owner).alias("pod"),
                              pl.lit(owner).alias("controller_kind"), pl.lit(owner).alias("controller_name"))


def _conform(frame: pl.DataFrame, common: Mapping[str, object]) -> pl.DataFrame:
    columns = []
    for name, dtype in OUTPUT_SCHEMA.items():
        if name in common:
            columns.append(pl.lit(common[name], dtype).alias(name))
        elif name in frame.columns:
            columns.append(pl.col(name).cast(dtype))
        else:
            columns.append(pl.lit(0.0 if dtype == pl.Float64 else None, dtype).alias(name))
    return frame.select(columns)


def _merge_idle(frames: list[pl.DataFrame]) -> pl.DataFrame:
    """Merge idle contributions into one row per node-hour (the table's grain)."""
    frames = [f for f in frames if f.height]
    if not frames:
        return pl.DataFrame()
    merged = pl.concat([f.with_columns(*(pl.lit(0.0).alias(c) for c in ("unused_cost", "network_cost") if c not in f.columns))
                        .select(HOUR, "node", "instance_id", "instance_type", "currency", "unused_cost", "network_cost")
                        for f in frames], how="vertical_relaxed")
    return (merged.group_by(HOUR, "node", maintain_order=True)
            .agg(pl.col("instance_id", "instance_type", "currency").drop_nulls().first(),
                 pl.col("unused_cost", "network_cost").sum())
            .with_columns((pl.col("unused_cost") + pl.col("network_cost")).alias("total_cost")))


def split_data_transfer(pod_rows: pl.DataFrame, transfer: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Split each node-hour's data-transfer cost by its pods' transmitted bytes; return (pod rows, node leftovers).

    A node whose pods sent nothing keeps its transfer cost as idle: billed money is never dropped.
    """
    if not transfer.height:
        return pod_rows.with_columns(pl.lit(0.0).alias("network_cost")), pl.DataFrame()
    instance = [HOUR, "instance_id"]
    tx = pl.col("network_transmit_bytes").fill_null(0.0)
    rows = (pod_rows.join(transfer.select(*instance, pl.col("cost").alias("transfer_cost")), on=instance, how="left",
                          maintain_order="left")
            .with_columns(tx.sum().over(HOUR, "node").alias("node_tx")))
    rows = rows.with_columns(pl.when(pl.col("node_tx") > 0).then(pl.col("transfer_cost").fill_null(0.0) * tx / pl.col("node_tx"))
                             .otherwise(0.0).alias("network_cost"))
    rows = rows.with_columns((pl.col("total_cost") + pl.col("network_cost")).alias("total_cost"))
    placed = rows.group_by(instance).agg(pl.col("network_cost").sum().alias("placed"))
    leftover = (transfer.join(placed, on=instance, how="left", maintain_order="left")
                .with_columns((pl.col("cost") - pl.col("placed").fill_null(0.0)).alias("network_cost"))
                # Float residue of the proportional split (~1e-18) is not money: keep real leftovers only.
                .filter(pl.col("network_cost").abs() > 1e-12))
    return rows.drop("transfer_cost", "node_tx"), leftover


def allocate_hour(frames: dict[str, pl.DataFrame], *, hour: dt.datetime, cost_center: str, cluster: str,
                  instance_costs: pl.DataFrame, control_plane: pl.DataFrame, options: AllocationConfig,
                  cost_basis: str, transfer_costs: pl.DataFrame | None = None) -> pl.DataFrame:
    """Return every allocation row of one cluster-hour (pods and sentinels), in OUTPUT_SCHEMA order."""
    return allocate_hours(stamp_hour(frames, hour), hours=[hour], cost_center=cost_center, cluster=cluster,
                          instance_costs=instance_costs, control_plane=control_plane, options=options,
                          cost_basis=cost_basis, transfer_costs=transfer_costs)


def _check_capacity(pods: pl.DataFrame, priced_nodes: pl.DataFrame, cluster: str, capacity: str) -> None:
    """A priced node-hour with pods needs its CPU and memory capacity, and its accelerator capacity when a pod there
    holds one: without them its cost cannot be split by the rule (NaN, or priced by the other resources alone, as
    if it had no GPU). Fail naming the node-hour and the metric."""
    node = [HOUR, "node"]
    gpus = pods.group_by(node).agg(pl.col("gpu_allocated_hours").sum().alias("gpu_held"))
    lacks = {"cpu": ~(pl.col("cpu_capacity") > 0), "memory": ~(pl.col("memory_capacity") > 0),
             "gpu": (pl.col("gpu_held") > 0) & ~(pl.col("gpu_capacity") > 0)}
    blind = (priced_nodes.join(gpus, on=node, how="inner")
             .with_columns(**{f"lacks_{r}": expr.fill_null(True) for r, expr in lacks.items()})
             .filter(pl.any_horizontal(*(f"lacks_{r}" for r in lacks))))
    if not blind.height:
        return
    first = blind.sort(node).row(0, named=True)
    missing = " and ".join(r for r in lacks if first[f"lacks_{r}"])
    metric = "kube_node_status_allocatable" if capacity == "allocatable" else "kube_node_status_capacity"
    raise ExportIncompleteError(
        f"cluster {cluster}, hour {first[HOUR]:%Y-%m-%dT%H}Z, node {first['node']} ({first['instance_id']}): the exported "
        f"{metric} has no {missing} for this node, so its cost ({first['cost']:.6f} {first['currency']}) cannot be "
        f"split onto its pods ({blind.height} node-hour(s) like this); re-export the window with force once "
        "kube-state-metrics reports the node's resources")


def allocate_hours(frames: dict[str, pl.DataFrame], *, hours: list[dt.datetime], cost_center: str, cluster: str,
                   instance_costs: pl.DataFrame, control_plane: pl.DataFrame, options: AllocationConfig,
                   cost_basis: str, transfer_costs: pl.DataFrame | None = None,
                   release_frames: bool = False) -> pl.DataFrame:
    """Return every allocation row of the cluster's ``hours`` (pods and sentinels), in OUTPUT_SCHEMA order.

    ``frames`` stack the hours' metric frames with an ``hour_start`` column (:func:`podledger.hours.stack_hours`):
    the hours are computed in one vectorised pass, each node-hour on its own. An hour without metrics still gets
    its sentinels (unallocated instances, control plane). ``release_frames``: empty ``frames`` (the caller's dict) once
    pods and nodes are read from them, so their memory is given back before the split.
    """
    utc = pl.Datetime("us", "UTC")
    wanted = pl.col(HOUR).is_in(pl.Series([*hours], dtype=utc).implode())
    instance = [HOUR, "instance_id"]
    pods = pod_hours(frames, options.accelerators)
    nodes = node_hours(frames, options.capacity, options.accelerators)
    if release_frames:  # the metrics are not needed past this point: a day's are a quarter of its memory
        frames.clear()
    costs = instance_costs.with_columns(pl.col(HOUR).cast(utc)).filter(wanted)
    transfer = (transfer_costs.with_columns(pl.col(HOUR).cast(utc)).filter(wanted).select(*instance, "cost")
                if transfer_costs is not None else pl.DataFrame(schema={HOUR: utc, "instance_id": pl.String,
                                                                        "cost": pl.Float64}))
    extra_costs = [c for c in ("public_cost", "net_cost") if c in costs.columns]
    nodes = nodes.join(costs.select(*instance, "cost", *extra_costs, "currency", "instance_type"), on=instance,
                       how="left", maintain_order="left")
    priced_nodes = nodes.filter(pl.col("cost").is_not_null())
    common = {"cost_center": cost_center, "cluster": cluster, "cost_basis": cost_basis}
    parts = []
    priced_transfer = transfer.join(priced_nodes.select(instance), on=instance, how="semi")
    if pods.height:
        _check_capacity(pods, priced_nodes, cluster, options.capacity)
        pod_rows, idle = split_node_costs(pods, priced_nodes, options)
        pod_rows, leftover = split_data_transfer(pod_rows, priced_transfer)
        parts.append(_conform(pod_rows.with_columns(efficiency_expr().alias("efficiency")), common))
        unpriced = pods.join(priced_nodes.select(HOUR, "node"), on=[HOUR, "node"], how="anti")
    else:
        idle = priced_nodes.select(HOUR, "node", "instance_id", "instance_type", "currency",
                                   pl.col("cost").alias("unused_cost"), pl.col("cost").alias("total_cost"))
        leftover = priced_transfer.rename({"cost": "network_cost"})
        unpriced = pods
    if leftover.height:
        leftover = leftover.join(priced_nodes.select(HOUR, "node", "instance_id", "instance_type", "currency"),
                                 on=instance)
    merged_idle = _merge_idle([idle, leftover])
    if merged_idle.height and options.idle == "separate" and options.idle_by == "cluster":
        merged_idle = merged_idle.group_by(HOUR, maintain_order=True).agg(
            pl.lit(None, pl.String).alias("node"), pl.col("currency").first(),
            pl.col("unused_cost", "network_cost", "total_cost").sum())
    if merged_idle.height:
        parts.append(_conform(_sentinel(merged_idle, IDLE), common))
    unpriced_transfer = transfer.join(nodes.filter(pl.col("cost").is_null()).select(HOUR, "node", "instance_id"),
                                      on=instance)
    if unpriced.height or unpriced_transfer.height:
        usage = [c for c in NUMERIC if c in unpriced.columns]
        summary = unpriced.group_by(HOUR, "node").agg(pl.col(usage).sum()) if unpriced.height else pl.DataFrame(
            schema={HOUR: utc, "node": pl.String})
        network = unpriced_transfer.group_by(HOUR, "node").agg(pl.col("cost").sum().alias("network_cost"))
        summary = summary.join(network, on=[HOUR, "node"], how="full", coalesce=True).with_columns(
            pl.col("network_cost").fill_null(0.0), pl.col("network_cost").fill_null(0.0).alias("total_cost"))
        parts.append(_conform(_sentinel(summary, UNPRICED), common))
    orphans = costs.filter(pl.col("cluster_tag") == cluster).join(nodes.select(instance), on=instance, how="anti")
    if orphans.height:
        orphans = orphans.join(transfer.rename({"cost": "network_cost"}), on=instance, how="left",
                               maintain_order="left").with_columns(pl.col("network_cost").fill_null(0.0))
        parts.append(_conform(_sentinel(orphans.select(
            HOUR, "instance_id", "instance_type", "currency", "network_cost",
            (pl.col("cost") + pl.col("network_cost")).alias("total_cost")), UNALLOCATED), common))
    overhead = control_plane.with_columns(pl.col(HOUR).cast(utc)).filter(wanted & (pl.col("cluster") == cluster))
    result = pl.concat(parts, how="vertical") if parts else _conform(pl.DataFrame(), common).clear()
    if overhead.height and options.cluster_overhead == "shared" and result.height:
        # Shared by cost: each pod carries the hour's control plane in proportion to its own cost.
        is_pod = ~pl.col("namespace").str.starts_with("__")
        pod_totals = result.filter(is_pod).group_by(HOUR).agg(pl.col("total_cost").sum().alias("_pod_total"))
        shared = (overhead.group_by(HOUR).agg(pl.col("cost").sum().alias("_overhead"))
                  .join(pod_totals, on=HOUR).filter(pl.col("_pod_total") > 0))
        if shared.height:
            share = pl.when(is_pod & pl.col("_pod_total").is_not_null()).then(
                pl.col("total_cost") / pl.col("_pod_total") * pl.col("_overhead")).otherwise(0.0)
            result = (result.join(shared, on=HOUR, how="left", maintain_order="left")
                      .with_columns(share.alias("overhead_cost"))
                      .with_columns((pl.col("total_cost") + pl.col("overhead_cost")).alias("total_cost"))
                      .drop("_pod_total", "_overhead"))
            overhead = overhead.join(shared, on=HOUR, how="anti")
    if overhead.height:  # kept as its own row (or no pod that hour to carry it)
        row = _conform(_sentinel(overhead.select(HOUR, "currency", pl.col("cost").alias("overhead_cost"),
                                                 pl.col("cost").alias("total_cost")), CLUSTER_OVERHEAD), common)
        result = pl.concat([result, row], how="vertical")
    return result


def billed_cost(instance_costs: pl.DataFrame, control_plane: pl.DataFrame, node_instances: pl.DataFrame,
                cluster: str, transfer_costs: pl.DataFrame | None = None) -> pl.DataFrame:
    """Return the billed cost per hour of the cluster's resources.

    Its nodes (instances seen in the metrics), instances tagged for it, their data transfer, and its
    EKS control plane.
    """
    mine = instance_costs.join(node_instances.select("hour_start", "instance_id").unique().with_columns(
        pl.lit(True).alias("seen")), on=["hour_start", "instance_id"], how="left")
    mine = mine.filter(pl.col("seen").fill_null(False) | (pl.col("cluster_tag") == cluster))
    parts = [mine.select("hour_start", "cost"),
             control_plane.filter(pl.col("cluster") == cluster).select("hour_start", "cost")]
    if transfer_costs is not None and transfer_costs.height:
        owned = pl.concat([mine.select("hour_start", "instance_id"), node_instances.select("hour_start", "instance_id")]).unique()
        parts.append(transfer_costs.join(owned, on=["hour_start", "instance_id"], how="semi").select("hour_start", "cost"))
    return pl.concat(parts).group_by("hour_start").agg(pl.col("cost").sum().alias("billed_cost"))


def reconcile(rows: pl.DataFrame, billed: pl.DataFrame, tolerance: float = 1e-9) -> pl.DataFrame:
    """Compare Σ rows with the billed cost per hour; ``ok`` is false beyond ``tolerance`` relative."""
    allocated = rows.group_by("hour_start", "cluster").agg(pl.col("total_cost").sum().alias("allocated_cost"))
    report = allocated.join(billed, on="hour_start", how="full", coalesce=True).with_columns(
        pl.col("allocated_cost").fill_null(0.0), pl.col("billed_cost").fill_null(0.0))
    diff = (pl.col("allocated_cost") - pl.col("billed_cost")).abs()
    scale = pl.max_horizontal(pl.col("billed_cost").abs(), pl.lit(1e-12))
    return report.with_columns(diff.alias("difference"), (diff / scale <= tolerance).alias("ok")).sort("hour_start")
