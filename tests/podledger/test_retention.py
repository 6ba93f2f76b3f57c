"""Retention deletes old exported windows only: nothing outside the prefix, newer, or not podledger's."""

from __future__ import annotations

import datetime as dt

import pytest

from helpers import s3_store
from podledger.layout import Window, manifest_key, metric_key
from podledger.retention import apply_retention

UTC = dt.UTC


def test_retention_keeps_newer_and_foreign_objects(moto):
    store = s3_store(moto, "retention")
    now = dt.datetime.now(UTC) + dt.timedelta(days=45)  # the objects written below are 45 days old by then
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


@pytest.mark.parametrize("store_kind", ["s3", "file"])
def test_history_exported_today_is_kept_until_it_is_retention_days_old(moto, tmp_path, store_kind):
    """A run triggered today for windows 40 days back (or a backfill) must not delete what it just exported.

    Found when the calendar passed the demo day + 30 days: the export DAG's retention task deleted the windows
    its own run had exported, and the enrichment found no manifests.
    """
    from podledger.storage import FsspecStore

    store = s3_store(moto, "retention-history") if store_kind == "s3" else FsspecStore("file", str(tmp_path))
    today = dt.datetime.now(UTC)
    history = Window(today - dt.timedelta(days=40), today - dt.timedelta(days=40) + dt.timedelta(hours=1))
    window_keys = [metric_key("k8s/prometheus", "prod", history, "cpu_usage"),
                   manifest_key("k8s/prometheus", "prod", history)]
    for key in window_keys:
        store.put(key, b"x")
    assert set(store.modified("k8s/prometheus")) == set(window_keys)
    assert all(abs((t - today).total_seconds()) < 600 for t in store.modified("k8s/prometheus").values())
    assert apply_retention(store, "k8s/prometheus", 30, today) == []
    assert set(window_keys) <= set(store.list("k8s/prometheus"))
    # 31 days after the export the window is old by both clocks: deleted, manifest first.
    later = today + dt.timedelta(days=31)
    deleted = apply_retention(store, "k8s/prometheus", 30, later)
    assert deleted[0].endswith("_manifest.json") and sorted(deleted) == sorted(window_keys)
    assert not set(window_keys) & set(store.list("k8s/prometheus"))


def test_a_window_is_kept_whole_when_any_of_its_objects_is_recent():
    from podledger.retention import expired_keys

    cutoff = dt.datetime(2026, 11, 1, tzinfo=UTC)
    window = Window(cutoff - dt.timedelta(days=5), cutoff - dt.timedelta(days=5, hours=-1))
    metric, manifest = metric_key("p", "prod", window, "cpu_usage"), manifest_key("p", "prod", window)
    old, new = cutoff - dt.timedelta(days=2), cutoff + dt.timedelta(hours=1)
    assert expired_keys({metric: old, manifest: new}, "p", cutoff) == []  # re-exported: manifest rewritten last
    assert sorted(expired_keys({metric: old, manifest: old}, "p", cutoff)) == sorted([metric, manifest])
