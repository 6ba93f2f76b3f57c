"""The cost explorer's data: allocation, cost over time, reconciliation, freshness and rightsizing from the warehouse.

Pure functions over a warehouse loader (DuckDB opened read-only, PostgreSQL through its connection); the Airflow
plugin (plugins/podledger_airflow/explorer.py) serves them as JSON and CSV, and `podledger report` prints the same
allocation table.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import polars as pl

from podledger.config import CostCenterConfig
from podledger.report import cost_report

IDLE = "__idle__"


def read_rows(loader: Any, cost_center: CostCenterConfig, start: dt.datetime, end: dt.datetime,
              cluster: str | None = None) -> pl.DataFrame:
    """The allocation rows of a cost center (and cluster) in [start, end)."""
    p = "%s" if cost_center.warehouse.kind == "postgres" else "?"
    sql = f"SELECT * FROM {loader.table} WHERE cost_center = {p} AND hour_start >= {p} AND hour_start < {p}"
    params: list[Any] = [cost_center.name, start, end]
    if cluster:
        sql += f" AND cluster = {p}"
        params.append(cluster)
    return loader.query(sql, params, read_only=True)


def share_idle(rows: pl.DataFrame) -> pl.DataFrame:
    """OpenCost's "share idle": each cluster-hour's __idle__ cost spread onto its pods in proportion to their cost."""
    is_idle = pl.col("namespace") == IDLE
    idle = (rows.filter(is_idle).group_by("hour_start", "cluster").agg(pl.col("total_cost").sum().alias("idle"))
            .with_columns(pl.col("idle")))
    pods = rows.filter(~pl.col("namespace").str.starts_with("__"))
    pod_total = pods.group_by("hour_start", "cluster").agg(pl.col("total_cost").sum().alias("pod_total"))
    shared = (pods.join(idle, on=["hour_start", "cluster"], how="left").join(pod_total, on=["hour_start", "cluster"])
              .with_columns((pl.col("total_cost") / pl.col("pod_total") * pl.col("idle").fill_null(0.0)).alias("share"))
              .with_columns((pl.col("unused_cost") + pl.col("share")).alias("unused_cost"),
                            (pl.col("total_cost") + pl.col("share")).alias("total_cost"))
              .drop("idle", "pod_total", "share"))
    # Hours whose pods cost nothing keep their idle row (nothing to share it onto).
    kept_idle = rows.filter(is_idle).join(pod_total.filter(pl.col("pod_total") > 0), on=["hour_start", "cluster"],
                                          how="anti")
    others = rows.filter(pl.col("namespace").str.starts_with("__") & ~is_idle)
    return pl.concat([shared, kept_idle, others], how="diagonal_relaxed")


_TRUNC = {"hour": "hour", "day": "day", "week": "week", "month": "month"}
_MONEY_SQL = ("cpu_cost", "memory_cost", "gpu_cost", "network_cost", "unused_cost", "overhead_cost", "total_cost")


def _group_sql(by: str, postgres: bool) -> tuple[str, list[Any]]:
    """The SQL expression of ``--by`` (and its parameters): the same groups as :func:`podledger.report.group_expr`."""
    from podledger.exceptions import PodledgerError

    if by == "controller":
        return "controller_kind || '/' || controller_name", []
    if by == "pod":
        return "namespace || '/' || pod", []
    if by in ("namespace", "node", "instance_type"):
        return by, []
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
        return f"CASE WHEN starts_with(namespace, '__') THEN namespace ELSE {lookup} END", params
    raise PodledgerError(f"by {by!r}: choose one of namespace, controller, pod, node, instance_type or label:<key>")


def _has_rollup(loader: Any, cost_center: CostCenterConfig) -> bool:
    """Whether the loader has kept a daily rollup beside the table (every load since podledger 0.3 does)."""
    if cost_center.warehouse.kind == "postgres":
        sql, params = "SELECT to_regclass(%s) IS NOT NULL AS present", [f"{loader.table}_daily_rollup"]
    else:
        sql, params = "SELECT count(*) > 0 AS present FROM duckdb_tables() WHERE table_name = ?", [
            f"{loader.table}_daily_rollup"]
    return bool(loader.query(sql, params, read_only=True).item())


def _whole_days(start: dt.datetime, end: dt.datetime) -> bool:
    return all(t.astimezone(dt.UTC).time() == dt.time(0) for t in (start, end))


def allocation_sql(loader: Any, cost_center: CostCenterConfig, start: dt.datetime, end: dt.datetime, *,
                   by: str, step: str | None, idle: str = "separate", cluster: str | None = None,
                   lean: bool = False) -> pl.DataFrame:
    """The allocation report aggregated by the warehouse itself (the rows never leave it): fast on months of data.

    Same columns and groups as :func:`podledger.report.cost_report`; ``idle="shared"`` spreads each cluster-hour's
    ``__idle__`` cost onto its pods by their cost, as :func:`share_idle` does. Whole-day ranges by day, week or month
    read the daily rollup the loader maintains (one row per pod and day); hours read the allocation table.
    """
    if step != "hour" and _whole_days(start, end) and _has_rollup(loader, cost_center):
        return _aggregate(loader, cost_center, start, end, by=by, step=step, idle=idle, cluster=cluster, rollup=True,
                          lean=lean)
    # Hours, partial days, or a warehouse loaded before the rollup existed: the allocation table itself.
    return _aggregate(loader, cost_center, start, end, by=by, step=step, idle=idle, cluster=cluster, rollup=False,
                      lean=lean)


def _aggregate(loader: Any, cost_center: CostCenterConfig, start: dt.datetime, end: dt.datetime, *, by: str,
               step: str | None, idle: str, cluster: str | None, rollup: bool, lean: bool = False) -> pl.DataFrame:
    postgres = cost_center.warehouse.kind == "postgres"
    p = "%s" if postgres else "?"
    group, group_params = _group_sql(by, postgres)
    time_column = "day" if rollup else "hour_start"
    where = (f"cost_center = {p} AND {time_column} >= {p} AND {time_column} < {p}"
             + (f" AND cluster = {p}" if cluster else ""))
    where_params: list[Any] = [cost_center.name, start, end] + ([cluster] if cluster else [])
    money = {c: f"coalesce(sum({c}), 0)" for c in _MONEY_SQL}
    efficiency = "sum(coalesce(efficiency, 0) * (cpu_cost + memory_cost))"
    if rollup:
        source = f"(SELECT * FROM {loader.table}_daily_rollup WHERE {where}"
        efficiency = "sum(efficiency_weight)"
        if idle == "shared":  # the rollup carries the hourly idle shares; idle shared away leaves zero rows
            source += " AND NOT (namespace = '__idle__' AND shared_total_cost = 0)"
            money.update(total_cost="coalesce(sum(shared_total_cost), 0)", unused_cost="coalesce(sum(shared_unused_cost), 0)")
        source += ")"
    elif idle == "shared":
        if postgres:  # PostgreSQL has no SELECT * REPLACE: an hourly shared report reads the rows
            return cost_report(share_idle(read_rows(loader, cost_center, start, end, cluster)), by=by, step=step)
        source = f"""(
            WITH base AS (SELECT * FROM {loader.table} WHERE {where}),
            sums AS (SELECT hour_start, cluster,
                            sum(CASE WHEN namespace = '__idle__' THEN total_cost ELSE 0 END) AS idle,
                            sum(CASE WHEN starts_with(namespace, '__') THEN 0 ELSE total_cost END) AS pod_total
                     FROM base GROUP BY hour_start, cluster)
            SELECT base.* REPLACE (
                       CASE WHEN NOT starts_with(namespace, '__') AND pod_total > 0
                            THEN unused_cost + total_cost / pod_total * idle ELSE unused_cost END AS unused_cost,
                       CASE WHEN NOT starts_with(namespace, '__') AND pod_total > 0
                            THEN total_cost + total_cost / pod_total * idle ELSE total_cost END AS total_cost)
            FROM base JOIN sums USING (hour_start, cluster)
            WHERE NOT (namespace = '__idle__' AND pod_total > 0))"""
    else:
        source = f"(SELECT * FROM {loader.table} WHERE {where})"
    bucket = ""
    if step:
        column = f"{time_column} AT TIME ZONE 'UTC'" if postgres else time_column
        bucket = f"date_trunc('{_TRUNC[step]}', {column}) AS {step}, "
    if lean:  # the cost-over-time chart needs the total only (no distinct counts: far cheaper per hour)
        sql = (f'SELECT {bucket}{group} AS "{by}", {money["total_cost"]} AS total_cost FROM {source} AS rows '
               f'GROUP BY {"1, 2" if step else "1"} ORDER BY {"1, " if step else ""}total_cost DESC')
        return _utc_bucket(loader.query(sql, group_params + where_params, read_only=True), step)
    sql = f"""
        SELECT {bucket}{group} AS "{by}", {", ".join(f"{expr} AS {c}" for c, expr in money.items())},
               coalesce(sum(cpu_request_core_hours), 0) AS cpu_request_core_hours,
               coalesce(sum(cpu_usage_core_hours), 0) AS cpu_usage_core_hours,
               coalesce(sum(memory_request_gib_hours), 0) AS memory_request_gib_hours,
               coalesce(sum(memory_usage_gib_hours), 0) AS memory_usage_gib_hours,
               {efficiency} / nullif(sum(cpu_cost + memory_cost), 0) AS efficiency,
               count(DISTINCT uid) AS pods, string_agg(DISTINCT currency, ',') AS currency
        FROM {source} AS rows GROUP BY {"1, 2" if step else "1"}
        ORDER BY {"1, " if step else ""}total_cost DESC"""
    return _utc_bucket(loader.query(sql, group_params + where_params, read_only=True), step)


def _utc_bucket(frame: pl.DataFrame, step: str | None) -> pl.DataFrame:
    if step and frame.height:
        zone = getattr(frame.schema[step], "time_zone", None)
        bucket_utc = (pl.col(step).dt.convert_time_zone("UTC") if zone
                      else pl.col(step).cast(pl.Datetime("us")).dt.replace_time_zone("UTC"))
        frame = frame.with_columns(bucket_utc)
    return frame


def allocation_from_warehouse(loader: Any, cost_center: CostCenterConfig, start: dt.datetime, end: dt.datetime, *,
                              by: str, step: str, idle: str = "separate", cluster: str | None = None,
                              top: int = 8) -> dict[str, Any]:
    """Like :func:`allocation`, aggregated in the warehouse: the table for the range and the top groups over time."""
    table = allocation_sql(loader, cost_center, start, end, by=by, step=None, idle=idle, cluster=cluster)
    series = allocation_sql(loader, cost_center, start, end, by=by, step=step, idle=idle, cluster=cluster, lean=True)
    leaders = table.head(top)[by].to_list()
    series = (series.with_columns(pl.when(pl.col(by).is_in(leaders)).then(pl.col(by)).otherwise(pl.lit("other")).alias(by))
              .group_by(step, by).agg(pl.col("total_cost").sum()).sort(step, by))
    return {"table": table, "series": series, "groups": [*leaders, *(["other"] if series[by].eq("other").any() else [])]}


def reconciliation(loader: Any, cost_center: CostCenterConfig, rows: pl.DataFrame, start: dt.datetime,
                   end: dt.datetime, cluster: str | None = None) -> pl.DataFrame:
    """Per hour and cluster: allocated (Σ rows, read back), billed (from the bill's files at enrichment), unpriced."""
    p = "%s" if cost_center.warehouse.kind == "postgres" else "?"
    sql = (f"SELECT hour_start, cluster, billed_from_files, billed_cost FROM {loader.table}_reconciliation "
           f"WHERE cost_center = {p} AND hour_start >= {p} AND hour_start < {p}")
    try:
        billed = loader.query(sql, [cost_center.name, start, end], read_only=True)
    except Exception:  # noqa: BLE001 - loaded by an older podledger: no reconciliation table yet
        billed = pl.DataFrame(schema={"hour_start": pl.Datetime("us", "UTC"), "cluster": pl.String,
                                      "billed_from_files": pl.Float64, "billed_cost": pl.Float64})
    if cluster:
        billed = billed.filter(pl.col("cluster") == cluster)
    allocated = rows.group_by("hour_start", "cluster").agg(
        pl.col("total_cost").sum().alias("allocated"),
        pl.col("total_cost").filter(pl.col("namespace") == "__unpriced__").sum().alias("unpriced"),
        pl.col("total_cost").filter(pl.col("namespace") == "__unallocated__").sum().alias("unallocated"),
        pl.col("total_cost").filter(pl.col("namespace") == IDLE).sum().alias("idle"),
        pl.col("total_cost").filter(pl.col("namespace") == "__cluster_overhead__").sum().alias("overhead"))
    report = allocated.join(billed.with_columns(pl.col("hour_start").cast(pl.Datetime("us", "UTC"))),
                            on=["hour_start", "cluster"], how="full", coalesce=True)
    billed_col = pl.coalesce("billed_from_files", "billed_cost")
    return (report.with_columns(billed_col.alias("billed"))
            .with_columns((pl.col("allocated") - pl.col("billed")).alias("difference"))
            .select("hour_start", "cluster", "allocated", "billed", "difference", "unpriced", "unallocated", "idle",
                    "overhead").sort("hour_start", "cluster"))


def freshness(loader: Any, cost_center: CostCenterConfig) -> pl.DataFrame:
    """Per cluster: the last hour loaded, and the hours still waiting for the bill (__unpriced__ cost)."""
    p = "%s" if cost_center.warehouse.kind == "postgres" else "?"
    sql = (f"SELECT cluster, max(hour_start) AS last_hour_loaded, count(DISTINCT hour_start) AS hours_loaded, "
           f"count(DISTINCT CASE WHEN namespace = '__unpriced__' THEN hour_start END) AS hours_waiting_for_bill "
           f"FROM {loader.table} WHERE cost_center = {p} GROUP BY cluster ORDER BY cluster")
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


def label_keys_sql(loader: Any, cost_center: CostCenterConfig, start: dt.datetime, end: dt.datetime) -> list[str]:
    """The label keys of the pods and namespaces of the range's last hour (cheap on months of rows)."""
    p = "%s" if cost_center.warehouse.kind == "postgres" else "?"
    scope = f"cost_center = {p} AND hour_start >= {p} AND hour_start < {p}"
    sql = (f"SELECT DISTINCT pod_labels, namespace_labels FROM {loader.table} WHERE {scope} AND hour_start = "
           f"(SELECT max(hour_start) FROM {loader.table} WHERE {scope}) LIMIT 20000")
    params = [cost_center.name, start, end] * 2
    return label_keys(loader.query(sql, params, read_only=True))
