"""FOCUS 1.0–1.2 billing (AWS, GCP, Azure exports): node-hour prices in the same shape as the CUR reader.

Node matching per provider (reference/data-sources.md §3), always case-insensitive, on a key that
:func:`node_key` derives from the node's ``provider_id`` the same way:
- AWS: ``ResourceId`` is the bare instance id (``i-…``), the last segment of ``aws:///<zone>/i-…``;
- GCP: ``ResourceName`` is the instance name and ``AvailabilityZone`` its zone: ``<zone>/<name>`` from
  ``gce://<project>/<zone>/<name>`` (``ResourceId`` carries numeric ids the providerID lacks);
- Azure: ``ResourceId`` is the ARM id; a VM or VMSS instance matches its node's ``azure://`` path, and a
  row billed on a whole scale set is shared evenly by that scale set's nodes of the hour.
"""

from __future__ import annotations

import re

import polars as pl

from podledger.exceptions import BillingDataError

CHARGE_PERIOD_START = "ChargePeriodStart"
RESOURCE_ID = "ResourceId"
RESOURCE_NAME = "ResourceName"
ZONE = "AvailabilityZone"
PROVIDER = "ProviderName"
CHARGE_CATEGORY = "ChargeCategory"
SERVICE_CATEGORY = "ServiceCategory"
EFFECTIVE_COST = "EffectiveCost"
BILLED_COST = "BilledCost"
LIST_COST = "ListCost"
CURRENCY = "BillingCurrency"
REGION = "RegionId"
SUB_ACCOUNT = "SubAccountId"
REQUIRED_COLUMNS = (CHARGE_PERIOD_START, RESOURCE_ID, CHARGE_CATEGORY, SERVICE_CATEGORY, EFFECTIVE_COST, BILLED_COST,
                    LIST_COST, CURRENCY, PROVIDER)
BASIS_COLUMNS = {"amortized": EFFECTIVE_COST, "net_amortized": EFFECTIVE_COST, "unblended": BILLED_COST,
                 "public_on_demand": LIST_COST}
VMSS_RE = re.compile(r"^(?P<vmss>/subscriptions/.+/virtualmachinescalesets/[^/]+)(/virtualmachines/[^/]+)?$")


def node_key(provider_id: str | None) -> str | None:
    """Return the billing match key of a node's ``spec.providerID`` (see the module docstring)."""
    if not provider_id:
        return None
    value = provider_id.strip()
    lower = value.lower()
    if lower.startswith("aws://"):
        return lower.rsplit("/", 1)[-1]
    if lower.startswith("gce://"):
        parts = lower[len("gce://"):].split("/")
        return f"{parts[1]}/{parts[2]}" if len(parts) == 3 else None
    if lower.startswith("azure://"):
        return lower[len("azure://"):]
    return lower.rsplit("/", 1)[-1]


def node_key_expr(column: str = "provider_id") -> pl.Expr:
    """The polars twin of :func:`node_key`."""
    lower = pl.col(column).str.strip_chars().str.to_lowercase()
    gce = lower.str.extract(r"^gce://[^/]+/([^/]+/[^/]+)$")
    return (pl.when(lower.str.starts_with("gce://")).then(gce)
            .when(lower.str.starts_with("azure://")).then(lower.str.strip_prefix("azure://"))
            .otherwise(lower.str.split("/").list.last()))


def check_columns(frame: pl.DataFrame, source: str) -> None:
    """Raise naming the file and the missing FOCUS columns."""
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise BillingDataError(f"{source}: FOCUS columns missing: {missing}; export FOCUS 1.0 or later")


COST_COLUMNS = (EFFECTIVE_COST, BILLED_COST, LIST_COST, "ContractedCost")
TIME_COLUMNS = (CHARGE_PERIOD_START, "ChargePeriodEnd", "BillingPeriodStart", "BillingPeriodEnd")
TAGS = "Tags"


def _utc(column: str) -> pl.Expr:
    """FOCUS timestamps as exported: ``2024-09-18 22:00:00`` (UTC, no zone) or ISO 8601 with ``Z`` / ``+00:00``."""
    text = pl.col(column).str.strip_chars().str.replace(" ", "T").str.replace(r"(Z|[+-]00:?00)$", "")
    return text.str.to_datetime("%Y-%m-%dT%H:%M:%S%.f", time_zone="UTC", strict=False)


def normalise_focus(frame: pl.DataFrame, source: str) -> pl.DataFrame:
    """Give a FOCUS file (Parquet or CSV) podledger's types: UTC timestamps, Float64 costs, Tags as JSON or entries.

    A value that does not parse (a cost that is not a number, a date that is not a date, Tags that are not a JSON
    object) is an error naming the file, the column and the first bad value: it would change the money.
    """
    fixes = []
    for column in TIME_COLUMNS:
        if column not in frame.columns:
            continue
        dtype = frame.schema[column]
        if dtype == pl.String:
            fixes.append((column, _utc(column)))
        elif isinstance(dtype, pl.Datetime):
            fixes.append((column, pl.col(column).dt.replace_time_zone(None).dt.replace_time_zone("UTC")
                          if dtype.time_zone is None else pl.col(column).dt.convert_time_zone("UTC")))
    for column in COST_COLUMNS:
        if column in frame.columns:
            fixes.append((column, pl.col(column).cast(pl.Float64, strict=False)))
    converted = frame.with_columns(expr.alias(column) for column, expr in fixes)
    for column, _ in fixes:
        bad = frame.filter(pl.col(column).is_not_null() & converted[column].is_null())
        if bad.height:
            raise BillingDataError(f"{source}: column {column} has {bad.height} value(s) that are not "
                                   f"{'timestamps' if column in TIME_COLUMNS else 'numbers'}, first "
                                   f"{str(bad[column][0])[:80]!r}: the file is damaged or not FOCUS")
    if TAGS in converted.columns and converted.schema[TAGS] == pl.String:
        text = pl.col(TAGS).str.strip_chars()
        bad = converted.filter(text.is_not_null() & (text != "") & ~text.str.starts_with("{"))
        if bad.height:
            raise BillingDataError(f"{source}: column Tags has {bad.height} value(s) that are not JSON objects, first "
                                   f"{bad[TAGS][0][:80]!r}; FOCUS Tags are a JSON object or a map")
    return converted


