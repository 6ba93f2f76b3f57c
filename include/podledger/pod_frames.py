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


class PodRows:
    """A frame of one row per pod incarnation-hour (``PK``) that per-pod frames are attached to, as left joins.

    The exporter writes every file's rows in key order, so a pod frame read from the files (or grouped from them
    keeping their order) usually holds the same pods in the same order: then its columns are put side by side, which
    is exactly the left join when this frame's keys are unique and never null (checked once, here), at a twentieth
    of the cost. Any other frame is joined, keeping this frame's order for the next one.
    """

    def __init__(self, frame: pl.DataFrame) -> None:
        self.frame = frame
        self.lines_up = not any(frame[k].null_count() for k in PK) and keys_unique(frame, PK)

    def matches(self, other: pl.DataFrame) -> bool:
        """Whether ``other`` holds exactly these pods in this order (so one row per pod, too)."""
        return (self.lines_up and other.height == self.frame.height
                and all(self.frame[k].equals(other[k]) for k in PK))

    def attach(self, other: pl.DataFrame) -> None:
        """Left-join ``other`` on ``PK`` (its other columns are new to this frame)."""
        if self.matches(other):
            self.frame = self.frame.hstack(other.drop(PK))
            return
        before = self.frame.height
        self.frame = self.frame.join(other, on=PK, how="left", maintain_order="left")
        if self.frame.height != before:  # ``other`` repeated a key: this frame's keys are no longer unique
            self.lines_up = False


def first_per_key(frame: pl.DataFrame, keys: list[str]) -> pl.DataFrame:
    """``frame`` with one row per ``keys`` (the first): checked before deduplicating, since an exported file holds
    one row per series key and a repeat is rare (the check costs a third of the deduplication)."""
    if not keys_unique(frame, keys):
        return frame.unique(subset=keys, keep="first", maintain_order=True)
    return frame


def in_key_order(frame: pl.DataFrame, keys: list[str], *, strict: bool = False) -> bool:
    """Whether each row of ``frame`` comes after the row before it in ``keys`` order (``strict``: never equals it).

    Proven row by row from the values (no flag is trusted); a null key proves nothing, so it answers False. The
    exporter writes every file in key order and stacked hours follow each other, so a metric frame is usually in
    order by its own keys: comparing neighbours then answers what hashing every key would, at a third of the cost.
    """
    if frame.height < 2:
        return True
    *first, last = keys
    after = pl.col(last) > pl.col(last).shift(1) if strict else pl.col(last) >= pl.col(last).shift(1)
    for key in reversed(first):
        now, before = pl.col(key), pl.col(key).shift(1)
        after = (now > before) | ((now == before) & after)
    return frame.select(after.slice(1).all(ignore_nulls=False)).item() is True


def keys_unique(frame: pl.DataFrame, keys: list[str]) -> bool:
    """Whether no two rows of ``frame`` share ``keys`` (nulls equal each other): by key order when the rows are in
    it (:func:`in_key_order`), by hashing otherwise."""
    return in_key_order(frame, keys, strict=True) or not frame.select(pl.struct(*keys).is_duplicated().any()).item()


RUN = "_run"


def group_in_order(frame: pl.DataFrame, keys: list[str], *aggs: pl.Expr) -> pl.DataFrame:
    """``frame.group_by(keys, maintain_order=True).agg(*aggs)``: the same rows in the same order.

    When the rows are in key order (:func:`in_key_order`, an exported file's), each group is a run of neighbouring
    rows: grouped by the run's number, a sorted integer polars cuts into slices, at a third of the cost of hashing
    the keys.
    """
    if not in_key_order(frame, keys):
        return frame.group_by(keys, maintain_order=True).agg(*aggs)
    run = frame.select(pl.struct(*keys).rle_id().alias(RUN)).to_series().set_sorted()
    return (frame.with_columns(run).group_by(RUN, maintain_order=True)
            .agg(*(pl.col(k).first() for k in keys), *aggs).drop(RUN))


def side_by_side(parts: list[pl.DataFrame], keys: list[str]) -> list[pl.DataFrame]:
    """Metric parts (``keys`` + their own value columns), those whose key columns are equal row by row merged into
    one frame (one row carries both metrics); the others stay apart.

    A group's sums, counts, maxima and first values are the same either way (the same values in the same order),
    but side by side there are half the rows to group. Metrics of the same series set (CPU and memory requests of
    the same containers; cAdvisor's CPU and memory usage; a pod's sent and received bytes) usually line up: the
    exporter writes every file's rows in key order.
    """
    merged: list[pl.DataFrame] = []
    for part in parts:
        values = [c for c in part.columns if c not in keys]
        for i, done in enumerate(merged):
            if (done.height == part.height and not set(values) & set(done.columns)
                    and all(done[k].equals(part[k]) for k in keys)):
                merged[i] = done.hstack(part.select(values))
                break
        else:
            merged.append(part)
    return merged


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
