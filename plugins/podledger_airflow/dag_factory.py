"""Build the DAGs of one cost center: export (scheduled, backfillable) and enrich (on the metrics Asset)."""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import DAG, Asset, AssetAlias, XComArg, dag, task
from airflow.timetables.interval import CronDataIntervalTimetable

from podledger.config import CostCenterConfig
from podledger.planning import AllocatedDay, DayItem, ExportItem, plan_range
from podledger_airflow.dag_docs import BILLING_DOC, ENRICH_DOC, export_doc
from podledger_airflow.dag_settings import airflow_end_date, default_args, pools_of, range_params, start_date
from podledger_airflow.sensors import CurCoverageSensor, ExportManifestSensor

if TYPE_CHECKING:
    from podledger.storage import ObjectStore

TAG = "podledger"
log = logging.getLogger(__name__)


def upstream(output: XComArg) -> Any:
    """An upstream task's output handed to a TaskFlow task: Airflow passes the value at run time, which its type
    stubs cannot say (they expect the value itself in the DAG body)."""
    return output


def metrics_asset(cost_center: CostCenterConfig) -> Asset:
    """The Asset updated when a cost center's exported windows are complete and valid."""
    # Named per cost center, not by URI: cost centers may share a bucket or a CUR export.
    return Asset(name=f"podledger_{cost_center.name}_metrics")


def billing_asset(cost_center: CostCenterConfig) -> Asset:
    """The Asset updated when a billing period is delivered or restated."""
    return Asset(name=f"podledger_{cost_center.name}_billing")


def _peer_stores(peers: Sequence[CostCenterConfig]) -> list[tuple[CostCenterConfig, ObjectStore]]:
    """The other cost centers (from the config the DAGs were built from) with their stores: validation checks that
    no node is counted by two of them."""
    from podledger_airflow.stores import S3HookStore

    return [(other, S3HookStore(other.storage.location.bucket, other.storage.aws_conn_id)) for other in peers
            if other.storage.location.scheme == "s3"]


