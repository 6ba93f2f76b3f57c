"""The ``podledger`` command: run each stage for a cost center and a time range, without Airflow.

Connections come from the same ``AIRFLOW_CONN_<ID>`` environment variables Airflow reads, so a user
debugging one hour uses exactly the definitions their DAGs use.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from podledger.config import ClusterConfig, CostCenterConfig, load_config, load_cost_center
from podledger.connections import aws_storage_options, get_connection
from podledger.exceptions import PodledgerError
from podledger.layout import manifest_key, plan_windows, to_utc
from podledger.storage import FsspecStore, split_uri

if TYPE_CHECKING:
    import polars as pl

log = logging.getLogger("podledger")


def store_for(uri: str, aws_conn_id: str) -> FsspecStore:
    """Return an fsspec store for ``uri``; S3 credentials and endpoint come from the AWS connection."""
    scheme, bucket, _ = split_uri(uri)
    options = aws_storage_options(aws_conn_id) if scheme == "s3" else {}
    return FsspecStore(scheme, bucket, options)


def _clusters(cost_center: CostCenterConfig, names: list[str] | None, start: dt.datetime | None = None,
              end: dt.datetime | None = None) -> list[ClusterConfig]:
    """Return the clusters to work on: the named ones, the configured ones, or those discovered (centralized)."""
    if cost_center.discovery is not None and start is not None and end is not None:
        from podledger.discovery import discover_clusters
        from podledger.promclient import client_from_connection

        client = client_from_connection(get_connection(cost_center.discovery.prometheus_conn_id))
        found = list(cost_center.clusters) + discover_clusters(client, cost_center, start, end)
        return [c for c in found if not names or c.name in names]
    return [cost_center.cluster(n) for n in names] if names else list(cost_center.clusters)


def cmd_export(args: argparse.Namespace) -> int:
    from podledger.export import export_window
    from podledger.promclient import check_ready, client_from_connection

    cc = load_cost_center(args.cost_center, args.config)
    store = store_for(cc.storage.uri, cc.storage.aws_conn_id)
    for cluster in _clusters(cc, args.cluster, args.start, args.end):
        conn = get_connection(cluster.prometheus_conn_id)
        client = client_from_connection(conn, cc.query_timeout_seconds)
        if conn.extra.get("readiness_path", "/-/ready"):
            check_ready(client, conn.extra.get("readiness_path", "/-/ready"))
        for window in plan_windows(args.start, args.end, cc.time_frame_seconds):
            if not args.force and store.exists(manifest_key(cc.storage.location.prefix, cluster.name, window)):
                print(f"skipped {cluster.name} {window}: already complete (--force re-exports)")
                continue
            manifest = export_window(client, store, cc, cluster, window, adopt=args.adopt)
            print(f"exported {cluster.name} {window}: {len(manifest.metrics)} metrics, {manifest.rows} rows")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from podledger.history import import_history

    cc = load_cost_center(args.cost_center, args.config)
    store = store_for(cc.storage.uri, cc.storage.aws_conn_id)
    for cluster in _clusters(cc, args.cluster):
        windows = plan_windows(args.start, args.end, cc.time_frame_seconds)
        for item in import_history(store, cc, cluster, windows, adopt=args.adopt):
            print(f"imported {cluster.name} {item.manifest.window.start:%Y-%m-%dT%H:%M}Z: "
                  f"{len(item.manifest.metrics)} metrics, {item.manifest.rows} rows, {len(item.warnings)} warning(s)")
            for warning in item.warnings:
                print(f"  warning: {warning}")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from podledger.validate import validate_windows

    cc = load_cost_center(args.cost_center, args.config)
    store = store_for(cc.storage.uri, cc.storage.aws_conn_id)
    items = [(c.name, w) for c in _clusters(cc, args.cluster, args.start, args.end)
             for w in plan_windows(args.start, args.end, cc.time_frame_seconds)]
    peers = []
    for other in load_config(args.config).cost_centers:
        if other.name != cc.name:
            try:
                peers.append((other, store_for(other.storage.uri, other.storage.aws_conn_id)))
            except PodledgerError as exc:
                log.warning("cost center %s not checked for shared nodes: %s", other.name, exc)
    findings = validate_windows(store, cc, items, peers)
    for finding in findings:
        print(finding)
    print(f"validated {len(items)} cluster-windows: 0 errors, {len(findings)} warnings")
    return 0


def cmd_allocate(args: argparse.Namespace) -> int:
    import polars as pl
    import pyarrow.parquet as pq

    from podledger.enrich import enrich_days, hours_of
    from podledger.outputs import OUTPUTS, companion, output_frames

    cc = load_cost_center(args.cost_center, args.config)
    metrics = store_for(cc.storage.uri, cc.storage.aws_conn_id)
    billing = store_for(cc.billing.uri, cc.billing.aws_conn_id)
    if not hours_of(args.start, args.end):
        raise PodledgerError(f"empty hour range {args.start} .. {args.end}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    paths = {output: companion(args.out, output) for output in OUTPUTS}
    writers: dict[str, pq.ParquetWriter] = {}
    reports, rows = [], 0
    try:
        # A day at a time, written as it comes (one row group each): memory is one day of one cluster.
        for cluster in _clusters(cc, args.cluster, args.start, args.end):
            for day in enrich_days(cc, cluster, args.start, args.end, metrics_store=metrics, billing_store=billing):
                parts = output_frames(day, cc.name)
                for name, frame in parts.items():
                    table = frame.to_arrow()
                    if name not in writers:
                        writers[name] = pq.ParquetWriter(paths[name], table.schema)
                    writers[name].write_table(table.cast(writers[name].schema))
                rows += day.rows.height
                reports.append(day.reconciliation)
                del day, parts
    finally:
        for writer in writers.values():
            writer.close()
    print(pl.concat(reports, how="diagonal_relaxed"))
    print(f"wrote {rows} allocation rows to {args.out} and the AWS-shaped split line items to {paths['split_line_items']}")
    return 0


def _day_slice(frame: pl.LazyFrame, column: str, cluster: str, start: dt.datetime, end: dt.datetime) -> pl.DataFrame:
    """One cluster's rows of [start, end) from a scanned allocation file."""
    import polars as pl

    return frame.filter((pl.col("cluster") == cluster) & (pl.col(column) >= start) & (pl.col(column) < end)).collect()


