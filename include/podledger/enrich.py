"""Enrichment: read exported metrics and the bill for an hour range, allocate, reconcile.

The recipe for one cluster, one UTC day at a time (:func:`enrich_days`):
1. read the CUR rows of the day and price every instance-hour (and the EKS control plane);
2. meanwhile, in the background, read the exported metric files of the day's windows (their manifests must exist)
   and, for the independent check, the bill's own files;
3. allocate the day's hours in one pass (allocation.allocate_hours);
4. reconcile Σ rows with the billed cost of the cluster's resources, per hour; fail beyond 1e-9; and again against
   the bill's files, per cluster-hour and node-hour (bill_check).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import polars as pl

from podledger.allocation import allocate_hours, billed_cost, reconcile
from podledger.billing import (
    cluster_identity,
    control_plane_costs,
    data_transfer_costs,
    instance_hour_costs,
    read_cur,
    read_focus,
    read_legacy_cur,
    scope_to_cluster,
)
from podledger.catalog import CATALOG_BY_NAME, MAX_COLUMNS
from podledger.config import ClusterConfig, CostCenterConfig
from podledger.exceptions import BillingDataError, ExportIncompleteError, ReconciliationError
from podledger.focus import focus_instance_costs
from podledger.hours import stack_hours
from podledger.layout import plan_windows, to_utc
from podledger.split_line_items import split_line_items
from podledger.storage import ObjectStore
from podledger.usage import hours_without_pods, node_hours
from podledger.validate import Finding, check_billing
from podledger.windows import decode_stacked, decode_window, fetch_windows

log = logging.getLogger(__name__)
WINDOW_MARK = ("cluster", "window_start", "window_end")



@dataclass
class EnrichResult:
    """Allocation rows, the per-hour reconciliation and the billing findings of one cluster and hour range."""

    rows: pl.DataFrame
    reconciliation: pl.DataFrame
    findings: list[Finding]
    split_line_items: pl.DataFrame


def combine_windows(per_window: list[dict[str, pl.DataFrame]]) -> dict[str, pl.DataFrame]:
    """Merge the frames of the windows of one hour: seconds and bytes add up, info values take the max."""
    if len(per_window) == 1:
        return per_window[0]
    merged: dict[str, pl.DataFrame] = {}
    for name in per_window[0]:
        frames = [w[name] for w in per_window if name in w and w[name].height]
        if not frames:
            merged[name] = per_window[0][name]
            continue
        spec = CATALOG_BY_NAME.get(name)
        keys = list(spec.keys) if spec else []
        values = [c for c in frames[0].columns if c not in keys and c not in {"cluster", "window_start", "window_end", "labels"}]
        aggs = [pl.col(c).max() if c in MAX_COLUMNS else pl.col(c).sum() for c in values]
        if "labels" in frames[0].columns:
            aggs.append(pl.col("labels").last())
        merged[name] = pl.concat(frames, how="diagonal_relaxed").group_by(keys, maintain_order=True).agg(aggs)
    return merged


def day_plane(control_plane: pl.DataFrame, day: list[dt.datetime]) -> pl.DataFrame:
    """The control-plane rows of one day's hours."""
    return control_plane.filter(pl.col("hour_start").is_between(day[0], day[-1] + dt.timedelta(hours=1), closed="left"))


def hours_of(start: dt.datetime, end: dt.datetime) -> list[dt.datetime]:
    """Return the hour starts in [start, end)."""
    start, end = to_utc(start), to_utc(end)
    cursor = start.replace(minute=0, second=0, microsecond=0)
    hours = []
    while cursor < end:
        if cursor >= start:
            hours.append(cursor)
        cursor += dt.timedelta(hours=1)
    return hours


