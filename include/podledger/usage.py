"""Turn exported metric frames into pod-, container- and node-hours (no money here).

Frames of one hour, or of many hours stacked (:mod:`podledger.hours`): every key below carries the hour.

Requests come from :mod:`podledger.pod_requests`, presence and the pod key from :mod:`podledger.pod_frames`; usage,
network bytes, owners (pod -> ReplicaSet -> Deployment, Job -> CronJob) and labels are joined on; nodes
get their billing key and capacity in core-/GiB-/GPU-hours.
"""

from __future__ import annotations

import datetime as dt
from concurrent.futures import ThreadPoolExecutor

import polars as pl

from podledger.focus import node_key_expr
from podledger.hours import HOUR, returned, with_hour
from podledger.labels import labels_json
from podledger.pod_frames import (
    DEFAULT_ACCELERATORS,
    GIB,
    PK,
    PodRows,
    first_per_key,
    get_frame,
    group_in_order,
    keys_unique,
    ksm_resource,
    presence,
    side_by_side,
)
from podledger.pod_requests import (
    REQUEST_COLUMNS,
    carries_row_seconds,
    container_requests,
    effective_requests,
    pod_request_sums,
    pod_requests,
    request_sum_columns,
)

RESOURCES = ("cpu", "memory", "gpu")
# exported metric -> (value column, output column, divisor to hours / GiB-hours / bytes)
POD_USAGE = (("cpu_usage", "usage_core_seconds", "cpu_usage_core_hours", 3600.0),
             ("memory_usage", "usage_byte_seconds", "memory_usage_gib_hours", 3600.0 * GIB),
             ("network_transmit", "bytes", "network_transmit_bytes", 1.0),
             ("network_receive", "bytes", "network_receive_bytes", 1.0))
CONTAINER_USAGE = (("cpu_usage", "usage_core_seconds", "cpu_used_cores", 1.0),
                   ("memory_usage", "usage_byte_seconds", "memory_used_gib", GIB))


def hours_without_pods(frames: dict[str, pl.DataFrame]) -> list[dt.datetime]:
    """The stacked hours that have nodes but neither kube_pod_status_phase nor kube_pod_info (so no pod known to run)."""
    def hours(name: str, column: str | None = None) -> set[dt.datetime]:
        frame = get_frame(frames, name)
        if frame is None or (column is not None and column not in frame.columns):
            return set()
        return set(frame[HOUR].unique().to_list())

    return sorted(hours("node_info") - hours("pod_running") - hours("pod_info", "present_seconds"))


def _owners(frames: dict[str, pl.DataFrame]) -> pl.DataFrame | None:
    owner = get_frame(frames, "pod_owner")
    if owner is None:
        return None
    owner = first_per_key(owner.select(*PK, "owner_kind", "owner_name"), PK)
    rs = get_frame(frames, "replicaset_owner")
    job = get_frame(frames, "job_owner")
    kind, name = pl.col("owner_kind"), pl.col("owner_name")
    if rs is not None:
        owner = owner.join(rs.select(HOUR, "namespace", pl.col("replicaset").alias("owner_name"),
                                     pl.col("owner_kind").alias("rs_kind"), pl.col("owner_name").alias("rs_name")),
                           on=[HOUR, "namespace", "owner_name"], how="left", maintain_order="left")
        kind = pl.when((kind == "ReplicaSet") & pl.col("rs_name").is_not_null()).then(pl.col("rs_kind")).otherwise(kind)
        name = pl.when((pl.col("owner_kind") == "ReplicaSet") & pl.col("rs_name").is_not_null()).then(
            pl.col("rs_name")).otherwise(name)
    if job is not None:
        owner = owner.join(job.select(HOUR, "namespace", pl.col("job_name").alias("owner_name"),
                                      pl.col("owner_kind").alias("job_kind"), pl.col("owner_name").alias("job_owner")),
                           on=[HOUR, "namespace", "owner_name"], how="left", maintain_order="left")
        kind = pl.when((pl.col("owner_kind") == "Job") & pl.col("job_owner").is_not_null()).then(
            pl.col("job_kind")).otherwise(kind)
        name = pl.when((pl.col("owner_kind") == "Job") & pl.col("job_owner").is_not_null()).then(
            pl.col("job_owner")).otherwise(name)
    return owner.select(*PK, kind.alias("controller_kind"), name.alias("controller_name"))


