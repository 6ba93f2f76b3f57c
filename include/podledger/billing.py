"""AWS CUR 2.0 (Data Exports) reading: node-hour prices, control-plane cost, cluster-tagged instances.

Column names and line-item-type sets are the constants below (reference/data-sources.md §1).
"""

from __future__ import annotations

import datetime as dt
import logging

import polars as pl

from podledger.deliveries import (
    SOURCE_FILE,
    Delivery,
    check_no_repeated_rows,
    check_one_currency,
    check_unique_line_items,
    data_exports_delivery,
    legacy_delivery,
    read_bill_file,
)
from podledger.exceptions import BillingDataError
from podledger.storage import ObjectStore

log = logging.getLogger(__name__)

# --- CUR 2.0 column names ---
USAGE_START = "line_item_usage_start_date"
LINE_ITEM_TYPE = "line_item_line_item_type"
PRODUCT_CODE = "line_item_product_code"
USAGE_TYPE = "line_item_usage_type"
OPERATION = "line_item_operation"
RESOURCE_ID = "line_item_resource_id"
CURRENCY = "line_item_currency_code"
UNBLENDED = "line_item_unblended_cost"
NET_UNBLENDED = "line_item_net_unblended_cost"
PUBLIC_ON_DEMAND = "pricing_public_on_demand_cost"
SP_EFFECTIVE = "savings_plan_savings_plan_effective_cost"
SP_NET_EFFECTIVE = "savings_plan_net_savings_plan_effective_cost"
RI_EFFECTIVE = "reservation_effective_cost"
RI_NET_EFFECTIVE = "reservation_net_effective_cost"
SERVICE_CODE = "product_servicecode"
INSTANCE_TYPE = "product_instance_type"
DESCRIPTION = "line_item_line_item_description"
RESOURCE_TAGS = "resource_tags"
REQUIRED_COLUMNS = (USAGE_START, LINE_ITEM_TYPE, PRODUCT_CODE, USAGE_TYPE, OPERATION, RESOURCE_ID, CURRENCY, UNBLENDED,
                    PUBLIC_ON_DEMAND)

# --- line-item types ---
USAGE = "Usage"
DISCOUNTED_USAGE = "DiscountedUsage"
SP_COVERED = "SavingsPlanCoveredUsage"
SP_NEGATION = "SavingsPlanNegation"
INSTANCE_USAGE_TYPES = (USAGE, DISCOUNTED_USAGE, SP_COVERED)
# Instance-hour usage types, after an optional region prefix such as "USW2-" (us-east-1 box usage has none).
INSTANCE_USAGE_PATTERN = r"^([A-Z]{2,4}\d?-)?(BoxUsage|SpotUsage|DedicatedUsage|HostBoxUsage)"
EKS_CONTROL_PLANE_PATTERN = r"AmazonEKS-Hours:perCluster$"
DATA_TRANSFER_SERVICE = "AWSDataTransfer"

COST_BASES = ("amortized", "net_amortized", "unblended", "public_on_demand")


def _f(name: str) -> pl.Expr:
    return pl.col(name).cast(pl.Float64).fill_null(0.0)


def _net(net: str, plain: str) -> pl.Expr:
    return pl.coalesce(pl.col(net).cast(pl.Float64), pl.col(plain).cast(pl.Float64)).fill_null(0.0)


def cost_expr(basis: str) -> pl.Expr:
    """Return the per-row cost of an instance usage row under ``basis`` (SP negation rows included)."""
    kind = pl.col(LINE_ITEM_TYPE)
    if basis == "amortized":
        return (pl.when(kind == SP_COVERED).then(_f(SP_EFFECTIVE))
                .when(kind == DISCOUNTED_USAGE).then(_f(RI_EFFECTIVE))
                .when(kind == SP_NEGATION).then(0.0)
                .otherwise(_f(UNBLENDED)))
    if basis == "net_amortized":
        return (pl.when(kind == SP_COVERED).then(_net(SP_NET_EFFECTIVE, SP_EFFECTIVE))
                .when(kind == DISCOUNTED_USAGE).then(_net(RI_NET_EFFECTIVE, RI_EFFECTIVE))
                .when(kind == SP_NEGATION).then(0.0)
                .otherwise(_net(NET_UNBLENDED, UNBLENDED)))
    if basis == "unblended":
        # The negation cancels SP-covered usage: under unblended cost the SP fee carries that money.
        return _f(UNBLENDED)
    if basis == "public_on_demand":
        return pl.when(kind == SP_NEGATION).then(0.0).otherwise(_f(PUBLIC_ON_DEMAND))
    raise BillingDataError(f"unknown cost basis {basis!r}; choose one of {COST_BASES}")


