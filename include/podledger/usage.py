"""Turn one hour's exported metric frames into pod-, container- and node-hours (no money here).

Requests are averaged per container and combined into Kubernetes' effective pod request; usage,
network bytes, owners (pod -> ReplicaSet -> Deployment, Job -> CronJob) and labels are joined on; nodes
get their billing key and capacity in core-/GiB-/GPU-hours.
"""

from __future__ import annotations

import json

import polars as pl

from podledger.focus import node_key_expr

GIB = float(2**30)
POD_KEY = ["namespace", "pod", "uid"]
RESOURCES = ("cpu", "memory", "gpu")
# exported metric -> (value column, output column, divisor to hours / GiB-hours / bytes)
POD_USAGE = (("cpu_usage", "usage_core_seconds", "cpu_usage_core_hours", 3600.0),
             ("memory_usage", "usage_byte_seconds", "memory_usage_gib_hours", 3600.0 * GIB),
             ("network_transmit", "bytes", "network_transmit_bytes", 1.0),
             ("network_receive", "bytes", "network_receive_bytes", 1.0))
CONTAINER_USAGE = (("cpu_usage", "usage_core_seconds", "cpu_used_cores", 1.0),
                   ("memory_usage", "usage_byte_seconds", "memory_used_gib", GIB))


def _get(frames: dict[str, pl.DataFrame], name: str) -> pl.DataFrame | None:
    frame = frames.get(name)
    return frame if frame is not None and frame.height else None


def container_requests(frames: dict[str, pl.DataFrame]) -> pl.DataFrame:
    """Return the average request of every container: namespace, pod, uid, container, node, resource, kind, request.

    The average is the container's request-seconds over the seconds its pod object existed
    (``pod_running.present_seconds``), so the rows of a container whose ``node`` label changed add up to its
    request. Files written by podledger 0.1 carry a ``present_seconds`` per row, which is used instead.
    """
    running = _get(frames, "pod_running")
    present = (running.group_by(POD_KEY).agg(pl.col("present_seconds").sum().alias("pod_present_seconds"))
               if running is not None and "present_seconds" in running.columns else None)
    parts = []
    for name, resource, init in (("cpu_requests", "cpu", False), ("memory_requests", "memory", False),
                                 ("gpu_requests", "gpu", False), ("init_cpu_requests", "cpu", True),
                                 ("init_memory_requests", "memory", True)):
        frame = _get(frames, name)
        if frame is None:
            continue
        value = next(c for c in frame.columns if c.startswith("request_"))
        if "present_seconds" in frame.columns:
            seconds = pl.col("present_seconds").sum().over([*POD_KEY, "container"])
        elif present is not None:
            frame = frame.join(present, on=POD_KEY, how="left")
            # A pod without phase series (never seen by kube-state-metrics' pod collector): the hour's average.
            seconds = pl.col("pod_present_seconds").fill_null(3600.0)
        else:
            seconds = pl.lit(3600.0)
        parts.append(frame.select(
            *POD_KEY, "container", "node", pl.lit(resource).alias("resource"), pl.lit(init).alias("init"),
            (pl.col(value) / seconds).alias("request")))
    if not parts:
        return pl.DataFrame(schema={**dict.fromkeys([*POD_KEY, "container", "node", "resource"], pl.String),
                                    "init": pl.Boolean, "request": pl.Float64, "kind": pl.String})
    requests = (pl.concat(parts).group_by(*POD_KEY, "container", "resource", "init", maintain_order=True)
                .agg(pl.col("node").sort_by(pl.col("node") == "").first(), pl.col("request").sum()))
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


def _join_usage(rows: pl.DataFrame, frames: dict[str, pl.DataFrame], specs: tuple, keys: list[str]) -> pl.DataFrame:
    """Join usage sums (scaled) on ``keys``; a metric missing from the window gives nulls, not zeros."""
    for name, column, out, scale in specs:
        frame = _get(frames, name)
        if frame is None:
            rows = rows.with_columns(pl.lit(None, pl.Float64).alias(out))
            continue
        usage = frame.group_by(keys).agg((pl.col(column).sum() / scale).alias(out))
        rows = rows.join(usage, on=keys, how="left")
    return rows


def _with_owners(rows: pl.DataFrame, frames: dict[str, pl.DataFrame]) -> pl.DataFrame:
    owners = _owners(frames)
    if owners is not None:
        return rows.join(owners, on=POD_KEY, how="left")
    return rows.with_columns(pl.lit(None, pl.String).alias("controller_kind"),
                             pl.lit(None, pl.String).alias("controller_name"))


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
    pods = _with_owners(_join_usage(pods, frames, POD_USAGE, ["namespace", "pod"]), frames)
    for name, keys in (("pod_labels", POD_KEY), ("namespace_labels", ["namespace"]), ("node_labels", ["node"])):
        labels = _labels_json(_get(frames, name), keys, name)
        pods = pods.join(labels, on=keys, how="left") if labels is not None else pods.with_columns(
            pl.lit(None, pl.String).alias(name))
    return pods.with_columns(
        pl.coalesce("controller_kind", pl.lit("Pod")).alias("controller_kind"),
        pl.coalesce("controller_name", pl.col("pod")).alias("controller_name"),
        # AWS SCAD: allocated = max(reserved, used); reservation alone when usage is unavailable.
        pl.max_horizontal("cpu_request_core_hours", pl.col("cpu_usage_core_hours").fill_null(0.0))
        .alias("cpu_allocated_core_hours"),
        pl.max_horizontal("memory_request_gib_hours", pl.col("memory_usage_gib_hours").fill_null(0.0))
        .alias("memory_allocated_gib_hours"),
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
    rows = _join_usage(rows, frames, CONTAINER_USAGE, ["namespace", "pod", "container"]).with_columns(
        *(pl.col(out) / pl.col("running_seconds") for _, _, out, _ in CONTAINER_USAGE))
    return _with_owners(rows, frames).with_columns(pl.coalesce("controller_kind", pl.lit("Pod")).alias("controller_kind"),
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
