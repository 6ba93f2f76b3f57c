"""Turn one hour's exported metric frames into pod-, container- and node-hours (no money here).

Requests are averaged per container and combined into Kubernetes' effective pod request; usage,
network bytes, owners (pod -> ReplicaSet -> Deployment, Job -> CronJob) and labels are joined on; nodes
get their billing key and capacity in core-/GiB-/GPU-hours.
"""

from __future__ import annotations

import re

import polars as pl

from podledger.focus import node_key_expr

GIB = float(2**30)
POD_KEY = ["namespace", "pod", "uid"]
DEFAULT_ACCELERATORS = ("nvidia.com/gpu", "amd.com/gpu", "aws.amazon.com/neuron", "aws.amazon.com/neuroncore",
                        "habana.ai/gaudi")


def ksm_resource(name: str) -> str:
    """kube-state-metrics' spelling of a resource name: ``nvidia.com/gpu`` -> ``nvidia_com_gpu``."""
    return re.sub(r"[^A-Za-z0-9_]", "_", name)
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


def container_requests(frames: dict[str, pl.DataFrame],
                       accelerators: tuple[str, ...] = DEFAULT_ACCELERATORS) -> pl.DataFrame:
    """Return the average request of every container: namespace, pod, uid, container, node, resource, kind, request.

    The average is the container's request-seconds over the seconds its pod object existed
    (``pod_running.present_seconds``), so the rows of a container whose ``node`` label changed add up to its
    request. Files written by podledger 0.1 carry a ``present_seconds`` per row, which is used instead.
    """
    running = pod_presence(frames)
    present = (running.group_by(POD_KEY).agg(pl.col("present_seconds").sum().alias("pod_present_seconds"))
               if running is not None and "present_seconds" in running.columns else None)
    parts = []
    for name, resource, init in (("cpu_requests", "cpu", False), ("memory_requests", "memory", False),
                                 ("gpu_requests", "gpu", False), ("init_cpu_requests", "cpu", True),
                                 ("init_memory_requests", "memory", True)):
        frame = _get(frames, name)
        if frame is None:
            continue
        if resource == "gpu" and "resource" in frame.columns:  # every extended resource: keep the accelerators
            frame = frame.filter(pl.col("resource").is_in([ksm_resource(a) for a in accelerators]))
            if not frame.height:
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
            (pl.col(value) / seconds).alias("request")).group_by(*POD_KEY, "container", "node", "resource", "init")
            .agg(pl.col("request").sum()))
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


def _json_string(column: str) -> pl.Expr:
    """A string column as JSON text (quoted, escaped), vectorised: ``a"b`` -> ``"a\\"b"``."""
    return pl.struct(pl.col(column).alias("x")).struct.json_encode().str.slice(5).str.strip_suffix("}")


def _labels_json(frame: pl.DataFrame | None, keys: list[str], alias: str) -> pl.DataFrame | None:
    """Return ``keys`` + the object's labels as a JSON object string (KSM's ``label_`` prefix removed, keys sorted).

    Built by polars expressions (no Python loop over objects): this runs for every pod of every hour.
    """
    if frame is None or "labels" not in frame.columns:
        return None
    frame = frame.unique(subset=keys, keep="first", maintain_order=True).with_row_index("_row")
    pairs = (frame.select("_row", "labels").explode("labels").filter(pl.col("labels").is_not_null())
             .select("_row", pl.col("labels").struct.field("key").str.strip_prefix("label_").alias("k"),
                     pl.col("labels").struct.field("value").alias("v"))
             .sort("_row", "k")
             .select("_row", pl.concat_str(_json_string("k"), pl.lit(": "), _json_string("v")).alias("pair"))
             .group_by("_row", maintain_order=True).agg(pl.col("pair").str.join(", ")))
    return (frame.select("_row", *keys).join(pairs, on="_row", how="left")
            .select(*keys, pl.concat_str(pl.lit("{"), pl.col("pair").fill_null(""), pl.lit("}")).alias(alias)))