def build_export_dag(cost_center: CostCenterConfig, peers: Sequence[CostCenterConfig] = ()) -> DAG:
    """Return the export DAG of ``cost_center``; ``peers``: the other cost centers of the same configuration."""
    scheme, bucket, prefix = cost_center.storage.location
    asset = metrics_asset(cost_center)
    dag_id = f"podledger_export__{cost_center.name}"
    pools = pools_of(cost_center)

    @dag(dag_id=dag_id, schedule=CronDataIntervalTimetable(cost_center.schedule, timezone="UTC"),
         start_date=start_date(cost_center), end_date=airflow_end_date(cost_center), catchup=cost_center.catchup,
         max_active_runs=4, default_args=default_args(cost_center),
         tags=[TAG, "export", f"cost-center:{cost_center.name}"], params=range_params(cost_center),
         doc_md=export_doc(cost_center, dag_id, asset.name, pools))
    def export_dag() -> None:
        @task
        def plan(**context: Any) -> list[ExportItem]:
            """List the (cluster, window) pairs this run exports, each with its endpoint's pool."""
            from airflow.sdk.exceptions import AirflowSkipException

            from podledger.exceptions import NothingToDo
            from podledger.planning import export_items

            params = context["params"]
            try:
                start, end = plan_range(cost_center, params, context.get("data_interval_start"),
                                        context.get("data_interval_end"))
            except NothingToDo as reason:
                raise AirflowSkipException(str(reason)) from None
            clusters = list(cost_center.clusters)
            if cost_center.discovery is not None:
                from podledger.discovery import discover_clusters
                from podledger_airflow.hooks import PrometheusHook

                hook = PrometheusHook(cost_center.discovery.prometheus_conn_id, timeout=cost_center.query_timeout_seconds)
                clusters += discover_clusters(hook.get_conn(), cost_center, start, end)
            return export_items(cost_center, clusters, start, end, params.get("clusters") or [])

        @task
        def of_pool(items: list[ExportItem], pool: str | None) -> list[ExportItem]:
            """The planned items whose endpoint uses ``pool`` (one export task per pool)."""
            return [i for i in items if i["pool"] == pool]

        @task(max_active_tis_per_dag=cost_center.queries_batch_size)
        def export_window(item: ExportItem, **context: Any) -> str:
            """Export one cluster-window (skipped when already complete, unless forced); return its manifest key."""
            from podledger.export import export_window as run_export
            from podledger.layout import manifest_key
            from podledger.planning import item_cluster
            from podledger_airflow.hooks import PrometheusHook
            from podledger_airflow.stores import S3HookStore

            cluster, window = item_cluster(cost_center, item)
            store = S3HookStore(bucket, cost_center.storage.aws_conn_id)
            key = manifest_key(prefix, cluster.name, window)
            if not context["params"].get("force") and store.exists(key):
                log.info("cluster %s window %s: already complete (%s); pass force=true to re-export", cluster.name, window, key)
                return key
            hook = PrometheusHook(cluster.prometheus_conn_id, timeout=cost_center.query_timeout_seconds)
            client = hook.get_conn()
            hook.check_ready()
            run_export(client, store, cost_center, cluster, window)
            return key

        @task(outlets=[asset])
        def validate(items: list[ExportItem], **context: Any) -> dict[str, Any]:
            """Apply the data-quality rules; on success mark the metrics Asset updated for the range."""
            from podledger.layout import Window
            from podledger.validate import validate_windows
            from podledger_airflow.stores import S3HookStore

            pairs = [(i["cluster"], Window.from_dict(i["window"])) for i in items]
            findings = validate_windows(S3HookStore(bucket, cost_center.storage.aws_conn_id), cost_center, pairs,
                                        _peer_stores(peers))
            extra = {"cost_center": cost_center.name, "clusters": sorted({c for c, _ in pairs}),
                     "start": min(w.start for _, w in pairs).isoformat() if pairs else None,
                     "end": max(w.end for _, w in pairs).isoformat() if pairs else None,
                     "warnings": len(findings)}
            context["outlet_events"][asset].extra = extra
            return extra

        @task
        def retention(**context: Any) -> int:
            """Delete exported objects older than retention_days (relative to this interval), under the prefix only."""
            from podledger.retention import apply_retention
            from podledger_airflow.stores import S3HookStore

            own = None if cost_center.discovery is not None else {c.name for c in cost_center.clusters}
            deleted = apply_retention(S3HookStore(bucket, cost_center.storage.aws_conn_id), prefix,
                                      cost_center.storage.retention_days, context["data_interval_end"], own)
            return len(deleted)

        items = plan()
        # The export runs in the endpoint's Airflow pool: the pool's slots bound the windows exported against
        # that Prometheus at once, across every DAG using it. Several pools: one mapped export task per pool.
        if len(pools) == 1:
            exported = [export_window.override(pool=pools[0] or "default_pool").expand(item=items)]
        else:
            exported = [export_window.override(task_id=f"export_window__{p or 'default'}", pool=p or "default_pool")
                        .expand(item=of_pool.override(task_id=f"plan__{p or 'default'}")(upstream(items), p)) for p in pools]
        wait = ExportManifestSensor(task_id="wait_for_manifests", bucket_name=bucket, prefix=prefix, items=items,
                                    aws_conn_id=cost_center.storage.aws_conn_id, poke_interval=60, timeout=3600)
        exported >> wait >> validate(upstream(items)) >> retention()

    return export_dag()


