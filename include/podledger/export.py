"""Export one cluster-window: run the catalog's rollups, write one file per metric, then the manifest."""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from podledger.catalog import (
    CATALOG,
    CATALOG_BY_NAME,
    CLUSTER_VALUES_PROBE,
    COUNTER_RESETS,
    MAX_COLUMNS,
    MAX_POINTS_PER_SERIES,
    MIN_SPLIT_SECONDS,
    NON_LABEL_KEYS,
    PROBES,
    MetricSpec,
    counter_delta,
    pod_matcher,
    render,
)
from podledger.config import ClusterConfig, CostCenterConfig
from podledger.exceptions import QueryTooLarge
from podledger.layout import EXTENSIONS, Window, manifest_key, metric_key
from podledger.manifests import Manifest, MetricEntry, check_owner, manifest_head, refuse_foreign_files
from podledger.metric_files import serialise
from podledger.promclient import PrometheusClient, QueryResult, instant_query, range_query
from podledger.shards import Shard, shard_label
from podledger.storage import ObjectStore

log = logging.getLogger(__name__)

@dataclass
class MetricFrame:
    """One metric's rows for one cluster-window, ready to serialise, with what fetching them cost."""

    spec: MetricSpec
    table: pa.Table
    series: int
    query_seconds: float
    bytes_received: int
    wire_bytes: int = 0
    samples: int = 0  # Prometheus stats: totalQueryableSamples
    prometheus_seconds: float = 0.0  # Prometheus stats: execTotalTime
    splits: int = 0  # extra queries caused by size limits

    def account(self, result: QueryResult, *, data: bool = True) -> None:
        """Add one query's cost (time, bytes, Prometheus stats; series when it is ``data``) to the frame's totals."""
        self.query_seconds += result.seconds
        self.bytes_received += result.bytes_received
        self.wire_bytes += result.wire_bytes
        self.samples += int(((result.stats or {}).get("samples") or {}).get("totalQueryableSamples") or 0)
        self.prometheus_seconds += _exec_seconds(result)
        if data:
            self.series += len(result.series)


def _exec_seconds(result: QueryResult) -> float:
    return float(((result.stats or {}).get("timings") or {}).get("execTotalTime") or 0.0)


def rollup_table(spec: MetricSpec, cluster: str, window: Window, rows: dict[tuple[Any, ...], dict[str, Any]]) -> pa.Table:
    keys = list(spec.keys)
    columns: dict[str, pa.Array] = {
        "cluster": pa.array([cluster] * len(rows), pa.string()),
        "window_start": pa.array([window.start] * len(rows), pa.timestamp("us", tz="UTC")),
        "window_end": pa.array([window.end] * len(rows), pa.timestamp("us", tz="UTC")),
    }
    items = sorted(rows.items(), key=lambda kv: kv[0])
    for i, key in enumerate(keys):
        columns[key] = pa.array([k[i] for k, _ in items], pa.string())
    for column in spec.columns:
        columns[column] = pa.array([row.get(column) for _, row in items], pa.float64())
    if spec.labels_map:
        columns["labels"] = pa.array([sorted(row["labels"].items()) for _, row in items],
                                     pa.map_(pa.string(), pa.string()))
    return pa.table(columns)


def _value(sample: list[Any]) -> float | None:
    value = float(sample[1])
    return None if math.isnan(value) else value


