"""Import raw Prometheus history as podledger windows: validate the raw answers, compute the rollups, write the manifest.

What a user's existing history in the seed's layout most likely holds, and what any ``curl`` or ``promtool`` dump
gives, is one raw answer per metric and window::

    <prefix>/<cluster>/end=YYYYMMDD/day=D/metric=<prometheus metric>/<window_start_epoch>_<prometheus metric>.json.gz

holding ``{"status": "success", "data": {"resultType": "matrix", "result": [...]}}``: either a ``query_range``
answer (points at every step from the window's start) or an instant query of a range selector (``x[1h]``: the
scraped samples themselves). podledger's own raw mode (``metric=<name>_raw``) is read the same way.

For each metric of the catalog the importer applies the catalog's own raw selector (the same matchers the
exporter sends to Prometheus) and computes, per series and then per key, what the catalog's rollup query would
have answered: value-seconds (``sum_over_time`` x interval), seconds present (``count_over_time`` x interval),
peaks, last values with their labels, and counters' exact increases (resets counted as Prometheus' ``increase``
does). The result is written as ordinary podledger metric files plus a manifest that names every source file, so
validation, enrichment and the warehouse treat an imported window like an exported one.

Never silent: a file that is not a successful matrix answer, holds samples outside its window, or a required
metric with no file is an error naming the object; a counter without a known value before the window (no sample
at or before its start and no previous window's file) is a warning in the manifest with its effect.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import logging
import re
import time
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from podledger.catalog import NON_LABEL_KEYS, UID_FROM_CGROUP, MetricSpec, render
from podledger.config import ClusterConfig, CostCenterConfig
from podledger.exceptions import ExportIncompleteError
from podledger.export import enabled_metrics, rollup_table
from podledger.layout import Window, day_prefix, manifest_key, metric_key
from podledger.manifests import Manifest, MetricEntry, check_owner, manifest_head, refuse_foreign_files
from podledger.metric_files import serialise
from podledger.storage import ObjectStore

log = logging.getLogger(__name__)

_MATCHER = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')
_SAMPLING_TOLERANCE = 0.1  # a file sampled within 10 % of the scrape interval holds the scrapes themselves


class HistoryImportError(ExportIncompleteError):
    """Raw history could not be imported as a window; no manifest was written for it."""


@dataclass(frozen=True)
class Selector:
    """A catalog raw selector: the metric name and its label matchers (label, operator, value)."""

    metric: str
    matchers: tuple[tuple[str, str, str], ...]

    def expression(self, columns: list[str]) -> pl.Expr:
        """A polars filter equivalent to the matchers (a missing label is the empty string, as in PromQL)."""
        condition = pl.lit(True)
        for label, op, value in self.matchers:
            column = pl.col(label).fill_null("") if label in columns else pl.lit("")
            if op == "=":
                test = column == value
            elif op == "!=":
                test = column != value
            else:  # PromQL regular expressions are anchored at both ends
                test = column.str.contains(f"^(?:{value})$")
                test = test if op == "=~" else ~test
            condition = condition & test
        return condition


def selector_of(spec: MetricSpec, cluster_label: str | None, cluster_value: str | None) -> Selector:
    """Parse the catalog's raw selector of ``spec`` for one cluster into a metric name and matchers."""
    text = render(spec.raw, window_seconds=3600, interval_seconds=60, cluster_label=cluster_label,
                  cluster_value=cluster_value)
    name, _, rest = text.partition("{")
    matchers = []
    for label, op, value in _MATCHER.findall(rest):
        try:
            value = json.loads(f'"{value}"')
        except ValueError:
            pass  # a PromQL escape JSON does not know (\x..): the value is used as written
        matchers.append((label, op, value))
    return Selector(name.strip(), tuple(matchers))


@dataclass
class RawFile:
    """One raw answer: its series' labels (one row per series) and points (series id, timestamp, value)."""

    key: str
    series: pl.DataFrame  # sid, series_key, one column per label
    points: pl.DataFrame  # sid, ts (epoch seconds), value

    @property
    def label_columns(self) -> list[str]:
        return [c for c in self.series.columns if c not in ("sid", "series_key")]


