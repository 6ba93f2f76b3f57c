"""Data-quality rules: nothing incomplete or wrong reaches the bill.

Rules run per cluster-window on the manifest (its probe answers) and the exported files; the findings
go to a JSON report beside the manifest and to the log. Errors fail the task, warnings do not. Every
message names the cluster, the window, the metric or object, and the fix.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import polars as pl

from podledger.catalog import CATALOG_BY_NAME
from podledger.config import CostCenterConfig
from podledger.exceptions import ValidationFailed
from podledger.layout import Window, manifest_key
from podledger.manifests import Manifest
from podledger.storage import ObjectStore

log = logging.getLogger(__name__)

ERROR, WARNING = "error", "warning"
LABELS_FLAG = "--metric-labels-allowlist=pods=[*],nodes=[*],namespaces=[*]"
PROVIDER_ID_PATTERNS = (
    re.compile(r"^aws:///[a-z0-9-]+/(i-[0-9a-f]+)$"),
    re.compile(r"^gce://[^/]+/[^/]+/[^/]+$"),
    re.compile(r"^azure:///subscriptions/[^/]+/resourcegroups/.+", re.IGNORECASE),
)
MIN_WINDOW_COVERAGE = 0.95  # below this share of a window, the best-covered node reveals a scrape gap
USAGE_WITHOUT_REQUESTS_CORE_HOURS = 0.01


@dataclass(frozen=True)
class Finding:
    """One rule outcome for one cluster-window (and metric or object, when it is about one)."""

    severity: str
    rule: str
    cluster: str
    window: str
    metric: str | None
    message: str
    fix: str

    def __str__(self) -> str:
        where = f"cluster {self.cluster}, window {self.window}" + (f", metric {self.metric}" if self.metric else "")
        return f"[{self.severity}] {self.rule}: {where}: {self.message}. Fix: {self.fix}"


def report_key(manifest: str) -> str:
    """Return the key of the validation report beside a manifest."""
    return manifest.replace("_manifest.json", "_validation.json")


def _window_label(manifest: Manifest) -> str:
    return str(manifest.window)


def _names(items: list[dict[str, Any]], *keys: str, limit: int = 5) -> str:
    shown = ["/".join(str(item.get(k, "")) for k in keys) for item in items[:limit]]
    more = f" and {len(items) - limit} more" if len(items) > limit else ""
    return ", ".join(shown) + more


def check_manifest(manifest: Manifest) -> list[Finding]:
    """Rules on a manifest: required metrics, KSM version, labels, duplicates, aggregates, resets, cluster label."""
    cluster, window = manifest.cluster, _window_label(manifest)
    metrics, probes = manifest.metrics, manifest.probes
    found: list[Finding] = []

    def add(severity: str, rule: str, metric: str | None, message: str, fix: str) -> None:
        found.append(Finding(severity, rule, cluster, window, metric, message, fix))

    v1 = sorted(item.get("metric_name", "") for item in probes.get("ksm_v1_metrics", []))
    requests_empty = manifest.rows_of("cpu_requests") == 0
    if v1 and requests_empty:
        add(ERROR, "ksm_v1_metrics", "cpu_requests",
            f"kube-state-metrics v1 metric names found ({', '.join(v1)}) and no v2 "
            "kube_pod_container_resource_requests{resource=...}: this kube-state-metrics is older than 2.0",
            "upgrade kube-state-metrics to v2.x (v2 replaced *_cpu_cores/*_memory_bytes with the resource/unit labels)")
    elif v1:
        add(WARNING, "ksm_v1_metrics", None, f"kube-state-metrics v1 names also present ({', '.join(v1)})",
            "retire the old kube-state-metrics deployment; podledger reads only the v2 shapes")

    for warning in manifest.imported.get("warnings", []):
        metric = warning.split(":", 1)[0] if warning.split(":", 1)[0] in CATALOG_BY_NAME else None
        add(WARNING, "imported_history", metric, f"imported from raw history: {warning}",
            "export the window with podledger for exact rollups, or add the missing raw files and import again")

    values = probes.get("cluster_label_values")
    if values is not None and manifest.rows_of("node_info") == 0:
        label = probes.get("cluster_label", "cluster")
        add(ERROR, "cluster_label_missing", "node_info",
            f"no series carry {label}=<this cluster>; values seen for '{label}': {values or 'none (label absent)'}",
            f"set the cluster's cluster_label_value to one of those values, or add the '{label}' external label "
            "to the cluster's Prometheus (global.external_labels)")
    for name, spec in CATALOG_BY_NAME.items():
        entry = metrics.get(name)
        empty = entry is None or entry["rows"] == 0
        if spec.required and empty and not (name in ("cpu_requests", "memory_requests") and v1):
            scraper = "kube-state-metrics" if spec.source.startswith("kube_") else "the kubelet's /metrics/cadvisor endpoint"
            add(ERROR, "required_metric_empty", name, f"{spec.source} returned no series for the window",
                f"check that Prometheus scrapes {scraper} for this cluster and that the connection points at the "
                "right Prometheus (and cluster label value, in centralized mode)")
        elif spec.group == "labels" and entry is not None and empty:
            add(WARNING, "labels_missing", name, f"{spec.source} is empty: rows will carry no {name.split('_')[0]} labels",
                f"start kube-state-metrics with {LABELS_FLAG}")

    # Pod presence changes every cent: without it every node-hour would be idle.
    rows = manifest.rows_of

    if rows("pod_running") == 0 and rows("pod_info") == 0:
        add(ERROR, "pod_presence_missing", "pod_running",
            "neither kube_pod_status_phase nor kube_pod_info returned series: no pod is known to run, so every cent "
            "of every node-hour would go to __idle__",
            "scrape kube-state-metrics' pod collector (kube_pod_info, and kube_pod_status_phase if you can)")
    elif rows("pod_running") == 0:
        add(WARNING, "pod_phase_missing", "pod_running",
            "kube_pod_status_phase returned no series (it is not among the seed's 16 metrics): running time is taken "
            "from kube_pod_info, so a Completed pod that is not deleted yet counts as running until it is",
            "keep kube_pod_status_phase in the Prometheus allow-list for exact running time")
    duplicates = probes.get("duplicate_scrapes", [])
    if duplicates:
        add(ERROR, "duplicate_scrapes", "cpu_usage",
            f"{probes.get('duplicate_scrapes_count', len(duplicates))} containers are scraped by more than one job/instance "
            f"(e.g. {_names(duplicates, 'namespace', 'pod', 'container')}): their usage would be counted twice",
            "scrape cAdvisor once: drop the standalone cAdvisor job or the kubelet /metrics/cadvisor job")
    aggregate_only = probes.get("aggregate_only_pods", [])
    if aggregate_only:
        add(WARNING, "aggregate_only_pods", "cpu_usage",
            f"{probes.get('aggregate_only_pods_count', len(aggregate_only))} pods report CPU only in the pod-level cgroup "
            f"series (container=\"\"), never per container ({_names(aggregate_only, 'namespace', 'pod')}); "
            "their usage is not counted, requests are used instead",
            "keep the container/image labels on cAdvisor series (no relabeling that drops them)")
    resets = probes.get("counter_resets", [])
    if resets:
        add(WARNING, "counter_resets", "cpu_usage",
            f"{probes.get('counter_resets_count', len(resets))} CPU counters reset inside the window "
            f"({_names(resets, 'namespace', 'pod', 'container')}); usage across each reset restarts from zero",
            "nothing to do if containers restarted in place; otherwise check for duplicate series with different values")
    return found


def check_window_data(manifest: Manifest, frames: dict[str, pl.DataFrame]) -> list[Finding]:
    """Rules on the exported rows: provider ids, pods without node, requests vs usage, scrape gaps."""
    cluster, window = manifest.cluster, _window_label(manifest)
    seconds = manifest.window.seconds
    found: list[Finding] = []

    def add(severity: str, rule: str, metric: str | None, message: str, fix: str) -> None:
        found.append(Finding(severity, rule, cluster, window, metric, message, fix))

    nodes = frames.get("node_info")
    if nodes is not None and nodes.height:
        bad = [row for row in nodes.select("node", "provider_id").unique().iter_rows(named=True)
               if not any(p.match(row["provider_id"] or "") for p in PROVIDER_ID_PATTERNS)]
        if bad:
            add(ERROR, "provider_id_unparsable", "node_info",
                f"{len(bad)} nodes have a provider_id that names no cloud instance "
                f"({_names(bad, 'node', 'provider_id')}): they cannot be matched to the bill",
                "run nodes with the cloud provider's providerID (aws:///<zone>/i-…, gce://…, azure:///…) or drop "
                "this cluster from billing-based allocation")
        coverage = float(nodes.select(pl.col("present_seconds").max()).item()) / seconds
        if coverage > 2 - MIN_WINDOW_COVERAGE:
            interval = manifest.scrape_interval_seconds or 0
            add(ERROR, "scrape_interval_mismatch", "node_info",
                f"nodes have more samples than the window can hold at the configured scrape interval of {interval}s "
                f"({coverage:.0%} of the window): every value-second (requests, memory) would be overstated",
                f"set the cluster's scrape_interval_seconds to the real interval (about {interval / coverage:.0f}s), or, if "
                "kube-state-metrics runs as several replicas scraped separately, keep one series per node (dedupe)")
        if coverage < MIN_WINDOW_COVERAGE:
            add(WARNING, "scrape_gap", "node_info",
                f"the best-covered node has samples for only {coverage:.0%} of the window "
                f"({(1 - coverage) * seconds / 60:.0f} min missing): Prometheus or kube-state-metrics was down",
                "check Prometheus and kube-state-metrics uptime for the window (usage in the gap is not counted); if "
                "every window shows the same share, the configured scrape_interval_seconds is smaller than the real one")

    from podledger.pod_frames import pod_presence

    running = pod_presence(frames)
    if running is not None and running.height:
        running = running.filter(pl.col("running_seconds") > 0).select("namespace", "pod", "uid")
        info = frames.get("pod_info")
        requests = frames.get("cpu_requests")
        placed = []
        for frame in (info, requests):
            if frame is not None and frame.height:
                placed.append(frame.filter(pl.col("node") != "").select("namespace", "pod", "uid"))
        homeless = running.join(pl.concat(placed).unique(), on=["namespace", "pod", "uid"], how="anti") if placed else running
        if homeless.height:
            add(WARNING, "pods_without_node", "pod_info",
                f"{homeless.height} running pods have no node ({_names(homeless.to_dicts(), 'namespace', 'pod')}): "
                "their requests and usage cannot be priced",
                "check kube-state-metrics exports kube_pod_info with the node label (it is empty for unscheduled pods)")
        usage = frames.get("cpu_usage")
        if usage is not None and usage.height and "uid" in usage.columns:
            anonymous = usage.filter(pl.col("uid").fill_null("") == "").select("namespace", "pod").unique()
            if anonymous.height:
                add(WARNING, "usage_without_pod_uid", "cpu_usage",
                    f"{anonymous.height} pods have cAdvisor series without the pod UID in their cgroup path (`id`) "
                    f"({_names(anonymous.to_dicts(), 'namespace', 'pod')}): if a pod was recreated under its name "
                    "this hour, its usage is shared among its incarnations by running time (an estimate)",
                    "keep cAdvisor's `id` label (no relabeling that drops it) for exact per-incarnation usage")
        with_usage = (usage.group_by("namespace", "pod").agg(pl.col("usage_core_seconds").sum() / 3600)
                      if usage is not None and usage.height else pl.DataFrame(schema={"namespace": pl.String, "pod": pl.String,
                                                                                       "usage_core_seconds": pl.Float64}))
        with_requests = (requests.filter(pl.col("request_core_seconds") > 0).select("namespace", "pod").unique()
                         if requests is not None and requests.height
                         else pl.DataFrame(schema={"namespace": pl.String, "pod": pl.String}))
        unrequested = (running.join(with_usage, on=["namespace", "pod"])
                       .filter(pl.col("usage_core_seconds") > USAGE_WITHOUT_REQUESTS_CORE_HOURS)
                       .join(with_requests, on=["namespace", "pod"], how="anti"))
        if unrequested.height:
            add(WARNING, "usage_without_requests", "cpu_requests",
                f"{unrequested.height} running pods use CPU without requesting any "
                f"({_names(unrequested.to_dicts(), 'namespace', 'pod')}): they are charged by usage only",
                "set CPU requests on these workloads (BestEffort pods make capacity planning and cost shares unreliable)")
        unused = running.join(with_requests, on=["namespace", "pod"]).join(with_usage, on=["namespace", "pod"], how="anti")
        if unused.height:
            add(WARNING, "requests_without_usage", "cpu_usage",
                f"{unused.height} running pods have requests but no cAdvisor usage series "
                f"({_names(unused.to_dicts(), 'namespace', 'pod')}): they are charged by requests only",
                "check the kubelet /metrics/cadvisor scrape covers every node (and is not filtered by relabeling)")
    return found


def check_node_overlap(cost_center: str, window: Window, nodes_by_owner: dict[tuple[str, str], set[str]]) -> list[Finding]:
    """Error when one node is in two cost centers for the same window: its cost would be counted twice.

    ``nodes_by_owner`` maps (cost center, cluster) -> node identities (instance ids, else names) in the window.
    """
    seen: dict[str, tuple[str, str]] = {}
    found = []
    for owner, nodes in sorted(nodes_by_owner.items()):
        for node in sorted(nodes):
            other = seen.get(node)
            if other and other[0] != owner[0] and cost_center in (other[0], owner[0]):
                found.append(Finding(
                    ERROR, "node_in_two_cost_centers", owner[1], str(window), "node_info",
                    f"node {node} is in cost center {other[0]} (cluster {other[1]}) and in cost center {owner[0]} "
                    f"(cluster {owner[1]}) for this window: its cost would be counted twice",
                    "keep each cluster (or each node pool) in exactly one cost center"))
            seen.setdefault(node, owner)
    return found


def node_identities(frames: dict[str, pl.DataFrame]) -> set[str]:
    """Return the instance ids (else node names) of the nodes in a window's frames."""
    nodes = frames.get("node_info")
    if nodes is None or not nodes.height:
        return set()
    ids = nodes.select(pl.coalesce(pl.col("provider_id").str.extract(r"/(i-[0-9a-f]+)$"), pl.col("node")).alias("id"))
    return set(ids["id"].to_list())