def _run_split(client: PrometheusClient, template: str, cluster: ClusterConfig, end: float, seconds: int, *,
               cluster_label: str | None, timeout: float, retries: int, context: str, matchers: tuple[str, ...] = (),
               shard: Shard) -> list[QueryResult]:
    """Run a rollup over (end - seconds, end]; when the backend refuses it for size, split it and recurse.

    Series splits come first (they shrink the samples read, the intermediate vectors and the answer), then
    time splits (halving the span). Every rollup of the catalog is additive over disjoint series sets and
    adjacent spans (value-seconds, counts, telescoping counter deltas) or a max (info values, peaks), so the
    pieces combine exactly.
    """
    own = shard.matcher()
    subset = matchers + ((own,) if own else ())
    query = render(template, window_seconds=seconds, interval_seconds=cluster.scrape_interval_seconds,
                   cluster_label=cluster_label, cluster_value=cluster.cluster_label_value, matchers=subset)
    try:
        return [instant_query(client, query, end, context=context, timeout=timeout, retries=retries)]
    except QueryTooLarge as exc:
        again = functools.partial(_run_split, client, template, cluster, cluster_label=cluster_label, timeout=timeout,
                                  retries=retries, context=context, matchers=matchers)
        parts = shard.split()
        if parts:
            log.info("%s: too large, splitting the series into %d sets by %s", context, len(parts), shard.label)
            return [r for part in parts
                    for r in again(end, seconds, shard=part)]
        if seconds <= MIN_SPLIT_SECONDS:
            raise QueryTooLarge(f"{exc}; still too large for {shard.matcher() or 'all series'} over {seconds}s: raise "
                                "the backend's limit (query.max-samples, max-fetched-series) or use a smaller "
                                "time_frame_seconds") from None
        first = max((seconds // 2) // MIN_SPLIT_SECONDS * MIN_SPLIT_SECONDS, MIN_SPLIT_SECONDS)
        second = seconds - first
        log.info("%s: too large over %ds, splitting into %ds + %ds", context, seconds, first, second)
        return again(end - second, first, shard=shard) + again(end, second, shard=shard)


def _pods_with_resets(client: PrometheusClient, spec: MetricSpec, cluster: ClusterConfig, window: Window, frame: MetricFrame, *,
                      cluster_label: str | None, timeout: float, retries: int) -> list[str] | None:
    """Return the pods whose ``spec.counter`` series reset in (start - R, end]; None when the check was refused."""
    query = render(COUNTER_RESETS.format(selector=spec.counter), window_seconds=window.seconds,
                   interval_seconds=cluster.scrape_interval_seconds, cluster_label=cluster_label,
                   cluster_value=cluster.cluster_label_value)
    try:
        result = instant_query(client, query, window.end.timestamp(), timeout=timeout, retries=retries,
                               context=f"cluster {cluster.name}, window {window}, metric {spec.name} (resets)")
    except QueryTooLarge:
        return None  # too large to check: every series takes the exact form (which splits as needed)
    frame.account(result, data=False)
    return sorted({item["metric"].get("pod", "") for item in result.series})


def _column_queries(client: PrometheusClient, spec: MetricSpec, template: str, cluster: ClusterConfig, window: Window,
                    frame: MetricFrame, *, cluster_label: str | None, timeout: float,
                    retries: int) -> list[tuple[str, tuple[str, ...]]]:
    """Return (template, extra matchers) pairs whose results add up to the column over the window.

    Non-counter columns run as they are. Counter columns run the fast delta for every pod without a reset and
    the exact (subquery) delta for the pods with one: two disjoint pod sets, so their rows simply add up.
    """
    if not spec.counter:
        return [(template, ())]
    fast = template.replace("{delta}", counter_delta(spec.counter, resets=False))
    exact = template.replace("{delta}", counter_delta(spec.counter, resets=True))
    pods = _pods_with_resets(client, spec, cluster, window, frame, cluster_label=cluster_label, timeout=timeout,
                             retries=retries)
    if pods is None:
        return [(exact, ())]
    if not pods:
        return [(fast, ())]
    log.info("cluster %s window %s metric %s: counter resets in %d pod(s), exact form for them",
             cluster.name, window, spec.name, len(pods))
    return [(fast, (pod_matcher(pods, negate=True),)), (exact, (pod_matcher(pods, negate=False),))]


def query_metric(client: PrometheusClient, spec: MetricSpec, cluster: ClusterConfig, window: Window, *,
                 cluster_label: str | None, timeout: float, retries: int = 4) -> MetricFrame:
    """Run every column query of ``spec`` at the window's end and join them on the key labels."""
    rows: dict[tuple[Any, ...], dict[str, Any]] = {}
    frame = MetricFrame(spec, pa.table({}), 0, 0.0, 0)
    at = window.end.timestamp()
    for column, column_template in spec.columns.items():
        context = f"cluster {cluster.name}, window {window}, metric {spec.name} ({column})"
        results: list[QueryResult] = []
        for template, matchers in _column_queries(client, spec, column_template, cluster, window, frame,
                                                  cluster_label=cluster_label, timeout=timeout, retries=retries):
            parts = _run_split(client, template, cluster, at, window.seconds, cluster_label=cluster_label,
                               timeout=timeout, retries=retries, context=context, matchers=matchers,
                               shard=Shard(shard_label(spec.keys)))
            frame.splits += len(parts) - 1
            results += parts
        for result in results:
            frame.account(result)
            for item in result.series:
                labels = item.get("metric", {})
                key: tuple[Any, ...] = tuple(labels.get(k, "") for k in spec.keys)
                extra: dict[str, str] = {}
                if spec.labels_map:
                    extra = {k: v for k, v in labels.items()
                             if k not in spec.keys and k not in NON_LABEL_KEYS and k != cluster_label}
                    key = key + (tuple(sorted(extra.items())),)
                row = rows.setdefault(key, {"labels": extra})
                value = _value(item["value"])
                if row.get(column) is None:
                    row[column] = value
                elif value is not None:
                    row[column] = max(row[column], value) if column in MAX_COLUMNS else row[column] + value
    if spec.labels_map:
        rows = {k[:-1]: v for k, v in rows.items()}
    frame.table = rollup_table(spec, cluster.name, window, rows)
    return frame


def run_probes(client: PrometheusClient, cluster: ClusterConfig, window: Window, *, cluster_label: str | None,
               timeout: float, retries: int) -> dict[str, Any]:
    """Run the diagnostic probes of the catalog; return their answers (label sets and values) for the manifest."""
    answers: dict[str, Any] = {"prometheus_exec_seconds": 0.0, "query_seconds": 0.0}
    at = window.end.timestamp()
    for name, template in PROBES.items():
        query = render(template, window_seconds=window.seconds, interval_seconds=cluster.scrape_interval_seconds,
                       cluster_label=cluster_label, cluster_value=cluster.cluster_label_value)
        try:
            result = instant_query(client, query, at, context=f"cluster {cluster.name}, window {window}, probe {name}",
                                   timeout=timeout, retries=retries)
        except QueryTooLarge as exc:
            # Probes are diagnostics, not data: record that this one could not run and carry on.
            answers.setdefault("probe_errors", {})[name] = str(exc)
            continue
        answers["prometheus_exec_seconds"] += _exec_seconds(result)
        answers["query_seconds"] += result.seconds
        answers[name] = [{**item.get("metric", {}), "value": float(item["value"][1])} for item in result.series[:50]]
        answers[f"{name}_count"] = len(result.series)
    if cluster_label:
        query = CLUSTER_VALUES_PROBE.format(label=cluster_label, range=f"{window.seconds * 1000 - 1}ms")
        result = instant_query(client, query, at, context=f"cluster {cluster.name}, window {window}, probe cluster_values",
                               timeout=timeout, retries=retries)
        answers["cluster_label"] = cluster_label
        answers["cluster_label_values"] = sorted(item["metric"].get(cluster_label, "") for item in result.series)
    return answers


def query_raw(client: PrometheusClient, spec: MetricSpec, cluster: ClusterConfig, window: Window, step: int, *,
              cluster_label: str | None, timeout: float, retries: int = 4) -> MetricFrame:
    """Fetch the series behind ``spec`` at ``step`` over (start, end]: one row per series and timestamp."""
    selector = render(spec.raw, window_seconds=window.seconds, interval_seconds=cluster.scrape_interval_seconds,
                      cluster_label=cluster_label, cluster_value=cluster.cluster_label_value)
    frame = MetricFrame(spec, pa.table({}), 0, 0.0, 0)
    columns: dict[str, list[Any]] = {"timestamp": [], "value": [], "labels": []}
    chunk = step * MAX_POINTS_PER_SERIES  # stay under Prometheus's 11,000 points per series
    cursor = window.start.timestamp()
    while cursor < window.end.timestamp():
        stop = min(cursor + chunk, window.end.timestamp())
        result = range_query(client, selector, cursor + step, stop, step, timeout=timeout, retries=retries,
                             context=f"cluster {cluster.name}, window {window}, metric {spec.name} (raw, step {step}s)")
        frame.account(result)
        for item in result.series:
            labels = sorted((k, v) for k, v in item.get("metric", {}).items() if k != cluster_label)
            for ts, value in item.get("values", []):
                columns["timestamp"].append(dt.datetime.fromtimestamp(float(ts), dt.UTC))
                columns["value"].append(float(value))
                columns["labels"].append(labels)
        cursor = stop
    n = len(columns["value"])
    frame.table = pa.table({
        "cluster": pa.array([cluster.name] * n, pa.string()),
        "timestamp": pa.array(columns["timestamp"], pa.timestamp("ms", tz="UTC")),
        "value": pa.array(columns["value"], pa.float64()),
        "labels": pa.array(columns["labels"], pa.map_(pa.string(), pa.string())),
    })
    return frame


def enabled_metrics(cost_center: CostCenterConfig) -> tuple[MetricSpec, ...]:
    """Return the catalog entries the cost center exports (all but the disabled optional ones)."""
    return tuple(spec for spec in CATALOG if spec.name not in cost_center.metrics.disable)


class _WindowLog(logging.Handler):
    """Collect what the exporter and the Prometheus client log while one window exports (no secrets are logged)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.dumps({"time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(),
                                      "level": record.levelname, "logger": record.name,
                                      "message": record.getMessage()}))


def export_window(client: PrometheusClient, store: ObjectStore, cost_center: CostCenterConfig, cluster: ClusterConfig,
                  window: Window, *, metrics: tuple[MetricSpec, ...] | None = None, adopt: bool = False) -> Manifest:
    """Export one cluster-window and return its manifest; the manifest is written only after every file.

    The old manifest is deleted first, so a run killed half way leaves the window visibly incomplete
    rather than pointing at a mix of old and new files. Keys are deterministic: a re-run replaces them.
    The window's log (queries, answers' sizes, retries, timings) is written beside the manifest, as the seed's
    CronJob writes its logs to the bucket, whether the export succeeds or fails.
    """
    handler = _WindowLog()
    loggers = [logging.getLogger(name) for name in ("podledger.export", "podledger.promclient")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        if logger.getEffectiveLevel() > logging.INFO:
            logger.setLevel(logging.INFO)
    prefix = cost_center.storage.location.prefix
    log_key = manifest_key(prefix, cluster.name, window).replace("_manifest.json", "_export_log.jsonl")
    try:
        return _export_window(client, store, cost_center, cluster, window, metrics=metrics, adopt=adopt)
    except Exception as exc:
        handler.lines.append(json.dumps({"time": dt.datetime.now(dt.UTC).isoformat(), "level": "ERROR",
                                         "logger": "podledger.export", "message": f"{type(exc).__name__}: {exc}"}))
        raise
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.removeHandler(handler)
            logger.setLevel(level)
        try:
            store.put(log_key, ("\n".join(handler.lines) + "\n").encode())
        except Exception as exc:  # noqa: BLE001 - the log never hides the export's own outcome
            log.warning("cluster %s window %s: could not write the export log %s: %s", cluster.name, window, log_key, exc)


def _export_window(client: PrometheusClient, store: ObjectStore, cost_center: CostCenterConfig, cluster: ClusterConfig,
                   window: Window, *, metrics: tuple[MetricSpec, ...] | None, adopt: bool) -> Manifest:
    prefix = cost_center.storage.location.prefix
    fmt = cost_center.storage.format
    metrics = enabled_metrics(cost_center) if metrics is None else metrics
    # Centralized mode: the cluster's series are selected by the cluster label's value.
    cluster_label = cost_center.cluster_label if cluster.cluster_label_value is not None else None
    started = time.perf_counter()
    m_key = manifest_key(prefix, cluster.name, window)
    if store.exists(m_key):
        check_owner(store, m_key, cost_center.name)
        store.delete([m_key])
    elif not adopt:
        refuse_foreign_files(store, prefix, cluster.name, window, [s.name for s in metrics])

    def run(spec: MetricSpec) -> MetricFrame:
        frame = query_metric(client, spec, cluster, window, cluster_label=cluster_label,
                             timeout=cost_center.query_timeout_seconds, retries=cost_center.query_retries)
        if cost_center.query_delay_seconds:
            time.sleep(cost_center.query_delay_seconds)
        return frame

    # Threads bound concurrency (QUERIES_BATCH_SIZE) and memory: at most that many results in flight.
    # The first failure cancels the queries not started yet: the window fails as a whole.
    pool = ThreadPoolExecutor(max_workers=cost_center.queries_batch_size)
    try:
        futures = [pool.submit(run, spec) for spec in metrics]
        frames = [future.result() for future in futures]
    finally:
        pool.shutdown(wait=True, cancel_futures=True)

    raw_entries: dict[str, Any] = {}
    for name, step in cost_center.metrics.raw.items():
        raw = query_raw(client, CATALOG_BY_NAME[name], cluster, window, step, cluster_label=cluster_label,
                        timeout=cost_center.query_timeout_seconds, retries=cost_center.query_retries)
        key = metric_key(prefix, cluster.name, window, f"{name}_raw", fmt)
        store.put(key, serialise(raw.table, fmt, metric=f"{name}_raw", keys=(), window=window))
        raw_entries[name] = {"key": key, "rows": raw.table.num_rows, "series": raw.series, "step_seconds": step,
                             "query_seconds": round(raw.query_seconds, 4), "bytes_received": raw.bytes_received,
                             "wire_bytes": raw.wire_bytes, "prometheus_samples": raw.samples}
    probes = run_probes(client, cluster, window, cluster_label=cluster_label,
                        timeout=cost_center.query_timeout_seconds, retries=cost_center.query_retries)
    entries: dict[str, MetricEntry] = {}
    for frame in frames:
        key = metric_key(prefix, cluster.name, window, frame.spec.name, fmt)
        store.put(key, serialise(frame.table, fmt, metric=frame.spec.name, keys=frame.spec.keys, window=window,
                                 labels_map=frame.spec.labels_map))
        stale = [metric_key(prefix, cluster.name, window, frame.spec.name, other)
                 for other in EXTENSIONS if other != fmt]
        store.delete([k for k in stale if store.exists(k)])
        entries[frame.spec.name] = {
            "key": key, "rows": frame.table.num_rows, "series": frame.series, "required": frame.spec.required,
            "query_seconds": round(frame.query_seconds, 4), "bytes_received": frame.bytes_received,
            "wire_bytes": frame.wire_bytes, "prometheus_samples": frame.samples,
            "prometheus_exec_seconds": round(frame.prometheus_seconds, 4),
            "splits": frame.splits,
        }
        log.info("cluster %s window %s metric %s: %d rows -> %s", cluster.name, window, frame.spec.name,
                 frame.table.num_rows, key)
    manifest = Manifest.build(
        manifest_head(cost_center, cluster, window, exporter="podledger", started=started), metrics=entries,
        raw=raw_entries, probes=probes,
        # Prometheus's own execution time for everything this window asked (metrics, reset checks, probes).
        prometheus_exec_seconds=round(sum(f.prometheus_seconds for f in frames) + probes["prometheus_exec_seconds"], 4))
    store.put(m_key, manifest.to_json())
    log.info("cluster %s window %s: complete, manifest %s", cluster.name, window, m_key)
    return manifest
