"""The cost explorer's data: allocation, cost over time, reconciliation, freshness and rightsizing from the warehouse.

Pure functions over a warehouse loader (DuckDB opened read-only, PostgreSQL through its connection); the Airflow
plugin (plugins/podledger_airflow/explorer.py) serves them as JSON and CSV, and `podledger report` prints the same
allocation table.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import TYPE_CHECKING, Any, TypedDict

import polars as pl

from podledger.config import CostCenterConfig

if TYPE_CHECKING:
    from podledger.warehouse import Warehouse

IDLE = "__idle__"


def read_rows(loader: Warehouse, cost_center: CostCenterConfig, start: dt.datetime, end: dt.datetime,
              cluster: str | None = None) -> pl.DataFrame:
    """The allocation rows of a cost center (and cluster) in [start, end)."""
    p = "%s" if cost_center.warehouse.kind == "postgres" else "?"
    sql = f"SELECT * FROM {loader.table} WHERE cost_center = {p} AND hour_start >= {p} AND hour_start < {p}"
    params: list[Any] = [cost_center.name, start, end]
    if cluster:
        sql += f" AND cluster = {p}"
        params.append(cluster)
    return loader.query(sql, params, read_only=True)


_TRUNC = {"hour": "hour", "day": "day", "week": "week", "month": "month"}
_MONEY_SQL = ("cpu_cost", "memory_cost", "gpu_cost", "network_cost", "unused_cost", "overhead_cost", "total_cost")


def _group_sql(by: str, postgres: bool) -> tuple[str, list[Any], tuple[str, ...]]:
    """The SQL expression of ``--by``, its parameters and the columns it reads: the groups of
    :func:`podledger.report.group_expr`."""
    from podledger.exceptions import PodledgerError

    if by == "controller":
        return "controller_kind || '/' || controller_name", [], ("controller_kind", "controller_name")
    if by == "pod":
        return "namespace || '/' || pod", [], ("namespace", "pod")
    if by in ("namespace", "node", "instance_type"):
        return by, [], (by,)
    if by.startswith("label:") and len(by) > len("label:"):
        key = by.removeprefix("label:")
        if postgres:
            lookup = "coalesce(pod_labels::jsonb ->> %s, namespace_labels::jsonb ->> %s, '__unlabelled__')"
            params: list[Any] = [key, key]
        else:
            lookup = ("coalesce(json_extract_string(pod_labels, ?), json_extract_string(namespace_labels, ?), "
                      "'__unlabelled__')")
            path = '$."' + key.replace('"', '\\"') + '"'
            params = [path, path]
        return (f"CASE WHEN starts_with(namespace, '__') THEN namespace ELSE {lookup} END", params,
                ("namespace", "pod_labels", "namespace_labels"))
    raise PodledgerError(f"by {by!r}: choose one of namespace, controller, pod, node, instance_type or label:<key>")


def _has_table(loader: Warehouse, cost_center: CostCenterConfig, name: str) -> bool:
    """Whether the warehouse holds ``name`` (the rollups every load since podledger 0.3 keeps beside the table)."""
    if cost_center.warehouse.kind == "postgres":
        sql, params = "SELECT to_regclass(%s) IS NOT NULL AS present", [name]
    else:
        sql, params = "SELECT count(*) > 0 AS present FROM duckdb_tables() WHERE table_name = ?", [name]
    return bool(loader.query(sql, params, read_only=True).item())


def _whole_days(start: dt.datetime, end: dt.datetime) -> bool:
    return all(t.astimezone(dt.UTC).time() == dt.time(0) for t in (start, end))


class _Query(TypedDict):
    """What an allocation query asks for, passed on unchanged to the rollup or hourly aggregation."""

    by: str
    step: str | None
    idle: str
    cluster: str | None
    lean: bool


def allocation_sql(loader: Warehouse, cost_center: CostCenterConfig, start: dt.datetime, end: dt.datetime, *,
                   by: str, step: str | None, idle: str = "separate", cluster: str | None = None,
                   lean: bool = False) -> pl.DataFrame:
    """The allocation report aggregated by the warehouse itself (the rows never leave it): fast on months of data.

    Same columns and groups as :func:`podledger.report.cost_report`; ``idle="shared"`` spreads each cluster-hour's
    ``__idle__`` cost onto its pods by their cost (OpenCost's "share idle"). Whole-day ranges by day, week or month
    read the daily rollup the loader maintains (one row per pod and day); labels by the hour read the hourly label
    rollup (one row per hour and label set); other hours read the allocation table.
    """
    kwargs = _Query(by=by, step=step, idle=idle, cluster=cluster, lean=lean)
    if step != "hour" and _whole_days(start, end) and _has_table(loader, cost_center, f"{loader.table}_daily_rollup"):
        return _aggregate_rollup(loader, cost_center, start, end, rollup="daily_rollup", **kwargs)
    if by.startswith("label:") and _has_table(loader, cost_center, f"{loader.table}_hourly_labels"):
        return _aggregate_rollup(loader, cost_center, start, end, rollup="hourly_labels", **kwargs)
    # Hours by anything but a label, partial days, or a warehouse loaded before the rollups existed: the table itself.
    return _aggregate_hours(loader, cost_center, start, end, **kwargs)


_USAGE_SQL = ("cpu_request_core_hours", "cpu_usage_core_hours", "memory_request_gib_hours", "memory_usage_gib_hours")


def _scope(cost_center: CostCenterConfig, time_column: str, start: dt.datetime, end: dt.datetime,
           cluster: str | None) -> tuple[str, list[Any]]:
    p = "%s" if cost_center.warehouse.kind == "postgres" else "?"
    where = (f"cost_center = {p} AND {time_column} >= {p} AND {time_column} < {p}"
             + (f" AND cluster = {p}" if cluster else ""))
    return where, [cost_center.name, start, end] + ([cluster] if cluster else [])


def _bucket(step: str | None, time_column: str, postgres: bool) -> str:
    if not step:
        return ""
    column = f"{time_column} AT TIME ZONE 'UTC'" if postgres else time_column
    return f"date_trunc('{_TRUNC[step]}', {column}) AS {step}, "


def _aggregate_rollup(loader: Warehouse, cost_center: CostCenterConfig, start: dt.datetime, end: dt.datetime, *, by: str,
                      step: str | None, idle: str, cluster: str | None, lean: bool, rollup: str) -> pl.DataFrame:
    """From a rollup the loader keeps (daily per pod, or hourly per label set); both carry the hourly idle shares."""
    postgres = cost_center.warehouse.kind == "postgres"
    group, group_params, _ = _group_sql(by, postgres)
    time_column = "day" if rollup == "daily_rollup" else "hour_start"
    where, where_params = _scope(cost_center, time_column, start, end, cluster)
    money = {c: f"coalesce(sum({c}), 0)" for c in _MONEY_SQL}
    source = f"(SELECT * FROM {loader.table}_{rollup} WHERE {where}"
    if idle == "shared":  # idle shared away leaves zero rows
        source += " AND NOT shared_away"
        money.update(total_cost="coalesce(sum(shared_total_cost), 0)", unused_cost="coalesce(sum(shared_unused_cost), 0)")
    source += ")"
    bucket = _bucket(step, time_column, postgres)
    order = f'GROUP BY {"1, 2" if step else "1"} ORDER BY {"1, " if step else ""}total_cost DESC'
    if lean:
        sql = f'SELECT {bucket}{group} AS "{by}", {money["total_cost"]} AS total_cost FROM {source} AS rows {order}'
        return _utc_bucket(loader.query(sql, group_params + where_params, read_only=True), step)
    pods = "count(DISTINCT uid)" if rollup == "daily_rollup" else "NULL"
    sql = f"""
        SELECT {bucket}{group} AS "{by}", {", ".join(f"{expr} AS {c}" for c, expr in money.items())},
               {", ".join(f"coalesce(sum({c}), 0) AS {c}" for c in _USAGE_SQL)},
               sum(efficiency_weight) / nullif(sum(cpu_cost + memory_cost), 0) AS efficiency,
               {pods} AS pods, string_agg(DISTINCT currency, ',') AS currency
        FROM {source} AS rows {order}"""
    frame = loader.query(sql, group_params + where_params, read_only=True)
    if rollup != "daily_rollup":  # no pods in the hourly label rollup: distinct pods counted on the rows
        frame = _with_pods(loader, cost_center, frame.drop("pods"), start, end, by=by, step=step, idle=idle,
                           cluster=cluster)
    return _utc_bucket(frame, step)


def _aggregate_hours(loader: Warehouse, cost_center: CostCenterConfig, start: dt.datetime, end: dt.datetime, *, by: str,
                     step: str | None, idle: str, cluster: str | None, lean: bool) -> pl.DataFrame:
    """Hours from the allocation table, in two steps: sums per hour and distinct group inputs (few rows), then
    the group expression (JSON label lookups included) and the idle shares on those sums.

    Sharing idle is linear in each pod's cost, so it distributes over the sums: a group's pods get
    ``their cost / the hour's pod cost x the hour's idle``, exactly as sharing row by row does.
    """
    postgres = cost_center.warehouse.kind == "postgres"
    group, group_params, inputs = _group_sql(by, postgres)
    where, where_params = _scope(cost_center, "hour_start", start, end, cluster)
    sums = ("total_cost",) if lean else (*_MONEY_SQL, *_USAGE_SQL)
    weight = [] if lean else ["sum(coalesce(efficiency, 0) * (cpu_cost + memory_cost)) AS efficiency_weight"]
    keys = ", ".join(dict.fromkeys(("hour_start", "cluster", *inputs, *([] if lean else ["currency"]))))
    per = f"""
        SELECT {keys}, starts_with(namespace, '__') AS sentinel, namespace = '__idle__' AS is_idle,
               {", ".join([*(f"sum({c}) AS {c}" for c in sums), *weight])}
        FROM {loader.table} WHERE {where}
        GROUP BY {keys}, starts_with(namespace, '__'), namespace = '__idle__'"""
    money = {c: f"coalesce(sum({c}), 0)" for c in sums}
    source, hours = "per", ""
    if idle == "shared":
        hours = """, hours AS (
            SELECT hour_start, cluster, sum(CASE WHEN is_idle THEN total_cost ELSE 0 END) AS idle,
                   sum(CASE WHEN sentinel THEN 0 ELSE total_cost END) AS pod_total
            FROM per GROUP BY hour_start, cluster)"""
        source = "per JOIN hours USING (hour_start, cluster) WHERE NOT (is_idle AND pod_total > 0)"
        share = "CASE WHEN NOT sentinel AND pod_total > 0 THEN {c} / pod_total * idle ELSE 0 END"
        money["total_cost"] = f"coalesce(sum(total_cost + {share.format(c='total_cost')}), 0)"
        if not lean:
            money["unused_cost"] = f"coalesce(sum(unused_cost + {share.format(c='total_cost')}), 0)"
    bucket = _bucket(step, "hour_start", postgres)
    group_by = "1, 2" if step else "1"
    columns = [f"{expr} AS {c}" for c, expr in money.items()]
    if not lean:
        columns += ["sum(efficiency_weight) / nullif(sum(cpu_cost + memory_cost), 0) AS efficiency",
                    "string_agg(DISTINCT currency, ',') AS currency"]
    sql = (f'WITH per AS ({per}){hours} SELECT {bucket}{group} AS "{by}", {", ".join(columns)} FROM {source} '
           f"GROUP BY {group_by}")
    frame = loader.query(sql, where_params + group_params, read_only=True)
    if not lean:  # distinct pods do not add up over hours: counted on the rows, per group
        frame = _with_pods(loader, cost_center, frame, start, end, by=by, step=step, idle=idle, cluster=cluster)
    frame = frame.sort([*([step] if step else []), "total_cost"], descending=[False] * bool(step) + [True])
    return _utc_bucket(frame, step)


def _with_pods(loader: Warehouse, cost_center: CostCenterConfig, frame: pl.DataFrame, start: dt.datetime,
               end: dt.datetime, *, by: str, step: str | None, idle: str, cluster: str | None) -> pl.DataFrame:
    """Add the distinct pods of each group (and step), counted on the allocation rows."""
    postgres = cost_center.warehouse.kind == "postgres"
    group, group_params, _ = _group_sql(by, postgres)
    where, where_params = _scope(cost_center, "hour_start", start, end, cluster)
    shared_away = " AND namespace <> '__idle__'" if idle == "shared" else ""
    sql = (f'SELECT {_bucket(step, "hour_start", postgres)}{group} AS "{by}", count(DISTINCT uid) AS pods '
           f"FROM {loader.table} WHERE {where}{shared_away} GROUP BY {'1, 2' if step else '1'}")
    counted = loader.query(sql, group_params + where_params, read_only=True)
    on = [*([step] if step else []), by]
    if step and frame.height:
        counted = counted.with_columns(pl.col(step).cast(frame.schema[step]))
    return frame.join(counted, on=on, how="left", nulls_equal=True).select(
        *on, *_MONEY_SQL, *_USAGE_SQL, "efficiency", "pods", "currency").sort(
        [*([step] if step else []), "total_cost"], descending=[False] * bool(step) + [True])


def _utc_bucket(frame: pl.DataFrame, step: str | None) -> pl.DataFrame:
    if step and frame.height:
        zone = getattr(frame.schema[step], "time_zone", None)
        bucket_utc = (pl.col(step).dt.convert_time_zone("UTC") if zone
                      else pl.col(step).cast(pl.Datetime("us")).dt.replace_time_zone("UTC"))
        frame = frame.with_columns(bucket_utc)
    return frame


def allocation_from_warehouse(loader: Warehouse, cost_center: CostCenterConfig, start: dt.datetime, end: dt.datetime, *,
                              by: str, step: str, idle: str = "separate", cluster: str | None = None,
                              top: int = 8) -> dict[str, Any]:
    """Like :func:`allocation`, aggregated in the warehouse: the table for the range and the top groups over time."""
    table = allocation_sql(loader, cost_center, start, end, by=by, step=None, idle=idle, cluster=cluster)
    series = allocation_sql(loader, cost_center, start, end, by=by, step=step, idle=idle, cluster=cluster, lean=True)
    leaders = table.head(top)[by].to_list()
    series = (series.with_columns(pl.when(pl.col(by).is_in(leaders)).then(pl.col(by)).otherwise(pl.lit("other")).alias(by))
              .group_by(step, by).agg(pl.col("total_cost").sum()).sort(step, by))
    return {"table": table, "series": series, "groups": [*leaders, *(["other"] if series[by].eq("other").any() else [])]}


def reconciliation(loader: Warehouse, cost_center: CostCenterConfig, start: dt.datetime, end: dt.datetime,
                   cluster: str | None = None) -> pl.DataFrame:
    """Per hour and cluster: allocated (Σ rows, read back), billed (from the bill's files at enrichment), unpriced."""
    p = "%s" if cost_center.warehouse.kind == "postgres" else "?"
    where, params = _scope(cost_center, "hour_start", start, end, cluster)

    def part(namespace: str) -> str:
        return f"coalesce(sum(CASE WHEN namespace = '{namespace}' THEN total_cost ELSE 0 END), 0)"

    allocated_sql = (f"SELECT hour_start, cluster, sum(total_cost) AS allocated, {part('__unpriced__')} AS unpriced, "
                     f"{part('__unallocated__')} AS unallocated, {part(IDLE)} AS idle, "
                     f"{part('__cluster_overhead__')} AS overhead FROM {loader.table} WHERE {where} "
                     "GROUP BY hour_start, cluster")
    allocated = loader.query(allocated_sql, params, read_only=True)
    sql = (f"SELECT hour_start, cluster, billed_from_files, billed_cost FROM {loader.table}_reconciliation "
           f"WHERE cost_center = {p} AND hour_start >= {p} AND hour_start < {p}")
    try:
        billed = loader.query(sql, [cost_center.name, start, end], read_only=True)
    except Exception:  # noqa: BLE001 - loaded by an older podledger: no reconciliation table yet
        billed = pl.DataFrame(schema={"hour_start": pl.Datetime("us", "UTC"), "cluster": pl.String,
                                      "billed_from_files": pl.Float64, "billed_cost": pl.Float64})
    if cluster:
        billed = billed.filter(pl.col("cluster") == cluster)
    utc = pl.Datetime("us", "UTC")
    report = allocated.with_columns(pl.col("hour_start").cast(utc)).join(
        billed.with_columns(pl.col("hour_start").cast(utc)), on=["hour_start", "cluster"], how="full", coalesce=True)
    billed_col = pl.coalesce("billed_from_files", "billed_cost")
    return (report.with_columns(billed_col.cast(pl.Float64).alias("billed"))
            .with_columns((pl.col("allocated") - pl.col("billed")).alias("difference"))
            .select("hour_start", "cluster", "allocated", "billed", "difference", "unpriced", "unallocated", "idle",
                    "overhead").sort("hour_start", "cluster"))


def freshness(loader: Warehouse, cost_center: CostCenterConfig) -> pl.DataFrame:
    """Per cluster: the last hour loaded, and the hours still waiting for the bill (__unpriced__ cost)."""
    p = "%s" if cost_center.warehouse.kind == "postgres" else "?"
    # The hourly label rollup has every loaded hour and namespace in far fewer rows than the table.
    source = (f"{loader.table}_hourly_labels" if _has_table(loader, cost_center, f"{loader.table}_hourly_labels")
              else loader.table)
    sql = (f"SELECT cluster, max(hour_start) AS last_hour_loaded, count(DISTINCT hour_start) AS hours_loaded, "
           f"count(DISTINCT CASE WHEN namespace = '__unpriced__' THEN hour_start END) AS hours_waiting_for_bill "
           f"FROM {source} WHERE cost_center = {p} GROUP BY cluster ORDER BY cluster")
    return loader.query(sql, [cost_center.name], read_only=True)


def label_keys(rows: pl.DataFrame) -> list[str]:
    """The pod and namespace label keys present in the rows (for "aggregate by label")."""
    keys: set[str] = set()
    for column in ("pod_labels", "namespace_labels"):
        for text in rows[column].drop_nulls().unique().head(5000).to_list():
            try:
                keys.update(json.loads(text))
            except ValueError:
                continue
    return sorted(keys)


def label_keys_sql(loader: Warehouse, cost_center: CostCenterConfig, start: dt.datetime, end: dt.datetime) -> list[str]:
    """The label keys of the pods and namespaces of the range's last hour (cheap on months of rows)."""
    p = "%s" if cost_center.warehouse.kind == "postgres" else "?"
    scope = f"cost_center = {p} AND hour_start >= {p} AND hour_start < {p}"
    sql = (f"SELECT DISTINCT pod_labels, namespace_labels FROM {loader.table} WHERE {scope} AND hour_start = "
           f"(SELECT max(hour_start) FROM {loader.table} WHERE {scope}) LIMIT 20000")
    params = [cost_center.name, start, end] * 2
    return label_keys(loader.query(sql, params, read_only=True))
