"""Rightsizing: per workload, requests from usage percentiles with headroom, and what that saves per month.

Works on allocation rows (hour x pod): a pod-hour's average usage is usage_core_hours / running_hours.
The recommendation is the ``quantile`` of those pod-hour averages times (1 + ``headroom``); the monthly
saving prices the request change at the workload's own effective price per core-hour / GiB-hour.
"""

from __future__ import annotations

import polars as pl

HOURS_PER_MONTH = 730.0
WORKLOAD = ["cost_center", "cluster", "namespace", "controller_kind", "controller_name"]


def recommendations(rows: pl.DataFrame, *, quantile: float = 0.95, headroom: float = 0.2,
                    memory_headroom: float = 0.3) -> pl.DataFrame:
    """Return one recommendation per workload, largest monthly saving first."""
    running = pl.col("running_hours")
    pods = (rows.lazy()
            .filter(~pl.col("namespace").str.starts_with("__") & (running > 0))
            .with_columns((pl.col("cpu_usage_core_hours") / running).alias("cpu_cores_used"),
                          (pl.col("memory_usage_gib_hours") / running).alias("memory_gib_used"),
                          (pl.col("cpu_request_core_hours") / running).alias("cpu_cores_requested"),
                          (pl.col("memory_request_gib_hours") / running).alias("memory_gib_requested")))
    per_workload = pods.group_by(WORKLOAD).agg(
        pl.col("cpu_cores_requested").mean().alias("cpu_request_cores"),
        (pl.col("cpu_cores_used").quantile(quantile, "linear") * (1 + headroom)).alias("cpu_recommended_cores"),
        pl.col("memory_gib_requested").mean().alias("memory_request_gib"),
        (pl.col("memory_gib_used").quantile(quantile, "linear") * (1 + memory_headroom)).alias("memory_recommended_gib"),
        (pl.col("running_hours").sum() / pl.col("hour_start").n_unique()).alias("avg_pods"),
        (pl.col("cpu_cost").sum() / pl.col("cpu_allocated_core_hours").sum()).alias("price_per_core_hour"),
        (pl.col("memory_cost").sum() / pl.col("memory_allocated_gib_hours").sum()).alias("price_per_gib_hour"),
        pl.col("hour_start").n_unique().alias("hours_observed"),
    )
    saving = ((pl.col("cpu_request_cores") - pl.col("cpu_recommended_cores")) * pl.col("price_per_core_hour")
              + (pl.col("memory_request_gib") - pl.col("memory_recommended_gib")) * pl.col("price_per_gib_hour"))
    return (per_workload
            .with_columns((saving.fill_nan(0.0).fill_null(0.0) * pl.col("avg_pods") * HOURS_PER_MONTH).alias("monthly_saving"))
            .sort("monthly_saving", descending=True)
            .collect())


def recommendations_sql(loader: object, table: str, cost_center: str, start: object, end: object, *,
                        postgres: bool, cluster: str | None = None, quantile: float = 0.95, headroom: float = 0.2,
                        memory_headroom: float = 0.3) -> pl.DataFrame:
    """:func:`recommendations` computed by the warehouse (the rows never leave it): same columns and numbers."""
    p = "%s" if postgres else "?"

    def pct(expr: str) -> str:
        return (f"percentile_cont({quantile}) WITHIN GROUP (ORDER BY {expr})" if postgres
                else f"quantile_cont({expr}, {quantile})")

    where = (f"cost_center = {p} AND hour_start >= {p} AND hour_start < {p} AND NOT starts_with(namespace, '__') "
             f"AND running_hours > 0" + (f" AND cluster = {p}" if cluster else ""))
    keys = ", ".join(WORKLOAD)
    sql = f"""
        WITH per_workload AS (
            SELECT {keys},
                   avg(cpu_request_core_hours / running_hours) AS cpu_request_cores,
                   {pct("cpu_usage_core_hours / running_hours")} * {1 + headroom} AS cpu_recommended_cores,
                   avg(memory_request_gib_hours / running_hours) AS memory_request_gib,
                   {pct("memory_usage_gib_hours / running_hours")} * {1 + memory_headroom} AS memory_recommended_gib,
                   sum(running_hours) / count(DISTINCT hour_start) AS avg_pods,
                   sum(cpu_cost) / nullif(sum(cpu_allocated_core_hours), 0) AS price_per_core_hour,
                   sum(memory_cost) / nullif(sum(memory_allocated_gib_hours), 0) AS price_per_gib_hour,
                   count(DISTINCT hour_start) AS hours_observed
            FROM {table} WHERE {where} GROUP BY {keys})
        SELECT *, coalesce(((cpu_request_cores - cpu_recommended_cores) * price_per_core_hour
                            + (memory_request_gib - memory_recommended_gib) * price_per_gib_hour)
                           * avg_pods * {HOURS_PER_MONTH}, 0) AS monthly_saving
        FROM per_workload ORDER BY monthly_saving DESC"""
    params = [cost_center, start, end] + ([cluster] if cluster else [])
    result: pl.DataFrame = loader.query(sql, params, read_only=True)  # type: ignore[attr-defined]
    return result


def container_recommendations(containers: pl.DataFrame, prices: pl.DataFrame, *, quantile: float = 0.95,
                              headroom: float = 0.2, memory_headroom: float = 0.3) -> pl.DataFrame:
    """Return one recommendation per workload container, largest monthly saving first.

    ``containers``: rows of :func:`podledger.allocation.container_hours` with ``hour_start`` and ``cluster``;
    ``prices``: per (cluster, namespace, controller_kind, controller_name) ``price_per_core_hour`` and
    ``price_per_gib_hour`` (as :func:`recommendations` computes them from the allocation rows).
    """
    keys = ["cluster", "namespace", "controller_kind", "controller_name", "container"]
    per_container = containers.group_by(keys).agg(
        pl.col("cpu_request_cores").mean(),
        (pl.col("cpu_used_cores").quantile(quantile) * (1 + headroom)).alias("cpu_recommended_cores"),
        pl.col("memory_request_gib").mean(),
        (pl.col("memory_used_gib").quantile(quantile) * (1 + memory_headroom)).alias("memory_recommended_gib"),
        (pl.col("running_seconds").sum() / 3600 / pl.col("hour_start").n_unique()).alias("avg_pods"),
    )
    priced = per_container.join(prices.select("cluster", "namespace", "controller_kind", "controller_name",
                                              "price_per_core_hour", "price_per_gib_hour"),
                                on=["cluster", "namespace", "controller_kind", "controller_name"], how="left")
    saving = ((pl.col("cpu_request_cores") - pl.col("cpu_recommended_cores")) * pl.col("price_per_core_hour")
              + (pl.col("memory_request_gib") - pl.col("memory_recommended_gib")) * pl.col("price_per_gib_hour"))
    return (priced.with_columns((saving.fill_nan(0.0).fill_null(0.0) * pl.col("avg_pods") * HOURS_PER_MONTH)
                                .alias("monthly_saving"))
            .sort("monthly_saving", descending=True))