def cmd_load(args: argparse.Namespace) -> int:
    import polars as pl

    from podledger.enrich import day_ranges
    from podledger.outputs import companion
    from podledger.warehouse import check_slice, loader_for

    cc = load_cost_center(args.cost_center, args.config)
    rows = pl.scan_parquet(args.rows)
    items_path = Path(companion(args.rows, "split_line_items"))
    items = pl.scan_parquet(items_path) if items_path.exists() else None
    recon_path = Path(companion(args.rows, "reconciliation"))
    recon = pl.scan_parquet(recon_path) if recon_path.exists() else None
    loader = loader_for(cc.warehouse)
    clusters = args.cluster or sorted(rows.select(pl.col("cluster").unique()).collect()["cluster"])
    for name in clusters:
        # The file's rows of this cluster must all be inside the range (or the load would leave some out): checked
        # whole, before any day is loaded.
        for frame, column, what in ((rows, "hour_start", "row"), (items, "line_item_usage_start_date", "split line item"),
                                    (recon, "hour_start", "reconciliation hour")):
            if frame is not None:
                mine = frame.filter(pl.col("cluster") == name)
                outside = mine.filter(pl.col(column).is_null() | (pl.col(column) < args.start)
                                      | (pl.col(column) >= args.end)).collect()
                check_slice(outside, cost_center=cc.name, cluster=name, start=args.start, end=args.end,
                            time_column=column, what=what)
        loaded = 0
        # One cluster-day per load (its own transaction, as the DAG's load does): memory is one day.
        for start, end in day_ranges(args.start, args.end):
            part = _day_slice(rows, "hour_start", name, start, end)
            loader.load(part, cost_center=cc.name, cluster=name, start=start, end=end,
                        split_items=(_day_slice(items, "line_item_usage_start_date", name, start, end)
                                     if items is not None else None),
                        reconciliation=_day_slice(recon, "hour_start", name, start, end) if recon is not None else None)
            loaded += part.height
        print(f"loaded {loaded} rows for {name} into {cc.warehouse.kind} table {loader.table} (+ split line items)")
    return 0


