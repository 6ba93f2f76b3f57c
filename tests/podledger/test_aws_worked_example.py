"""AWS's split cost allocation worked example (m5.xlarge, four pods, $1/h) through the real pipeline.

Series in a real Prometheus -> export to S3 -> CUR 2.0 file -> allocation: the documented per-pod
costs must come out to 1e-6 (docs.aws.amazon.com/cur/latest/userguide/example-split-cost-allocation-data.html).
"""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from helpers import SYNTH_START, make_cost_center, prometheus_client, s3_options
from podledger.enrich import enrich_cluster
from podledger.export import export_window
from podledger.layout import plan_windows
from podledger.storage import FsspecStore
from podledger_lab.stack import load_blocks, start_prometheus
from podledger_lab.synth.cluster import GIB, Cluster, Container, Node, Pod, stable_uid
from podledger_lab.synth.cur import EXPORT_NAME, build_cur, write_cur_export
from podledger_lab.synth.openmetrics import write_openmetrics

EXPECTED = {"pod1": 0.229199, "pod2": 0.400314, "pod3": 0.185243, "pod4": 0.185243}
PODS = [  # name, namespace, request vCPU, used vCPU, request GB, used GB
    ("pod1", "namespace1", 1, 0.1, 4, 3), ("pod2", "namespace2", 1, 1.9, 4, 6),
    ("pod3", "namespace1", 1, 0.5, 2, 2), ("pod4", "namespace2", 1, 0.5, 2, 2),
]


def worked_example_cluster() -> Cluster:
    start = int(SYNTH_START.timestamp())
    node = Node("ip-10-0-0-10.ec2.internal", "i-0aws0example0001", "m5.xlarge", "us-east-1a", "on_demand", 4, 16, 0, 1.0,
                "10.0.0.10", {"node_kubernetes_io_instance_type": "m5.xlarge"})
    pods = [Pod(ns, name, stable_uid("example", name), node.name, start, start + 3600,
                [Container("app", "app", "example/app:1", cpu_req, int(mem_req * GIB), cpu_used, int(mem_used * GIB), flat=True)],
                "", "", {"app": name})
            for name, ns, cpu_req, cpu_used, mem_req, mem_used in PODS]
    return Cluster("example-eks", start, start + 3600, [node], pods, namespace_labels={"namespace1": {}, "namespace2": {}})


def through_the_pipeline(cluster: Cluster, tmp_path, moto, bucket: str):  # noqa: ANN001, ANN201 - an EnrichResult
    """The cluster's series in a real Prometheus, exported to S3; its CUR delivery in S3; the hour enriched."""
    from podledger_lab.demo import ensure_bucket, upload_tree

    with (tmp_path / "example.om").open("w") as out:
        write_openmetrics(cluster, out)
    table, _ = build_cur(cluster)
    write_cur_export(table, tmp_path / "cur", EXPORT_NAME)
    load_blocks(tmp_path / "example.om", tmp_path / "tsdb")
    server = start_prometheus(tmp_path / "tsdb", tmp_path)
    window = plan_windows(SYNTH_START, SYNTH_START + dt.timedelta(hours=1), 3600)[0]
    try:
        ensure_bucket(moto, bucket)
        upload_tree(moto, f"{bucket}-billing", "cur", tmp_path / "cur")
        cc = make_cost_center(bucket, clusters=[{"name": "example-eks", "prometheus_conn_id": "x"}],
                              billing={"uri": f"s3://{bucket}-billing/cur/podledger-cur"})
        store = FsspecStore("s3", bucket, s3_options(moto.url))
        export_window(prometheus_client(server), store, cc, cc.clusters[0], window)
    finally:
        server.stop()
    return enrich_cluster(cc, cc.clusters[0], window.start, window.end, metrics_store=store,
                          billing_store=FsspecStore("s3", f"{bucket}-billing", s3_options(moto.url)))


def test_aws_worked_example_through_prometheus_export_and_cur(stack_env, tmp_path, moto):
    result = through_the_pipeline(worked_example_cluster(), tmp_path, moto, "aws-example")
    # The instance's $1 is split as AWS documents; the CUR's data transfer of the node ($0.015) is split on top
    # by transmitted bytes, so compare the instance part.
    pods = result.rows.filter(~pl.col("namespace").str.starts_with("__")).with_columns(
        (pl.col("total_cost") - pl.col("network_cost")).alias("instance_cost"))
    assert pods["network_cost"].sum() == pytest.approx(0.015, abs=1e-12)
    got = dict(pods.select("pod", "instance_cost").iter_rows())
    for pod, value in EXPECTED.items():
        assert got[pod] == pytest.approx(value, abs=1e-6), pod
    namespaces = dict(pods.group_by("namespace").agg(pl.col("instance_cost").sum()).iter_rows())
    assert namespaces["namespace1"] == pytest.approx(0.414443, abs=1e-6)
    assert namespaces["namespace2"] == pytest.approx(0.585557, abs=1e-6)
    assert result.reconciliation["ok"].all()