def normalised_uid(frame: pl.DataFrame) -> pl.DataFrame:
    """The pod UID read from cAdvisor's cgroup path, dashed (the systemd driver writes underscores); "" if unknown."""
    if "uid" not in frame.columns:
        return frame.with_columns(pl.lit("").alias("uid"))
    uid = pl.col("uid")
    if not frame.select(uid.is_null().any() | uid.str.contains("_", literal=True).any()).item():
        return frame  # already dashed (checking is cheaper than rewriting every uid)
    return frame.with_columns(uid.fill_null("").str.replace_all("_", "-"))


def usage_by_incarnation(frame: pl.DataFrame, column: str | list[str], keys: list[str],
                         pods: pl.DataFrame) -> pl.DataFrame:
    """Sum ``column`` (or several) per incarnation (``keys`` with ``uid``); usage without a uid is shared by running
    time. A null value is "no sample of this metric": a sum of nulls only is null (several metrics stacked).

    cAdvisor's cgroup path names the pod UID, so each incarnation of a pod recreated under the same name carries
    only its own usage. A series without the path (another cAdvisor, an old export) cannot say which incarnation
    it measured: it is shared among the (namespace, pod)'s incarnations of the hour in proportion to their running
    seconds — exact when there is one incarnation, an estimate otherwise (kube_pod_info's uid intervals give the
    hour's split, not the minute each sample belongs to). ``keys``, ``frame`` and ``pods`` carry the hour.
    """
    columns = [column] if isinstance(column, str) else column
    frame = normalised_uid(frame).with_columns(pl.col(c).cast(pl.Float64) for c in columns)
    by = [k for k in keys if k != "uid"]

    def sums(frame: pl.DataFrame, keys: list[str]) -> pl.DataFrame:
        # sum and count are the group-by's fast paths; a sum without a value (count 0) is null; first-seen order
        # (the files' order of pods)
        summed = group_in_order(frame, keys, *(pl.col(c).sum() for c in columns),
                                *(pl.col(c).count().alias(f"_n_{c}") for c in columns))
        return summed.select(*keys, *(pl.when(pl.col(f"_n_{c}") > 0).then(pl.col(c)).alias(c) for c in columns))

    if not frame.select((pl.col("uid") == "").any()).item():  # every series names its incarnation
        return sums(frame, [*by, "uid"])
    known = sums(frame.filter(pl.col("uid") != ""), [*by, "uid"])
    unknown = sums(frame.filter(pl.col("uid") == ""), by)
    if unknown.height:
        pod = [HOUR, "namespace", "pod"]
        shares = (pods.select(*PK, "running_seconds")
                  .group_by(PK).agg(pl.col("running_seconds").sum())
                  .with_columns((pl.col("running_seconds") / pl.col("running_seconds").sum().over(pod))
                                .alias("share")))
        spread = unknown.join(shares, on=pod, how="inner").select(
            *by, "uid", *((pl.col(c) * pl.col("share")).alias(c) for c in columns))
        known = sums(pl.concat([known, spread.select(known.columns)]), [*by, "uid"])
    return known


def _join_usage(rows: pl.DataFrame, frames: dict[str, pl.DataFrame], specs: tuple[tuple[str, str, str, float], ...],
                keys: list[str]) -> pl.DataFrame:
    """Join usage sums (scaled) per incarnation on ``keys``; a metric missing from the window gives nulls, not zeros."""
    usage, missing = _usage(frames, specs, keys, rows)
    rows = rows.with_columns(pl.lit(None, pl.Float64).alias(c) for c in missing)
    for part in usage:
        rows = rows.join(part, on=keys, how="left")
    return rows