def cmd_rightsize(args: argparse.Namespace) -> int:
    import polars as pl

    from podledger.rightsizing import recommendations
    from podledger.warehouse import loader_for

    cc = load_cost_center(args.cost_center, args.config)
    loader = loader_for(cc.warehouse)
    sql = f"SELECT * FROM {cc.warehouse.table} WHERE cost_center = ? AND hour_start >= ? AND hour_start < ?"
    try:
        rows = loader.query(sql.replace("?", "%s" if cc.warehouse.kind == "postgres" else "?"), [cc.name, args.start, args.end])
    except Exception as exc:  # noqa: BLE001 - duckdb/psycopg raise their own types; the user needs the fix
        raise PodledgerError(f"cannot read {cc.warehouse.kind} table {cc.warehouse.table} ({type(exc).__name__}): "
                             "run allocate and load for this range first") from None
    if not rows.height:
        raise PodledgerError(f"no allocation rows for cost center {cc.name} between {args.start} and {args.end}")
    result = recommendations(rows, headroom=args.headroom)
    names = ["namespace", "controller_kind", "controller_name"]
    if args.containers:
        from podledger.rightsizing import container_recommendations
        from podledger.usage import container_hours
        from podledger.windows import read_window_frames

        store = store_for(cc.storage.uri, cc.storage.aws_conn_id)
        prefix = cc.storage.location.prefix
        parts = []
        for cluster in _clusters(cc, args.cluster, args.start, args.end):
            for window in plan_windows(args.start, args.end, cc.time_frame_seconds):
                frames = read_window_frames(store, prefix, cluster.name, window)
                parts.append(container_hours(frames).with_columns(pl.lit(window.start).alias("hour_start"),
                                                                  pl.lit(cluster.name).alias("cluster")))
        result = container_recommendations(pl.concat(parts), result, headroom=args.headroom)
        names.append("container")
    with pl.Config(tbl_rows=args.top, tbl_cols=-1, tbl_width_chars=200):
        print(result.head(args.top).select(*names, "avg_pods",
                                           pl.col("cpu_request_cores", "cpu_recommended_cores", "memory_request_gib",
                                                  "memory_recommended_gib", "monthly_saving").round(3)))
    return 0


def owned_clusters(cc: CostCenterConfig) -> set[str] | None:
    """The cluster folders retention may touch: the cost center's own (None: discovery owns its whole prefix)."""
    return None if cc.discovery is not None else {c.name for c in cc.clusters}


def cmd_retention(args: argparse.Namespace) -> int:
    from podledger.retention import apply_retention

    cc = load_cost_center(args.cost_center, args.config)
    prefix = cc.storage.location.prefix
    now = args.now or dt.datetime.now(dt.UTC)
    deleted = apply_retention(store_for(cc.storage.uri, cc.storage.aws_conn_id), prefix, cc.storage.retention_days, now,
                              owned_clusters(cc))
    print(f"deleted {len(deleted)} objects older than {cc.storage.retention_days} days under {cc.storage.uri}")
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    loaded = load_config(args.config)
    for cc in loaded.cost_centers:
        print(f"ok: cost center {cc.name} ({len(cc.clusters)} clusters)")
    for _, message in loaded.errors:
        print(f"error: {message}", file=sys.stderr)
    return 1 if loaded.errors else 0


def cmd_report(args: argparse.Namespace) -> int:
    import polars as pl

    from podledger.report import cost_report
    from podledger.warehouse import loader_for

    cc = load_cost_center(args.cost_center, args.config)
    loader = loader_for(cc.warehouse)
    placeholder = "%s" if cc.warehouse.kind == "postgres" else "?"
    try:
        rows = loader.query(f"SELECT * FROM {loader.table} WHERE cost_center = {placeholder} AND hour_start >= "
                            f"{placeholder} AND hour_start < {placeholder}", [cc.name, args.start, args.end])
    except Exception as exc:  # noqa: BLE001 - a missing table or database: say where podledger looked
        where = cc.warehouse.resolved_path() if cc.warehouse.kind == "duckdb" else f"connection {cc.warehouse.conn_id}"
        raise PodledgerError(f"cannot read table {loader.table} in the warehouse ({where}): {str(exc).splitlines()[0]}; "
                             "load allocation rows first (podledger load, or the enrichment DAG)") from None
    if args.cluster:
        rows = rows.filter(pl.col("cluster").is_in(args.cluster))
    report = cost_report(rows, by=args.by, step=args.step)
    if args.csv:
        sys.stdout.write(report.write_csv())
        return 0
    with pl.Config(tbl_rows=args.top, tbl_cols=-1, tbl_width_chars=200, tbl_hide_dataframe_shape=True,
                   tbl_hide_column_data_types=True, float_precision=4):
        print(f"Cost by {args.by}{f' per {args.step}' if args.step else ''}, cost center {cc.name}, "
              f"{args.start:%Y-%m-%d %H:%M} to {args.end:%Y-%m-%d %H:%M} UTC ({cc.billing.cost_basis}):")
        print(report.select([c for c in report.columns if not c.endswith("_hours")]))
    return 0


