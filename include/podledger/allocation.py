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
import json

import polars as pl

from podledger.config import AllocationConfig
from podledger.focus import node_key_expr

GIB = float(2**30)
IDLE = "__idle__"
UNALLOCATED = "__unallocated__"
UNPRICED = "__unpriced__"
CLUSTER_OVERHEAD = "__cluster_overhead__"
POD_KEY = ["namespace", "pod", "uid"]
RESOURCES = ("cpu", "memory", "gpu")

OUTPUT_SCHEMA: dict[str, pl.DataType] = {
    "hour_start": pl.Datetime("us", "UTC"), "cost_center": pl.String, "cluster": pl.String, "node": pl.String,
    "instance_id": pl.String, "instance_type": pl.String, "namespace": pl.String, "pod": pl.String, "uid": pl.String,
    "controller_kind": pl.String, "controller_name": pl.String, "pod_labels": pl.String,
    "namespace_labels": pl.String, "node_labels": pl.String,
    "running_hours": pl.Float64, "cpu_request_core_hours": pl.Float64, "cpu_usage_core_hours": pl.Float64,
    "cpu_allocated_core_hours": pl.Float64, "memory_request_gib_hours": pl.Float64,
    "memory_usage_gib_hours": pl.Float64, "memory_allocated_gib_hours": pl.Float64, "gpu_allocated_hours": pl.Float64,
    "network_transmit_bytes": pl.Float64, "network_receive_bytes": pl.Float64,
    "cpu_cost": pl.Float64, "memory_cost": pl.Float64, "gpu_cost": pl.Float64, "unused_cost": pl.Float64,
    "network_cost": pl.Float64, "overhead_cost": pl.Float64,
    # AWS split-cost detail per resource (feeds the split line items in the SCAD shape).
    "cpu_split_usage_ratio": pl.Float64, "memory_split_usage_ratio": pl.Float64,
    "cpu_unused_cost": pl.Float64, "memory_unused_cost": pl.Float64, "gpu_unused_cost": pl.Float64,
    "public_on_demand_factor": pl.Float64, "net_factor": pl.Float64,
    "total_cost": pl.Float64, "currency": pl.String, "cost_basis": pl.String, "efficiency": pl.Float64,
}
NUMERIC = [k for k, v in OUTPUT_SCHEMA.items() if v == pl.Float64]


def _get(frames: dict[str, pl.DataFrame], name: str) -> pl.DataFrame | None:
    frame = frames.get(name)
    return frame if frame is not None and frame.height else None


def container_requests(frames: dict[str, pl.DataFrame]) -> pl.DataFrame:
    """Return the average request of every container: namespace, pod, uid, container, node, resource, kind, request."""
    parts = []
    for name, resource, init in (("cpu_requests", "cpu", False), ("memory_requests", "memory", False),
                                 ("gpu_requests", "gpu", False), ("init_cpu_requests", "cpu", True),
                                 ("init_memory_requests", "memory", True)):
        frame = _get(frames, name)
        if frame is None:
            continue
        value = next(c for c in frame.columns if c.startswith("request_"))
        parts.append(frame.select(
            *POD_KEY, "container", "node", pl.lit(resource).alias("resource"), pl.lit(init).alias("init"),
            (pl.col(value) / pl.col("present_seconds")).alias("request")))
    if not parts:
        return pl.DataFrame(schema={**dict.fromkeys([*POD_KEY, "container", "node", "resource"], pl.String),
                                    "init": pl.Boolean, "request": pl.Float64, "kind": pl.String})
    requests = pl.concat(parts)
    info = _get(frames, "init_container_info")
    sidecars = (info.filter(pl.col("restart_policy") == "Always").select(*POD_KEY, "container").unique()
                .with_columns(pl.lit(True).alias("sidecar")) if info is not None else None)
    if sidecars is not None:
        requests = requests.join(sidecars, on=[*POD_KEY, "container"], how="left")
    else:
        requests = requests.with_columns(pl.lit(None, pl.Boolean).alias("sidecar"))
    kind = pl.when(~pl.col("init")).then(pl.lit("app")).when(pl.col("sidecar").fill_null(False)).then(
        pl.lit("sidecar")).otherwise(pl.lit("init"))
    return requests.with_columns(kind.alias("kind")).drop("sidecar")


