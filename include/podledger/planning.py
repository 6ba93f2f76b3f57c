"""Plan what a run covers: the hours of a trigger's params or data interval, within the cost center's dates."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any, TypedDict

from podledger.config import ClusterConfig, CostCenterConfig
from podledger.exceptions import NothingToDo
from podledger.layout import Window, WindowDict, plan_windows, to_utc


class ExportItem(TypedDict):
    """One export task's work as it travels through XCom (JSON): a cluster-window and its endpoint's pool."""

    cluster: str
    label_value: str | None  # a discovered cluster's value of the cluster label (None: the configured one)
    window: WindowDict
    pool: str | None


class DayItem(TypedDict):
    """One enrichment task's work as it travels through XCom: a cluster and a UTC day (or its part in range)."""

    cluster: str
    start: str
    end: str


class AllocatedDay(DayItem):
    """What an enrichment task hands to the load: where its outputs are, and what they hold."""

    key: str
    rows: int
    billed_cost: float
    currency: str


def export_items(cost_center: CostCenterConfig, clusters: Iterable[ClusterConfig], start: dt.datetime,
                 end: dt.datetime, wanted: Sequence[str] = ()) -> list[ExportItem]:
    """The (cluster, window) pairs an export run covers, each with its endpoint's Airflow pool: a configured
    cluster's own, a discovered one's the discovery's. ``wanted``: only these clusters (empty: all)."""
    configured = {c.name for c in cost_center.clusters}
    discovered_pool = cost_center.discovery.pool if cost_center.discovery else None
    return [ExportItem(cluster=c.name, label_value=c.cluster_label_value, window=w.to_dict(),
                       pool=c.pool if c.name in configured else discovered_pool)
            for c in clusters if not wanted or c.name in wanted
            for w in plan_windows(start, end, cost_center.time_frame_seconds)]


def item_cluster(cost_center: CostCenterConfig, item: ExportItem) -> tuple[ClusterConfig, Window]:
    """The cluster (a discovered one with its label value) and the window an export item names."""
    cluster = cost_center.cluster(item["cluster"])
    if item["label_value"] is not None and cluster.cluster_label_value is None:
        cluster = cluster.model_copy(update={"cluster_label_value": item["label_value"]})
    return cluster, Window.from_dict(item["window"])


def end_instant(cost_center: CostCenterConfig) -> dt.datetime | None:
    """The cost center's ``end_date`` as an exclusive instant: 00:00 UTC of that day (None: no end)."""
    day = cost_center.end_date
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC) if day else None


def start_instant(cost_center: CostCenterConfig, now: dt.datetime | None = None) -> dt.datetime:
    """The first instant the cost center covers: ``initial_backfill_date``, else ``backfill_days`` before today
    (date-granular, so a DAG's start date is stable within a day)."""
    day = cost_center.initial_backfill_date or ((now or dt.datetime.now(dt.UTC)).date()
                                                 - dt.timedelta(days=cost_center.backfill_days))
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)


def plan_range(cost_center: CostCenterConfig, params: dict[str, Any], interval_start: dt.datetime | None,
               interval_end: dt.datetime | None) -> tuple[dt.datetime, dt.datetime]:
    """Return the [start, end) an export run covers: the params, else its data interval clipped to ``end_date``.

    Raises :class:`~podledger.exceptions.NothingToDo` naming the reason when nothing is left to export.
    """
    start = to_utc(params["start"]) if params.get("start") else interval_start
    end = to_utc(params["end"]) if params.get("end") else interval_end
    if start is None or end is None:
        raise NothingToDo(f"cost center {cost_center.name}: this run has no data interval; trigger it with start/end")
    last = end_instant(cost_center)
    if last is not None and not (params.get("start") and params.get("end")) and end > last:
        # end_date is exclusive: scheduled (and default-triggered) runs never cover hours at or after it.
        end = max(min(end, last), start)
    if end <= start:
        raise NothingToDo(f"cost center {cost_center.name}: nothing to export in {start:%Y-%m-%dT%H:%MZ} .. "
                          f"{end:%Y-%m-%dT%H:%MZ}" + (f" (end_date {last:%Y-%m-%d} is exclusive)" if last else ""))
    return start, end


def plan_enrichment(cost_center: CostCenterConfig, params: dict[str, Any], events: list[dict[str, Any]],
                    interval_start: dt.datetime | None, interval_end: dt.datetime | None,
                    now: dt.datetime) -> tuple[dt.datetime, dt.datetime, list[str]]:
    """Return the [start, end) hours and the clusters an enrichment run covers.

    The params when both are given; else the triggering Asset events' extras (an exported range, or the billing
    periods a delivery or restatement updated, up to the current hour and ``end_date``); else the data interval.
    ``events`` are the events' extras. Clusters: the params', else the events', else the configured ones (empty:
    discover them). Raises :class:`~podledger.exceptions.NothingToDo` naming why when no hour is left.
    """
    explicit = bool(params.get("start") and params.get("end"))
    start: dt.datetime | None
    end: dt.datetime | None
    if explicit:
        start, end = to_utc(params["start"]), to_utc(params["end"])
    else:
        ranges = [(to_utc(e["start"]), to_utc(e["end"])) for e in events if e.get("start")]
        hour_now = now.replace(minute=0, second=0, microsecond=0)
        last = end_instant(cost_center) or hour_now
        first = start_instant(cost_center, now)
        for extra in events:
            for period in extra.get("billing_periods", []):
                p_start = to_utc(f"{period}-01")
                p_end = min((p_start + dt.timedelta(days=32)).replace(day=1), hour_now, last)
                ranges.append((max(p_start, first), p_end))
        if ranges:
            start, end = min(r[0] for r in ranges), max(r[1] for r in ranges)
        else:
            start, end = interval_start, interval_end
    if start is None or end is None or end <= start:
        raise NothingToDo(f"cost center {cost_center.name}: no hours to enrich ({start} .. {end}): no exported range "
                          "in the triggering events; trigger with start/end params")
    start = start.replace(minute=0, second=0, microsecond=0)
    if end.minute or end.second or end.microsecond:
        end = end.replace(minute=0, second=0, microsecond=0) + dt.timedelta(hours=1)
    from_events = sorted({c for e in events for c in e.get("clusters", [])}) if not explicit else []
    clusters = list(params.get("clusters") or from_events or [c.name for c in cost_center.clusters])
    return start, end, clusters


def enrichment_items(start: dt.datetime, end: dt.datetime, clusters: Sequence[str]) -> list[DayItem]:
    """The (cluster, UTC day) pieces of an enrichment run: what the DAG maps over (a retry repeats one day)."""
    from podledger.enrich import day_ranges

    return [DayItem(cluster=name, start=day_start.isoformat(), end=day_end.isoformat())
            for name in clusters for day_start, day_end in day_ranges(start, end)]
