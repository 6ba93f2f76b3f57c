"""Raw history in the seed's layout (no podledger manifest) is validated, imported and priced like an export."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import uuid

import pytest
import requests

from helpers import SYNTH_START, make_cost_center, prometheus_client, s3_store
from podledger.cli import main as cli
from podledger.enrich import enrich_cluster
from podledger.export import enabled_metrics, export_window
from podledger.history import HistoryImportError, import_history, selector_of
from podledger.layout import Window, manifest_key, metric_key, plan_windows
from podledger.validate import report_key

END = SYNTH_START + dt.timedelta(hours=2)
PREFIX = "k8s/prometheus"
KEY = ["hour_start", "node", "namespace", "pod", "uid"]
COMPARED = ["total_cost", "cpu_cost", "memory_cost", "cpu_usage_core_hours", "memory_usage_gib_hours", "running_hours", "network_receive_bytes", "gpu_allocated_hours",
            "cpu_request_core_hours", "memory_request_gib_hours", "network_transmit_bytes", "pod_labels", "controller_kind", "controller_name"]


def _source_metrics(cc) -> list[str]:
    return sorted({selector_of(spec, None, None).metric for spec in enabled_metrics(cc)})


def _dump(prometheus, store, cc, windows: list[Window], *, shape: str, skip: tuple[str, ...] = ()) -> None:
    """Write each window's raw answers at the seed's keys, as Prometheus sent them (what curl would save)."""
    base = f"http://127.0.0.1:{prometheus.port}/api/v1"
    for window in windows:
        for metric in _source_metrics(cc):
            if metric in skip:
                continue
            if shape == "samples":  # an instant query of a range selector: the scraped samples of (start, end]
                response = requests.get(f"{base}/query", params={
                    "query": f"{metric}[{window.seconds * 1000 - 1}ms]", "time": window.end.timestamp()}, timeout=60)
            else:  # the seed's query_range over the window
                response = requests.get(f"{base}/query_range", params={
                    "query": metric, "start": window.start.timestamp(), "end": window.end.timestamp(),
                    "step": "60"}, timeout=60)
            response.raise_for_status()
            store.put(metric_key(PREFIX, "demo-eks", window, metric, "json.gz"), gzip.compress(response.content))


def _windows(start: dt.datetime, end: dt.datetime) -> list[Window]:
    return plan_windows(start, end, 3600)


@pytest.fixture(scope="module")
def exported(prometheus, moto, billing_bucket):
    """The same hours exported by podledger (Parquet), and their allocation."""
    store = s3_store(moto, f"exported-{uuid.uuid4().hex[:6]}")
    cc = make_cost_center(store.bucket)
    for window in _windows(SYNTH_START, END):
        export_window(prometheus_client(prometheus), store, cc, cc.clusters[0], window)
    return enrich_cluster(cc, cc.clusters[0], SYNTH_START, END, metrics_store=store,
                          billing_store=s3_store(moto, billing_bucket))


def _allocate(moto, billing_bucket, store, cc):
    return enrich_cluster(cc, cc.clusters[0], SYNTH_START, END, metrics_store=store,
                          billing_store=s3_store(moto, billing_bucket))


def test_raw_samples_history_allocates_equal_to_the_same_hours_exported(prometheus, moto, billing_bucket, exported):
    store = s3_store(moto, f"history-{uuid.uuid4().hex[:6]}")
    cc = make_cost_center(store.bucket)
    # The hour before the range is dumped too (it is empty: the cluster starts at SYNTH_START): the first window's
    # counters know there was nothing before them.
    _dump(prometheus, store, cc, _windows(SYNTH_START - dt.timedelta(hours=1), END), shape="samples")
    assert not store.exists(manifest_key(PREFIX, "demo-eks", _windows(SYNTH_START, END)[0]))

    imported = import_history(store, cc, cc.clusters[0], _windows(SYNTH_START, END))
    for item in imported:
        assert item.warnings == [w for w in item.warnings if "(optional)" in w]  # no counter-baseline warning
        sources = item.manifest["imported"]["sources"]
        assert sources["cpu_usage"]["source"].endswith("_container_cpu_usage_seconds_total.json.gz")
        assert sources["cpu_usage"]["sampling_seconds"] == 60 and sources["cpu_usage"]["previous"]
        assert item.manifest["exporter"]["name"] == "podledger import"
    result = _allocate(moto, billing_bucket, store, cc)
    assert result.reconciliation["ok"].all()
    a = result.rows.sort(KEY).select(*KEY, *COMPARED)
    b = exported.rows.sort(KEY).select(*KEY, *COMPARED)
    assert a.height == b.height > 100 and a.select(KEY).equals(b.select(KEY))
    for column in COMPARED:
        if a[column].dtype.is_numeric():
            assert ((a[column] - b[column]).abs() <= 1e-9 * (1 + b[column].abs())).all(), column
        else:
            assert a[column].equals(b[column]), column


def test_the_seeds_query_range_history_imports_and_reconciles(prometheus, moto, billing_bucket, exported):
    store = s3_store(moto, f"qrange-{uuid.uuid4().hex[:6]}")
    cc = make_cost_center(store.bucket)
    _dump(prometheus, store, cc, _windows(SYNTH_START, END), shape="query_range")
    imported = import_history(store, cc, cc.clusters[0], _windows(SYNTH_START, END))
    # query_range's first point (at the window's start) is each counter's baseline: no previous file is needed.
    assert not any("no sample at or before" in w for item in imported for w in item.warnings)
    result = _allocate(moto, billing_bucket, store, cc)
    assert result.reconciliation["ok"].all()
    # Every billed cent is on a pod of the same node-hour as in podledger's own export.
    by_node = ["hour_start", "node"]
    a = result.rows.group_by(by_node).agg(total=pl_sum("total_cost")).sort(by_node)
    b = exported.rows.group_by(by_node).agg(total=pl_sum("total_cost")).sort(by_node)
    assert a.select(by_node).equals(b.select(by_node))
    assert ((a["total"] - b["total"]).abs() < 1e-9).all()
    # Requests sampled at the scrape points equal podledger's rollups, except where query_range's lookback carries a
    # series past its last sample (no staleness marker in backfilled blocks): at most 5 minutes, named in a warning.
    filled = [pl_col(k).fill_null("") if k != "hour_start" else pl_col(k) for k in KEY]
    joined = result.rows.with_columns(filled).join(exported.rows.with_columns(filled), on=KEY, suffix="_exported")
    assert joined.height == exported.rows.height
    extra = joined.filter((pl_col("cpu_request_core_hours") - pl_col("cpu_request_core_hours_exported")).abs() > 1e-9)
    assert extra.height <= 2
    assert ((extra["running_hours"] - extra["running_hours_exported"]).is_between(1e-9, 5 / 60 + 1e-9)).all()
    assert all(any("lookback" in w for w in item.warnings) for item in imported)


def pl_sum(column: str):  # noqa: ANN201 - a polars expression
    return pl_col(column).sum()


def pl_col(column: str):  # noqa: ANN201 - a polars expression
    import polars as pl

    return pl.col(column)


def test_bad_raw_files_and_missing_metrics_fail_naming_the_object(prometheus, moto):
    store = s3_store(moto, f"badraw-{uuid.uuid4().hex[:6]}")
    cc = make_cost_center(store.bucket)
    window = _windows(SYNTH_START, SYNTH_START + dt.timedelta(hours=1))[0]
    _dump(prometheus, store, cc, [window], shape="samples", skip=("container_cpu_usage_seconds_total",))
    with pytest.raises(HistoryImportError, match="required metric cpu_usage") as error:
        import_history(store, cc, cc.clusters[0], [window])
    assert "metric=container_cpu_usage_seconds_total" in str(error.value)
    cpu_key = metric_key(PREFIX, "demo-eks", window, "container_cpu_usage_seconds_total", "json.gz")

    cases = {
        "not a successful": {"status": "error", "errorType": "bad_data", "error": "parse error"},
        "not a matrix": {"status": "success", "data": {"resultType": "vector", "result": []}},
        "outside the window": {"status": "success", "data": {"resultType": "matrix", "result": [
            {"metric": {"__name__": "container_cpu_usage_seconds_total", "pod": "a"},
             "values": [[window.end.timestamp() + 3600, "1"]]}]}},
        "not a number": {"status": "success", "data": {"resultType": "matrix", "result": [
            {"metric": {"pod": "a"}, "values": [[window.end.timestamp(), "one"]]}]}},
    }
    for message, answer in cases.items():
        store.put(cpu_key, gzip.compress(json.dumps(answer).encode()))
        with pytest.raises(HistoryImportError, match=message) as error:
            import_history(store, cc, cc.clusters[0], [window])
        assert cpu_key in str(error.value)
        assert not store.exists(manifest_key(PREFIX, "demo-eks", window))


def test_a_counter_without_its_previous_window_is_a_named_warning_and_the_cli_imports(prometheus, moto, tmp_path,
                                                                                        monkeypatch, stack_env):
    store = s3_store(moto, f"cliraw-{uuid.uuid4().hex[:6]}")
    cc = make_cost_center(store.bucket)
    second = _windows(SYNTH_START, END)[1]
    _dump(prometheus, store, cc, [second], shape="samples")
    config = tmp_path / "cost_centers.yaml"
    config.write_text(json.dumps({"cost_centers": [cc.model_dump(mode="json", exclude_none=True)]}))
    assert cli(["import", "--cost-center", cc.name, "--config", str(config), "--start", second.start.isoformat(),
                "--end", second.end.isoformat()]) == 0
    manifest = json.loads(store.get(manifest_key(PREFIX, "demo-eks", second)))
    warnings = manifest["imported"]["warnings"]
    assert any(w.startswith("cpu_usage: no sample at or before") and "not counted" in w for w in warnings)
    assert manifest["metrics"]["cpu_usage"]["rows"] > 0
    assert cli(["validate", "--cost-center", cc.name, "--config", str(config), "--start", second.start.isoformat(),
                "--end", second.end.isoformat()]) == 0
    report = json.loads(store.get(report_key(manifest_key(PREFIX, "demo-eks", second))))
    assert any(f["rule"] == "imported_history" and f["metric"] == "cpu_usage" for f in report["findings"])