def normalised_uid(frame: pl.DataFrame) -> pl.DataFrame:
    """The pod UID read from cAdvisor's cgroup path, dashed (the systemd driver writes underscores); "" if unknown."""
    if "uid" not in frame.columns:
        return frame.with_columns(pl.lit("").alias("uid"))
    return frame.with_columns(pl.col("uid").fill_null("").str.replace_all("_", "-"))


def usage_by_incarnation(frame: pl.DataFrame, column: str, keys: list[str], pods: pl.DataFrame) -> pl.DataFrame:
    """Sum ``column`` per incarnation (``keys`` with ``uid``); usage without a uid is shared by running time.

    cAdvisor's cgroup path names the pod UID, so each incarnation of a pod recreated under the same name carries
    only its own usage. A series without the path (another cAdvisor, an old export) cannot say which incarnation
    it measured: it is shared among the (namespace, pod)'s incarnations of the hour in proportion to their running
    seconds — exact when there is one incarnation, an estimate otherwise (kube_pod_info's uid intervals give the
    hour's split, not the minute each sample belongs to).
    """
    frame = normalised_uid(frame).with_columns(pl.col(column).cast(pl.Float64))
    by = [k for k in keys if k != "uid"]
    known = frame.filter(pl.col("uid") != "").group_by([*by, "uid"]).agg(pl.col(column).sum())
    unknown = frame.filter(pl.col("uid") == "").group_by(by).agg(pl.col(column).sum())
    if unknown.height:
        shares = (pods.select("namespace", "pod", "uid", "running_seconds")
                  .group_by("namespace", "pod", "uid").agg(pl.col("running_seconds").sum())
                  .with_columns((pl.col("running_seconds") / pl.col("running_seconds").sum().over("namespace", "pod"))
                                .alias("share")))
        spread = unknown.join(shares, on=["namespace", "pod"], how="inner").select(
            *by, "uid", (pl.col(column) * pl.col("share")).alias(column))
        known = pl.concat([known, spread.select(known.columns)]).group_by([*by, "uid"]).agg(pl.col(column).sum())
    return known


def _join_usage(rows: pl.DataFrame, frames: dict[str, pl.DataFrame], specs: tuple, keys: list[str]) -> pl.DataFrame:
    """Join usage sums (scaled) per incarnation on ``keys``; a metric missing from the window gives nulls, not zeros."""
    for name, column, out, scale in specs:
        frame = _get(frames, name)
        if frame is None:
            rows = rows.with_columns(pl.lit(None, pl.Float64).alias(out))
            continue
        usage = usage_by_incarnation(frame, column, keys, rows).with_columns((pl.col(column) / scale).alias(out))
        rows = rows.join(usage.select(*keys, out), on=keys, how="left")
    return rows


def pod_presence(frames: dict[str, pl.DataFrame]) -> pl.DataFrame | None:
    """Seconds each pod incarnation ran (``running_seconds``) and existed (``present_seconds``) in the hour.

    From ``kube_pod_status_phase`` (Running) when exported; without it (it is not among the seed's 16 metrics)
    from ``kube_pod_info``, whose series exist while the pod object does: a pod that Completed but lingers then
    counts as running until deleted (validation says so).
    """
    running = _get(frames, "pod_running")
    if running is not None:
        return running
    info = _get(frames, "pod_info")
    if info is None or "present_seconds" not in info.columns:
        return None
    return (info.group_by(POD_KEY).agg(pl.col("present_seconds").sum())
            .with_columns(pl.col("present_seconds").alias("running_seconds")))


