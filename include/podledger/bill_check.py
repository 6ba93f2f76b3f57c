"""The independent money check: the cluster's bill per hour and per node-hour, straight from the bill files.

The allocation prices node-hours from frames that the polars readers built; reconciling its rows against those
same frames proves only that the split neither loses nor invents money. This module answers the other question,
"is that what the bill says?", by a second, deliberately simple path: the delivery's files read by pyarrow, and
the money summed by DuckDB SQL from the rules' text, without any of the allocation's readers or filters:

- CUR 2.0 / legacy CUR: every line item billed on one of the cluster's instances in the hour (its nodes as seen
  in the metrics, or instances tagged for the cluster in the cluster's account and region) or on the cluster's
  EKS ARN (``arn:aws:eks:<region>:<account>:cluster/<name>``), at the configured cost basis (volumes tagged for
  the cluster are not part of its money: podledger does not price persistent volumes yet);
- FOCUS: every ``Usage`` / ``Compute`` charge of those resources (FOCUS puts a resource's disks and credits on
  the same ResourceId; they are not the node's price).

Then Σ allocation rows must equal that sum for every cluster-hour, and (CUR, idle kept per node) the rows of each
node-hour must equal that instance's bill for the hour, both to 1e-9 relative.
"""

from __future__ import annotations

import datetime as dt
import gzip
import io
import logging
import re
from typing import TYPE_CHECKING

import polars as pl

from podledger.deliveries import read_parquet_part
from podledger.exceptions import ReconciliationError
from podledger.storage import ObjectStore

if TYPE_CHECKING:
    import pyarrow as pa

log = logging.getLogger(__name__)
TOLERANCE = 1e-9
CONTROL_PLANE = "__control_plane__"

_CUR_BASIS = {
    "unblended": "coalesce(line_item_unblended_cost, 0)",
    "amortized": """CASE line_item_line_item_type
        WHEN 'SavingsPlanCoveredUsage' THEN coalesce(savings_plan_savings_plan_effective_cost, 0)
        WHEN 'DiscountedUsage' THEN coalesce(reservation_effective_cost, 0)
        WHEN 'SavingsPlanNegation' THEN 0
        ELSE coalesce(line_item_unblended_cost, 0) END""",
    "net_amortized": """CASE line_item_line_item_type
        WHEN 'SavingsPlanCoveredUsage' THEN coalesce(savings_plan_net_savings_plan_effective_cost,
                                                     savings_plan_savings_plan_effective_cost, 0)
        WHEN 'DiscountedUsage' THEN coalesce(reservation_net_effective_cost, reservation_effective_cost, 0)
        WHEN 'SavingsPlanNegation' THEN 0
        ELSE coalesce(line_item_net_unblended_cost, line_item_unblended_cost, 0) END""",
    "public_on_demand": """CASE line_item_line_item_type WHEN 'SavingsPlanNegation' THEN 0
        ELSE coalesce(pricing_public_on_demand_cost, 0) END""",
}
_CUR_COLUMNS = ("line_item_usage_start_date", "line_item_resource_id", "line_item_line_item_type",
                "line_item_usage_account_id", "product_region_code", "product_region", "line_item_unblended_cost",
                "line_item_net_unblended_cost", "savings_plan_savings_plan_effective_cost",
                "savings_plan_net_savings_plan_effective_cost", "reservation_effective_cost",
                "reservation_net_effective_cost", "pricing_public_on_demand_cost", "resource_tags")
_FOCUS_COLUMNS = ("ChargePeriodStart", "ResourceId", "ResourceName", "AvailabilityZone", "ProviderName", "SubAccountId",
                  "RegionId", "Tags", "ChargeCategory", "ServiceCategory")
_FOCUS_BASIS = {"amortized": "EffectiveCost", "net_amortized": "EffectiveCost", "unblended": "BilledCost",
                "public_on_demand": "ListCost"}


def _needed(name: str, fmt: str) -> bool:
    """A column the check's SQL reads (a bill has dozens more: they are not decoded)."""
    if fmt == "focus":
        return name in _FOCUS_COLUMNS or name in _FOCUS_BASIS.values()
    return name in _CUR_COLUMNS or name.startswith("resource_tags_")


def _arrow(store: ObjectStore, key: str, between: tuple[str, dt.datetime, dt.datetime] | None = None,
           fmt: str = "cur2") -> pa.Table:
    """The file as a pyarrow Table of the columns the check reads; ``between`` (column, start, end): of a Parquet
    file whose column is a timestamp, only the rows in [start, end) (row groups outside it are skipped by their
    statistics)."""
    import pyarrow.csv as pa_csv

    if key.endswith(".parquet"):
        return read_parquet_part(store, key, lambda name: _needed(name, fmt), between)
    data = store.get(key)
    if key.endswith(".gz"):
        data = gzip.decompress(data)
    return pa_csv.read_csv(io.BytesIO(data), convert_options=pa_csv.ConvertOptions(null_values=["NULL", ""],
                                                                                   strings_can_be_null=True))