def pod_effective_requests(requests: pl.DataFrame) -> pl.DataFrame:
    """Return per pod the Kubernetes effective request: max(Σ app + Σ sidecar, max(init) + Σ sidecar).

    Kubernetes adds to each regular init container only the sidecars declared before it; kube-state-metrics
    exports no init-container order, so every sidecar is counted: the bound is exact without sidecars and
    never below the scheduler's value with them.
    """
    per_resource = (requests.group_by(*POD_KEY, "resource").agg(
        pl.col("request").filter(pl.col("kind") == "app").sum().alias("apps"),
        pl.col("request").filter(pl.col("kind") == "sidecar").sum().alias("sidecars"),
        pl.col("request").filter(pl.col("kind") == "init").max().fill_null(0.0).alias("max_init"),
        pl.col("node").filter(pl.col("node") != "").first().alias("request_node"))
        .with_columns(pl.max_horizontal(pl.col("apps") + pl.col("sidecars"),
                                        pl.col("max_init") + pl.col("sidecars")).alias("effective")))
    wide = per_resource.pivot(on="resource", index=POD_KEY, values="effective")
    for resource in RESOURCES:
        if resource not in wide.columns:
            wide = wide.with_columns(pl.lit(0.0).alias(resource))
    nodes = per_resource.group_by(POD_KEY).agg(pl.col("request_node").drop_nulls().first())
    return (wide.join(nodes, on=POD_KEY, how="left")
            .select(*POD_KEY, "request_node", pl.col("cpu").fill_null(0.0).alias("cpu_request_cores"),
                    pl.col("memory").fill_null(0.0).alias("memory_request_bytes"),
                    pl.col("gpu").fill_null(0.0).alias("gpu_request")))


def _owners(frames: dict[str, pl.DataFrame]) -> pl.DataFrame | None:
    owner = _get(frames, "pod_owner")
    if owner is None:
        return None
    owner = owner.select(*POD_KEY, "owner_kind", "owner_name").unique(subset=POD_KEY, keep="first")
    rs = _get(frames, "replicaset_owner")
    job = _get(frames, "job_owner")
    kind, name = pl.col("owner_kind"), pl.col("owner_name")
    if rs is not None:
        owner = owner.join(rs.select("namespace", pl.col("replicaset").alias("owner_name"),
                                     pl.col("owner_kind").alias("rs_kind"), pl.col("owner_name").alias("rs_name")),
                           on=["namespace", "owner_name"], how="left")
        kind = pl.when((kind == "ReplicaSet") & pl.col("rs_name").is_not_null()).then(pl.col("rs_kind")).otherwise(kind)
        name = pl.when((pl.col("owner_kind") == "ReplicaSet") & pl.col("rs_name").is_not_null()).then(
            pl.col("rs_name")).otherwise(name)
    if job is not None:
        owner = owner.join(job.select("namespace", pl.col("job_name").alias("owner_name"),
                                      pl.col("owner_kind").alias("job_kind"), pl.col("owner_name").alias("job_owner")),
                           on=["namespace", "owner_name"], how="left")
        kind = pl.when((pl.col("owner_kind") == "Job") & pl.col("job_owner").is_not_null()).then(
            pl.col("job_kind")).otherwise(kind)
        name = pl.when((pl.col("owner_kind") == "Job") & pl.col("job_owner").is_not_null()).then(
            pl.col("job_owner")).otherwise(name)
    return owner.select(*POD_KEY, kind.alias("controller_kind"), name.alias("controller_name"))


def _labels_json(frame: pl.DataFrame | None, keys: list[str], alias: str) -> pl.DataFrame | None:
    """Return ``keys`` + the object's labels as a JSON object string (KSM's ``label_`` prefix removed)."""
    if frame is None or "labels" not in frame.columns:
        return None
    frame = frame.unique(subset=keys, keep="first")
    encoded = [json.dumps({e["key"].removeprefix("label_"): e["value"] for e in entries or []}, sort_keys=True)
               for entries in frame["labels"].to_list()]
    return frame.select(keys).with_columns(pl.Series(alias, encoded, pl.String))


