"""A cost center's settings as Airflow takes them: default task arguments, start and end dates, pools, trigger form."""

from __future__ import annotations

import datetime as dt
from typing import Any

from airflow.sdk import Param

from podledger.config import CostCenterConfig
from podledger.planning import end_instant, start_instant


def default_args(cost_center: CostCenterConfig) -> dict[str, Any]:
    return {"owner": cost_center.owner, "retries": cost_center.retries,
            "retry_delay": dt.timedelta(seconds=cost_center.retry_delay_seconds),
            "retry_exponential_backoff": 2.0, "max_retry_delay": dt.timedelta(minutes=20)}


def start_date(cost_center: CostCenterConfig) -> dt.datetime:
    return start_instant(cost_center)


def end_date(cost_center: CostCenterConfig) -> dt.datetime | None:
    return end_instant(cost_center)


def airflow_end_date(cost_center: CostCenterConfig) -> dt.datetime | None:
    """The DAG's ``end_date`` for Airflow: just before the exclusive end.

    Airflow schedules every interval whose *start* is at or before ``end_date``, so the interval starting at
    00:00 of the end day would run over hours after it; one microsecond earlier, the last scheduled interval
    is the one that starts before the end. An interval straddling the end is clipped by ``plan``.
    """
    end = end_date(cost_center)
    return end - dt.timedelta(microseconds=1) if end else None


def pools_of(cost_center: CostCenterConfig) -> list[str | None]:
    """The Airflow pools the cost center's endpoints use, in config order (None: default_pool)."""
    pools = [c.pool for c in cost_center.clusters] + ([cost_center.discovery.pool] if cost_center.discovery else [])
    return list(dict.fromkeys(pools)) or [None]


def range_params(cost_center: CostCenterConfig) -> dict[str, Param]:
    """The trigger form's params: all optional (null or false means "the data interval, every cluster")."""
    end = end_date(cost_center)
    # A scheduled run already holds each interval's start as its logical date: suggest a time between them.
    when = (f" The cost center ends at {end:%Y-%m-%d %H:%M} UTC (end_date): give the run a logical date before it "
            f"(e.g. {end - dt.timedelta(minutes=30):%Y-%m-%dT%H:%M:%SZ}); a run dated at or after it has no task."
            if end else "")
    return {
        "start": Param(None, type=["null", "string"], format="date-time", title="Start (UTC)",
                       description="Export/enrich from this hour (inclusive) instead of the data interval's start, e.g. "
                                   f"2026-11-02T00:00:00Z. Empty: the data interval.{when}"),
        "end": Param(None, type=["null", "string"], format="date-time", title="End (UTC)",
                     description="Up to this hour (exclusive) instead of the data interval's end. Empty: the data "
                                 "interval."),
        "clusters": Param(None, type=["null", "array"], items={"type": "string"}, title="Clusters",
                          description="Only these clusters. Empty: every cluster of the cost center."),
        "force": Param(False, type=["null", "boolean"], title="Force",
                       description="Re-export windows that already have a manifest. Off: skip them."),
    }
