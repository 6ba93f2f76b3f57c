"""Misbehaving servers and damaged data: an error naming the culprit, nothing marked complete, nothing lost.

A real misbehaving HTTP endpoint (its own process on loopback, stopped by PID) answers HTTP 200 with what
broken proxies and backends really send; a real Prometheus holds a pod whose name is not ASCII; exported
windows and bill files are damaged in the S3 endpoint as an unlucky operator finds them.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import sys
import uuid
from pathlib import Path

import polars as pl
import pytest

from helpers import SYNTH_START, make_cost_center, prometheus_client, s3_store
from podledger.connections import ConnectionInfo
from podledger.enrich import enrich_cluster
from podledger.exceptions import BillingDataError, ExportIncompleteError, PrometheusQueryError
from podledger.export import export_window
from podledger.layout import Window, manifest_key
from podledger.promclient import client_from_connection
from podledger_lab.stack import _spawn, free_port, load_blocks, start_prometheus

SERVER = Path(__file__).resolve().parents[1] / "servers" / "misbehaving_prometheus.py"
WINDOW = Window(SYNTH_START, SYNTH_START + dt.timedelta(hours=1))


@pytest.mark.parametrize(("mode", "culprit"), [
    ("not_json", "not valid JSON"),
    ("html_login", "content type 'text/html"),
    ("truncated", "not valid JSON"),
    ("non_numeric", "not a number: \"[1793581200, 'twelve']\""),
    ("matrix", "expected a vector and got 'matrix'"),
    ("status_error", "not success (internal storage unavailable)"),
])
def test_a_bad_answer_fails_the_window_naming_it_and_writes_no_manifest(mode, culprit, tmp_path, moto):
    port = free_port()
    server = _spawn(f"bad-{mode}", [sys.executable, str(SERVER), str(port), mode], tmp_path / "bad.log", port,
                    f"http://127.0.0.1:{port}", "/-/ready", 30)
    store = s3_store(moto, f"bad-{mode.replace('_', '-')}-{uuid.uuid4().hex[:6]}")
    cc = make_cost_center(store.bucket, query_retries=0)
    client = client_from_connection(ConnectionInfo("prom_misbehaving", host="127.0.0.1", port=port,
                                                   password="s3cr3t-never-shown", login="podledger"))
    try:
        with pytest.raises(PrometheusQueryError) as error:
            export_window(client, store, cc, cc.clusters[0], WINDOW)
    finally:
        server.stop()
    message = str(error.value)
    assert culprit in message, message
    assert "prom_misbehaving" in message and "cluster demo-eks" in message and str(WINDOW) in message
    assert "metric " in message or "probe " in message
    assert "s3cr3t" not in message
    keys = store.list("")
    assert not [k for k in keys if k.endswith("_manifest.json")], "a failed window must never be marked complete"
    assert not [k for k in keys if "/metric=" in k], "no partial metric files are left behind"
    (log_key,) = [k for k in keys if k.endswith("_export_log.jsonl")]  # the window's log says what happened
    logged = " ".join(json.loads(line)["message"] for line in store.get(log_key).decode().splitlines())
    assert culprit in logged and "s3cr3t" not in logged


def test_a_non_ascii_pod_with_a_counter_reset_exports(tmp_path, moto):
    """The reset check selects the pod by name: its regex must be valid RE2 for any Unicode text."""
    start = int(SYNTH_START.timestamp())
    pod, uid = "café-☕-0", "0f0e0d0c-0b0a-0908-0706-050403020100"
    labels = (f'container="app",image="example/app:1",namespace="shop",pod="{pod}",'
              f'id="/kubepods/burstable/pod{uid}/abc"')
    lines = [f'kube_node_info{{node="n1",provider_id="aws:///us-east-1a/i-0aaa"}} 1 {t}' for t in range(start, start + 3601, 60)]
    value = 0.0
    for t in range(start, start + 3601, 60):
        value = 0.0 if t == start + 1800 else value + 30.0  # restarted in place at :30
        lines.append(f"container_cpu_usage_seconds_total{{{labels}}} {value} {t}")
    (tmp_path / "unicode.om").write_text("\n".join(sorted(lines, key=lambda line: line.split(" ")[0])) + "\n# EOF\n")
    load_blocks(tmp_path / "unicode.om", tmp_path / "tsdb")
    server = start_prometheus(tmp_path / "tsdb", tmp_path)
    store = s3_store(moto, f"unicode-{uuid.uuid4().hex[:6]}")
    cc = make_cost_center(store.bucket)
    try:
        manifest = export_window(prometheus_client(server), store, cc, cc.clusters[0], WINDOW)
    finally:
        server.stop()
    usage = pl.read_parquet(io.BytesIO(store.get(manifest["metrics"]["cpu_usage"]["key"])))
    row = usage.filter(pl.col("pod") == pod).row(0, named=True)
    # 29 increments of 30 core-seconds up to :29, the restart at :30 (its first value, 0, counts as the increase,
    # Prometheus' convention), then 30 more: 1770 core-seconds.
    assert row["usage_core_seconds"] == pytest.approx(1770.0)
    assert row["uid"] == uid


@pytest.fixture
def exported(prometheus, moto):
    """One window of the synthetic cluster exported to a fresh bucket: (cost center, store)."""
    store = s3_store(moto, f"damaged-{uuid.uuid4().hex[:8]}")
    cc = make_cost_center(store.bucket)
    export_window(prometheus_client(prometheus), store, cc, cc.clusters[0], WINDOW)
    return cc, store


def _manifest(store) -> str:
    return manifest_key("k8s/prometheus", "demo-eks", WINDOW)


@pytest.mark.parametrize(("damage", "culprit"), [
    ("metric file deleted", "is missing"),
    ("metric file of garbage", "cannot be read"),
    ("metric file missing a row", "where the manifest says"),
    ("manifest truncated", "is not a JSON manifest"),
])
def test_a_damaged_window_names_the_object_and_the_fix(exported, billing_bucket, moto, damage, culprit):
    from helpers import s3_options
    from podledger.storage import FsspecStore
    from podledger.validate import validate_windows

    cc, store = exported
    import json

    manifest = json.loads(store.get(_manifest(store)))
    victim = manifest["metrics"]["cpu_usage"]["key"]
    if damage == "metric file deleted":
        store.delete([victim])
    elif damage == "metric file of garbage":
        store.put(victim, b"\x00garbage, not parquet\xff" * 10)
    elif damage == "metric file missing a row":  # a valid file, but not the one the manifest describes
        buffer = io.BytesIO()
        pl.read_parquet(io.BytesIO(store.get(victim))).head(-1).write_parquet(buffer)
        store.put(victim, buffer.getvalue())
    else:
        victim = _manifest(store)
        store.put(victim, store.get(victim)[:100])
    billing = FsspecStore("s3", billing_bucket, s3_options(moto.url))
    for run in (lambda: enrich_cluster(cc, cc.clusters[0], WINDOW.start, WINDOW.end, metrics_store=store,
                                       billing_store=billing),
                lambda: validate_windows(store, cc, [("demo-eks", WINDOW)])):
        with pytest.raises(ExportIncompleteError) as error:
            run()
        message = str(error.value)
        assert culprit in message and f"s3://{store.bucket}/{victim}" in message and "force" in message, message


def test_a_bill_file_with_a_cost_column_of_strings_names_file_and_column(exported, synth, moto):
    cc, store = exported
    bill = s3_store(moto, f"bill-strings-{uuid.uuid4().hex[:6]}")
    for path in sorted(synth.cur_root.rglob("*")):
        if path.is_file():
            data = path.read_bytes()
            if path.suffix == ".parquet":
                frame = pl.read_parquet(io.BytesIO(data))
                frame = frame.with_columns(pl.col("line_item_unblended_cost").cast(pl.String).str.replace(r"^0\.", "O."))
                buffer = io.BytesIO()
                frame.write_parquet(buffer)
                data = buffer.getvalue()
            bill.put(f"cur/{path.relative_to(synth.cur_root)}", data)
    cc = make_cost_center(store.bucket, billing={"uri": f"s3://{bill.bucket}/cur/podledger-cur"})
    with pytest.raises(BillingDataError, match=r"podledger-cur-00001\.snappy\.parquet: column line_item_unblended_cost "
                                               r"holds \d+ value\(s\) that are not numbers"):
        enrich_cluster(cc, cc.clusters[0], WINDOW.start, WINDOW.end, metrics_store=store, billing_store=bill)