def parse_raw_answer(data: bytes, key: str, window: Window | None) -> RawFile:
    """Parse and check one raw answer; ``window`` (when given) bounds its timestamps to [start - span, end]."""
    def bad(what: str) -> HistoryImportError:
        where = f"window {window}: " if window else ""
        return HistoryImportError(f"{where}{key} {what}; fix or remove the file, then import the window again")

    try:
        text = gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
        answer = json.loads(text)
    except (OSError, ValueError, EOFError) as exc:
        raise bad(f"is not a (gzipped) JSON Prometheus answer ({type(exc).__name__}: {str(exc)[:80]})") from None
    if not isinstance(answer, dict) or answer.get("status") != "success":
        status = answer.get("status") if isinstance(answer, dict) else type(answer).__name__
        raise bad(f"is not a successful Prometheus answer (status {status!r})")
    data_ = answer.get("data")
    if not isinstance(data_, dict) or data_.get("resultType") != "matrix" or not isinstance(data_.get("result"), list):
        got = data_.get("resultType") if isinstance(data_, dict) else None
        raise bad(f"is a {got!r} answer, not a matrix (history is a query_range answer or a range selector's samples)")
    labels: list[dict[str, str]] = []
    sids: list[int] = []
    stamps: list[float] = []
    values: list[float] = []
    for sid, item in enumerate(data_["result"]):
        if not isinstance(item, dict) or not isinstance(item.get("metric"), dict):
            raise bad(f"has a series without its labels (item {sid})")
        labels.append(item["metric"])
        try:
            for ts, value in item.get("values") or []:
                stamps.append(float(ts))
                values.append(float(value))
                sids.append(sid)
        except (TypeError, ValueError) as exc:
            raise bad(f"has a sample that is not a number in series {str(item['metric'])[:80]} ({exc})") from None
    series = pl.DataFrame(labels, infer_schema_length=None) if labels else pl.DataFrame()
    series = series.select(pl.all().cast(pl.String)).with_columns(
        pl.Series("sid", range(len(labels)), pl.Int64),
        pl.Series("series_key", [json.dumps(sorted(m.items())) for m in labels], pl.String))
    points = pl.DataFrame({"sid": sids, "ts": stamps, "value": values},
                          schema={"sid": pl.Int64, "ts": pl.Float64, "value": pl.Float64})
    if window is not None and points.height:
        low, high = points.select(pl.col("ts").min()).item(), points.select(pl.col("ts").max()).item()
        if high > window.end.timestamp() or low < window.start.timestamp() - window.seconds:
            first = dt.datetime.fromtimestamp(low, dt.UTC).isoformat()
            last = dt.datetime.fromtimestamp(high, dt.UTC).isoformat()
            raise bad(f"holds samples from {first} to {last}, outside the window: it is not this window's answer")
    return RawFile(key, series, points)


@dataclass
class ImportedWindow:
    """What importing one cluster-window did: the manifest written and its warnings."""

    manifest: Manifest
    warnings: list[str] = field(default_factory=list)


def raw_candidates(prefix: str, cluster: str, window: Window, spec: MetricSpec, metric: str) -> list[str]:
    """Keys where a raw answer for ``spec`` in ``window`` may live: the seed's name, then podledger's raw mode."""
    keys = []
    for name in (metric, f"{spec.name}_raw"):
        base = metric_key(prefix, cluster, window, name, "json.gz")
        keys += [base, base.removesuffix(".gz")]
    return keys


