"""The seed's file format: json.gz is a Prometheus API answer; foreign files are never overwritten; a log per window."""

from __future__ import annotations

import datetime as dt
import gzip
import io
import json
import uuid

import polars as pl
import pytest

from helpers import SYNTH_START, make_cost_center, prometheus_client, s3_store
from podledger.enrich import enrich_cluster
from podledger.exceptions import ExportIncompleteError
from podledger.export import export_window
from podledger.layout import manifest_key, metric_key, plan_windows

END = SYNTH_START + dt.timedelta(hours=2)


def _export(prometheus, moto, fmt: str):  # noqa: ANN202
    store = s3_store(moto, f"fmt-{fmt.replace('.', '-')}-{uuid.uuid4().hex[:6]}")
    cc = make_cost_center(store.bucket, storage={"uri": f"s3://{store.bucket}/k8s/prometheus", "format": fmt})
    for window in plan_windows(SYNTH_START, END, 3600):
        export_window(prometheus_client(prometheus), store, cc, cc.clusters[0], window)
    return cc, store


def test_json_gz_windows_are_prometheus_answers_and_allocate_as_parquet_does(prometheus, moto, billing_bucket):
    billing = s3_store(moto, billing_bucket)
    results = {}
    for fmt in ("json.gz", "parquet"):
        cc, store = _export(prometheus, moto, fmt)
        results[fmt] = enrich_cluster(cc, cc.clusters[0], SYNTH_START, END, metrics_store=store, billing_store=billing)
        if fmt == "json.gz":
            window = plan_windows(SYNTH_START, END, 3600)[0]
            manifest = json.loads(store.get(manifest_key("k8s/prometheus", "demo-eks", window)))
            assert manifest["format"] == "json.gz"
            for name, entry in manifest["metrics"].items():
                answer = json.load(gzip.open(io.BytesIO(store.get(entry["key"]))))  # a plain json.load
                assert answer["status"] == "success" and answer["data"]["resultType"] == "vector", name
                for item in answer["data"]["result"]:
                    float(item["value"][1])  # every value a number, as Prometheus writes it
                assert len({tuple(sorted((k, v) for k, v in i["metric"].items() if k != "podledger_column"))
                            for i in answer["data"]["result"]}) == entry["rows"], name
    key = ["hour_start", "node", "namespace", "pod", "uid"]
    a = results["json.gz"].rows.sort(key).select(*key, "total_cost", "cpu_usage_core_hours", "pod_labels")
    b = results["parquet"].rows.sort(key).select(*key, "total_cost", "cpu_usage_core_hours", "pod_labels")
    assert a.height == b.height and a.select(key).equals(b.select(key))
    assert ((a["total_cost"] - b["total_cost"]).abs() < 1e-12).all()
    assert a["pod_labels"].equals(b["pod_labels"])
    assert results["json.gz"].reconciliation["ok"].all()


def test_files_podledger_did_not_write_are_never_overwritten_unless_adopted(prometheus, moto):
    store = s3_store(moto, f"foreign-{uuid.uuid4().hex[:6]}")
    cc = make_cost_center(store.bucket, storage={"uri": f"s3://{store.bucket}/k8s/prometheus", "format": "json.gz"})
    window = plan_windows(SYNTH_START, SYNTH_START + dt.timedelta(hours=1), 3600)[0]
    key = metric_key("k8s/prometheus", "demo-eks", window, "cpu_usage", "json.gz")
    seeds = gzip.compress(json.dumps({"status": "success", "data": {"resultType": "matrix", "result": [
        {"metric": {"__name__": "container_cpu_usage_seconds_total", "pod": "x"}, "values": [[1, "1"]]}]}}).encode())
    store.put(key, seeds)  # the seed exporter's file at the very key podledger would write
    client = prometheus_client(prometheus)
    with pytest.raises(ExportIncompleteError, match="not written by podledger") as error:
        export_window(client, store, cc, cc.clusters[0], window)
    assert f"s3://{store.bucket}/{key}" in str(error.value) and "--adopt" in str(error.value)
    assert store.get(key) == seeds and not store.exists(manifest_key("k8s/prometheus", "demo-eks", window))
    export_window(client, store, cc, cc.clusters[0], window, adopt=True)
    assert store.get(key) != seeds
    export_window(client, store, cc, cc.clusters[0], window)  # podledger's own files: re-exported as usual


def test_each_window_writes_its_log_beside_the_manifest(prometheus, moto):
    cc, store = _export(prometheus, moto, "parquet")
    window = plan_windows(SYNTH_START, END, 3600)[0]
    key = manifest_key("k8s/prometheus", "demo-eks", window).replace("_manifest.json", "_export_log.jsonl")
    lines = [json.loads(line) for line in store.get(key).decode().splitlines()]
    messages = " ".join(line["message"] for line in lines)
    assert "metric cpu_usage" in messages and "complete, manifest" in messages
    assert all(set(line) == {"time", "level", "logger", "message"} for line in lines)
    assert pl.DataFrame(lines)["level"].is_in(["INFO", "WARNING", "ERROR"]).all()
