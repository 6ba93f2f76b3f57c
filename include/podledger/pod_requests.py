"""Requests from exported request-seconds: the average request of every container, and Kubernetes' effective
request of each pod incarnation-hour (app, init and sidecar containers)."""

from __future__ import annotations

from collections.abc import Iterator

import polars as pl

from podledger.hours import HOUR, returned, with_hour
from podledger.pod_frames import (
    DEFAULT_ACCELERATORS,
    PK,
    POD_KEY,
    get_frame,
    group_in_order,
    keys_unique,
    ksm_resource,
    presence,
    side_by_side,
)


def container_requests(frames: dict[str, pl.DataFrame],
                       accelerators: tuple[str, ...] = DEFAULT_ACCELERATORS) -> pl.DataFrame:
    """Return the average request of every container: namespace, pod, uid, container, node, resource, kind, request.

    The average is the container's request-seconds over the seconds its pod object existed
    (``pod_running.present_seconds``), so the rows of a container whose ``node`` label changed add up to its
    request. Files written by podledger 0.1 carry a ``present_seconds`` per row, which is used instead.
    """
    frames, added = with_hour(frames)
    return returned(_container_requests(frames, accelerators), added)


# exported request metric -> (resource, init container?)
REQUEST_METRICS = (("cpu_requests", "cpu", False), ("memory_requests", "memory", False), ("gpu_requests", "gpu", False),
                   ("init_cpu_requests", "cpu", True), ("init_memory_requests", "memory", True))


def _request_frames(frames: dict[str, pl.DataFrame], accelerators: tuple[str, ...],
                    init: bool | None = None) -> Iterator[tuple[pl.DataFrame, str, bool, str]]:
    """Each exported request frame (``init``: only init or only app containers) with its resource, whether it is
    an init container's and its value column; of the extended resources only the accelerators."""
    for name, resource, is_init in REQUEST_METRICS:
        frame = get_frame(frames, name)
        if frame is None or (init is not None and is_init != init):
            continue
        if resource == "gpu" and "resource" in frame.columns:  # every extended resource: keep the accelerators
            frame = frame.filter(pl.col("resource").is_in([ksm_resource(a) for a in accelerators]))
            if not frame.height:
                continue
        yield frame, resource, is_init, next(c for c in frame.columns if c.startswith("request_"))


def carries_row_seconds(frames: dict[str, pl.DataFrame], accelerators: tuple[str, ...]) -> bool:
    """Whether a request file carries its own present_seconds per row (podledger 0.1)."""
    return any("present_seconds" in frame.columns and frame["present_seconds"].is_not_null().any()
               for frame, _, _, _ in _request_frames(frames, accelerators))


def _request_seconds(frames: dict[str, pl.DataFrame], accelerators: tuple[str, ...],
                     init: bool | None = None) -> pl.DataFrame | None:
    """Every container's request-seconds in the hour (``request_seconds``), its kind (app, init or sidecar) and its
    own seconds when the file carries them (``row_seconds``: podledger 0.1 files; null otherwise)."""
    parts = []
    for frame, resource, is_init, value in _request_frames(frames, accelerators, init):
        # podledger 0.1 rows carry their own present_seconds (null in the hours of newer files)
        row_seconds = (pl.when(pl.col("present_seconds").is_not_null().any()).then(pl.col("present_seconds").sum())
                       if "present_seconds" in frame.columns else pl.lit(None, pl.Float64))
        # One row per container-hour, but a container whose node label changed (pending, then scheduled) has
        # several: only those are grouped (grouping 400,000 rows on five keys costs 4x the duplicate check).
        duplicated = (None if keys_unique(frame, [*PK, "container"])
                      else frame.select(pl.struct(*PK, "container").is_duplicated()).to_series())
        repeated = duplicated if duplicated is not None and duplicated.any() else None
        single = (frame if repeated is None else frame.filter(~repeated)).select(
            *PK, "container", "node", pl.col(value).alias("request_seconds"),
            pl.col("present_seconds" if "present_seconds" in frame.columns else value).cast(pl.Float64).alias("row_seconds"))
        if "present_seconds" not in frame.columns:
            single = single.with_columns(pl.lit(None, pl.Float64).alias("row_seconds"))
        if repeated is not None:
            grouped = frame.filter(repeated).group_by(*PK, "container").agg(
                pl.col("node").sort_by(pl.col("node") == "").first(), pl.col(value).sum().alias("request_seconds"),
                row_seconds.cast(pl.Float64).alias("row_seconds"))
            single = pl.concat([single, grouped.select(single.columns)], how="vertical_relaxed")
        parts.append(single.with_columns(pl.lit(resource).alias("resource"), pl.lit(is_init).alias("init")))
    if not parts:
        return None
    requests = pl.concat(parts, how="vertical_relaxed")
    info = get_frame(frames, "init_container_info")
    if info is not None:
        sidecars = info.filter(pl.col("restart_policy") == "Always").select(*PK, "container").unique()
        requests = requests.join(sidecars.with_columns(pl.lit(True).alias("sidecar")), on=[*PK, "container"],
                                 how="left")
    else:
        requests = requests.with_columns(pl.lit(None, pl.Boolean).alias("sidecar"))
    kind = pl.when(~pl.col("init")).then(pl.lit("app")).when(pl.col("sidecar").fill_null(False)).then(
        pl.lit("sidecar")).otherwise(pl.lit("init"))
    return requests.with_columns(kind.alias("kind")).drop("sidecar")