def cmd_from_cronjob(args: argparse.Namespace) -> int:
    from podledger.seed import cost_center_from_cronjob, render

    config, connections = render(*cost_center_from_cronjob(Path(args.cronjob).read_text()))
    if args.out:
        Path(args.out).write_text(config)
        print(f"wrote the cost center to {args.out}; check it with: podledger check-config --config {args.out}")
    else:
        print(config)
    print(connections)
    return 0


def parse_time(value: str) -> dt.datetime:
    try:
        return to_utc(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO date/time: {value!r} (e.g. 2026-11-02T00:00Z)") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="podledger", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True, metavar="STAGE")

    def staged(name: str, help_: str, func: Callable[[argparse.Namespace], int]) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_)
        p.add_argument("--cost-center", required=True)
        p.add_argument("--config", help="cost-center YAML (default: $PODLEDGER_CONFIG or include/cost_centers.yaml)")
        p.add_argument("--start", required=True, type=parse_time, help="range start, UTC (inclusive)")
        p.add_argument("--end", required=True, type=parse_time, help="range end, UTC (exclusive)")
        p.add_argument("--cluster", action="append", help="only this cluster (repeatable)")
        p.set_defaults(func=func)
        return p

    p = staged("export", "export the metric catalog of each cluster-window to storage", cmd_export)
    p.add_argument("--force", action="store_true", help="re-export windows that already have a manifest")
    p.add_argument("--adopt", action="store_true",
                   help="replace files at podledger's keys that podledger did not write (e.g. the seed exporter's)")
    p = staged("import", "import raw Prometheus history in the seed's layout (no podledger manifest) as windows",
               cmd_import)
    p.add_argument("--adopt", action="store_true",
                   help="replace files at podledger's keys that podledger did not write")
    staged("validate", "check exported windows are complete and sane", cmd_validate)
    staged("allocate", "split billed node-hours onto pods and reconcile; write Parquet", cmd_allocate).add_argument(
        "--out", required=True, help="Parquet file for the allocation rows")
    staged("load", "replace the hour range in the warehouse table with allocation rows", cmd_load).add_argument(
        "--rows", required=True, help="Parquet file written by allocate")
    p = staged("rightsize", "recommend requests per workload from usage percentiles, with the monthly saving",
               cmd_rightsize)
    p.add_argument("--headroom", type=float, default=0.2, help="added on top of the p95 usage (default 0.2)")
    p.add_argument("--top", type=int, default=20)
    p.add_argument("--containers", action="store_true",
                   help="one recommendation per workload container (reads the exported per-container metrics)")
    p = staged("report", "cost by namespace, controller, pod, node, instance type or label, from the warehouse",
               cmd_report)
    p.add_argument("--by", default="namespace", help="namespace | controller | pod | node | instance_type | label:<key>")
    p.add_argument("--step", choices=["hour", "day", "week", "month"], help="one row per group and step")
    p.add_argument("--csv", action="store_true", help="write CSV to standard output")
    p.add_argument("--top", type=int, default=50, help="rows shown in the table (default 50)")
    p = sub.add_parser("retention", help="delete exported objects older than the cost center's retention_days")
    p.add_argument("--cost-center", required=True)
    p.add_argument("--config")
    p.add_argument("--now", type=parse_time, help="reference time (default: now)")
    p.set_defaults(func=cmd_retention)
    p = sub.add_parser("from-cronjob", help="turn the seed exporter's CronJob (its env) into a cost center and connections")
    p.add_argument("cronjob", help="the CronJob manifest (YAML)")
    p.add_argument("--out", help="write the cost-center YAML here (default: print it)")
    p.set_defaults(func=cmd_from_cronjob)
    p = sub.add_parser("check-config", help="validate a cost-center file")
    p.add_argument("--config")
    p.set_defaults(func=cmd_check_config)
    return parser


def main(argv: list[str] | None = None) -> int:
    return run(build_parser(), argv)


def run(parser: argparse.ArgumentParser, argv: list[str] | None) -> int:
    """Parse ``argv`` and run the chosen command: logging set up, bad ranges and podledger errors reported, no
    traceback (exit 2: bad arguments, 1: the command failed)."""
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if getattr(args, "start", None) and getattr(args, "end", None) and args.end <= args.start:
        print(f"error: --end {args.end:%Y-%m-%dT%H:%MZ} must be after --start {args.start:%Y-%m-%dT%H:%MZ}", file=sys.stderr)
        return 2
    try:
        code: int = args.func(args)
    except PodledgerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
