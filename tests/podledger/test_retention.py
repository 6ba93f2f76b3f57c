"""Retention deletes old exported windows only: nothing outside the prefix, newer, or not podledger's."""

from __future__ import annotations

import datetime as dt

from helpers import s3_store
from podledger.layout import Window, manifest_key, metric_key
from podledger.retention import apply_retention

UTC = dt.UTC


def test_retention_keeps_newer_and_foreign_objects(moto):
    store = s3_store(moto, "retention")
    now = dt.datetime(2026, 11, 22, 12, tzinfo=UTC)
    old = Window(now - dt.timedelta(days=40), now - dt.timedelta(days=40) + dt.timedelta(hours=1))
    new = Window(now - dt.timedelta(days=2), now - dt.timedelta(days=2) + dt.timedelta(hours=1))
    keep = [metric_key("k8s/prometheus", "prod", new, "cpu_usage"), manifest_key("k8s/prometheus", "prod", new),
            # same layout, outside the prefix
            metric_key("k8s/other", "prod", old, "cpu_usage"), metric_key("k8s/prometheus-archive", "prod", old, "cpu_usage"),
            # under the prefix but not podledger's
            "k8s/prometheus/README.txt", "k8s/prometheus/prod/notes/1600000000_cpu_usage.parquet"]
    drop = [metric_key("k8s/prometheus", "prod", old, "cpu_usage"), metric_key("k8s/prometheus", "dev", old, "node_info"),
            manifest_key("k8s/prometheus", "prod", old)]
    for key in keep + drop:
        store.put(key, b"x")
    deleted = apply_retention(store, "k8s/prometheus", 30, now)
    assert sorted(deleted) == sorted(drop) and deleted[0].endswith("_manifest.json")
    remaining = set(store.list(""))
    assert set(keep) <= remaining and not set(drop) & remaining