def _pod_present_seconds(frames: dict[str, pl.DataFrame]) -> pl.DataFrame | None:
    running = presence(frames)
    if running is None or "present_seconds" not in running.columns:
        return None
    return running.group_by(PK).agg(pl.col("present_seconds").sum().alias("pod_present_seconds"))


# The average over the seconds the pod object existed; a pod without phase series (never seen by
# kube-state-metrics' pod collector): the hour's average.
_SECONDS = pl.coalesce("row_seconds", "pod_present_seconds", pl.lit(3600.0))


def _container_requests(frames: dict[str, pl.DataFrame], accelerators: tuple[str, ...]) -> pl.DataFrame:
    requests = _request_seconds(frames, accelerators)
    if requests is None:
        return pl.DataFrame(schema={HOUR: pl.Datetime("us", "UTC"),
                                    **dict.fromkeys([*POD_KEY, "container", "node", "resource"], pl.String),
                                    "init": pl.Boolean, "request": pl.Float64, "kind": pl.String})
    present = _pod_present_seconds(frames)
    if present is not None:
        requests = requests.join(present, on=PK, how="left", maintain_order="left")
    else:
        requests = requests.with_columns(pl.lit(None, pl.Float64).alias("pod_present_seconds"))
    return requests.select(*PK, "container", "resource", "init", "node",
                           (pl.col("request_seconds") / _SECONDS).alias("request"), "kind")


def pod_requests(frames: dict[str, pl.DataFrame], accelerators: tuple[str, ...]) -> pl.DataFrame:
    """Per pod incarnation-hour: its effective requests (:func:`pod_effective_requests`) and its node.

    A pod's containers share one denominator (the pod's present seconds) unless a file carries per-row seconds
    (podledger 0.1): then the sums and maxima are taken over the request-seconds and divided once per pod. An app
    container's request-seconds only ever add up to its pod's, so its rows (several when its node label changed)
    go straight into the pod's sums; only init containers, whose maximum is taken, are summed per container first.
    The result is the same rule.
    """
    if carries_row_seconds(frames, accelerators):
        return pod_effective_requests(_container_requests(frames, accelerators))
    effective = pod_request_seconds(frames, accelerators)
    if effective is None:
        return pod_effective_requests(_container_requests(frames, accelerators))  # the empty frame, typed
    present = _pod_present_seconds(frames)
    if present is None:
        present = effective.select(PK).with_columns(pl.lit(None, pl.Float64).alias("pod_present_seconds"))
    seconds = pl.coalesce("pod_present_seconds", pl.lit(3600.0))
    return effective.join(present, on=PK, how="left").select(
        *PK, "request_node", *(pl.col(c) / seconds for c in REQUEST_COLUMNS))


# pod_request_seconds' columns: the effective request-seconds, divided by the pod's present seconds in pod_requests
REQUEST_COLUMNS = ("cpu_request_cores", "memory_request_bytes", "gpu_request")


def pod_request_seconds(frames: dict[str, pl.DataFrame], accelerators: tuple[str, ...]) -> pl.DataFrame | None:
    """Per pod incarnation-hour, in the order the request files first name it: its node and its effective
    request-seconds (``REQUEST_COLUMNS``: the sums and maxima of :func:`pod_effective_requests`, before the division
    by the pod's present seconds). None when no request was exported; not for files that carry per-row seconds
    (podledger 0.1: :func:`pod_requests` divides those per container)."""
    sums = pod_request_sums(frames, accelerators)
    if sums is None:
        return None
    pods = sums[0]
    for other in sums[1:]:
        pods = pods.join(other, on=PK, how="full", coalesce=True, nulls_equal=True, maintain_order="left_right")
    return pods.select(*PK, *effective_requests(len(sums)))