def split_by_node(pods: pl.DataFrame, frames: dict[str, pl.DataFrame]) -> pl.DataFrame:
    """Split the hour of a pod incarnation seen on several nodes (rescheduled, same uid) by its time on each.

    Every hour quantity of the pod (running time, requests, usage, bytes) is multiplied by the node's share of
    the pod's seconds in ``kube_pod_info``; the shares add up to 1, so nothing is lost or counted twice.
    """
    info = _get(frames, "pod_info")
    if info is None or "present_seconds" not in info.columns:
        return pods
    per_node = (info.filter(pl.col("node") != "").group_by(*POD_KEY, "node").agg(pl.col("present_seconds").sum())
                .with_columns((pl.col("present_seconds") / pl.col("present_seconds").sum().over(POD_KEY)).alias("share")))
    moved = per_node.filter(pl.len().over(POD_KEY) > 1)
    if not moved.height:
        return pods
    scaled = [c for c in ("running_seconds", "running_hours", "cpu_request_core_hours", "memory_request_gib_hours",
                          "gpu_request_hours", "gpu_usage_hours", "cpu_usage_core_hours", "memory_usage_gib_hours",
                          "network_transmit_bytes", "network_receive_bytes") if c in pods.columns]
    split = (pods.join(moved.select(*POD_KEY, pl.col("node").alias("split_node"), "share"), on=POD_KEY, how="inner")
             .with_columns(*(pl.col(c) * pl.col("share") for c in scaled), pl.col("split_node").alias("node"))
             .drop("split_node", "share"))
    return pl.concat([pods.join(moved.select(POD_KEY).unique(), on=POD_KEY, how="anti"), split.select(pods.columns)])


def _with_owners(rows: pl.DataFrame, frames: dict[str, pl.DataFrame]) -> pl.DataFrame:
    owners = _owners(frames)
    if owners is not None:
        return rows.join(owners, on=POD_KEY, how="left")
    return rows.with_columns(pl.lit(None, pl.String).alias("controller_kind"),
                             pl.lit(None, pl.String).alias("controller_name"))


def pod_hours(frames: dict[str, pl.DataFrame], accelerators: tuple[str, ...] = DEFAULT_ACCELERATORS) -> pl.DataFrame:
    """Return one row per running pod incarnation (per node): requests, usage, allocation (hours), network bytes."""
    running = pod_presence(frames)
    if running is None:
        return pl.DataFrame()
    pods = running.filter(pl.col("running_seconds") > 0).select(*POD_KEY, "running_seconds")
    requests = pod_effective_requests(container_requests(frames, accelerators))
    pods = pods.join(requests, on=POD_KEY, how="left")
    info = _get(frames, "pod_info")
    if info is not None:
        ordered = info.sort("present_seconds", descending=True) if "present_seconds" in info.columns else info
        pods = pods.join(ordered.filter(pl.col("node") != "")
                         .select(*POD_KEY, pl.col("node").alias("info_node"))
                         .unique(subset=POD_KEY, keep="first"), on=POD_KEY, how="left")
    else:
        pods = pods.with_columns(pl.lit(None, pl.String).alias("info_node"))
    hours = pl.col("running_seconds") / 3600.0
    pods = pods.with_columns(
        pl.coalesce("info_node", "request_node").alias("node"),
        hours.alias("running_hours"),
        (pl.col("cpu_request_cores").fill_null(0.0) * hours).alias("cpu_request_core_hours"),
        (pl.col("memory_request_bytes").fill_null(0.0) / GIB * hours).alias("memory_request_gib_hours"),
        (pl.col("gpu_request").fill_null(0.0) * hours).alias("gpu_request_hours"),
    )
    pods = _join_usage(pods, frames, POD_USAGE, POD_KEY)
    gpu_usage = _get(frames, "gpu_usage")
    if gpu_usage is not None:  # DCGM has no uid: shared by the pod's incarnations by running time
        used = usage_by_incarnation(gpu_usage, "usage_gpu_seconds", POD_KEY, pods)
        pods = pods.join(used.select(*POD_KEY, (pl.col("usage_gpu_seconds") / 3600.0).alias("gpu_usage_hours")),
                         on=POD_KEY, how="left")
    else:
        pods = pods.with_columns(pl.lit(None, pl.Float64).alias("gpu_usage_hours"))
    pods = split_by_node(_with_owners(pods, frames), frames)
    for name, keys in (("pod_labels", POD_KEY), ("namespace_labels", ["namespace"]), ("node_labels", ["node"])):
        labels = _labels_json(_get(frames, name), keys, name)
        pods = pods.join(labels, on=keys, how="left") if labels is not None else pods.with_columns(
            pl.lit(None, pl.String).alias(name))
    return pods.with_columns(
        pl.coalesce("controller_kind", pl.lit("Pod")).alias("controller_kind"),
        pl.coalesce("controller_name", pl.col("pod")).alias("controller_name"),
        # AWS SCAD: allocated = max(reserved, used) for CPU, memory and GPU (its accelerated example); the
        # reservation alone when usage is unavailable.
        pl.max_horizontal("cpu_request_core_hours", pl.col("cpu_usage_core_hours").fill_null(0.0))
        .alias("cpu_allocated_core_hours"),
        pl.max_horizontal("memory_request_gib_hours", pl.col("memory_usage_gib_hours").fill_null(0.0))
        .alias("memory_allocated_gib_hours"),
        pl.max_horizontal("gpu_request_hours", pl.col("gpu_usage_hours").fill_null(0.0)).alias("gpu_allocated_hours"),
    )


