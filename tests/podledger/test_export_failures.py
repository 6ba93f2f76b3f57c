"""The exporter against a failing backend: rate limits (429 from nginx limit_req) and Prometheus stopped mid-export."""

from __future__ import annotations

import datetime as dt
import shutil
import threading
import time

import pytest

from helpers import SYNTH_START, make_cost_center, s3_store
from podledger.connections import ConnectionInfo
from podledger.exceptions import PrometheusQueryError
from podledger.export import export_window
from podledger.layout import manifest_key, plan_windows
from podledger.promclient import client_from_connection
from podledger_lab.stack import start_nginx_auth, start_prometheus

WINDOW = plan_windows(SYNTH_START, SYNTH_START + dt.timedelta(hours=1), 3600)[0]
SECRETS = {"user": "u", "password": "p", "token": "t", "bearer": "b", "tenant": "x"}


def _rows(manifest) -> dict[str, int]:
    return {name: entry["rows"] for name, entry in manifest["metrics"].items()}


@pytest.fixture(scope="module")
def rate_limited(prometheus, tmp_path_factory):
    work = tmp_path_factory.mktemp("nginx-429")
    server = start_nginx_auth(prometheus.url, work, rate="3r/s", **SECRETS)
    yield server, work
    server.stop()


def test_rate_limited_queries_are_retried_with_backoff(stack_env, prometheus, rate_limited, moto):
    server, work = rate_limited
    store = s3_store(moto, "ratelimit-ok")
    cc = make_cost_center("ratelimit-ok", query_retries=8)  # 5 queries at once against 3 requests/s
    limited = client_from_connection(ConnectionInfo("prom_limited", host="127.0.0.1", port=server.port, schema="limited"))
    direct = client_from_connection(ConnectionInfo("prom_direct", host="127.0.0.1", port=prometheus.port))
    manifest = export_window(limited, store, cc, cc.clusters[0], WINDOW)
    rejected = sum(' 429 ' in line for line in (work / "nginx-access.log").read_text().splitlines())
    assert rejected > 0, "the limit must have rejected some queries"
    assert store.exists(manifest_key("k8s/prometheus", "demo-eks", WINDOW))
    reference = export_window(direct, s3_store(moto, "ratelimit-ref"), cc, cc.clusters[0], WINDOW)
    assert _rows(manifest) == _rows(reference)


def test_rate_limit_without_retries_fails_naming_metric_cluster_window(stack_env, rate_limited, moto):
    server, _ = rate_limited
    store = s3_store(moto, "ratelimit-fail")
    cc = make_cost_center("ratelimit-fail", query_retries=0, queries_batch_size=5)
    limited = client_from_connection(ConnectionInfo("prom_limited", host="127.0.0.1", port=server.port, schema="limited"))
    with pytest.raises(PrometheusQueryError, match=r"cluster demo-eks, window 2026-11-02T00:00Z.*metric .*HTTP 429"):
        export_window(limited, store, cc, cc.clusters[0], WINDOW)
    assert not [k for k in store.list("k8s") if k.endswith("_manifest.json")], "no manifest for a failed window"


def test_prometheus_stopped_mid_export_leaves_no_manifest_and_the_retry_completes(stack_env, prometheus, moto, tmp_path):
    source = prometheus.log.rsplit("/", 1)[0] + "/tsdb"
    shutil.copytree(source, tmp_path / "tsdb", ignore=shutil.ignore_patterns("lock", "wal", "chunks_head"))
    server = start_prometheus(tmp_path / "tsdb", tmp_path)
    port = server.port
    store = s3_store(moto, "midway")
    key = manifest_key("k8s/prometheus", "demo-eks", WINDOW)
    # One query at a time, 0.3 s apart: the export takes several seconds, long enough to stop Prometheus in it.
    cc = make_cost_center("midway", queries_batch_size=1, query_delay_seconds=0.3, query_retries=2)
    client = client_from_connection(ConnectionInfo("prom_midway", host="127.0.0.1", port=port), timeout=10)
    try:
        first = export_window(client, store, cc, cc.clusters[0], WINDOW)  # a complete window to be re-exported
        assert store.exists(key)

        errors: list[BaseException] = []

        def run() -> None:
            try:
                export_window(client, store, cc, cc.clusters[0], WINDOW)
            except BaseException as exc:  # noqa: BLE001 - the test inspects it
                errors.append(exc)

        worker = threading.Thread(target=run)
        worker.start()
        time.sleep(2.0)
        assert worker.is_alive(), "the export finished before Prometheus could be stopped"
        server.stop()  # by PID, mid-export
        worker.join(timeout=120)
        assert len(errors) == 1 and isinstance(errors[0], PrometheusQueryError), errors
        message = str(errors[0])
        assert "cluster demo-eks, window 2026-11-02T00:00Z" in message and "cannot reach" in message
        assert "connection 'prom_midway'" in message
        assert not store.exists(key), "a window whose export failed must not look complete"

        server = start_prometheus(tmp_path / "tsdb", tmp_path, port=port)  # Prometheus is back
        again = export_window(client, store, cc, cc.clusters[0], WINDOW)  # what the task retry runs
        assert store.exists(key)
        assert _rows(again) == _rows(first)
        metric_keys = [k for k in store.list("k8s") if "/metric=" in k]
        assert len(metric_keys) == len(first["metrics"]), "one file per metric, no stale or duplicate objects"
    finally:
        server.stop()
