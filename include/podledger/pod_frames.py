"""The basics every reader of exported metric frames shares: the pod-incarnation key, resource spellings, and
which pods ran (and how long) in each hour."""

from __future__ import annotations

import re

import polars as pl

from podledger.hours import HOUR, returned, with_hour

GIB = float(2**30)
POD_KEY = ["namespace", "pod", "uid"]
PK = [HOUR, *POD_KEY]  # a pod incarnation in an hour
DEFAULT_ACCELERATORS = ("nvidia.com/gpu", "amd.com/gpu", "aws.amazon.com/neuron", "aws.amazon.com/neuroncore",
                        "habana.ai/gaudi")


def ksm_resource(name: str) -> str:
    """kube-state-metrics' spelling of a resource name: ``nvidia.com/gpu`` -> ``nvidia_com_gpu``."""
    return re.sub(r"[^A-Za-z0-9_]", "_", name)
def get_frame(frames: dict[str, pl.DataFrame], name: str) -> pl.DataFrame | None:
    frame = frames.get(name)
    return frame if frame is not None and frame.height else None


def pod_presence(frames: dict[str, pl.DataFrame]) -> pl.DataFrame | None:
    """Seconds each pod incarnation ran (``running_seconds``) and existed (``present_seconds``) in the hour.

    From ``kube_pod_status_phase`` (Running) when exported; without it (it is not among the seed's 16 metrics)
    from ``kube_pod_info``, whose series exist while the pod object does: a pod that Completed but lingers then
    counts as running until deleted (validation says so). For stacked hours, hour by hour.
    """
    frames, added = with_hour(frames)
    found = presence(frames)
    return returned(found, added) if found is not None else None


def presence(frames: dict[str, pl.DataFrame]) -> pl.DataFrame | None:
    running = get_frame(frames, "pod_running")
    info = get_frame(frames, "pod_info")
    if info is None or "present_seconds" not in info.columns:
        return running
    if running is not None:  # hours with phase series use them; only the others fall back to kube_pod_info
        info = info.join(running.select(HOUR).unique(), on=HOUR, how="anti")
        if not info.height:
            return running
    derived = (info.group_by(PK).agg(pl.col("present_seconds").sum())
               .with_columns(pl.col("present_seconds").alias("running_seconds")))
    return derived if running is None else pl.concat([running, derived], how="diagonal_relaxed")