def _usage(frames: dict[str, pl.DataFrame], specs: tuple[tuple[str, str, str, float], ...], keys: list[str],
           pods: pl.DataFrame, rows: PodRows | None = None) -> tuple[list[pl.DataFrame], list[str]]:
    """Usage sums (scaled) per incarnation on ``keys``, as frames to join, and the output columns of metrics not
    exported.

    The metrics are stacked (one column each, side by side where their rows line up) and summed in one pass; a
    stack that already holds ``rows``' pods one for one (a pod's sent and received bytes, usually) needs no sum.
    """
    by = [k for k in keys if k != "uid"]
    parts, scales, missing = [], {}, []
    for name, column, out, scale in specs:
        frame = get_frame(frames, name)
        if frame is None:
            missing.append(out)
            continue
        # A sample's null value counts as 0 (as a sum skips it); null in the stack means "no row of this metric".
        frame = frame if "uid" in frame.columns else frame.with_columns(pl.lit("").alias("uid"))
        parts.append(frame.select(*by, "uid", pl.col(column).cast(pl.Float64).fill_null(0.0).alias(out)))
        scales[out] = scale
    stacks = side_by_side(parts, [*by, "uid"])
    # One row per pod, each naming its incarnation: its own sum already (uid "" would be shared by running time).
    whole = [s for s in stacks if rows is not None and rows.matches(s) and not (s["uid"] == "").any()]
    rest = [s for s in stacks if not any(s is w for w in whole)]
    if rest:
        whole.append(usage_by_incarnation(pl.concat(rest, how="diagonal") if len(rest) > 1 else rest[0],
                                          [c for s in rest for c in s.columns if c in scales], keys, pods))
    return [s.select(*keys, *(pl.col(c) / scales[c] for c in s.columns if c in scales)) for s in whole], missing


def _pod_nodes(info: pl.DataFrame | None) -> tuple[pl.DataFrame | None, pl.DataFrame | None]:
    """From ``kube_pod_info``: each pod incarnation-hour's node (``info_node``: where its longest-present series
    ran) and, for the pods seen on several nodes in the hour, each node's share of their seconds (None if none).

    Most hours have one series per pod: that is checked once and both answers are read off it, without sorting
    or grouping the day's rows."""
    if info is None:
        return None, None
    placed = info.filter(pl.col("node") != "")
    if "present_seconds" not in info.columns:
        return first_per_key(placed.select(*PK, pl.col("node").alias("info_node")), PK), None
    if keys_unique(info, PK):  # one series per pod incarnation-hour
        # (all of them, in the file's order: a pod not yet scheduled has no node)
        return info.select(*PK, pl.when(pl.col("node") != "").then(pl.col("node")).alias("info_node")), None
    if keys_unique(placed, PK):  # pending, then scheduled
        return placed.select(*PK, pl.col("node").alias("info_node")), None
    first = (placed.sort("present_seconds", descending=True, maintain_order=True)
             .select(*PK, pl.col("node").alias("info_node")).unique(subset=PK, keep="first"))
    per_node = (placed.group_by(*PK, "node").agg(pl.col("present_seconds").sum())
                .with_columns((pl.col("present_seconds") / pl.col("present_seconds").sum().over(PK)).alias("share")))
    moved = per_node.filter(pl.len().over(PK) > 1)
    return first, moved if moved.height else None


def _split(pods: pl.DataFrame, moved: pl.DataFrame | None) -> pl.DataFrame:
    """Split the hour of a pod incarnation seen on several nodes (rescheduled, same uid) by its time on each.

    Every hour quantity of the pod (running time, requests, usage, bytes) is multiplied by the node's share of
    the pod's seconds in ``kube_pod_info`` (``moved``, from :func:`_pod_nodes`); the shares add up to 1, so nothing
    is lost or counted twice.
    """
    if moved is None:
        return pods
    scaled = [c for c in ("running_seconds", "running_hours", "cpu_request_core_hours", "memory_request_gib_hours",
                          "gpu_request_hours", "gpu_usage_hours", "cpu_usage_core_hours", "memory_usage_gib_hours",
                          "network_transmit_bytes", "network_receive_bytes") if c in pods.columns]
    split = (pods.join(moved.select(*PK, pl.col("node").alias("split_node"), "share"), on=PK, how="inner")
             .with_columns(*(pl.col(c) * pl.col("share") for c in scaled), pl.col("split_node").alias("node"))
             .drop("split_node", "share"))
    return pl.concat([pods.join(moved.select(PK).unique(), on=PK, how="anti"), split.select(pods.columns)])


