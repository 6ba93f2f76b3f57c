"""The synthetic generator: deterministic by seed, real label sets and traps, a bill that matches."""

from __future__ import annotations

import datetime as dt

import polars as pl

from podledger_lab.cli import main
from podledger_lab.synth import synthesize


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    start = dt.datetime(2026, 11, 2, tzinfo=dt.UTC)
    a = synthesize(tmp_path / "a", nodes=4, pods=20, hours=2, start=start, seed=1)
    b = synthesize(tmp_path / "b", nodes=4, pods=20, hours=2, start=start, seed=1)
    c = synthesize(tmp_path / "c", nodes=4, pods=20, hours=2, start=start, seed=2)
    assert a.openmetrics.read_bytes() == b.openmetrics.read_bytes()
    assert a.openmetrics.read_bytes() != c.openmetrics.read_bytes()
    assert pl.read_parquet(a.truth_pods).equals(pl.read_parquet(b.truth_pods))


def test_series_carry_the_real_traps(tmp_path):
    assert main(["synth", "--out", str(tmp_path), "--nodes", "5", "--pods", "30", "--days", "1"]) == 0
    text = (tmp_path / "demo-eks.om").read_text()
    assert text.endswith("# EOF\n")
    lines = text.splitlines()
    cpu = [line for line in lines if line.startswith("container_cpu_usage_seconds_total{")]
    assert any('container="",id="/kubepods.slice/' in line and 'image=""' in line for line in cpu), "pod-cgroup aggregate"
    assert any('image="registry.k8s.io/pause:3.9"' in line for line in cpu), "pause sandbox"
    net = [line for line in lines if line.startswith("container_network_transmit_bytes_total{")]
    assert net and all('container=""' in line and 'interface="eth0"' in line for line in net)
    assert any('restart_policy="Always"' in line for line in lines if line.startswith("kube_pod_init_container_info"))
    owners = {kind for kind in ("DaemonSet", "ReplicaSet", "StatefulSet", "Job")
              if any(f'owner_kind="{kind}"' in line for line in lines if line.startswith("kube_pod_owner{"))}
    assert owners == {"DaemonSet", "ReplicaSet", "StatefulSet", "Job"}
    assert any('resource="nvidia_com_gpu"' in line for line in lines if line.startswith("kube_node_status_capacity{"))
    truth = pl.read_parquet(tmp_path / "demo-eks-truth-pods.parquet")
    assert truth["window_start"].n_unique() == 24
    partial = truth.filter((pl.col("running_seconds") > 0) & (pl.col("running_seconds") < 3600))
    assert partial.height > 0, "pods starting and ending mid-hour"
