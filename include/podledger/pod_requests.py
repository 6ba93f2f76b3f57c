"""Requests from exported request-seconds: the average request of every container, and Kubernetes' effective
request of each pod incarnation-hour (app, init and sidecar containers)."""

from __future__ import annotations

import polars as pl

from podledger.hours import HOUR, returned, with_hour
from podledger.pod_frames import DEFAULT_ACCELERATORS, PK, POD_KEY, get_frame, ksm_resource, presence


def container_requests(frames: dict[str, pl.DataFrame],
                       accelerators: tuple[str, ...] = DEFAULT_ACCELERATORS) -> pl.DataFrame:
    """Return the average request of every container: namespace, pod, uid, container, node, resource, kind, request.

    The average is the container's request-seconds over the seconds its pod object existed
    (``pod_running.present_seconds``), so the rows of a container whose ``node`` label changed add up to its
    request. Files written by podledger 0.1 carry a ``present_seconds`` per row, which is used instead.
    """
    frames, added = with_hour(frames)
    return returned(_container_requests(frames, accelerators), added)


def _request_seconds(frames: dict[str, pl.DataFrame], accelerators: tuple[str, ...]) -> pl.DataFrame | None:
    """Every container's request-seconds in the hour (``request_seconds``), its kind (app, init or sidecar) and its
    own seconds when the file carries them (``row_seconds``: podledger 0.1 files; null otherwise)."""
    parts = []
    for name, resource, init in (("cpu_requests", "cpu", False), ("memory_requests", "memory", False),
                                 ("gpu_requests", "gpu", False), ("init_cpu_requests", "cpu", True),
                                 ("init_memory_requests", "memory", True)):
        frame = get_frame(frames, name)
        if frame is None:
            continue
        if resource == "gpu" and "resource" in frame.columns:  # every extended resource: keep the accelerators
            frame = frame.filter(pl.col("resource").is_in([ksm_resource(a) for a in accelerators]))
            if not frame.height:
                continue
        value = next(c for c in frame.columns if c.startswith("request_"))
        # podledger 0.1 rows carry their own present_seconds (null in the hours of newer files)
        row_seconds = (pl.when(pl.col("present_seconds").is_not_null().any()).then(pl.col("present_seconds").sum())
                       if "present_seconds" in frame.columns else pl.lit(None, pl.Float64))
        # One row per container-hour, but a container whose node label changed (pending, then scheduled) has
        # several: only those are grouped (grouping 400,000 rows on five keys costs 4x the duplicate check).
        repeated = frame.select(pl.struct(*PK, "container").is_duplicated()).to_series()
        single = (frame.filter(~repeated) if repeated.any() else frame).select(
            *PK, "container", "node", pl.col(value).alias("request_seconds"),
            pl.col("present_seconds" if "present_seconds" in frame.columns else value).cast(pl.Float64).alias("row_seconds"))
        if "present_seconds" not in frame.columns:
            single = single.with_columns(pl.lit(None, pl.Float64).alias("row_seconds"))
        grouped = frame.filter(repeated).group_by(*PK, "container").agg(
            pl.col("node").sort_by(pl.col("node") == "").first(), pl.col(value).sum().alias("request_seconds"),
            row_seconds.cast(pl.Float64).alias("row_seconds"))
        parts.append(pl.concat([single, grouped.select(single.columns)], how="vertical_relaxed").with_columns(
            pl.lit(resource).alias("resource"), pl.lit(init).alias("init")))
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
    (podledger 0.1): then the sums and maxima are taken over the request-seconds and divided once per pod, on a
    fifth of the rows; the result is the same rule.
    """
    requests = _request_seconds(frames, accelerators)
    if requests is None or requests["row_seconds"].is_not_null().any():
        return pod_effective_requests(_container_requests(frames, accelerators))
    effective = pod_effective_requests(requests.rename({"request_seconds": "request"}))
    present = _pod_present_seconds(frames)
    if present is None:
        present = effective.select(PK).with_columns(pl.lit(None, pl.Float64).alias("pod_present_seconds"))
    seconds = pl.coalesce("pod_present_seconds", pl.lit(3600.0))
    return effective.join(present, on=PK, how="left").select(
        *PK, "request_node", *(pl.col(c) / seconds for c in ("cpu_request_cores", "memory_request_bytes", "gpu_request")))


def pod_effective_requests(requests: pl.DataFrame) -> pl.DataFrame:
    """Return per pod the Kubernetes effective request: max(Σ app + Σ sidecar, max(init) + Σ sidecar).

    Kubernetes adds to each regular init container only the sidecars declared before it; kube-state-metrics
    exports no init-container order, so every sidecar is counted: the bound is exact without sidecars and
    never below the scheduler's value with them.
    """
    keys = PK if HOUR in requests.columns else POD_KEY
    request, kind, resource = pl.col("request"), pl.col("kind"), pl.col("resource")
    # One column per (resource, kind), then plain sums and maxima per pod: vectorised, no filter inside a group.
    parts = {f"{r}_{k}": pl.when((resource == r) & (kind == k)).then(request)
             for r in ("cpu", "memory", "gpu") for k in ("app", "sidecar", "init")}
    pods = requests.select(*keys, pl.when(pl.col("node") != "").then(pl.col("node")).alias("node"),
                           *(expr.alias(name) for name, expr in parts.items())).group_by(keys).agg(
        pl.col("node").drop_nulls().first().alias("request_node"),
        *(pl.col(f"{r}_{k}").sum() for r in ("cpu", "memory", "gpu") for k in ("app", "sidecar")),
        *(pl.col(f"{r}_init").max().fill_null(0.0) for r in ("cpu", "memory", "gpu")))

    def effective(r: str) -> pl.Expr:
        return pl.max_horizontal(pl.col(f"{r}_app") + pl.col(f"{r}_sidecar"), pl.col(f"{r}_init") + pl.col(f"{r}_sidecar"))

    return pods.select(*keys, "request_node", effective("cpu").alias("cpu_request_cores"),
                       effective("memory").alias("memory_request_bytes"), effective("gpu").alias("gpu_request"))
