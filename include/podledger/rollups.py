"""The rollups every load keeps beside the allocation table, for the cost explorer: daily per pod, hourly per label set.

Derived data, rebuilt for each loaded slice in the load's own transaction (DuckDB and PostgreSQL alike); a rollup
built by an older podledger (another shape) is rebuilt whole from the table.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

ROLLUP_KEYS = ("cost_center", "cluster", "node", "instance_type", "namespace", "pod", "uid", "controller_kind",
               "controller_name", "pod_labels", "namespace_labels", "currency")
ROLLUP_SUMS = ("cpu_cost", "memory_cost", "gpu_cost", "network_cost", "unused_cost", "overhead_cost", "total_cost",
               "cpu_request_core_hours", "cpu_usage_core_hours", "memory_request_gib_hours", "memory_usage_gib_hours")


# The hourly label rollup: what "aggregate by label, per hour" reads (pods of a workload share their labels).
LABEL_ROLLUP_KEYS = ("cost_center", "cluster", "namespace", "pod_labels", "namespace_labels", "currency")


def rollup_statements(table: str, postgres: bool, grain: str = "day") -> list[str]:
    """SQL that rebuilds a rollup of ``table`` for the slice: create, delete the slice, insert.

    ``grain="day"``: ``<table>_daily_rollup``, one row per pod and day (24x fewer rows); parameters: cost center,
    cluster, first day, end day (exclusive). ``grain="hour"``: ``<table>_hourly_labels``, one row per hour and
    distinct (namespace, pod labels, namespace labels); parameters: cost center, cluster, start, end. Both carry
    the "idle shared" figures (each hour's __idle__ cost spread onto that hour's pods by their cost), so the cost
    explorer answers questions over months of data from them: ``shared_away`` marks the __idle__ rows of hours
    whose idle went to the pods (left out when idle is shared, kept when it is separate).
    """
    p = "%s" if postgres else "?"
    key_columns: tuple[str, ...]
    if grain == "day":
        time = ("(date_trunc('day', hour_start AT TIME ZONE 'UTC') AT TIME ZONE 'UTC')" if postgres
                else "date_trunc('day', hour_start)")
        name, rollup, key_columns, time_column = "day", f"{table}_daily_rollup", ROLLUP_KEYS, "day"
    else:
        time, name, rollup, key_columns, time_column = ("hour_start", "hour_start", f"{table}_hourly_labels",
                                                        LABEL_ROLLUP_KEYS, "hour_start")
    scope = f"cost_center = {p} AND cluster = {p} AND hour_start >= {p} AND hour_start < {p}"
    keys = ", ".join(key_columns)
    sums = ", ".join(f"sum({c}) AS {c}" for c in ROLLUP_SUMS)
    needed = ", ".join(dict.fromkeys(("hour_start", *key_columns, *ROLLUP_SUMS, "efficiency")))
    select = f"""
        WITH base AS (SELECT {needed} FROM {table} WHERE {scope}),
        hours AS (SELECT hour_start, cluster,
                         sum(CASE WHEN namespace = '__idle__' THEN total_cost ELSE 0 END) AS idle,
                         sum(CASE WHEN starts_with(namespace, '__') THEN 0 ELSE total_cost END) AS pod_total
                  FROM base GROUP BY hour_start, cluster),
        shared AS (SELECT base.*, CASE WHEN NOT starts_with(namespace, '__') AND pod_total > 0
                                       THEN total_cost / pod_total * idle ELSE 0 END AS idle_share,
                          (namespace = '__idle__' AND pod_total > 0) AS shared_away
                   FROM base JOIN hours USING (hour_start, cluster))
        SELECT {time} AS {name}, {keys}, shared_away, {sums},
               sum(total_cost + idle_share) AS shared_total_cost, sum(unused_cost + idle_share) AS shared_unused_cost,
               sum(coalesce(efficiency, 0) * (cpu_cost + memory_cost)) AS efficiency_weight, count(*) AS hours
        FROM shared GROUP BY {time}, {keys}, shared_away"""
    delete = (f"DELETE FROM {rollup} WHERE cost_center = {p} AND cluster = {p} AND {time_column} >= {p} "
              f"AND {time_column} < {p}")
    create = f"CREATE TABLE IF NOT EXISTS {rollup} AS {select} LIMIT 0"
    return [create, delete, f"INSERT INTO {rollup} {select}"]


def refresh_rollups(run: Callable[[str, list[Any]], list[tuple[Any, ...]]], table: str, postgres: bool, cost_center: str,
                    cluster: str, start: dt.datetime, end: dt.datetime) -> None:
    """Rebuild the rollups for a loaded slice; a rollup built by an older podledger (another shape) is rebuilt
    whole from the table first (it is derived data: nothing is lost)."""
    for grain, suffix in (("day", "daily_rollup"), ("hour", "hourly_labels")):
        p = "%s" if postgres else "?"
        columns = {r[0] for r in run(f"SELECT column_name FROM information_schema.columns WHERE table_name = {p}",
                                     [f"{table}_{suffix}"])}
        statements = rollup_statements(table, postgres, grain)
        slices = [(cost_center, cluster, start, end)]
        if columns and "shared_away" not in columns:
            log.warning("warehouse table %s_%s was built by an older podledger: rebuilding it from %s", table, suffix,
                        table)
            run(f"DROP TABLE {table}_{suffix}", [])
            slices = [tuple(r) for r in run(f"SELECT cost_center, cluster, min(hour_start), max(hour_start) "
                                            f"FROM {table} GROUP BY cost_center, cluster", [])]
            slices = [(c, k, first, last + dt.timedelta(hours=1)) for c, k, first, last in slices]
        for c, k, first, stop in slices:
            bounds = day_bounds(first, stop) if grain == "day" else (first, stop)
            for statement in statements:
                run(statement, [c, k, *bounds])


def day_bounds(start: dt.datetime, end: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    """The whole UTC days that a slice [start, end) touches."""
    first = start.astimezone(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    last = end.astimezone(dt.UTC)
    stop = last.replace(hour=0, minute=0, second=0, microsecond=0)
    return first, stop if stop == last else stop + dt.timedelta(days=1)