def entries_of_maps(frame: pl.DataFrame) -> pl.DataFrame:
    """Turn Map columns (polars >= 2 reads Parquet maps as Map) into List(Struct{key, value}) entries."""
    maps = [name for name, dtype in frame.schema.items() if isinstance(dtype, pl.Map)]
    return frame.with_columns(pl.col(name).map.entries() for name in maps) if maps else frame


def _tag(tags: str, key: str) -> pl.Expr:
    return (pl.col(tags).list.eval(pl.element().filter(pl.element().struct.field("key") == key)
                                   .struct.field("value")).list.first())


def billing_periods(start: dt.datetime, end: dt.datetime) -> list[str]:
    """Return the BILLING_PERIOD labels (YYYY-MM) overlapping [start, end)."""
    labels, cursor = [], start.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    while cursor < end:
        labels.append(f"{cursor:%Y-%m}")
        cursor = (cursor + dt.timedelta(days=32)).replace(day=1)
    return labels


LINE_ITEM_IDENTITY = ("identity_line_item_id", "identity_time_interval")
MONEY_COLUMNS = (UNBLENDED, NET_UNBLENDED, PUBLIC_ON_DEMAND, SP_EFFECTIVE, SP_NET_EFFECTIVE, RI_EFFECTIVE,
                 RI_NET_EFFECTIVE)


def typed_cur(frame: pl.DataFrame) -> pl.DataFrame:
    """Check a CUR file's money columns are numbers and its usage start a timestamp; raise naming file and column."""
    source = frame[SOURCE_FILE][0] if frame.height else "a CUR file"
    for column in MONEY_COLUMNS:
        if column in frame.columns and not frame.schema[column].is_numeric() and frame.schema[column] != pl.Null:
            cast = frame[column].cast(pl.Float64, strict=False)
            bad = frame.filter(frame[column].is_not_null() & cast.is_null())
            if bad.height:
                raise BillingDataError(f"{source}: column {column} holds {bad.height} value(s) that are not numbers, "
                                       f"first {str(bad[column][0])[:60]!r}: the file is damaged; ask for a re-delivery")
            frame = frame.with_columns(cast.alias(column))
    if USAGE_START in frame.columns and not isinstance(frame.schema[USAGE_START], pl.Datetime):
        raise BillingDataError(f"{source}: column {USAGE_START} is {frame.schema[USAGE_START]}, not a timestamp: the "
                               "file is damaged or not a CUR 2.0 export")
    return frame


def _read_period(store: ObjectStore, delivery: Delivery,
                 between: tuple[str, dt.datetime, dt.datetime] | None = None) -> list[pl.DataFrame]:
    """Read every file of a delivery once (each tagged with its URL in ``__bill_file``); ``between``: only the rows
    of [start, end) of that timestamp column where the format allows skipping the others."""
    return [entries_of_maps(read_bill_file(store, key, between=between)) for key in delivery.keys]


def delivery_keys(store: ObjectStore, export_prefix: str, fmt: str, start: dt.datetime, end: dt.datetime) -> list[str]:
    """The keys of every file of the current deliveries of the billing periods overlapping [start, end)."""
    keys = []
    for period in billing_periods(start, end):
        if fmt == "cur_legacy":
            partition = f"year={period[:4]}/month={int(period[5:])}"
            keys += legacy_delivery(store, f"{export_prefix.strip('/')}/{partition}", period).keys
        else:
            keys += data_exports_delivery(store, export_prefix, period, kind="FOCUS" if fmt == "focus" else "CUR 2.0",
                                          manifest_required=fmt != "focus").keys
    return keys