def tag_value(keys: tuple[str, ...], dtype: pl.DataType | None) -> pl.Expr:
    """The first of ``keys`` found in a FOCUS ``Tags`` column: a JSON object string or (key, value) entries."""
    if not keys or dtype is None:
        return pl.lit(None, pl.String)
    if dtype == pl.String:
        return pl.coalesce([pl.col(TAGS).str.json_path_match("$['" + k.replace("'", "\\'") + "']") for k in keys])
    if isinstance(dtype, pl.List):
        return (pl.col(TAGS).list.eval(pl.element().filter(pl.element().struct.field("key").is_in(list(keys)))
                                       .struct.field("value")).list.first())
    raise BillingDataError(f"FOCUS Tags column of type {dtype}: expected a JSON object string or a map")


def focus_instance_costs(focus: pl.DataFrame, basis: str, node_keys: pl.DataFrame | None = None,
                         cluster_tag_keys: tuple[str, ...] = ()) -> pl.DataFrame:
    """Return one row per (node key, hour) with the cost of its compute usage, like ``instance_hour_costs``.

    ``node_keys`` (hour_start, instance_id) lets Azure scale-set-level rows be shared by the scale set's
    nodes of each hour; without it they stay keyed by the scale set.
    """
    if basis not in BASIS_COLUMNS:
        raise BillingDataError(f"unknown cost basis {basis!r}; choose one of {sorted(BASIS_COLUMNS)}")
    for column in (RESOURCE_NAME, ZONE, REGION, SUB_ACCOUNT):
        if column not in focus.columns:
            focus = focus.with_columns(pl.lit(None, pl.String).alias(column))
        else:
            focus = focus.with_columns(pl.col(column).cast(pl.String))
    provider = pl.col(PROVIDER).str.to_lowercase()
    key = (pl.when(provider.str.contains("google"))
           .then(pl.concat_str([pl.col(ZONE).str.to_lowercase(), pl.col(RESOURCE_NAME).str.to_lowercase()], separator="/"))
           .otherwise(pl.col(RESOURCE_ID).str.to_lowercase()))
    hour = pl.col(CHARGE_PERIOD_START).cast(pl.Datetime("us", "UTC")).dt.truncate("1h")
    tag = tag_value(cluster_tag_keys, focus.schema.get(TAGS))
    rows = (focus.lazy()
            .filter((pl.col(CHARGE_CATEGORY) == "Usage") & (pl.col(SERVICE_CATEGORY) == "Compute")
                    & pl.col(RESOURCE_ID).is_not_null())
            .with_columns(hour.alias("hour_start"), key.alias("instance_id"),
                          pl.col(BASIS_COLUMNS[basis]).cast(pl.Float64).alias("cost"),
                          pl.col(LIST_COST).cast(pl.Float64).alias("public_cost"),
                          pl.col(EFFECTIVE_COST).cast(pl.Float64).alias("net_cost"), tag.alias("cluster_tag"))
            .collect())
    if node_keys is not None and node_keys.height:
        rows = _share_scale_sets(rows, node_keys)
    return (rows.group_by("hour_start", "instance_id")
            .agg(pl.col("cost", "public_cost", "net_cost").sum(), pl.col(CURRENCY).first().alias("currency"),
                 pl.lit(None, pl.String).alias("instance_type"), pl.col("cluster_tag").drop_nulls().first(),
                 pl.col(SUB_ACCOUNT).first().alias("account_id"), pl.col(REGION).first().alias("region"))
            .sort("hour_start", "instance_id"))


def _share_scale_sets(rows: pl.DataFrame, node_keys: pl.DataFrame) -> pl.DataFrame:
    """Spread Azure rows billed on a whole scale set evenly over that scale set's nodes in the hour."""
    nodes = node_keys.select("hour_start", pl.col("instance_id").alias("node_key")).with_columns(
        pl.col("node_key").str.extract(VMSS_RE.pattern, 1).alias("vmss")).filter(pl.col("vmss").is_not_null())
    if not nodes.height:
        return rows
    counts = nodes.group_by("hour_start", "vmss").agg(pl.col("node_key"), pl.len().alias("n"))
    on_set = rows.join(counts, left_on=["hour_start", "instance_id"], right_on=["hour_start", "vmss"], how="inner")
    if not on_set.height:
        return rows
    shared = (on_set.explode("node_key")
              .with_columns(*(pl.col(c) / pl.col("n") for c in ("cost", "public_cost", "net_cost")),
                            pl.col("node_key").alias("instance_id"))
              .drop("node_key", "n"))
    rest = rows.join(counts.select("hour_start", pl.col("vmss").alias("instance_id")), on=["hour_start", "instance_id"],
                     how="anti")
    return pl.concat([rest, shared.select(rest.columns)])