def day_ranges(start: dt.datetime, end: dt.datetime) -> list[tuple[dt.datetime, dt.datetime]]:
    """Split [start, end) at UTC midnights: the unit enrichment streams (and the DAG maps) over."""
    start, end = to_utc(start), to_utc(end)
    ranges, cursor = [], start
    while cursor < end:
        midnight = (cursor + dt.timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
        ranges.append((cursor, min(midnight, end)))
        cursor = midnight
    return ranges


def _read_day(store: ObjectStore, prefix: str, cluster: str, day: list[dt.datetime],
              time_frame_seconds: int) -> dict[str, pl.DataFrame]:
    """The exported frames of a day's hours, stacked (an ``hour_start`` column on every frame), without the file's
    mark (cluster, window: the same on every row, never read by allocation; a third of a day's frame memory)."""
    plans = [plan_windows(hour, hour + dt.timedelta(hours=1), time_frame_seconds) for hour in day]
    # Fetching is object-store latency: every file of the day's windows, many requests in flight, in one call.
    fetched = iter(fetch_windows(store, prefix, cluster, [window for windows in plans for window in windows]))
    per_hour = [[next(fetched) for _ in windows] for windows in plans]
    if all(len(windows) == 1 for windows in per_hour):  # hourly windows: each metric's files decoded in one scan
        return decode_stacked([(hour, windows[0]) for hour, windows in zip(day, per_hour, strict=True)],
                              drop=WINDOW_MARK)
    return stack_hours([(hour, {name: frame.drop(*WINDOW_MARK, strict=False) for name, frame in
                                combine_windows([decode_window(w) for w in windows]).items()})
                        for hour, windows in zip(day, per_hour, strict=True)])


def enrich_days(cost_center: CostCenterConfig, cluster: ClusterConfig, start: dt.datetime, end: dt.datetime, *,
                metrics_store: ObjectStore, billing_store: ObjectStore, check: bool = True) -> Iterator[EnrichResult]:
    """Enrich [start, end) one UTC day at a time: each day's metrics and bill rows are read, allocated, reconciled
    and checked against the bill's files before the next day is read (memory bounded by one day of one cluster)."""
    for day_start, day_end in day_ranges(start, end):
        yield _enrich_hours(cost_center, cluster, day_start, day_end, metrics_store=metrics_store,
                            billing_store=billing_store, check=check)


def enrich_cluster(cost_center: CostCenterConfig, cluster: ClusterConfig, start: dt.datetime, end: dt.datetime, *,
                   metrics_store: ObjectStore, billing_store: ObjectStore, check: bool = True) -> EnrichResult:
    """Allocate every hour of [start, end) for one cluster and reconcile it with the bill (all days in memory:
    for long ranges iterate :func:`enrich_days` and write each day as it comes)."""
    if not hours_of(start, end):
        raise ValueError(f"cluster {cluster.name}: empty hour range {start} .. {end}")
    days = list(enrich_days(cost_center, cluster, start, end, metrics_store=metrics_store,
                            billing_store=billing_store, check=check))
    return EnrichResult(pl.concat([d.rows for d in days]), pl.concat([d.reconciliation for d in days],
                                                                     how="diagonal_relaxed"),
                        [f for d in days for f in d.findings],
                        pl.concat([d.split_line_items for d in days], how="diagonal_relaxed"))


def _enrich_hours(cost_center: CostCenterConfig, cluster: ClusterConfig, start: dt.datetime, end: dt.datetime, *,
                  metrics_store: ObjectStore, billing_store: ObjectStore, check: bool = True) -> EnrichResult:
    """Allocate every hour of [start, end) (at most a day) for one cluster and reconcile it with the bill."""
    hours = hours_of(start, end)
    if not hours:
        raise ValueError(f"cluster {cluster.name}: empty hour range {start} .. {end}")
    # Beside the bill's rows (read first, as a missing bill is the likelier error): the day's exported metrics and,
    # for the independent check, the bill's files; neither needs the other.
    with ThreadPoolExecutor(max_workers=2) as background:
        # (in a list the reader empties, so the future does not keep the day's frames alive)
        metrics = background.submit(lambda: [_read_day(metrics_store, cost_center.storage.location.prefix,
                                                       cluster.name, hours, cost_center.time_frame_seconds)])
        bill_files = (background.submit(_bill_files, cost_center, billing_store, hours[0],
                                        hours[-1] + dt.timedelta(hours=1)) if check else None)
        return _allocate_hours(cost_center, cluster, hours, billing_store=billing_store, metrics=metrics,
                               bill_files=bill_files)


def _bill_files(cost_center: CostCenterConfig, billing_store: ObjectStore, start: dt.datetime,
                end: dt.datetime) -> tuple[list[str], pl.DataFrame]:
    """The delivery's files covering [start, end) and their money per (hour, resource), read from the files."""
    from podledger.bill_check import bill_lines
    from podledger.billing import delivery_keys

    billing = cost_center.billing
    keys = delivery_keys(billing_store, billing.location.prefix, billing.format, start, end)
    tag_keys = billing.focus_cluster_tag_keys if billing.format == "focus" else billing.cluster_tag_keys
    return keys, bill_lines(billing_store, keys, fmt=billing.format, basis=billing.cost_basis, tag_keys=tag_keys,
                            between=(start, end))


def _allocate_hours(cost_center: CostCenterConfig, cluster: ClusterConfig, hours: list[dt.datetime], *,
                    billing_store: ObjectStore, metrics: Future[list[dict[str, pl.DataFrame]]],
                    bill_files: Future[tuple[list[str], pl.DataFrame]] | None) -> EnrichResult:
    """:func:`_enrich_hours`' work on at most a day; ``metrics``: the day's frames being read; ``bill_files``: the
    bill's files being read for the independent check (None: not checked)."""
    billing_prefix = cost_center.billing.location.prefix
    basis = cost_center.billing.cost_basis
    utc = pl.Datetime("us", "UTC")
    # 1. the bill of the day, priced per node-hour (FOCUS scale-set rows are shared per day, below)
    billing_end = hours[-1] + dt.timedelta(hours=1)
    empty_plane = pl.DataFrame(schema={"hour_start": utc, "cluster": pl.String, "region": pl.String,
                                       "account_id": pl.String, "cost": pl.Float64, "currency": pl.String})
    if cost_center.billing.format == "focus":
        cur = read_focus(billing_store, billing_prefix, hours[0], billing_end)
        control_plane = empty_plane
        transfer = pl.DataFrame(schema={"hour_start": utc, "instance_id": pl.String, "cost": pl.Float64})
    else:
        reader = read_legacy_cur if cost_center.billing.format == "cur_legacy" else read_cur
        cur = reader(billing_store, billing_prefix, hours[0], billing_end)
        control_plane = control_plane_costs(cur, basis).with_columns(pl.col("hour_start").cast(utc))
        transfer = data_transfer_costs(cur, basis).with_columns(pl.col("hour_start").cast(utc))
    # 2. the day's exported metrics, its hours stacked: allocated in one vectorised pass
    frames = metrics.result().pop()
    for hour in hours_without_pods(frames)[:1]:
        raise ExportIncompleteError(
            f"cluster {cluster.name}, hour {hour:%Y-%m-%dT%H}Z: neither kube_pod_status_phase nor kube_pod_info "
            "was exported, so no pod is known to run and every cent would go to __idle__; scrape "
            "kube-state-metrics' pod collector and re-export the window with force")
    nodes = node_hours(frames, cost_center.allocation.capacity, cost_center.allocation.accelerators).select(
        pl.col("hour_start").cast(utc), "instance_id")
    if cost_center.billing.format == "focus":
        day_cur = cur.filter(pl.col("ChargePeriodStart").cast(utc).is_between(hours[0], billing_end, closed="left"))
        costs = focus_instance_costs(day_cur, basis, nodes, cost_center.billing.focus_cluster_tag_keys)
    else:
        costs = instance_hour_costs(cur.filter(pl.col("hour_start").cast(utc).is_between(hours[0], billing_end,
                                                                                        closed="left")),
                                    basis, cost_center.billing.cluster_tag_keys)
    costs = costs.with_columns(pl.col("hour_start").cast(utc))
    # The cluster is (account, region, name): another linked account's same-name cluster is never ours.
    account, region = cluster_identity(costs, nodes, cluster.account_id, cluster.region)
    identity = (account or cluster.account_id, region or cluster.region)
    instance_costs, control_plane, notes = scope_to_cluster(costs, day_plane(control_plane, hours), cluster.name,
                                                            account, region)
    all_rows = allocate_hours(frames, hours=hours, cost_center=cost_center.name, cluster=cluster.name,
                              instance_costs=instance_costs, control_plane=control_plane,
                              options=cost_center.allocation, cost_basis=basis, transfer_costs=transfer,
                              release_frames=True)
    log.info("cluster %s, %d hour(s) from %s: %d rows", cluster.name, len(hours), f"{hours[0]:%Y-%m-%dT%H}Z",
             all_rows.height)
    for note in sorted(notes):
        log.warning("%s", note)
    mine = instance_costs.filter(pl.col("instance_id").is_in(all_rows["instance_id"].drop_nulls().unique().implode()))
    region = str(mine["region"].drop_nulls().mode().first()) if mine["region"].drop_nulls().len() else "us-east-1"
    account = str(mine["account_id"].drop_nulls().mode().first()) if mine["account_id"].drop_nulls().len() else ""
    # The AWS-shaped line items are built while the rows are checked (they are only returned if every check holds).
    with ThreadPoolExecutor(max_workers=1) as side:
        items = side.submit(split_line_items, all_rows, region=region, account_id=account)
        report, findings = _check(cost_center, cluster, hours, all_rows, cur=cur, instance_costs=instance_costs,
                                  control_plane=control_plane, nodes=nodes, transfer=transfer, identity=identity,
                                  billing_store=billing_store, bill_files=bill_files)
        return EnrichResult(all_rows, report, findings, items.result())


def _check(cost_center: CostCenterConfig, cluster: ClusterConfig, hours: list[dt.datetime], all_rows: pl.DataFrame, *,
           cur: pl.DataFrame, instance_costs: pl.DataFrame, control_plane: pl.DataFrame, nodes: pl.DataFrame,
           transfer: pl.DataFrame, identity: tuple[str | None, str | None], billing_store: ObjectStore,
           bill_files: Future[tuple[list[str], pl.DataFrame]] | None) -> tuple[pl.DataFrame, list[Finding]]:
    """Check the bill, reconcile every hour of ``all_rows`` with it and (``bill_files``) against the bill's own
    files; return the per-hour report and the billing findings, or raise naming the first hour that is off."""
    billing_end = hours[-1] + dt.timedelta(hours=1)
    # 4. check the bill, reconcile every hour
    findings = check_billing(cur, instance_costs, nodes, cluster=cluster.name, source=cost_center.billing.uri)
    for finding in findings:
        (log.error if finding.severity == "error" else log.warning)("%s", finding)
    errors = [f for f in findings if f.severity == "error"]
    if errors:
        raise BillingDataError(f"cost center {cost_center.name}: {len(errors)} billing error(s); first: {errors[0]}")
    billed = billed_cost(instance_costs, control_plane, nodes, cluster.name, transfer)
    report = reconcile(all_rows, billed).with_columns(pl.lit(cluster.name).alias("cluster"))
    bad = report.filter(~pl.col("ok"))
    if bill_files is not None and bad.height:
        worst = bad.row(0, named=True)
        raise ReconciliationError(
            f"cost center {cost_center.name}, cluster {cluster.name}: {bad.height} hour(s) do not reconcile; first "
            f"{worst['hour_start']:%Y-%m-%dT%H}Z allocated {worst['allocated_cost']:.10f} vs billed {worst['billed_cost']:.10f}")
    # 5. independently: the same money straight from the bill's files, per cluster-hour and per node-hour
    if bill_files is not None:
        from podledger.bill_check import check_against_bill, cluster_bill

        fmt = cost_center.billing.format
        keys, lines = bill_files.result()
        bill = cluster_bill(lines, nodes, cluster=cluster.name, account_id=identity[0], region=identity[1],
                            start=hours[0], end=billing_end)
        options = cost_center.allocation
        per_node = fmt != "focus" and not (options.idle == "separate" and options.idle_by == "cluster")
        independent = check_against_bill(all_rows, bill, cost_center=cost_center.name, cluster=cluster.name,
                                         per_node=per_node, sources=[f"{billing_store.scheme}://{billing_store.bucket}/{k}"
                                                                     for k in keys])
        report = report.join(independent.select("hour_start", "billed_from_files"), on="hour_start", how="left")
    return report, findings