def pod_hours(frames: dict[str, pl.DataFrame]) -> pl.DataFrame:
    """Return one row per running pod: node, requests, usage, allocation (hours) and network bytes."""
    running = _get(frames, "pod_running")
    if running is None:
        return pl.DataFrame()
    pods = running.filter(pl.col("running_seconds") > 0).select(*POD_KEY, "running_seconds")
    requests = pod_effective_requests(container_requests(frames))
    pods = pods.join(requests, on=POD_KEY, how="left")
    info = _get(frames, "pod_info")
    if info is not None:
        pods = pods.join(info.filter(pl.col("node") != "").select(*POD_KEY, pl.col("node").alias("info_node"))
                         .unique(subset=POD_KEY, keep="first"), on=POD_KEY, how="left")
    else:
        pods = pods.with_columns(pl.lit(None, pl.String).alias("info_node"))
    hours = pl.col("running_seconds") / 3600.0
    pods = pods.with_columns(
        pl.coalesce("info_node", "request_node").alias("node"),
        hours.alias("running_hours"),
        (pl.col("cpu_request_cores").fill_null(0.0) * hours).alias("cpu_request_core_hours"),
        (pl.col("memory_request_bytes").fill_null(0.0) / GIB * hours).alias("memory_request_gib_hours"),
        (pl.col("gpu_request").fill_null(0.0) * hours).alias("gpu_allocated_hours"),
    )
    for name, column, out, scale in (("cpu_usage", "usage_core_seconds", "cpu_usage_core_hours", 3600.0),
                                     ("memory_usage", "usage_byte_seconds", "memory_usage_gib_hours", 3600.0 * GIB),
                                     ("network_transmit", "bytes", "network_transmit_bytes", 1.0),
                                     ("network_receive", "bytes", "network_receive_bytes", 1.0)):
        frame = _get(frames, name)
        if frame is None:
            pods = pods.with_columns(pl.lit(None, pl.Float64).alias(out))
            continue
        usage = frame.group_by("namespace", "pod").agg((pl.col(column).sum() / scale).alias(out))
        pods = pods.join(usage, on=["namespace", "pod"], how="left")
    owners = _owners(frames)
    if owners is not None:
        pods = pods.join(owners, on=POD_KEY, how="left")
    else:
        pods = pods.with_columns(pl.lit(None, pl.String).alias("controller_kind"),
                                 pl.lit(None, pl.String).alias("controller_name"))
    for name, keys in (("pod_labels", POD_KEY), ("namespace_labels", ["namespace"]), ("node_labels", ["node"])):
        labels = _labels_json(_get(frames, name), keys, name)
        pods = pods.join(labels, on=keys, how="left") if labels is not None else pods.with_columns(
            pl.lit(None, pl.String).alias(name))
    return pods.with_columns(
        pl.coalesce("controller_kind", pl.lit("Pod")).alias("controller_kind"),
        pl.coalesce("controller_name", pl.col("pod")).alias("controller_name"),
        # AWS SCAD: allocated = max(reserved, used); reservation alone when usage is unavailable.
        pl.max_horizontal("cpu_request_core_hours", pl.col("cpu_usage_core_hours").fill_null(0.0)).alias("cpu_allocated_core_hours"),
        pl.max_horizontal("memory_request_gib_hours", pl.col("memory_usage_gib_hours").fill_null(0.0)).alias("memory_allocated_gib_hours"),
    )


def container_hours(frames: dict[str, pl.DataFrame]) -> pl.DataFrame:
    """Return one row per running app/sidecar container: owner, average request and usage (cores, GiB)."""
    running = _get(frames, "pod_running")
    requests = container_requests(frames)
    if running is None or not requests.height:
        return pl.DataFrame()
    wide = (requests.filter(pl.col("kind") != "init")
            .pivot(on="resource", index=[*POD_KEY, "container"], values="request", aggregate_function="sum"))
    for resource in ("cpu", "memory"):
        if resource not in wide.columns:
            wide = wide.with_columns(pl.lit(0.0).alias(resource))
    rows = (wide.join(running.filter(pl.col("running_seconds") > 0), on=POD_KEY)
            .select(*POD_KEY, "container", "running_seconds", pl.col("cpu").fill_null(0.0).alias("cpu_request_cores"),
                    (pl.col("memory").fill_null(0.0) / GIB).alias("memory_request_gib")))
    for name, column, out, scale in (("cpu_usage", "usage_core_seconds", "cpu_used_cores", 1.0),
                                     ("memory_usage", "usage_byte_seconds", "memory_used_gib", GIB)):
        frame = _get(frames, name)
        if frame is None:
            rows = rows.with_columns(pl.lit(None, pl.Float64).alias(out))
            continue
        usage = frame.group_by("namespace", "pod", "container").agg((pl.col(column).sum() / scale).alias(out))
        rows = rows.join(usage, on=["namespace", "pod", "container"], how="left").with_columns(
            pl.col(out) / pl.col("running_seconds"))
    owners = _owners(frames)
    if owners is not None:
        rows = rows.join(owners, on=POD_KEY, how="left")
    else:
        rows = rows.with_columns(pl.lit(None, pl.String).alias("controller_kind"),
                                 pl.lit(None, pl.String).alias("controller_name"))
    return rows.with_columns(pl.coalesce("controller_kind", pl.lit("Pod")).alias("controller_kind"),
                             pl.coalesce("controller_name", pl.col("pod")).alias("controller_name"))


