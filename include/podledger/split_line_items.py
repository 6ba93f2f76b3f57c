"""The allocation rows in the AWS Split Cost Allocation Data shape, so existing CUR queries work unchanged.

Two rows per pod-hour (vCPU and memory), usage types ``<region>-EKS-EC2-vCPU-Hours`` / ``-GB-Hours``,
operation ``EKSPod-EC2``, resource id ``arn:aws:eks:<region>:<account>:pod/<cluster>/<ns>/<pod>/<uid>``
and ``split_line_item_*`` columns (reference/allocation.md §1.4). Memory is in GiB-hours, as allocated.
"""

from __future__ import annotations

import polars as pl

# AWS usage-type region prefixes (us-east-1 pod split rows use USE1 like most us-east-1 types).
REGION_PREFIXES = {
    "us-east-1": "USE1", "us-east-2": "USE2", "us-west-1": "USW1", "us-west-2": "USW2", "ca-central-1": "CAN1",
    "eu-west-1": "EU", "eu-west-2": "EUW2", "eu-west-3": "EUW3", "eu-central-1": "EUC1", "eu-north-1": "EUN1",
    "eu-south-1": "EUS1", "ap-northeast-1": "APN1", "ap-northeast-2": "APN2", "ap-southeast-1": "APS1",
    "ap-southeast-2": "APS2", "ap-south-1": "APS3", "sa-east-1": "SAE1",
}
SENTINEL_PREFIX = "__"


def split_line_items(rows: pl.DataFrame, *, region: str, account_id: str) -> pl.DataFrame:
    """Return two SCAD-shaped line items (vCPU, memory) per pod row of ``rows``."""
    prefix = REGION_PREFIXES.get(region, region.upper().replace("-", ""))
    # The resource id once per pod row: the vCPU and memory items share its text (a view of the same bytes).
    arn = pl.format(f"arn:aws:eks:{region}:{account_id}:pod/{{}}/{{}}/{{}}/{{}}",
                    pl.col("cluster"), pl.col("namespace"), pl.col("pod"), pl.col("uid"))
    pods = rows.filter(~pl.col("namespace").str.starts_with(SENTINEL_PREFIX)).with_columns(arn.alias("_arn"))
    arn = pl.col("_arn")
    common = [
        pl.col("hour_start").alias("line_item_usage_start_date"),
        pl.col("hour_start").dt.offset_by("1h").alias("line_item_usage_end_date"),
        pl.lit("EKSPod-EC2").alias("line_item_operation"),
        arn.alias("line_item_resource_id"),
        pl.col("instance_id").alias("split_line_item_parent_resource_id"),
        pl.col("currency").alias("line_item_currency_code"),
        pl.col("cost_center"), pl.col("cluster"), pl.col("namespace"), pl.col("pod"), pl.col("node"),
    ]

    def part(kind: str, unit: str, request: str, usage: str, allocated: str, ratio: str, cost: str, unused: str) -> pl.DataFrame:
        split, unused_cost = pl.col(cost), pl.col(unused)
        return pods.select(
            *common,
            pl.lit(f"{prefix}-EKS-EC2-{unit}").alias("line_item_usage_type"),
            pl.col(request).alias("split_line_item_reserved_usage"),
            pl.col(usage).alias("split_line_item_actual_usage"),
            pl.col(allocated).alias("split_line_item_split_usage"),
            pl.col(ratio).alias("split_line_item_split_usage_ratio"),
            split.alias("split_line_item_split_cost"),
            unused_cost.alias("split_line_item_unused_cost"),
            (split * pl.col("net_factor")).alias("split_line_item_net_split_cost"),
            (unused_cost * pl.col("net_factor")).alias("split_line_item_net_unused_cost"),
            (split * pl.col("public_on_demand_factor")).alias("split_line_item_public_on_demand_split_cost"),
            (unused_cost * pl.col("public_on_demand_factor")).alias("split_line_item_public_on_demand_unused_cost"),
            pl.lit(kind).alias("resource"),
        )

    cpu = part("cpu", "vCPU-Hours", "cpu_request_core_hours", "cpu_usage_core_hours", "cpu_allocated_core_hours",
               "cpu_split_usage_ratio", "cpu_cost", "cpu_unused_cost")
    memory = part("memory", "GB-Hours", "memory_request_gib_hours", "memory_usage_gib_hours", "memory_allocated_gib_hours",
                  "memory_split_usage_ratio", "memory_cost", "memory_unused_cost")
    # No sort: the rows keep the allocation's order (vCPU rows, then memory rows), deterministic and cheap.
    return pl.concat([cpu, memory])