def read_focus(store: ObjectStore, export_prefix: str, start: dt.datetime, end: dt.datetime) -> pl.DataFrame:
    """Read the FOCUS rows of [start, end) from the ``<prefix>/data/BILLING_PERIOD=…`` layout, as delivered.

    Through the period's manifest where the export has one (AWS Data Exports), else every file once;
    Parquet, CSV or gzipped CSV. The same charge in two files, or two currencies in one period, is an error.
    """
    from podledger.focus import CHARGE_PERIOD_START, CURRENCY, check_columns, normalise_focus

    frames = []
    for period in billing_periods(start, end):
        delivery = data_exports_delivery(store, export_prefix, period, kind="FOCUS", manifest_required=False)
        for frame in _read_period(store, delivery):
            source = frame[SOURCE_FILE][0] if frame.height else period
            check_columns(frame, source)
            frames.append(normalise_focus(frame, source))
    frame = pl.concat(frames, how="diagonal_relaxed")
    check_no_repeated_rows(frame, "FOCUS export")
    begin = pl.col(CHARGE_PERIOD_START)
    billing_period = (pl.col("BillingPeriodStart").cast(pl.String).str.slice(0, 7)
                      if "BillingPeriodStart" in frame.columns else begin.dt.strftime("%Y-%m"))
    check_one_currency(frame, CURRENCY, billing_period, "FOCUS export")
    return frame.filter((begin >= start) & (begin < end))


def legacy_to_cur2(frame: pl.DataFrame) -> pl.DataFrame:
    """Reshape a legacy CUR (Athena Parquet) frame into the CUR 2.0 columns podledger reads.

    Legacy CUR has one ``resource_tags_<source>_<key>`` column per activated tag (the set changes month to
    month) and ``product_region`` instead of ``product_region_code``; CUR 2.0 has a ``resource_tags`` map.
    """
    tag_columns = [c for c in frame.columns if c.startswith("resource_tags_")]
    entries = pl.concat_list([
        pl.when(pl.col(c).fill_null("") != "").then(
            pl.struct(pl.lit(c.removeprefix("resource_tags_")).alias("key"), pl.col(c).cast(pl.String).alias("value")))
        for c in tag_columns]).list.drop_nulls() if tag_columns else pl.lit(None)
    frame = frame.with_columns(entries.alias(RESOURCE_TAGS)).drop(tag_columns)
    if "product_region_code" not in frame.columns and "product_region" in frame.columns:
        frame = frame.rename({"product_region": "product_region_code"})
    return frame


def legacy_partitions(start: dt.datetime, end: dt.datetime) -> list[str]:
    """Return the Athena partitions ``year=YYYY/month=M`` (month not zero-padded) overlapping [start, end)."""
    return [f"year={p[:4]}/month={int(p[5:])}" for p in billing_periods(start, end)]


def read_legacy_cur(store: ObjectStore, report_prefix: str, start: dt.datetime, end: dt.datetime) -> pl.DataFrame:
    """Read a legacy CUR delivered for Athena (``<prefix>/year=YYYY/month=M/*.parquet``) as CUR 2.0 rows."""
    frames = []
    for period, partition in zip(billing_periods(start, end), legacy_partitions(start, end), strict=True):
        delivery = legacy_delivery(store, f"{report_prefix.strip('/')}/{partition}", period)
        frames += [legacy_to_cur2(f) for f in _read_period(store, delivery)]
    frame = pl.concat(frames, how="diagonal_relaxed")
    check_unique_line_items(frame, LINE_ITEM_IDENTITY, "legacy CUR")
    return _finish_cur(frame, start, end, f"{store.scheme}://{store.bucket}/{report_prefix}")


def read_cur(store: ObjectStore, export_prefix: str, start: dt.datetime, end: dt.datetime) -> pl.DataFrame:
    """Read the CUR 2.0 rows of [start, end) from a Data Exports delivery: the files its manifest lists, once each."""
    frames = []
    for period in billing_periods(start, end):
        delivery = data_exports_delivery(store, export_prefix, period, kind="CUR 2.0", manifest_required=True)
        for frame in _read_period(store, delivery, ("line_item_usage_start_date", start, end)):
            missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
            if missing:
                raise BillingDataError(f"{frame[SOURCE_FILE][0]}: CUR 2.0 columns missing: {missing}; enable "
                                       "INCLUDE_RESOURCES and export the standard CUR 2.0 columns")
            frames.append(typed_cur(frame))
    frame = pl.concat(frames, how="diagonal_relaxed")
    check_unique_line_items(frame, LINE_ITEM_IDENTITY, "CUR 2.0")
    return _finish_cur(frame, start, end, f"{store.scheme}://{store.bucket}/{export_prefix}")