def node_hours(frames: dict[str, pl.DataFrame], capacity: str = "instance") -> pl.DataFrame:
    """Return one row per node: instance id (from provider_id) and capacity in core-/GiB-/GPU-hours.

    ``capacity="allocatable"`` uses kube allocatable (capacity minus system/kube reserved) instead.
    """
    info = _get(frames, "node_info")
    if info is None:
        return pl.DataFrame(schema={"node": pl.String, "instance_id": pl.String, "cpu_capacity": pl.Float64,
                                    "memory_capacity": pl.Float64, "gpu_capacity": pl.Float64})
    nodes = (info.group_by("node").agg(pl.col("provider_id").first())
             .with_columns(node_key_expr("provider_id").alias("instance_id")))
    cap = _get(frames, "node_allocatable" if capacity == "allocatable" else "node_capacity")
    scale = {"cpu": 3600.0, "memory": 3600.0 * GIB, "nvidia_com_gpu": 3600.0}
    for resource, out in (("cpu", "cpu_capacity"), ("memory", "memory_capacity"), ("nvidia_com_gpu", "gpu_capacity")):
        if cap is None:
            nodes = nodes.with_columns(pl.lit(0.0).alias(out))
            continue
        part = (cap.filter(pl.col("resource") == resource).group_by("node")
                .agg((pl.col("unit_seconds").sum() / scale[resource]).alias(out)))
        nodes = nodes.join(part, on="node", how="left").with_columns(pl.col(out).fill_null(0.0))
    return nodes.select("node", "instance_id", "cpu_capacity", "memory_capacity", "gpu_capacity")


def _weights(options: AllocationConfig) -> tuple[pl.Expr, pl.Expr, pl.Expr]:
    # AWS: GPU:(CPU+memory) = 9:1 on accelerated instances, the 1 split 9:1 again (GPU 9, CPU 0.9, memory 0.1).
    cm = options.cpu_weight + options.memory_weight
    gpu_node = pl.col("gpu_capacity") > 0
    w_cpu = pl.when(gpu_node).then(options.cpu_weight / cm).otherwise(options.cpu_weight)
    w_mem = pl.when(gpu_node).then(options.memory_weight / cm).otherwise(options.memory_weight)
    w_gpu = pl.when(gpu_node).then(options.gpu_weight).otherwise(0.0)
    return w_cpu, w_mem, w_gpu