class _Sources:
    """The raw files of a cluster's windows, listed once per day folder and parsed once per window."""

    def __init__(self, store: ObjectStore, prefix: str, cluster: str) -> None:
        self.store, self.prefix, self.cluster = store, prefix, cluster
        self._listed: dict[str, set[str]] = {}
        self._parsed: dict[str, RawFile] = {}

    def find(self, window: Window, spec: MetricSpec, metric: str) -> str | None:
        folder = day_prefix(self.prefix, self.cluster, window.start) + "/"
        if folder not in self._listed:
            self._listed[folder] = set(self.store.list(folder))
        return next((k for k in raw_candidates(self.prefix, self.cluster, window, spec, metric)
                     if k in self._listed[folder]), None)

    def read(self, key: str, window: Window) -> RawFile:
        if key not in self._parsed:
            self._parsed[key] = parse_raw_answer(self.store.get(key), key, window)
        return self._parsed[key]

    def forget_before(self, window: Window) -> None:
        """Drop parsed files of windows before ``window``'s previous one: memory stays bounded by two windows."""
        keep = (window.start - (window.end - window.start)).timestamp()
        for key in [k for k in self._parsed if int(k.rsplit("/", 1)[-1].split("_", 1)[0]) < keep]:
            del self._parsed[key]


def _sampling_seconds(points: pl.DataFrame, scrape_interval: int) -> float:
    """The file's sampling period: the scrape interval when samples are the scrapes, else the query's step."""
    gaps = points.sort("sid", "ts").select(pl.col("ts").diff().over("sid").alias("gap")).drop_nulls()
    gaps = gaps.filter(pl.col("gap") > 0)
    if gaps.height == 0:
        return float(scrape_interval)
    median = float(gaps.select(pl.col("gap").median()).item())
    if abs(median - scrape_interval) <= _SAMPLING_TOLERANCE * scrape_interval:
        return float(scrape_interval)
    return round(median, 3)


def _with_uid(frame: pl.DataFrame) -> pl.DataFrame:
    """``label_replace(…, "uid", "$1", "id", UID_FROM_CGROUP)``: the pod UID from the cgroup path when it matches."""
    if "id" not in frame.columns:
        return frame
    uid = pl.col("id").fill_null("").str.extract(f"^(?:{UID_FROM_CGROUP})$", 1)
    existing = pl.col("uid") if "uid" in frame.columns else pl.lit(None, pl.String)
    return frame.with_columns(pl.coalesce(uid, existing).alias("uid"))


def _increase(points: pl.DataFrame, baseline: pl.DataFrame | None) -> pl.DataFrame:
    """Each series' exact increase over the window's points (``increase`` semantics: a drop is a reset from 0).

    ``baseline`` (sid, base) is the last value at or before the window's start; a series without one was born in
    the window and counts its first value whole.
    """
    ordered = points.sort("sid", "ts")
    if baseline is not None:
        ordered = ordered.join(baseline, on="sid", how="left")
    else:
        ordered = ordered.with_columns(pl.lit(None, pl.Float64).alias("base"))
    previous = pl.col("value").shift(1).over("sid")
    previous = pl.when(pl.int_range(pl.len()).over("sid") == 0).then(pl.col("base")).otherwise(previous)
    step = (pl.when(previous.is_null()).then(pl.col("value"))
            .when(pl.col("value") >= previous).then(pl.col("value") - previous)
            .otherwise(pl.col("value")))
    return ordered.group_by("sid").agg(step.sum().alias("v"))