def summarise(findings: Iterable[Finding]) -> tuple[int, int]:
    """Return (errors, warnings)."""
    findings = list(findings)
    errors = sum(f.severity == ERROR for f in findings)
    return errors, len(findings) - errors


def validate_windows(store: ObjectStore, cost_center: CostCenterConfig, items: list[tuple[str, Window]],
                     peers: Sequence[tuple[CostCenterConfig, ObjectStore]] = ()) -> list[Finding]:
    """Validate each (cluster, window); write a report beside each manifest; raise when any error is found.

    ``peers`` are the other cost centers (with their stores) checked for nodes counted twice.
    """
    from podledger.windows import read_manifest, read_window_frames

    prefix = cost_center.storage.location.prefix
    findings: list[Finding] = []
    for cluster, window in items:
        key = manifest_key(prefix, cluster, window)
        if not store.exists(key):
            window_findings = [Finding(ERROR, "manifest_missing", cluster, str(window), None,
                                       f"no manifest at {store.scheme}://{store.bucket}/{key}",
                                       "run (or re-run) the export for this window")]
        else:
            manifest = read_manifest(store, prefix, cluster, window)
            frames = read_window_frames(store, prefix, cluster, window, manifest)
            window_findings = check_manifest(manifest) + check_window_data(manifest, frames)
            owners = {(cost_center.name, cluster): node_identities(frames)}
            for peer, peer_store in peers:
                peer_prefix = peer.storage.location.prefix
                for peer_cluster in peer.clusters:
                    if peer.name == cost_center.name or not peer_store.exists(
                            manifest_key(peer_prefix, peer_cluster.name, window)):
                        continue
                    peer_frames = read_window_frames(peer_store, peer_prefix, peer_cluster.name, window)
                    owners[(peer.name, peer_cluster.name)] = node_identities(peer_frames)
            window_findings += check_node_overlap(cost_center.name, window, owners)
            errors, warnings = summarise(window_findings)
            report = {"cost_center": cost_center.name, "cluster": cluster, "window": window.to_dict(),
                      "errors": errors, "warnings": warnings, "findings": [asdict(f) for f in window_findings]}
            store.put(report_key(key), json.dumps(report, indent=1).encode())
        for finding in window_findings:
            (log.error if finding.severity == ERROR else log.warning)("%s", finding)
        findings += window_findings
    errors, warnings = summarise(findings)
    log.info("cost center %s: validated %d cluster-windows: %d errors, %d warnings", cost_center.name, len(items),
             errors, warnings)
    if errors:
        first = next(f for f in findings if f.severity == ERROR)
        raise ValidationFailed(f"cost center {cost_center.name}: {errors} validation error(s), {warnings} warning(s); "
                               f"first: {first}")
    return findings