def _utc_hour(sql_column: str) -> str:
    # Parquet timestamps (naive or UTC) and CSV text alike: the text's first 13 characters are the hour.
    return f"strptime(left(replace(CAST({sql_column} AS VARCHAR), 'T', ' '), 13), '%Y-%m-%d %H')"


def _cur_sql(columns: set[str], basis: str, tag_keys: tuple[str, ...]) -> str:
    def col(name: str) -> str:
        return name if name in columns else "NULL"

    if "resource_tags" in columns:
        tag = "coalesce(" + ", ".join(f"map_extract(resource_tags, '{k}')[1]" for k in tag_keys) + ", NULL)"
    else:  # legacy CUR: one column per activated tag
        tag = "coalesce(" + ", ".join(f"resource_tags_{k}" if f"resource_tags_{k}" in columns else "NULL"
                                      for k in tag_keys) + ", NULL)"
    money = _CUR_BASIS[basis]
    for name in _CUR_COLUMNS:
        if name not in columns and name != "resource_tags":
            money = re.sub(rf"\b{name}\b", "NULL", money)
    region = f"coalesce({col('product_region_code')}, {col('product_region')})"
    return f"""
        SELECT {_utc_hour('line_item_usage_start_date')} AS hour_start, line_item_resource_id AS resource_id,
               CAST({col('line_item_usage_account_id')} AS VARCHAR) AS account_id, {region} AS region,
               {tag} AS cluster_tag, sum(CAST({money} AS DOUBLE)) AS billed
        FROM bill WHERE line_item_resource_id IS NOT NULL AND line_item_resource_id <> ''
        GROUP BY ALL"""


def _focus_sql(columns: set[str], basis: str, tag_keys: tuple[str, ...], tags_type: str) -> str:
    def col(name: str) -> str:
        return name if name in columns else "NULL"

    if "Tags" not in columns or not tag_keys:
        tag = "NULL"
    elif tags_type == "string":
        tag = "coalesce(" + ", ".join(f"json_extract_string(Tags, '$.\"{k}\"')" for k in tag_keys) + ", NULL)"
    elif tags_type == "map":
        tag = "coalesce(" + ", ".join(f"map_extract(Tags, '{k}')[1]" for k in tag_keys) + ", NULL)"
    else:
        tag = "coalesce(" + ", ".join(f"list_filter(Tags, lambda t: t.key = '{k}')[1].value" for k in tag_keys) + ", NULL)"
    key = (f"CASE WHEN lower(ProviderName) LIKE '%google%' THEN lower({col('AvailabilityZone')}) || '/' || "
           f"lower({col('ResourceName')}) ELSE lower(ResourceId) END")
    return f"""
        SELECT {_utc_hour('ChargePeriodStart')} AS hour_start, {key} AS resource_id,
               CAST({col('SubAccountId')} AS VARCHAR) AS account_id, {col('RegionId')} AS region,
               {tag} AS cluster_tag, sum(TRY_CAST({_FOCUS_BASIS[basis]} AS DOUBLE)) AS billed
        FROM bill WHERE ChargeCategory = 'Usage' AND ServiceCategory = 'Compute' AND ResourceId IS NOT NULL
        GROUP BY ALL"""


def bill_lines(store: ObjectStore, keys: list[str], *, fmt: str, basis: str, tag_keys: tuple[str, ...],
               between: tuple[dt.datetime, dt.datetime] | None = None) -> pl.DataFrame:
    """Sum each bill file's money per (hour, resource, account, region, cluster tag) with DuckDB SQL.

    ``between`` (start, end): decode only the Parquet row groups and rows of those hours (a day's check of a
    month's delivery reads the day, not the month); CSV files are read whole.
    """
    import duckdb
    import pyarrow as pa

    parts = []
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        for key in keys:
            column = "ChargePeriodStart" if fmt == "focus" else "line_item_usage_start_date"
            bill = _arrow(store, key, (column, *between) if between is not None else None, fmt)
            con.register("bill", bill)
            columns = set(bill.column_names)
            if fmt == "focus":
                tags = bill.schema.field("Tags").type if "Tags" in columns else None
                kind = ("string" if tags is not None and pa.types.is_string(tags) else
                        "map" if tags is not None and pa.types.is_map(tags) else "list")
                sql = _focus_sql(columns, basis, tag_keys, kind)
            else:
                sql = _cur_sql(columns, basis, tag_keys)
            parts.append(pl.DataFrame(con.sql(sql).arrow()))
            con.unregister("bill")
    finally:
        con.close()
        pa.default_memory_pool().release_unused()  # the decoded bill files: give the pages back before the next day
    frame = pl.concat(parts, how="diagonal_relaxed")
    return frame.with_columns(pl.col("hour_start").cast(pl.Datetime("us")).dt.replace_time_zone("UTC"))