def _rollup(spec: MetricSpec, raw: RawFile, window: Window, selector: Selector, interval: float,
            cluster_label: str | None, previous: RawFile | None, warnings: list[str]) -> dict[tuple[str, ...], dict[str, Any]]:
    """Compute what the catalog's rollup queries of ``spec`` would answer for the window, as export rows."""
    series = raw.series.filter(selector.expression(raw.label_columns))
    if spec.source.startswith("container_"):
        series = _with_uid(series)
    start, end = window.start.timestamp(), window.end.timestamp()
    inside = raw.points.join(series.select("sid"), on="sid").filter((pl.col("ts") > start) & (pl.col("ts") <= end))
    before = raw.points.join(series.select("sid"), on="sid").filter(pl.col("ts") <= start)
    per_series: dict[str, pl.DataFrame] = {}
    grouped = inside.sort("sid", "ts").group_by("sid")
    for column in spec.columns:
        if column == "present_seconds":
            per_series[column] = grouped.agg((pl.len() * interval).cast(pl.Float64).alias("v"))
        elif column in ("value", "peak_bytes"):
            per_series[column] = grouped.agg((pl.col("value").last() if column == "value" else pl.col("value").max())
                                             .alias("v"))
        elif spec.counter:
            baseline = before.sort("sid", "ts").group_by("sid").agg(pl.col("value").last().alias("base"))
            if before.height == 0 and previous is not None:  # a range selector's samples: the last one before
                last = previous.points.sort("sid", "ts").group_by("sid").agg(pl.col("value").last().alias("base"))
                baseline = (last.join(previous.series.select("sid", "series_key"), on="sid")
                            .join(series.select("sid", "series_key"), on="series_key", suffix="_here")
                            .select(pl.col("sid_here").alias("sid"), "base"))
            elif before.height == 0 and inside.height:
                warnings.append(
                    f"{spec.name}: no sample at or before {window.start.isoformat()} and no previous window's file "
                    f"beside {raw.key}: each counter is counted from its first sample in the window (the increase "
                    "between the last sample before the window and the first one inside it is not counted; a "
                    "counter born in the window loses its first sample's value)")
                first = inside.sort("sid", "ts").group_by("sid").agg(pl.col("value").first().alias("base"))
                baseline = first
            per_series[column] = _increase(inside, baseline)
        else:
            scale = interval / 100 if column == "usage_gpu_seconds" else interval
            per_series[column] = grouped.agg((pl.col("value").sum() * scale).alias("v"))
    label_columns = [c for c in series.columns if c not in ("sid", "series_key")]
    keys = list(spec.keys)
    rows: dict[tuple[str, ...], dict[str, Any]] = {}
    for column, values in per_series.items():
        joined = values.join(series, on="sid").with_columns(
            *[(pl.col(k).fill_null("") if k in label_columns else pl.lit("")).alias(k) for k in keys])
        if spec.labels_map:
            extra = [c for c in label_columns
                     if c not in keys and c not in NON_LABEL_KEYS and c != cluster_label and c != "__name__"]
            joined = joined.with_columns(pl.struct(extra).alias("_extra") if extra else pl.lit(None).alias("_extra"))
            for record in joined.group_by([*keys, "_extra"]).agg(pl.col("v").max()).iter_rows(named=True):
                labels = {k: v for k, v in (record["_extra"] or {}).items() if v not in (None, "")}
                key = tuple(record[k] for k in keys) + (tuple(sorted(labels.items())),)
                rows.setdefault(key, {"labels": labels})[column] = record["v"]
            continue
        if spec.name.startswith("network_"):  # max over the pod-cgroup and sandbox copies of each interface
            inner = [*keys, "interface"] if "interface" in label_columns else keys
            joined = joined.with_columns(pl.col("interface").fill_null("")) if "interface" in label_columns else joined
            joined = joined.group_by(inner).agg(pl.col("v").max())
        combine = pl.col("v").max() if column in ("value", "peak_bytes") else pl.col("v").sum()
        for record in joined.group_by(keys).agg(combine).iter_rows(named=True):
            rows.setdefault(tuple(record[k] for k in keys), {"labels": {}})[column] = record["v"]
    if spec.labels_map:
        rows = {k[:-1]: v for k, v in rows.items()}
    return rows


