"""Centralized mode: clusters discovered from the cluster label of one shared endpoint, each in its own folder."""

from __future__ import annotations

import datetime as dt
import io
import json

import polars as pl

from helpers import SYNTH_START, make_cost_center, s3_options, s3_store
from podledger.cli import main as cli
from podledger.connections import ConnectionInfo, env_var_name
from podledger.discovery import folder_name
from podledger.export import export_window
from podledger.layout import plan_windows
from podledger.promclient import client_from_connection
from podledger.storage import FsspecStore
from podledger_lab.stack import load_blocks, start_prometheus
from podledger_lab.synth import synthesize


def test_folder_names_never_escape_the_prefix():
    assert folder_name("prod-eu-1") == "prod-eu-1"
    for value in ("a/b", "..", "../../etc", 'we"ird', "line\nbreak", ""):
        name = folder_name(value)
        assert "/" not in name and ".." not in name and '"' not in name and "\n" not in name and name
    assert folder_name("a/b") != folder_name("a_b")


def test_centralized_endpoint_discovers_every_cluster_and_matches_per_cluster_export(
        stack_env, tmp_path, moto, prometheus, monkeypatch):
    from podledger_lab.demo import ensure_bucket

    first = synthesize(tmp_path / "a", nodes=8, pods=60, hours=4, start=SYNTH_START, cluster_label="cluster")
    second = synthesize(tmp_path / "b", cluster_name="staging.us", nodes=4, pods=20, hours=4, start=SYNTH_START,
                        cluster_label="cluster")
    third = synthesize(tmp_path / "c", cluster_name="sandbox", nodes=4, pods=20, hours=4, start=SYNTH_START,
                       cluster_label="cluster")
    for out in (first, second, third):
        load_blocks(out.openmetrics, tmp_path / "tsdb")
    central = start_prometheus(tmp_path / "tsdb", tmp_path)
    try:
        monkeypatch.setenv(env_var_name("central"), json.dumps({"conn_type": "http", "host": "127.0.0.1", "port": central.port}))
        ensure_bucket(moto, "central")
        cc = json.loads(make_cost_center("central").model_dump_json())
        cc.update(clusters=[], discovery={"prometheus_conn_id": "central", "deny": ["sand*"]})
        config = tmp_path / "cc.yaml"
        config.write_text(json.dumps({"cost_centers": [cc]}))
        end = SYNTH_START + dt.timedelta(hours=1)
        assert cli(["export", "--cost-center", "test", "--config", str(config), "--start", SYNTH_START.isoformat(),
                    "--end", end.isoformat()]) == 0
    finally:
        central.stop()
    store = FsspecStore("s3", "central", s3_options(moto.url))
    folders = {k.split("/")[2] for k in store.list("k8s/prometheus")}
    assert folders == {"demo-eks", "staging.us"}, "every allowed cluster in its own folder, sandbox denied"

    # The demo-eks folder holds exactly what a per-cluster export of the same series gives.
    per = s3_store(moto, "per-cluster")
    single = make_cost_center("per-cluster")
    window = plan_windows(SYNTH_START, SYNTH_START + dt.timedelta(hours=1), 3600)[0]
    manifest = export_window(client_from_connection(ConnectionInfo("p", host="127.0.0.1", port=prometheus.port)),
                             per, single, single.clusters[0], window)
    for name in ("cpu_usage", "memory_requests", "node_capacity", "network_transmit"):
        key = manifest["metrics"][name]["key"]
        a = pl.read_parquet(io.BytesIO(per.get(key)))
        b = pl.read_parquet(io.BytesIO(store.get(key)))  # same prefix and folder: the same key in the other bucket
        keys = [c for c in a.columns if a.schema[c] == pl.String]
        assert a.sort(keys).equals(b.sort(keys)), name