def split_node_costs(pods: pl.DataFrame, nodes: pl.DataFrame, options: AllocationConfig) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Split priced nodes' cost onto their pods; return (pod rows with costs, node idle rows)."""
    alloc = {"cpu": "cpu_allocated_core_hours", "memory": "memory_allocated_gib_hours", "gpu": "gpu_allocated_hours"}
    totals = pods.group_by("node").agg(*(pl.col(c).sum().alias(f"{r}_total") for r, c in alloc.items()))
    w_cpu, w_mem, w_gpu = _weights(options)
    priced = (nodes.join(totals, on="node", how="left")
              .with_columns(*(pl.col(f"{r}_total").fill_null(0.0) for r in RESOURCES))
              .with_columns((pl.col("cost") / (w_cpu * pl.col("cpu_capacity") + w_mem * pl.col("memory_capacity")
                                               + w_gpu * pl.col("gpu_capacity"))).alias("unit"))
              .with_columns((w_cpu * pl.col("unit")).alias("cpu_price"), (w_mem * pl.col("unit")).alias("memory_price"),
                            (w_gpu * pl.col("unit")).alias("gpu_price"))
              .with_columns(*((pl.max_horizontal(pl.col(f"{r}_capacity") - pl.col(f"{r}_total"), 0.0)
                               * pl.col(f"{r}_price")).alias(f"{r}_unused") for r in RESOURCES)))
    rows = pods.join(priced, on="node", how="inner")
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
    if options.idle == "redistribute":
        # Unused capacity of a resource nobody on the node allocated has no pod to land on.
        idle_amount = pl.sum_horizontal(*(pl.when(pl.col(f"{r}_total") > 0).then(0.0).otherwise(pl.col(f"{r}_unused"))
                                          for r in RESOURCES))
    else:
        idle_amount = pl.sum_horizontal(*(pl.col(f"{r}_unused") for r in RESOURCES))
    idle = priced.with_columns(idle_amount.alias("unused_cost")).filter(pl.col("unused_cost") != 0).select(
        "node", "instance_id", "instance_type", "currency", "unused_cost", pl.col("unused_cost").alias("total_cost"))
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


def _conform(frame: pl.DataFrame, common: dict[str, object]) -> pl.DataFrame:
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
    """Merge idle contributions into one row per node (the table's grain)."""
    frames = [f for f in frames if f.height]
    if not frames:
        return pl.DataFrame()
    merged = pl.concat([f.with_columns(*(pl.lit(0.0).alias(c) for c in ("unused_cost", "network_cost") if c not in f.columns))
                        .select("node", "instance_id", "instance_type", "currency", "unused_cost", "network_cost")
                        for f in frames], how="vertical_relaxed")
    return (merged.group_by("node", maintain_order=True)
            .agg(pl.col("instance_id", "instance_type", "currency").drop_nulls().first(), pl.col("unused_cost", "network_cost").sum())
            .with_columns((pl.col("unused_cost") + pl.col("network_cost")).alias("total_cost")))