def build_enrich_dag(cost_center: CostCenterConfig) -> DAG:
    """Return the enrichment DAG of ``cost_center`` (scheduled on its metrics Asset)."""
    scheme, bucket, prefix = cost_center.storage.location
    asset = metrics_asset(cost_center)
    dag_id = f"podledger_enrich__{cost_center.name}"

    bill = billing_asset(cost_center)

    @dag(dag_id=dag_id, schedule=(asset | bill), start_date=start_date(cost_center), catchup=False, max_active_runs=1,
         default_args=default_args(cost_center), tags=[TAG, "enrich", f"cost-center:{cost_center.name}"],
         params=range_params(cost_center),
         doc_md=ENRICH_DOC.format(name=cost_center.name, asset=asset.name, billing=cost_center.billing.uri,
                                  basis=cost_center.billing.cost_basis, table=cost_center.warehouse.table))
    def enrich_dag() -> None:
        @task
        def hour_range(**context: Any) -> dict[str, Any]:
            """Pick the hours and clusters to enrich: the params, else the triggering Asset events, else the interval."""
            from airflow.sdk.exceptions import AirflowSkipException

            from podledger.exceptions import NothingToDo
            from podledger.planning import plan_enrichment

            events = [e.extra or {} for evs in (context.get("triggering_asset_events") or {}).values() for e in evs]
            try:
                start, end, clusters = plan_enrichment(cost_center, context["params"], events,
                                                       context.get("data_interval_start"),
                                                       context.get("data_interval_end"), dt.datetime.now(dt.UTC))
            except NothingToDo as exc:
                raise AirflowSkipException(str(exc)) from None
            if not clusters and cost_center.discovery is not None:
                from podledger.discovery import discover_clusters
                from podledger_airflow.hooks import PrometheusHook

                hook = PrometheusHook(cost_center.discovery.prometheus_conn_id, timeout=cost_center.query_timeout_seconds)
                clusters = [c.name for c in discover_clusters(hook.get_conn(), cost_center, start, end)]
            return {"start": start.isoformat(), "end": end.isoformat(), "clusters": clusters}

        @task
        def days_of(rng: dict[str, Any]) -> list[DayItem]:
            """The (cluster, UTC day) pieces mapped over below: a month's restatement spreads over workers, and a
            retry repeats one day."""
            from podledger.layout import to_utc
            from podledger.planning import enrichment_items

            return enrichment_items(to_utc(rng["start"]), to_utc(rng["end"]), list(rng["clusters"]))

        @task
        def allocate(item: DayItem) -> AllocatedDay:
            """Allocate and reconcile one cluster-day; write its rows, split line items and reconciliation as Parquet."""
            from podledger.enrich import enrich_cluster
            from podledger.layout import to_utc
            from podledger.outputs import allocation_key, put_outputs
            from podledger_airflow.stores import S3HookStore

            cluster_name, start, end = item["cluster"], to_utc(item["start"]), to_utc(item["end"])
            metrics_store = S3HookStore(bucket, cost_center.storage.aws_conn_id)
            result = enrich_cluster(cost_center, cost_center.cluster(cluster_name), start, end,
                                    metrics_store=metrics_store,
                                    billing_store=S3HookStore(cost_center.billing.location.bucket,
                                                              cost_center.billing.aws_conn_id))
            key = allocation_key(prefix, cluster_name, start, end)
            put_outputs(metrics_store, key, result, cost_center.name)
            currency = ",".join(sorted(result.rows["currency"].drop_nulls().unique().to_list()))
            total = round(float(result.reconciliation["billed_cost"].sum()), 6)
            log.info("cluster %s %s..%s: %d rows, billed %s %s over %d hour(s), every hour reconciled with the "
                     "bill's files", cluster_name, item["start"], item["end"], result.rows.height, total, currency,
                     result.reconciliation.height)
            return AllocatedDay(cluster=item["cluster"], start=item["start"], end=item["end"], key=key,
                                rows=result.rows.height, billed_cost=total, currency=currency)

        @task
        def load(outputs: list[AllocatedDay]) -> int:
            """Replace each allocated cluster-day in the warehouse, one transaction each (read back before commit)."""
            from podledger.layout import to_utc
            from podledger.outputs import get_outputs
            from podledger.warehouse import loader_for
            from podledger_airflow.hooks import connection_info
            from podledger_airflow.stores import S3HookStore

            store = S3HookStore(bucket, cost_center.storage.aws_conn_id)
            warehouse = cost_center.warehouse
            loader = loader_for(warehouse, connection_info(warehouse.conn_id) if warehouse.kind == "postgres" else None)
            loaded = 0
            # By index: iterating a mapped task's outputs asks for one past the last, which logs a 404 as an error.
            for index in range(len(outputs)):
                out = outputs[index]
                day = get_outputs(store, out["key"])
                loaded += loader.load(day["rows"], cost_center=cost_center.name, cluster=out["cluster"],
                                      start=to_utc(out["start"]), end=to_utc(out["end"]),
                                      split_items=day["split_line_items"], reconciliation=day["reconciliation"])
            return loaded

        rng = hour_range()
        billed = CurCoverageSensor(task_id="wait_for_billing_data", billing_uri=cost_center.billing.uri, hour_range=rng,
                                   aws_conn_id=cost_center.billing.aws_conn_id, deferrable=True,
                                   poke_interval=cost_center.billing.poke_interval_seconds,
                                   timeout=cost_center.billing.wait_timeout_seconds)
        outputs = allocate.expand(item=days_of(upstream(rng)))
        billed >> outputs
        load(upstream(outputs))

    return enrich_dag()