def import_window(store: ObjectStore, cost_center: CostCenterConfig, cluster: ClusterConfig, window: Window, *,
                  adopt: bool = False, sources: _Sources | None = None) -> ImportedWindow:
    """Import one cluster-window of raw history: read and check its raw answers, write its metric files, then
    its manifest (last). A required metric without a raw file is an error naming the keys looked for."""
    started = time.perf_counter()
    prefix = cost_center.storage.location.prefix
    fmt = cost_center.storage.format
    sources = sources or _Sources(store, prefix, cluster.name)
    cluster_label = cost_center.cluster_label if cluster.cluster_label_value is not None else None
    specs = enabled_metrics(cost_center)
    previous_window = Window(window.start - (window.end - window.start), window.start)
    plans: list[tuple[MetricSpec, Selector, str | None]] = []
    for spec in specs:
        selector = selector_of(spec, cluster_label, cluster.cluster_label_value)
        key = sources.find(window, spec, selector.metric)
        if key is None and spec.required:
            looked = raw_candidates(prefix, cluster.name, window, spec, selector.metric)[0]
            raise HistoryImportError(
                f"cluster {cluster.name}, window {window}: no raw answer for the required metric {spec.name} "
                f"({selector.metric}); looked for {store.scheme}://{store.bucket}/{looked} (also .json and "
                f"metric={spec.name}_raw): export the window with podledger instead, or add the file")
        plans.append((spec, selector, key))

    m_key = manifest_key(prefix, cluster.name, window)
    if store.exists(m_key):  # deleted first: an import killed half way leaves the window visibly incomplete
        check_owner(store, m_key, cost_center.name)
        store.delete([m_key])
    elif not adopt:
        refuse_foreign_files(store, prefix, cluster.name, window, [s.name for s in specs])
    warnings: list[str] = []
    tables = []
    imported: dict[str, Any] = {}
    for spec, selector, key in plans:
        if key is None:
            warnings.append(f"{spec.name}: no raw file for {selector.metric} (optional): written empty, as if "
                            "Prometheus had answered nothing")
            rows: dict[tuple[str, ...], dict[str, Any]] = {}
            imported[spec.name] = {"source": None, "metric": selector.metric}
        else:
            raw = sources.read(key, window)
            interval = _sampling_seconds(raw.points, cluster.scrape_interval_seconds)
            previous_key = sources.find(previous_window, spec, selector.metric) if spec.counter else None
            previous = sources.read(previous_key, previous_window) if previous_key else None
            rows = _rollup(spec, raw, window, selector, interval, cluster_label, previous, warnings)
            if interval != cluster.scrape_interval_seconds:
                warnings.append(f"{spec.name}: {key} is sampled every {interval:g}s, not at the scrape interval "
                                f"({cluster.scrape_interval_seconds}s): value-seconds are each point's value x "
                                f"{interval:g}s")
            imported[spec.name] = {"source": key, "metric": selector.metric, "series": raw.series.height,
                                   "points": raw.points.height, "sampling_seconds": interval,
                                   "previous": previous_key,
                                   "query_range": bool((raw.points["ts"] == window.start.timestamp()).any())}
        tables.append((spec, rollup_table(spec, cluster.name, window, rows)))

    entries: dict[str, MetricEntry] = {}
    for spec, table in tables:
        key = metric_key(prefix, cluster.name, window, spec.name, fmt)
        store.put(key, serialise(table, fmt, metric=spec.name, keys=spec.keys, window=window,
                                 labels_map=spec.labels_map))
        entries[spec.name] = {"key": key, "rows": table.num_rows, "series": imported[spec.name].get("series", 0),
                              "required": spec.required, "imported_from": imported[spec.name]["source"]}
    if any(entry.get("query_range") for entry in imported.values()):
        warnings.append("query_range answers (a point at the window's start): a series that ended inside the window "
                        "counts until Prometheus' lookback (5 min) past its last sample when Prometheus wrote no "
                        "staleness marker for it (backfilled blocks, a target gone while Prometheus was down); "
                        "range-selector dumps (x[1h]) hold the samples themselves and have no such error")
    for warning in warnings:
        log.warning("cluster %s window %s: %s", cluster.name, window, warning)
    manifest = Manifest.build(
        manifest_head(cost_center, cluster, window, exporter="podledger import", started=started), metrics=entries,
        raw={}, probes={}, imported={"sources": imported, "warnings": warnings})
    store.put(m_key, manifest.to_json())
    log.info("cluster %s window %s: imported from raw history, manifest %s", cluster.name, window, m_key)
    return ImportedWindow(manifest, warnings)


def import_history(store: ObjectStore, cost_center: CostCenterConfig, cluster: ClusterConfig,
                   windows: list[Window], *, adopt: bool = False) -> list[ImportedWindow]:
    """Import consecutive windows of one cluster (each window's previous file gives its counters' baseline)."""
    prefix = cost_center.storage.location.prefix
    sources = _Sources(store, prefix, cluster.name)
    imported = []
    for window in windows:
        sources.forget_before(window)
        imported.append(import_window(store, cost_center, cluster, window, adopt=adopt, sources=sources))
    return imported