def container_hours(frames: dict[str, pl.DataFrame]) -> pl.DataFrame:
    """Return one row per running app/sidecar container: owner, average request and usage (cores, GiB)."""
    running = pod_presence(frames)
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
    rows = _join_usage(rows, frames, CONTAINER_USAGE, [*POD_KEY, "container"]).with_columns(
        *(pl.col(out) / pl.col("running_seconds") for _, _, out, _ in CONTAINER_USAGE))
    return _with_owners(rows, frames).with_columns(pl.coalesce("controller_kind", pl.lit("Pod")).alias("controller_kind"),
                             pl.coalesce("controller_name", pl.col("pod")).alias("controller_name"))


def node_hours(frames: dict[str, pl.DataFrame], capacity: str = "instance",
               accelerators: tuple[str, ...] = DEFAULT_ACCELERATORS) -> pl.DataFrame:
    """Return one row per node: instance id (from provider_id) and capacity in core-/GiB-/accelerator-hours.

    ``capacity="allocatable"`` uses kube allocatable (capacity minus system/kube reserved) instead. Every
    configured accelerator resource (NVIDIA, AMD, Neuron, Gaudi…) counts as the node's GPU capacity.
    """
    info = _get(frames, "node_info")
    if info is None:
        return pl.DataFrame(schema={"node": pl.String, "instance_id": pl.String, "cpu_capacity": pl.Float64,
                                    "memory_capacity": pl.Float64, "gpu_capacity": pl.Float64})
    nodes = (info.group_by("node").agg(pl.col("provider_id").first())
             .with_columns(node_key_expr("provider_id").alias("instance_id")))
    cap = _get(frames, "node_allocatable" if capacity == "allocatable" else "node_capacity")
    accelerator_names = [ksm_resource(a) for a in accelerators]
    groups = (("cpu", ["cpu"], 3600.0), ("memory", ["memory"], 3600.0 * GIB), ("gpu", accelerator_names, 3600.0))
    for out, resources, scale in groups:
        column = f"{out}_capacity"
        if cap is None:
            nodes = nodes.with_columns(pl.lit(0.0).alias(column))
            continue
        # A node's accelerator is the first configured resource it has (a Neuron node reports devices and cores:
        # the two are one device counted twice, never added up).
        rank = pl.col("resource").replace_strict({r: i for i, r in enumerate(resources)}, default=None)
        part = (cap.filter(pl.col("resource").is_in(resources) & (pl.col("unit_seconds") > 0))
                .filter(rank == rank.min().over("node")).group_by("node")
                .agg((pl.col("unit_seconds").sum() / scale).alias(column)))
        nodes = nodes.join(part, on="node", how="left").with_columns(pl.col(column).fill_null(0.0))
    return nodes.select("node", "instance_id", "cpu_capacity", "memory_capacity", "gpu_capacity")