def _with_owners(rows: pl.DataFrame, frames: dict[str, pl.DataFrame]) -> pl.DataFrame:
    owners = _owners(frames)
    if owners is not None:
        return rows.join(owners, on=PK, how="left")
    return rows.with_columns(pl.lit(None, pl.String).alias("controller_kind"),
                             pl.lit(None, pl.String).alias("controller_name"))


def pod_hours(frames: dict[str, pl.DataFrame], accelerators: tuple[str, ...] = DEFAULT_ACCELERATORS) -> pl.DataFrame:
    """Return one row per running pod incarnation (per node, per hour): requests, usage, allocation, network bytes."""
    frames, added = with_hour(frames)
    return returned(_pod_hours(frames, accelerators), added)


def _pod_hours(frames: dict[str, pl.DataFrame], accelerators: tuple[str, ...]) -> pl.DataFrame:
    running = presence(frames)
    if running is None:
        return pl.DataFrame()
    # What does not depend on the pod rows (nodes, owners, labels) is computed in a second thread beside the requests
    # and usage: polars releases the GIL, and each operation has serial stretches the other fills (one thread keeps
    # 1.5 of 2 cores busy). Attached below in the same order as ever, so the rows are the same.
    with ThreadPoolExecutor(max_workers=1) as side:
        placed = side.submit(_pod_nodes, get_frame(frames, "pod_info"))
        owned = side.submit(_owners, frames)
        labelled = side.submit(lambda: {name: labels_json(get_frame(frames, name), keys, name) for name, keys in (
            ("pod_labels", PK), ("namespace_labels", [HOUR, "namespace"]), ("node_labels", [HOUR, "node"]))})
        # Every pod frame is attached to the pods of kube_pod_status_phase in its rows' order (side by side where
        # the files line up); those that did not run are dropped once everything per pod is attached.
        present = "present_seconds" if "present_seconds" in running.columns else None
        rows = PodRows(running.select(*PK, "running_seconds", *([present] if present else [])))
        ran = rows.frame.filter(pl.col("running_seconds") > 0)
        request_sums = (pod_request_sums(frames, accelerators)
                        if rows.lines_up and not carries_row_seconds(frames, accelerators) else None)
        if request_sums is not None:  # divided by the pod's present seconds below (one row per pod: its own)
            for piece in request_sums:
                rows.attach(piece)
            rows.frame = rows.frame.with_columns(effective_requests(len(request_sums))).drop(
                request_sum_columns(len(request_sums)))
        else:
            rows.attach(pod_requests(frames, accelerators))
        info_nodes, moved = placed.result()
        if info_nodes is not None:
            rows.attach(info_nodes)
        usage, missing = _usage(frames, POD_USAGE, PK, ran, rows)
        for part in usage:
            rows.attach(part)
        owners = owned.result()
        if owners is not None:
            rows.attach(owners)
        all_labels = labelled.result()
    labels = all_labels["pod_labels"]
    if labels is not None:
        rows.attach(labels)
    pods = rows.frame.filter(pl.col("running_seconds") > 0).with_columns(
        *(pl.lit(None, dtype).alias(c) for c, dtype in (
            *((c, pl.Float64) for c in missing), ("info_node", pl.String), ("controller_kind", pl.String),
            ("controller_name", pl.String), ("pod_labels", pl.String)) if c not in rows.frame.columns))
    if request_sums is not None:
        seconds = pl.col(present).fill_null(3600.0) if present else pl.lit(3600.0)
        pods = pods.with_columns(pl.col(c) / seconds for c in REQUEST_COLUMNS)
    if present:
        pods = pods.drop(present)
    hours = pl.col("running_seconds") / 3600.0
    pods = pods.with_columns(
        pl.coalesce("info_node", "request_node").alias("node"),
        hours.alias("running_hours"),
        (pl.col("cpu_request_cores").fill_null(0.0) * hours).alias("cpu_request_core_hours"),
        (pl.col("memory_request_bytes").fill_null(0.0) / GIB * hours).alias("memory_request_gib_hours"),
        (pl.col("gpu_request").fill_null(0.0) * hours).alias("gpu_request_hours"),
    )
    gpu_usage = get_frame(frames, "gpu_usage")
    if gpu_usage is not None:  # DCGM has no uid: shared by the pod's incarnations by running time
        used = usage_by_incarnation(gpu_usage.with_columns(pl.col("usage_gpu_seconds").cast(pl.Float64).fill_null(0.0)),
                                    "usage_gpu_seconds", PK, pods)
        pods = pods.join(used.select(*PK, (pl.col("usage_gpu_seconds") / 3600.0).alias("gpu_usage_hours")),
                         on=PK, how="left")
    else:
        pods = pods.with_columns(pl.lit(None, pl.Float64).alias("gpu_usage_hours"))
    pods = _split(pods, moved)
    for name, keys in (("namespace_labels", [HOUR, "namespace"]), ("node_labels", [HOUR, "node"])):
        labels = all_labels[name]
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
    frames, added = with_hour(frames)
    running = presence(frames)
    requests = container_requests(frames)
    if running is None or not requests.height:
        return pl.DataFrame()
    wide = (requests.filter(pl.col("kind") != "init")
            .pivot(on="resource", index=[*PK, "container"], values="request", aggregate_function="sum"))
    for resource in ("cpu", "memory"):
        if resource not in wide.columns:
            wide = wide.with_columns(pl.lit(0.0).alias(resource))
    rows = (wide.join(running.filter(pl.col("running_seconds") > 0), on=PK)
            .select(*PK, "container", "running_seconds", pl.col("cpu").fill_null(0.0).alias("cpu_request_cores"),
                    (pl.col("memory").fill_null(0.0) / GIB).alias("memory_request_gib")))
    rows = _join_usage(rows, frames, CONTAINER_USAGE, [*PK, "container"]).with_columns(
        *(pl.col(out) / pl.col("running_seconds") for _, _, out, _ in CONTAINER_USAGE))
    rows = _with_owners(rows, frames).with_columns(
        pl.coalesce("controller_kind", pl.lit("Pod")).alias("controller_kind"),
        pl.coalesce("controller_name", pl.col("pod")).alias("controller_name"))
    return returned(rows, added)