def test_split_line_items_match_the_aws_example():
    from test_allocation import AWS_EXAMPLE, Scenario, run

    from podledger.split_line_items import split_line_items

    rows, _ = run(Scenario(AWS_EXAMPLE))
    rows = rows.with_columns(pl.lit(1.25).alias("public_on_demand_factor"), pl.lit(1.0).alias("net_factor"))
    items = split_line_items(rows, region="us-east-1", account_id="123456789012")
    assert items.height == 8 and set(items["line_item_usage_type"]) == {"USE1-EKS-EC2-vCPU-Hours", "USE1-EKS-EC2-GB-Hours"}
    pod1 = items.filter(pl.col("pod") == "pod1")
    cpu = pod1.filter(pl.col("resource") == "cpu").row(0, named=True)
    mem = pod1.filter(pl.col("resource") == "memory").row(0, named=True)
    assert cpu["line_item_resource_id"] == "arn:aws:eks:us-east-1:123456789012:pod/c1/namespace1/pod1/uid-pod1"
    assert cpu["split_line_item_split_usage_ratio"] == pytest.approx(1 / 4.9)
    assert mem["split_line_item_split_usage_ratio"] == pytest.approx(0.25)
    assert mem["split_line_item_unused_cost"] == pytest.approx(0.010989, abs=1e-6)  # AWS: $0.01
    assert cpu["split_line_item_unused_cost"] == 0
    total = pod1["split_line_item_split_cost"].sum() + pod1["split_line_item_unused_cost"].sum()
    assert total == pytest.approx(0.229199, abs=1e-6)
    assert pod1["split_line_item_public_on_demand_split_cost"].sum() == pytest.approx(1.25 * pod1["split_line_item_split_cost"].sum())
    assert items["split_line_item_split_cost"].sum() + items["split_line_item_unused_cost"].sum() == pytest.approx(1.0)


# AWS's accelerated-instance example (example-accelerated-instances.html): a p3.16xlarge (8 GPU, 64 vCPU, 488 GB),
# $10 an hour, four pods in two namespaces, weights GPU 9 : (CPU 0.9 : memory 0.1).
P3_PODS = [  # name, namespace, GPU requested, GPU used (DCGM), vCPU requested, used, GB requested, used
    ("gpu-pod1", "namespace1", 1, 1.0, 8, 4, 60, 30), ("gpu-pod2", "namespace1", 2, 1.5, 16, 20, 120, 100),
    ("gpu-pod3", "namespace2", 1, 0.5, 8, 8, 60, 60), ("gpu-pod4", "namespace2", 0, 0.8, 4, 2, 30, 40),
]


def accelerated_example_cluster() -> Cluster:
    start = int(SYNTH_START.timestamp())
    node = Node("ip-10-0-0-20.ec2.internal", "i-0aws0example0p316", "p3.16xlarge", "us-east-1a", "on_demand", 64, 488, 8,
                10.0, "10.0.0.20", {"node_kubernetes_io_instance_type": "p3.16xlarge"})
    pods = [Pod(ns, name, stable_uid("p3", name), node.name, start, start + 3600,
                [Container("app", "app", "example/train:1", cpu_req, int(mem_req * GIB), cpu_used, int(mem_used * GIB),
                           gpu_request=gpu_req, flat=True)], "", "", {"app": name}, gpu_util=gpu_used)
            for name, ns, gpu_req, gpu_used, cpu_req, cpu_used, mem_req, mem_used in P3_PODS]
    return Cluster("example-eks", start, start + 3600, [node], pods, namespace_labels={"namespace1": {}, "namespace2": {}})


def aws_rule(cost: float, capacity: dict[str, float], weights: dict[str, float], pods: list[dict]) -> dict[str, float]:
    """AWS's steps 1-4 as the example states them, written out here (not podledger's code)."""
    unit = cost / sum(weights[r] * capacity[r] for r in weights)  # Step 1
    allocated = {p["pod"]: {r: max(p[f"{r}_reserved"], p[f"{r}_used"]) for r in weights} for p in pods}  # Step 2
    total = {r: sum(a[r] for a in allocated.values()) for r in weights}
    unused = {r: max(capacity[r] - total[r], 0.0) for r in weights}
    result = {}
    for pod, alloc in allocated.items():  # Steps 3-4: split cost at the split usage ratio, unused shared by allocation
        split = sum(alloc[r] / max(capacity[r], total[r]) * capacity[r] * weights[r] * unit for r in weights)
        share = sum(alloc[r] / total[r] * unused[r] * weights[r] * unit for r in weights if total[r])
        result[pod] = split + share
    return result


def test_aws_accelerated_example_through_prometheus_export_and_cur(stack_env, tmp_path, moto):
    result = through_the_pipeline(accelerated_example_cluster(), tmp_path, moto, "aws-p3")
    pods = result.rows.filter(~pl.col("namespace").str.starts_with("__"))
    # Step 1 as AWS prints it: unit $10 / (9×8 + 0.1×488 + 0.9×64) = $0.056; a GPU-hour $0.504; a vCPU-hour $0.05.
    unit = 10 / (9 * 8 + 0.1 * 488 + 0.9 * 64)
    assert round(unit, 3) == 0.056 and round(9 * unit, 3) == 0.504 and round(0.9 * unit, 2) == 0.05
    weights = {"gpu": 9.0, "cpu": 0.9, "memory": 0.1}
    expected = aws_rule(10.0, {"gpu": 8, "cpu": 64, "memory": 488}, weights, [
        {"pod": name, "gpu_reserved": g_req, "gpu_used": g_used, "cpu_reserved": c_req, "cpu_used": c_used,
         "memory_reserved": m_req, "memory_used": m_used}
        for name, _, g_req, g_used, c_req, c_used, m_req, m_used in P3_PODS])
    got = dict(pods.select("pod", (pl.col("total_cost") - pl.col("network_cost")).alias("c")).iter_rows())
    for pod, value in expected.items():
        assert got[pod] == pytest.approx(value, abs=1e-6), pod
    # GPU allocated = max(reserved, used): gpu-pod4 requested none and used 0.8 of a GPU.
    allocated = dict(pods.select("pod", "gpu_allocated_hours").iter_rows())
    assert allocated == pytest.approx({"gpu-pod1": 1.0, "gpu-pod2": 2.0, "gpu-pod3": 1.0, "gpu-pod4": 0.8}, abs=1e-9)
    assert sum(got.values()) == pytest.approx(10.0, abs=1e-9)