def _finish_cur(frame: pl.DataFrame, start: dt.datetime, end: dt.datetime, source: str) -> pl.DataFrame:
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise BillingDataError(f"{source}: CUR columns missing: {missing}; enable INCLUDE_RESOURCES and export the "
                               "standard CUR columns")
    for column in (RESOURCE_TAGS, SP_EFFECTIVE, SP_NET_EFFECTIVE, RI_EFFECTIVE, RI_NET_EFFECTIVE, NET_UNBLENDED,
                   SERVICE_CODE, INSTANCE_TYPE, DESCRIPTION):
        if column not in frame.columns:
            frame = frame.with_columns(pl.lit(None).alias(column))
    hour = pl.col(USAGE_START).dt.replace_time_zone(None).dt.truncate("1h").dt.replace_time_zone("UTC")
    naive_start, naive_end = start.replace(tzinfo=None), end.replace(tzinfo=None)
    return (frame.with_columns(hour.alias("hour_start"))
            .filter(pl.col("hour_start").dt.replace_time_zone(None).is_between(naive_start, naive_end, closed="left")))


def instance_hour_costs(cur: pl.DataFrame, basis: str, cluster_tag_keys: tuple[str, ...]) -> pl.DataFrame:
    """Return one row per (instance, hour): cost under ``basis``, currency, instance type, cluster tag."""
    is_instance = (
        (pl.col(PRODUCT_CODE) == "AmazonEC2")
        & (pl.col(SERVICE_CODE).fill_null("") != DATA_TRANSFER_SERVICE)
        & pl.col(OPERATION).fill_null("").str.starts_with("RunInstances")
        & pl.col(USAGE_TYPE).fill_null("").str.contains(INSTANCE_USAGE_PATTERN)
        & pl.col(LINE_ITEM_TYPE).is_in([*INSTANCE_USAGE_TYPES, SP_NEGATION])
        & (pl.col(RESOURCE_ID).fill_null("") != "")
    )
    # Spot rows leave product_instance_type empty: the type is the description's first word.
    itype = pl.when(pl.col(INSTANCE_TYPE).fill_null("") != "").then(pl.col(INSTANCE_TYPE)).otherwise(
        pl.col(DESCRIPTION).fill_null("").str.split(" ").list.first())
    tag_exprs = [_tag(RESOURCE_TAGS, key) for key in cluster_tag_keys]
    cluster_tag = pl.coalesce(tag_exprs) if tag_exprs else pl.lit(None, pl.String)
    return (cur.lazy().filter(is_instance)
            .with_columns(cost_expr(basis).alias("cost"), cost_expr("public_on_demand").alias("public_cost"),
                          cost_expr("net_amortized" if basis != "unblended" else "unblended").alias("net_cost"),
                          itype.alias("instance_type"), cluster_tag.alias("cluster_tag"))
            .group_by("hour_start", pl.col(RESOURCE_ID).alias("instance_id"))
            .agg(pl.col("cost").sum(), pl.col("public_cost").sum(), pl.col("net_cost").sum(),
                 pl.col(CURRENCY).first().alias("currency"),
                 pl.col("line_item_usage_account_id").first().alias("account_id") if "line_item_usage_account_id" in cur.columns
                 else pl.lit(None, pl.String).alias("account_id"),
                 pl.col("product_region_code").first().alias("region") if "product_region_code" in cur.columns
                 else pl.lit(None, pl.String).alias("region"),
                 pl.col("instance_type").filter(pl.col(LINE_ITEM_TYPE) != SP_NEGATION).first(),
                 pl.col("cluster_tag").drop_nulls().first())
            .sort("hour_start", "instance_id").collect())


def data_transfer_costs(cur: pl.DataFrame, basis: str) -> pl.DataFrame:
    """Return data-transfer cost per (instance, hour) for rows tied to an EC2 instance.

    Transfer rows can sit under AmazonEC2 with servicecode AWSDataTransfer (reference §1.5): check both.
    """
    is_transfer = ((pl.col(SERVICE_CODE).fill_null("") == DATA_TRANSFER_SERVICE)
                   | pl.col(USAGE_TYPE).fill_null("").str.contains("DataTransfer|DataXfer"))
    return (cur.lazy()
            .filter(is_transfer & pl.col(RESOURCE_ID).fill_null("").str.starts_with("i-")
                    & ~pl.col(LINE_ITEM_TYPE).is_in([SP_NEGATION]))
            .with_columns(cost_expr(basis).alias("cost"))
            .group_by("hour_start", pl.col(RESOURCE_ID).alias("instance_id"))
            .agg(pl.col("cost").sum())
            .collect())


EKS_CLUSTER_ARN = r"^arn:aws[a-z-]*:eks:([a-z0-9-]+):([0-9]{12}):cluster/([^/]+)$"