def split_data_transfer(pod_rows: pl.DataFrame, transfer: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Split each node's data-transfer cost by its pods' transmitted bytes; return (pod rows, node leftovers).

    A node whose pods sent nothing keeps its transfer cost as idle: billed money is never dropped.
    """
    if not transfer.height:
        return pod_rows.with_columns(pl.lit(0.0).alias("network_cost")), pl.DataFrame()
    tx = pl.col("network_transmit_bytes").fill_null(0.0)
    rows = (pod_rows.join(transfer.select("instance_id", pl.col("cost").alias("transfer_cost")), on="instance_id", how="left")
            .with_columns(tx.sum().over("node").alias("node_tx")))
    rows = rows.with_columns(pl.when(pl.col("node_tx") > 0).then(pl.col("transfer_cost").fill_null(0.0) * tx / pl.col("node_tx"))
                             .otherwise(0.0).alias("network_cost"))
    rows = rows.with_columns((pl.col("total_cost") + pl.col("network_cost")).alias("total_cost"))
    placed = rows.group_by("instance_id").agg(pl.col("network_cost").sum().alias("placed"))
    leftover = (transfer.join(placed, on="instance_id", how="left")
                .with_columns((pl.col("cost") - pl.col("placed").fill_null(0.0)).alias("network_cost"))
                # Float residue of the proportional split (~1e-18) is not money: keep real leftovers only.
                .filter(pl.col("network_cost").abs() > 1e-12))
    return rows.drop("transfer_cost", "node_tx"), leftover


def allocate_hour(frames: dict[str, pl.DataFrame], *, hour: dt.datetime, cost_center: str, cluster: str,
                  instance_costs: pl.DataFrame, control_plane: pl.DataFrame, options: AllocationConfig,
                  cost_basis: str, transfer_costs: pl.DataFrame | None = None) -> pl.DataFrame:
    """Return every allocation row of one cluster-hour (pods and sentinels), in OUTPUT_SCHEMA order."""
    pods = pod_hours(frames)
    nodes = node_hours(frames, options.capacity)
    costs = instance_costs.filter(pl.col("hour_start") == hour)
    transfer = (transfer_costs.filter(pl.col("hour_start") == hour).select("instance_id", "cost")
                if transfer_costs is not None else pl.DataFrame(schema={"instance_id": pl.String, "cost": pl.Float64}))
    extra_costs = [c for c in ("public_cost", "net_cost") if c in costs.columns]
    nodes = nodes.join(costs.select("instance_id", "cost", *extra_costs, "currency", "instance_type"), on="instance_id",
                       how="left")
    priced_nodes = nodes.filter(pl.col("cost").is_not_null())
    common = {"hour_start": hour, "cost_center": cost_center, "cluster": cluster, "cost_basis": cost_basis}
    parts = []
    priced_transfer = transfer.join(priced_nodes.select("instance_id"), on="instance_id", how="semi")
    if pods.height:
        pod_rows, idle = split_node_costs(pods, priced_nodes, options)
        pod_rows, leftover = split_data_transfer(pod_rows, priced_transfer)
        parts.append(_conform(pod_rows.with_columns(efficiency_expr().alias("efficiency")), common))
        unpriced = pods.filter(~pl.col("node").is_in(priced_nodes["node"].implode()) | pl.col("node").is_null())
    else:
        idle = priced_nodes.select("node", "instance_id", "instance_type", "currency",
                                   pl.col("cost").alias("unused_cost"), pl.col("cost").alias("total_cost"))
        leftover = priced_transfer.rename({"cost": "network_cost"})
        unpriced = pods
    if leftover.height:
        leftover = leftover.join(priced_nodes.select("node", "instance_id", "instance_type", "currency"), on="instance_id")
    merged_idle = _merge_idle([idle, leftover])
    if merged_idle.height and options.idle == "separate" and options.idle_by == "cluster":
        merged_idle = merged_idle.select(pl.lit(None, pl.String).alias("node"), pl.col("currency").first(),
                                         pl.col("unused_cost", "network_cost", "total_cost").sum())
    if merged_idle.height:
        parts.append(_conform(_sentinel(merged_idle, IDLE), common))
    unpriced_transfer = transfer.join(nodes.filter(pl.col("cost").is_null()).select("node", "instance_id"), on="instance_id")
    if unpriced.height or unpriced_transfer.height:
        usage = [c for c in NUMERIC if c in unpriced.columns]
        summary = unpriced.group_by("node").agg(pl.col(usage).sum()) if unpriced.height else pl.DataFrame(
            schema={"node": pl.String})
        network = unpriced_transfer.group_by("node").agg(pl.col("cost").sum().alias("network_cost"))
        summary = summary.join(network, on="node", how="full", coalesce=True).with_columns(
            pl.col("network_cost").fill_null(0.0), pl.col("network_cost").fill_null(0.0).alias("total_cost"))
        parts.append(_conform(_sentinel(summary, UNPRICED), common))
    known = set(nodes["instance_id"].to_list())
    orphans = costs.filter((pl.col("cluster_tag") == cluster) & ~pl.col("instance_id").is_in(list(known)))
    if orphans.height:
        orphans = orphans.join(transfer.rename({"cost": "network_cost"}), on="instance_id", how="left").with_columns(
            pl.col("network_cost").fill_null(0.0))
        parts.append(_conform(_sentinel(orphans.select(
            "instance_id", "instance_type", "currency", "network_cost",
            (pl.col("cost") + pl.col("network_cost")).alias("total_cost")), UNALLOCATED), common))
    overhead = control_plane.filter((pl.col("hour_start") == hour) & (pl.col("cluster") == cluster))
    result = pl.concat(parts, how="vertical") if parts else _conform(pl.DataFrame(), common).clear()
    if overhead.height:
        amount = overhead["cost"].sum()
        is_pod = ~pl.col("namespace").str.starts_with("__")
        pod_total = result.filter(is_pod)["total_cost"].sum() if result.height else 0.0
        if options.cluster_overhead == "shared" and pod_total > 0:
            # Shared by cost: each pod carries the control plane in proportion to its own cost.
            share = pl.when(is_pod).then(pl.col("total_cost") / pod_total * amount).otherwise(0.0)
            return result.with_columns(share.alias("overhead_cost")).with_columns(
                (pl.col("total_cost") + pl.col("overhead_cost")).alias("total_cost"))
        row = _conform(_sentinel(overhead.select("currency", pl.col("cost").alias("overhead_cost"),
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