def cluster_bill(lines: pl.DataFrame, node_hours: pl.DataFrame, *, cluster: str, account_id: str | None,
                 region: str | None, start: dt.datetime, end: dt.datetime) -> pl.DataFrame:
    """Return the cluster's bill per (hour, resource): its nodes, its tagged instances, its EKS ARN."""
    lines = lines.filter((pl.col("hour_start") >= start) & (pl.col("hour_start") < end))
    key = pl.col("resource_id").str.to_lowercase()
    # The cluster's instances of each hour: its nodes, and the instances tagged for it (their untagged lines, such
    # as data transfer, are billed on the same instance id and belong to it too).
    same_scope_tagged = lines.filter((pl.col("cluster_tag") == cluster) & pl.col("resource_id").str.starts_with("i-"))
    if account_id is not None:
        same_scope_tagged = same_scope_tagged.filter(pl.col("account_id").is_null() | (pl.col("account_id") == account_id))
    if region is not None:
        same_scope_tagged = same_scope_tagged.filter(pl.col("region").is_null() | (pl.col("region") == region))
    nodes = pl.concat([node_hours.select("hour_start", pl.col("instance_id").str.to_lowercase().alias("key")),
                       same_scope_tagged.select("hour_start", key.alias("key"))]).unique()
    arn = (f"^arn:aws[a-z-]*:eks:{region or '[a-z0-9-]+'}:{account_id or '[0-9]{12}'}:cluster/"
           + cluster.replace(".", r"\.") + "$")
    node_lines = lines.with_columns(key.alias("key")).join(nodes.with_columns(pl.lit(True).alias("node")),
                                                           on=["hour_start", "key"], how="left")
    # An Azure row billed on a whole scale set belongs to the cluster when one of its nodes is in that set.
    scale_sets = nodes.with_columns(pl.col("key").str.extract(r"^(.+/virtualmachinescalesets/[^/]+)/", 1).alias("set"))
    node_lines = node_lines.join(scale_sets.select("hour_start", pl.col("set").alias("key"),
                                                   pl.lit(True).alias("set_of_node")).drop_nulls().unique(),
                                 on=["hour_start", "key"], how="left")
    is_plane = pl.col("resource_id").str.contains(arn)
    mine = pl.col("node").fill_null(False) | pl.col("set_of_node").fill_null(False) | is_plane
    return (node_lines.filter(mine)
            .with_columns(pl.when(is_plane).then(pl.lit(CONTROL_PLANE)).otherwise(pl.col("key")).alias("instance_id"))
            .group_by("hour_start", "instance_id").agg(pl.col("billed").sum()))


def _close(got: pl.Expr, want: pl.Expr) -> pl.Expr:
    return (got - want).abs() <= TOLERANCE * pl.max_horizontal(want.abs(), got.abs(), pl.lit(1e-12))


def check_against_bill(rows: pl.DataFrame, bill: pl.DataFrame, *, cost_center: str, cluster: str,
                       per_node: bool, sources: list[str]) -> pl.DataFrame:
    """Compare the rows with the bill per cluster-hour (and per node-hour); raise naming the first difference.

    Returns the per-hour comparison (hour_start, allocated, billed_from_files, difference).
    """
    hourly = (rows.group_by("hour_start").agg(pl.col("total_cost").sum().alias("allocated"))
              .join(bill.group_by("hour_start").agg(pl.col("billed").sum().alias("billed_from_files")),
                    on="hour_start", how="full", coalesce=True).fill_null(0.0)
              .with_columns((pl.col("allocated") - pl.col("billed_from_files")).alias("difference")).sort("hour_start"))
    bad = hourly.filter(~_close(pl.col("allocated"), pl.col("billed_from_files")))
    where = f"cost center {cost_center}, cluster {cluster}"
    if bad.height:
        first = bad.row(0, named=True)
        raise ReconciliationError(
            f"{where}: hour {first['hour_start']:%Y-%m-%dT%H}Z allocates {first['allocated']!r} but the bill's files say "
            f"{first['billed_from_files']!r} (difference {first['difference']:+.10f}; {bad.height} hour(s) differ; "
            f"files: {', '.join(sources[:3])}{' …' if len(sources) > 3 else ''})")
    if per_node:
        by_node = (rows.filter(pl.col("instance_id").is_not_null())
                   .group_by("hour_start", pl.col("instance_id").str.to_lowercase())
                   .agg((pl.col("total_cost") - pl.col("overhead_cost").fill_null(0.0)).sum().alias("allocated"))
                   .join(bill.filter(pl.col("instance_id") != CONTROL_PLANE), on=["hour_start", "instance_id"],
                         how="full", coalesce=True).fill_null(0.0))
        bad = by_node.filter(~_close(pl.col("allocated"), pl.col("billed"))).sort("hour_start", "instance_id")
        if bad.height:
            first = bad.row(0, named=True)
            raise ReconciliationError(
                f"{where}: node-hour {first['hour_start']:%Y-%m-%dT%H}Z instance {first['instance_id']} allocates "
                f"{first['allocated']!r} but its bill for the hour is {first['billed']!r} ({bad.height} node-hour(s) "
                "differ)")
    log.info("%s: %d hour(s) match the bill's files to %g relative%s", where, hourly.height, TOLERANCE,
             " (and every node-hour)" if per_node else "")
    return hourly