def node_hours(frames: dict[str, pl.DataFrame], capacity: str = "instance",
               accelerators: tuple[str, ...] = DEFAULT_ACCELERATORS) -> pl.DataFrame:
    """Return one row per node (per hour): instance id (from provider_id) and capacity in core-/GiB-/accelerator-hours.

    ``capacity="allocatable"`` uses kube allocatable (capacity minus system/kube reserved) instead. Every
    configured accelerator resource (NVIDIA, AMD, Neuron, Gaudi…) counts as the node's GPU capacity.
    """
    frames, added = with_hour(frames)
    info = get_frame(frames, "node_info")
    if info is None:
        return returned(pl.DataFrame(schema={HOUR: pl.Datetime("us", "UTC"), "node": pl.String,
                                              "instance_id": pl.String, "cpu_capacity": pl.Float64,
                                              "memory_capacity": pl.Float64, "gpu_capacity": pl.Float64}), added)
    nodes = (info.group_by(HOUR, "node", maintain_order=True).agg(pl.col("provider_id").first())
             .with_columns(node_key_expr("provider_id").alias("instance_id")))
    cap = get_frame(frames, "node_allocatable" if capacity == "allocatable" else "node_capacity")
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
                .filter(rank == rank.min().over(HOUR, "node")).group_by(HOUR, "node")
                .agg((pl.col("unit_seconds").sum() / scale).alias(column)))
        nodes = nodes.join(part, on=[HOUR, "node"], how="left").with_columns(pl.col(column).fill_null(0.0))
    return returned(nodes.select(HOUR, "node", "instance_id", "cpu_capacity", "memory_capacity", "gpu_capacity"),
                     added)
