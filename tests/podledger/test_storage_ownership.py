"""Storage ownership: cost centers never share a cluster folder, retention touches only its own, exports refuse others'."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from helpers import make_cost_center, prometheus_client, s3_store
from podledger.config import load_config
from podledger.exceptions import ExportIncompleteError
from podledger.export import export_window
from podledger.layout import Window, manifest_key, metric_key
from podledger.retention import apply_retention

UTC = dt.UTC


def _write(tmp_path, *cost_centers: dict) -> str:
    path = tmp_path / "cc.yaml"
    path.write_text(json.dumps({"cost_centers": list(cost_centers)}))
    return str(path)


@pytest.mark.parametrize(("name", "second", "refused"), [
    ("default storage, same cluster name", {"name": "b", "clusters": [{"name": "prod"}]}, True),
    ("same prefix, other cluster", {"name": "b", "clusters": [{"name": "dev"}]}, False),
    ("same cluster, own prefix", {"name": "b", "clusters": [{"name": "prod"}], "storage": {"uri": "s3://podledger/b"}},
     False),
    ("same prefix written with a trailing slash", {"name": "b", "clusters": [{"name": "prod"}],
                                                   "storage": {"uri": "s3://podledger/k8s/prometheus/"}}, True),
    ("discovery may write any folder under a shared prefix", {"name": "b", "discovery": {"prometheus_conn_id": "c"}},
     True),
])
def test_two_cost_centers_writing_one_cluster_folder_are_refused(tmp_path, name, second, refused):
    loaded = load_config(_write(tmp_path, {"name": "a", "clusters": [{"name": "prod"}]}, second))
    assert [c.name for c in loaded.cost_centers] == (["a"] if refused else ["a", "b"]), name
    if refused:
        (label, message), = loaded.errors
        assert "field 'storage.uri'" in message and "'a'" in message and "'b'" in message, message


def test_retention_deletes_only_its_own_clusters_windows(moto):
    store = s3_store(moto, "retention-owned")
    now = dt.datetime.now(UTC) + dt.timedelta(days=45)  # the objects written below are 45 days old by then
    old = Window(now - dt.timedelta(days=40), now - dt.timedelta(days=40) + dt.timedelta(hours=1))
    mine = [metric_key("k8s/prometheus", "prod", old, "cpu_usage"), manifest_key("k8s/prometheus", "prod", old)]
    theirs = [metric_key("k8s/prometheus", "dev", old, "cpu_usage"), manifest_key("k8s/prometheus", "dev", old)]
    for key in mine + theirs:
        store.put(key, b"x")
    deleted = apply_retention(store, "k8s/prometheus", 30, now, clusters={"prod"})
    assert sorted(deleted) == sorted(mine)
    assert set(theirs) <= set(store.list("k8s/prometheus"))


def test_an_export_into_another_cost_centers_window_fails_naming_both(prometheus, moto):
    store = s3_store(moto, "owned-windows")
    window = Window(dt.datetime(2026, 11, 2, tzinfo=UTC), dt.datetime(2026, 11, 2, 1, tzinfo=UTC))
    first, second = make_cost_center("owned-windows", name="first"), make_cost_center("owned-windows", name="second")
    client = prometheus_client(prometheus)
    export_window(client, store, first, first.clusters[0], window)
    key = manifest_key("k8s/prometheus", "demo-eks", window)
    before = store.get(key)
    with pytest.raises(ExportIncompleteError, match="belongs to cost center 'first', not 'second'"):
        export_window(client, store, second, second.clusters[0], window)
    assert store.get(key) == before, "the other cost center's window is left as it was"
    export_window(client, store, first, first.clusters[0], window)  # its owner re-exports it as usual