def build_billing_dag(cost_center: CostCenterConfig) -> DAG:
    """Return the DAG that notices new and restated CUR deliveries and emits billing Asset events."""
    _, bucket, prefix = cost_center.storage.location
    bill = billing_asset(cost_center)
    dag_id = f"podledger_billing__{cost_center.name}"

    # Emitting through an alias gives one event per (asset, extra): one per billing period updated.
    alias = AssetAlias(f"podledger_{cost_center.name}_billing_updates")

    @dag(dag_id=dag_id, schedule=CronDataIntervalTimetable(cost_center.billing.check_schedule, timezone="UTC"),
         start_date=start_date(cost_center), catchup=False, max_active_runs=1, default_args=default_args(cost_center),
         tags=[TAG, "billing", f"cost-center:{cost_center.name}"],
         doc_md=BILLING_DOC.format(name=cost_center.name, schedule=cost_center.billing.check_schedule,
                                   billing=cost_center.billing.uri, asset=bill.name))
    def billing_dag() -> None:
        @task(outlets=[alias])
        def detect_updates(**context: Any) -> list[dict[str, Any]]:
            """Emit one billing Asset event per billing period delivered or restated since the last check."""
            from airflow.sdk.exceptions import AirflowSkipException

            from podledger.billing import billing_periods
            from podledger.billing_watch import detect_updates as detect
            from podledger_airflow.stores import S3HookStore

            _, billing_bucket, billing_prefix = cost_center.billing.location
            end = context["data_interval_end"]
            periods = billing_periods(end - dt.timedelta(days=62), end + dt.timedelta(hours=1))
            updates = detect(S3HookStore(billing_bucket, cost_center.billing.aws_conn_id), billing_prefix, periods,
                             S3HookStore(bucket, cost_center.storage.aws_conn_id), f"{prefix}/_state/{cost_center.name}")
            if not updates:
                raise AirflowSkipException(f"no new or restated billing period in {periods}")
            for update in updates:
                context["outlet_events"][alias].add(bill, extra={"cost_center": cost_center.name,
                                                                 "billing_periods": [update["billing_period"]], **update})
            return updates

        detect_updates()

    return billing_dag()


def build_all(path: str | None = None) -> list[DAG]:
    """Build the DAGs of every valid cost center and one failing DAG per invalid one; never raise.

    A file that cannot be read, or a cost center whose DAGs cannot be built, becomes a failing
    ``podledger_config_error__*`` DAG naming it: the other cost centers' DAGs always load.
    """
    from podledger.config import load_config
    from podledger.exceptions import ConfigError

    try:
        loaded = load_config(path)
    except ConfigError as exc:
        return [build_config_error_dag("file", str(exc))]
    dags: list[DAG] = []
    for cost_center in loaded.cost_centers:
        try:
            peers = [c for c in loaded.cost_centers if c.name != cost_center.name]
            dags += [build_export_dag(cost_center, peers), build_enrich_dag(cost_center), build_billing_dag(cost_center)]
        except Exception as exc:  # noqa: BLE001 - one cost center must never take the others down
            dags.append(build_config_error_dag(
                cost_center.name, f"{loaded.path}: cost center {cost_center.name!r}: its DAGs cannot be built: "
                                  f"{type(exc).__name__}: {exc}"))
    dags += [build_config_error_dag(label, message) for label, message in loaded.errors]
    return dags


def config_error_dag_id(label: str) -> str:
    """A DAG id for a config error: the label's safe characters, bounded, plus a hash so ids stay unique."""
    import hashlib

    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", label).strip("_.-")[:80] or "unnamed"
    return f"podledger_config_error__{safe}_{hashlib.sha256(label.encode()).hexdigest()[:8]}"


def build_config_error_dag(label: str, message: str) -> DAG:
    """Return a DAG whose only task fails with a config error, so the problem shows in the UI."""

    @dag(dag_id=config_error_dag_id(label), schedule=None, start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
         catchup=False, tags=[TAG, "config-error"], default_args={"owner": "podledger", "retries": 0},
         doc_md=f"### Invalid podledger cost center\n\n```\n{message[:4000]}\n```\n\nFix the file and the real DAGs appear.")
    def config_error() -> None:
        @task
        def report() -> None:
            """Fail with the configuration error."""
            from podledger.exceptions import ConfigError

            raise ConfigError(message)

        report()

    return config_error()
