"""Backend limits: a tiny query.max-samples forces the exporter to split series and windows, with identical results."""

from __future__ import annotations

import datetime as dt
import io
import json
import shutil

import polars as pl
import pytest

from helpers import SYNTH_START, make_cost_center, prometheus_client, s3_store
from podledger.exceptions import QueryTooLarge
from podledger.export import export_window
from podledger.layout import plan_windows
from podledger_lab.stack import start_prometheus

WINDOW = plan_windows(SYNTH_START, SYNTH_START + dt.timedelta(hours=1), 3600)[0]


def _frames(store, manifest) -> dict[str, pl.DataFrame]:
    frames = {}
    for name, entry in manifest["metrics"].items():
        frame = pl.read_parquet(io.BytesIO(store.get(entry["key"])))
        keys = [c for c in frame.columns if frame.schema[c] == pl.String]
        frames[name] = frame.sort(keys) if keys else frame
    return frames


@pytest.fixture(scope="module")
def limited_prometheus(prometheus, tmp_path_factory):
    """A second Prometheus over a copy of the same blocks, with query.max-samples=150 (series and time splits)."""
    work = tmp_path_factory.mktemp("limited")
    source = prometheus.log.rsplit("/", 1)[0] + "/tsdb"
    shutil.copytree(source, work / "tsdb", ignore=shutil.ignore_patterns("lock", "wal", "chunks_head"))
    server = start_prometheus(work / "tsdb", work, extra_args=["--query.max-samples=150"])
    yield server
    server.stop()


def test_tiny_max_samples_splits_windows_and_exports_the_same_data(stack_env, prometheus, limited_prometheus, moto):
    results = {}
    for name, server in (("free", prometheus), ("limited", limited_prometheus)):
        bucket = f"limits-{name}"
        store = s3_store(moto, bucket)
        cc = make_cost_center(bucket)
        client = prometheus_client(server)
        manifest = export_window(client, store, cc, cc.clusters[0], WINDOW)
        results[name] = (manifest, _frames(store, manifest))
    (free_manifest, free), (limited_manifest, limited) = results["free"], results["limited"]
    assert sum(m["splits"] for m in limited_manifest["metrics"].values()) > 0, "the limit must have forced splits"
    assert sum(m["splits"] for m in free_manifest["metrics"].values()) == 0
    for name, frame in free.items():
        other = limited[name]
        assert frame.height == other.height, name
        for column in frame.columns:
            if frame.schema[column] == pl.Float64:
                diff = (frame[column] - other[column]).abs().max() or 0.0
                scale = frame[column].abs().max() or 1.0
                assert diff <= 1e-9 * scale, f"{name}.{column} differs by {diff}"
            elif column != "labels":
                assert frame[column].to_list() == other[column].to_list(), f"{name}.{column}"
    assert json.dumps(free_manifest["metrics"]["cpu_usage"]["rows"]) == json.dumps(limited_manifest["metrics"]["cpu_usage"]["rows"])


def test_limit_too_small_for_one_step_fails_with_the_fix(stack_env, tmp_path, prometheus, moto):
    source = prometheus.log.rsplit("/", 1)[0] + "/tsdb"
    shutil.copytree(source, tmp_path / "tsdb", ignore=shutil.ignore_patterns("lock", "wal", "chunks_head"))
    server = start_prometheus(tmp_path / "tsdb", tmp_path, extra_args=["--query.max-samples=5"])
    try:
        store = s3_store(moto, "limits-tiny")
        cc = make_cost_center("limits-tiny")
        client = prometheus_client(server)
        with pytest.raises(QueryTooLarge, match=r"cluster demo-eks, window 2026-11-02T00:00Z.*metric .*query.max-samples"):
            export_window(client, store, cc, cc.clusters[0], WINDOW)
        assert not [k for k in store.list("k8s") if k.endswith("_manifest.json")], "no manifest for a failed window"
    finally:
        server.stop()
