"""Cost reports from the warehouse without SQL: by namespace, controller, pod, node, instance type or label, per step."""

from __future__ import annotations

import polars as pl

from podledger.exceptions import PodledgerError

STEPS = {"hour": "1h", "day": "1d", "week": "1w", "month": "1mo"}
MONEY = ("cpu_cost", "memory_cost", "gpu_cost", "network_cost", "unused_cost", "overhead_cost", "total_cost")
GROUPS = ("namespace", "controller", "pod", "node", "instance_type")


def group_expr(by: str) -> pl.Expr:
    """The grouping of ``--by``: a column, ``controller`` (kind/name), ``pod`` (namespace/pod) or ``label:<key>``."""
    if by == "controller":
        return pl.concat_str(pl.col("controller_kind"), pl.lit("/"), pl.col("controller_name"))
    if by == "pod":
        return pl.concat_str(pl.col("namespace"), pl.lit("/"), pl.col("pod"))
    if by in ("namespace", "node", "instance_type"):
        return pl.col(by)
    if by.startswith("label:") and len(by) > len("label:"):
        path = "$['" + by.removeprefix("label:").replace("'", "\\'") + "']"
        # A pod's label, else its namespace's; sentinel rows (__idle__ …) keep their owner's name.
        return (pl.when(pl.col("namespace").str.starts_with("__")).then(pl.col("namespace"))
                .otherwise(pl.coalesce(pl.col("pod_labels").str.json_path_match(path),
                                       pl.col("namespace_labels").str.json_path_match(path), pl.lit("__unlabelled__"))))
    raise PodledgerError(f"--by {by!r}: choose one of {', '.join(GROUPS)} or label:<key>")


def cost_report(rows: pl.DataFrame, *, by: str = "namespace", step: str | None = None) -> pl.DataFrame:
    """Aggregate allocation rows: money by resource, usage, cost-weighted efficiency; one row per group (and step)."""
    if step is not None and step not in STEPS:
        raise PodledgerError(f"--step {step!r}: choose one of {', '.join(STEPS)}")
    keys = [group_expr(by).alias(by)]
    if step:
        keys.insert(0, pl.col("hour_start").dt.truncate(STEPS[step]).alias(step))
    weight = pl.col("cpu_cost") + pl.col("memory_cost")
    report = rows.group_by(keys).agg(
        *(pl.col(c).fill_null(0.0).sum() for c in MONEY),
        pl.col("cpu_request_core_hours").sum(), pl.col("cpu_usage_core_hours").sum(),
        pl.col("memory_request_gib_hours").sum(), pl.col("memory_usage_gib_hours").sum(),
        pl.when(weight.sum() > 0).then((pl.col("efficiency").fill_null(0.0) * weight).sum() / weight.sum())
        .alias("efficiency"),
        pl.col("uid").drop_nulls().n_unique().alias("pods"),
        pl.col("currency").drop_nulls().unique().sort().str.join(",").alias("currency"),
    )
    order = [step] if step else []
    return report.sort([*order, "total_cost"], descending=[False] * len(order) + [True])