CUR_TYPES = {  # column -> accepted polars type classes
    "line_item_usage_start_date": (pl.Datetime,),
    "line_item_unblended_cost": (pl.Float64, pl.Float32, pl.Decimal),
    "pricing_public_on_demand_cost": (pl.Float64, pl.Float32, pl.Decimal),
    "line_item_resource_id": (pl.String,),
    "line_item_line_item_type": (pl.String,),
    "line_item_currency_code": (pl.String,),
}


def check_billing(cur: pl.DataFrame, instance_costs: pl.DataFrame, node_instances: pl.DataFrame, *, cluster: str,
                  source: str) -> list[Finding]:
    """Rules on the billing side: column types, one currency per period, node-hours with no EC2 usage row."""
    found: list[Finding] = []
    for column, kinds in CUR_TYPES.items():
        dtype = cur.schema.get(column)
        if dtype is not None and not isinstance(dtype, kinds) and dtype not in kinds:
            found.append(Finding(ERROR, "cur_column_type", cluster, "-", column,
                                 f"{source}: column {column} has type {dtype}, expected {' or '.join(k.__name__ for k in kinds)}",
                                 "export the CUR 2.0 standard schema (Parquet) without casting columns"))
    if "bill_billing_period_start_date" in cur.columns:
        periods = cur.group_by(pl.col("bill_billing_period_start_date").dt.strftime("%Y-%m").alias("period")).agg(
            pl.col("line_item_currency_code").drop_nulls().unique().alias("currencies"))
        for period, currencies in periods.iter_rows():
            if len(currencies) > 1:
                found.append(Finding(ERROR, "cur_mixed_currency", cluster, period, "line_item_currency_code",
                                     f"{source}: billing period {period} mixes currencies {sorted(currencies)}",
                                     "allocate one currency at a time: split the export or convert before loading"))
    priced = instance_costs.select("hour_start", "instance_id").with_columns(pl.lit(True).alias("priced"))
    missing = (node_instances.join(priced, on=["hour_start", "instance_id"], how="left")
               .filter(pl.col("priced").is_null()).sort("hour_start", "instance_id"))
    if missing.height:
        sample = ", ".join(f"{r['instance_id']}@{r['hour_start']:%Y-%m-%dT%H}Z" for r in missing.head(5).iter_rows(named=True))
        found.append(Finding(WARNING, "cur_missing_node_hours", cluster, "-", "line_item_resource_id",
                             f"{source}: {missing.height} node-hours have no EC2 usage row in the bill ({sample}); "
                             "they are reported as __unpriced__ until the bill covers them",
                             "wait for the next CUR delivery (billing data lags a day or more) and re-run enrichment; "
                             "check INCLUDE_RESOURCES is on so line_item_resource_id is filled"))
    return found
