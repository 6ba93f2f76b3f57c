"""Rightsizing from usage percentiles with headroom, priced per workload."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from podledger.rightsizing import recommendations

START = dt.datetime(2026, 11, 2, tzinfo=dt.UTC)


def test_overprovisioned_workload_gets_smaller_requests_and_a_saving():
    hours = 20
    rows = pl.DataFrame({
        "hour_start": [START + dt.timedelta(hours=h) for h in range(hours) for _ in range(2)],
        "cost_center": "cc", "cluster": "c", "namespace": "payments", "controller_kind": "Deployment",
        "controller_name": "api", "running_hours": 1.0,
        "cpu_request_core_hours": 2.0, "cpu_usage_core_hours": [0.5 + 0.01 * h for h in range(hours) for _ in range(2)],
        "memory_request_gib_hours": 4.0, "memory_usage_gib_hours": 1.0,
        "cpu_allocated_core_hours": 2.0, "memory_allocated_gib_hours": 4.0,
        "cpu_cost": 2 * 0.04, "memory_cost": 4 * 0.005,
    })
    rec = recommendations(rows).row(0, named=True)
    assert rec["cpu_request_cores"] == 2.0 and rec["avg_pods"] == 2.0
    p95 = pl.Series([0.5 + 0.01 * h for h in range(hours)]).quantile(0.95, "linear")
    assert rec["cpu_recommended_cores"] == pytest.approx(p95 * 1.2)
    assert rec["memory_recommended_gib"] == pytest.approx(1.3)
    expected = ((2.0 - p95 * 1.2) * 0.04 + (4.0 - 1.3) * 0.005) * 2 * 730
    assert rec["monthly_saving"] == pytest.approx(expected)


def test_per_container_recommendations_from_exported_metrics(stack_env, prometheus, moto, fresh_bucket, store_factory):
    """Each container of a workload gets its own recommendation, from the exported per-container series."""
    from helpers import SYNTH_START, make_cost_center
    from podledger.connections import ConnectionInfo
    from podledger.enrich import enrich_cluster
    from podledger.export import export_window
    from podledger.layout import plan_windows
    from podledger.promclient import client_from_connection
    from podledger.rightsizing import container_recommendations
    from podledger.usage import container_hours
    from podledger.windows import read_window_frames

    cc = make_cost_center(fresh_bucket)
    store = store_factory(fresh_bucket)
    client = client_from_connection(ConnectionInfo("p", host="127.0.0.1", port=prometheus.port))
    windows = plan_windows(SYNTH_START, SYNTH_START + dt.timedelta(hours=2), 3600)
    parts = []
    for window in windows:
        export_window(client, store, cc, cc.clusters[0], window)
        frames = read_window_frames(store, "k8s/prometheus", "demo-eks", window)
        parts.append(container_hours(frames).with_columns(pl.lit(window.start).alias("hour_start"),
                                                          pl.lit("demo-eks").alias("cluster")))
    result = enrich_cluster(cc, cc.clusters[0], windows[0].start, windows[-1].end, metrics_store=store,
                            billing_store=store_factory("billing"))
    prices = recommendations(result.rows)
    recs = container_recommendations(pl.concat(parts), prices)
    web = recs.filter((pl.col("controller_name") == "web") & (pl.col("namespace") == "checkout"))
    assert set(web["container"]) == {"web", "envoy"}, "one recommendation per container of the workload"
    envoy = web.filter(pl.col("container") == "envoy").row(0, named=True)
    assert envoy["cpu_request_cores"] == pytest.approx(0.1)
    assert 0 < envoy["cpu_recommended_cores"] < 0.1 and envoy["monthly_saving"] > 0
    assert recs["monthly_saving"].is_sorted(descending=True)