def pod_request_sums(frames: dict[str, pl.DataFrame], accelerators: tuple[str, ...]) -> list[pl.DataFrame] | None:
    """:func:`pod_request_seconds` in pieces, one per stack of request files whose rows line up (side by side): per
    pod incarnation-hour, the stack's first node that is not "" (``request_node_<i>``) and the sums (app, sidecar)
    or maxima (init) of the resource-kind columns it carries. Left-joined to the pods (each adds its own columns),
    :func:`effective_requests` turns them into the effective request-seconds: the same as grouping every request
    row at once, while a stack in key order (the files') is summed by runs of rows, without hashing its keys."""
    parts = [frame.select(*PK, "node", pl.col(value).cast(pl.Float64).alias(f"{resource}_app"))
             for frame, resource, _, value in _request_frames(frames, accelerators, init=False)]
    init = _request_seconds(frames, accelerators, init=True)
    if init is not None:
        parts.append(_by_resource_and_kind(init.rename({"request_seconds": "request"}), PK, kinds=("sidecar", "init")))
    if not parts:
        return None
    sums = [_partial(stack, PK).rename({"request_node": f"request_node_{i}", "_seen": f"_seen_{i}"})
            for i, stack in enumerate(side_by_side(parts, [*PK, "node"]))]
    carried = {c for piece in sums for c in piece.columns}
    return [sums[0].with_columns(pl.lit(None, pl.Float64).alias(c) for c in SUM_COLUMNS if c not in carried),
            *sums[1:]]


def effective_requests(stacks: int) -> list[pl.Expr]:
    """From the columns of :func:`pod_request_sums`' ``stacks`` pieces: ``request_node`` and the effective
    request-seconds (``REQUEST_COLUMNS``); all null for a pod none of them names (no request exported)."""
    named = pl.any_horizontal(pl.col(f"_seen_{i}") for i in range(stacks))
    return [pl.coalesce(f"request_node_{i}" for i in range(stacks)).alias("request_node"),
            *(pl.when(named).then(expr).alias(name) for name, expr in zip(REQUEST_COLUMNS, _effective_exprs(), strict=True))]


def request_sum_columns(stacks: int) -> list[str]:
    """The columns :func:`pod_request_sums`' pieces add (dropped once :func:`effective_requests` has read them)."""
    return [*SUM_COLUMNS, *(f"{c}_{i}" for i in range(stacks) for c in ("request_node", "_seen"))]


def pod_effective_requests(requests: pl.DataFrame) -> pl.DataFrame:
    """Return per pod the Kubernetes effective request: max(Σ app + Σ sidecar, max(init) + Σ sidecar).

    Kubernetes adds to each regular init container only the sidecars declared before it; kube-state-metrics
    exports no init-container order, so every sidecar is counted: the bound is exact without sidecars and
    never below the scheduler's value with them.
    """
    keys = PK if HOUR in requests.columns else POD_KEY
    return _effective(_by_resource_and_kind(requests, keys), keys)


RESOURCE_NAMES = ("cpu", "memory", "gpu")
KINDS = ("app", "sidecar", "init")
SUM_COLUMNS = [f"{r}_{k}" for r in RESOURCE_NAMES for k in KINDS]  # pod_request_sums' per-pod sums and maxima


def _by_resource_and_kind(requests: pl.DataFrame, keys: list[str],
                          kinds: tuple[str, ...] = KINDS) -> pl.DataFrame:
    """Long requests (resource, kind, request) as one column per (resource, kind): ``cpu_app``, ``memory_init``…"""
    request, kind, resource = pl.col("request"), pl.col("kind"), pl.col("resource")
    return requests.select(*keys, "node", *(pl.when((resource == r) & (kind == k)).then(request).alias(f"{r}_{k}")
                                            for r in RESOURCE_NAMES for k in kinds))


def _partial(wide: pl.DataFrame, keys: list[str]) -> pl.DataFrame:
    """Per pod (first-seen order: the pods' order in the files), of the (resource, kind) columns ``wide`` carries:
    the sums (app, sidecar) and maxima (init), and the first node that is not "" (``request_node``); ``_seen``
    marks the pod as named by these rows (its node may be unknown)."""
    columns = [c for c in wide.columns if c not in keys and c != "node"]
    return group_in_order(wide, keys, pl.col("node").filter(pl.col("node") != "").first().alias("request_node"),
                          *(pl.col(c).max() if c.endswith("_init") else pl.col(c).sum() for c in columns),
                          pl.lit(True).alias("_seen"))


def _effective_exprs() -> list[pl.Expr]:
    """max(Σ app + Σ sidecar, max(init) + Σ sidecar) per resource, from :func:`_partial`'s columns (a column no
    stack carries, or a pod a stack does not name, counts 0)."""
    def value(column: str) -> pl.Expr:
        return pl.col(column).fill_null(0.0)

    def effective(r: str) -> pl.Expr:
        return pl.max_horizontal(value(f"{r}_app") + value(f"{r}_sidecar"), value(f"{r}_init") + value(f"{r}_sidecar"))

    return [effective("cpu"), effective("memory"), effective("gpu")]


def _effective(wide: pl.DataFrame, keys: list[str]) -> pl.DataFrame:
    """Per pod, from (resource, kind) columns: plain sums and maxima (vectorised, no filter inside a group)."""
    wide = wide.with_columns(pl.lit(None, pl.Float64).alias(c) for c in SUM_COLUMNS if c not in wide.columns)
    pods = _partial(wide, keys).rename({"request_node": "request_node_0", "_seen": "_seen_0"})
    return pods.select(*keys, *effective_requests(1))