def control_plane_costs(cur: pl.DataFrame, basis: str) -> pl.DataFrame:
    """Return EKS control-plane cost per (cluster, region, account, hour), all three taken from the cluster's ARN."""
    arn = pl.col(RESOURCE_ID).fill_null("")
    return (cur.lazy()
            .filter((pl.col(PRODUCT_CODE) == "AmazonEKS")
                    & pl.col(USAGE_TYPE).fill_null("").str.contains(EKS_CONTROL_PLANE_PATTERN))
            .with_columns(cost_expr(basis).alias("cost"),
                          pl.coalesce(arn.str.extract(EKS_CLUSTER_ARN, 3),
                                      arn.str.extract(r":cluster/([^/]+)$")).alias("cluster"),
                          arn.str.extract(EKS_CLUSTER_ARN, 1).alias("region"),
                          arn.str.extract(EKS_CLUSTER_ARN, 2).alias("account_id"))
            .group_by("hour_start", "cluster", "region", "account_id")
            .agg(pl.col("cost").sum(), pl.col(CURRENCY).first().alias("currency"))
            .collect())


def region_of_zone(zone: str | None) -> str | None:
    """``us-east-1a`` -> ``us-east-1`` (an EC2 availability zone's region); None when it is not one."""
    import re

    match = re.match(r"^([a-z]{2}(?:-[a-z]+)+-[0-9]+)[a-z]$", zone or "")
    return match.group(1) if match else None


def cluster_identity(instance_costs: pl.DataFrame, node_instances: pl.DataFrame, account_id: str | None,
                     region: str | None) -> tuple[str | None, str | None]:
    """Return the cluster's (account, region): the config's, else the bill's answer for the cluster's own nodes.

    Raises when the cluster's nodes are billed to several accounts or regions (the identity is then ambiguous:
    set ``account_id``/``region`` on the cluster).
    """
    mine = instance_costs.join(node_instances.select("hour_start", "instance_id").unique(),
                               on=["hour_start", "instance_id"], how="semi")
    found: dict[str, str | None] = {}
    for name, configured in (("account_id", account_id), ("region", region)):
        values = sorted(v for v in mine[name].drop_nulls().unique().to_list() if v) if name in mine.columns else []
        if configured is not None:
            found[name] = configured
        elif len(values) > 1:
            raise BillingDataError(f"the cluster's nodes are billed in several {name}s {values}: set {name} on the "
                                   "cluster in the cost-center config so its control plane and tagged instances "
                                   "can be told apart from other clusters of the same name")
        else:
            found[name] = values[0] if values else None
    return found["account_id"], found["region"]


def scope_to_cluster(instance_costs: pl.DataFrame, control_plane: pl.DataFrame, cluster: str, account_id: str | None,
                     region: str | None) -> tuple[pl.DataFrame, pl.DataFrame, list[str]]:
    """Keep only the control plane and cluster tags of (account, region, cluster); name the same-name others.

    A payer's bill may hold another linked account's (or region's) cluster of the same name: its control plane
    and its cluster-tagged instances are that cluster's, never this one's.
    """
    def other(frame: pl.DataFrame) -> pl.Expr:
        expr = pl.lit(False)
        if account_id is not None and "account_id" in frame.columns:
            expr = expr | (pl.col("account_id").is_not_null() & (pl.col("account_id") != account_id))
        if region is not None and "region" in frame.columns:
            expr = expr | (pl.col("region").is_not_null() & (pl.col("region") != region))
        return expr

    same_name_plane = control_plane.filter((pl.col("cluster") == cluster) & other(control_plane))
    same_name_tagged = instance_costs.filter((pl.col("cluster_tag") == cluster) & other(instance_costs))
    notes = sorted({f"account {a or '?'} region {r or '?'}" for a, r in pl.concat([
        same_name_plane.select("account_id", "region"), same_name_tagged.select("account_id", "region")]).unique().iter_rows()})
    warnings = [f"cluster {cluster}: a cluster of the same name in {n} appears in the bill (control plane or "
                f"cluster-tagged instances); not charged to {cluster} (account {account_id}, region {region})"
                for n in notes]
    instance_costs = instance_costs.with_columns(
        pl.when(other(instance_costs)).then(None).otherwise(pl.col("cluster_tag")).alias("cluster_tag"))
    return instance_costs, control_plane.filter(~((pl.col("cluster") == cluster) & other(control_plane))), warnings
