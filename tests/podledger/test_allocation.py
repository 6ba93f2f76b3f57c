"""Allocation on tiny literal frames: the AWS worked example and named scenarios, each reconciled."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import polars as pl
import pytest

from podledger.allocation import allocate_hour, billed_cost, reconcile
from podledger.config import AllocationConfig
from podledger.pod_frames import GIB
from podledger.usage import node_hours

HOUR = dt.datetime(2026, 11, 2, 3, tzinfo=dt.UTC)
NODE, INSTANCE = "ip-10-0-0-4.ec2.internal", "i-0123456789abcdef0"


@dataclass
class PodSpec:
    name: str
    namespace: str
    cpu_request: float
    cpu_usage: float | None
    memory_request_gib: float
    memory_usage_gib: float | None
    running_seconds: float = 3600.0
    gpu_request: float = 0.0
    node: str = NODE


@dataclass
class Scenario:
    pods: list[PodSpec]
    cpu: float = 4.0
    memory_gib: float = 16.0
    gpus: float = 0.0
    cost: float | None = 1.0
    orphans: list[tuple[str, float]] = field(default_factory=list)
    options: AllocationConfig = AllocationConfig()
    overhead: list[float] = field(default_factory=list)
    allocatable: tuple[float, float] | None = None  # (cores, GiB) when it differs from capacity


def frames_for(s: Scenario) -> dict[str, pl.DataFrame]:
    def pod_frame(columns: dict) -> pl.DataFrame:
        return pl.DataFrame(columns)

    keys = {"namespace": [p.namespace for p in s.pods], "pod": [p.name for p in s.pods], "uid": [f"uid-{p.name}" for p in s.pods]}
    container = {**keys, "container": ["app"] * len(s.pods), "node": [p.node for p in s.pods]}
    frames = {
        "node_info": pl.DataFrame({"node": [NODE], "provider_id": [f"aws:///us-east-1a/{INSTANCE}"], "present_seconds": [3600.0]}),
        "node_capacity": pl.DataFrame({"node": [NODE] * 3, "resource": ["cpu", "memory", "nvidia_com_gpu"],
                                       "unit_seconds": [s.cpu * 3600, s.memory_gib * GIB * 3600, s.gpus * 3600],
                                       "present_seconds": [3600.0] * 3}),
        "node_allocatable": pl.DataFrame({"node": [NODE] * 2, "resource": ["cpu", "memory"],
                                          "unit_seconds": [(s.allocatable or (s.cpu, s.memory_gib))[0] * 3600,
                                                           (s.allocatable or (s.cpu, s.memory_gib))[1] * GIB * 3600],
                                          "present_seconds": [3600.0] * 2}),
        "pod_running": pod_frame({**keys, "running_seconds": [p.running_seconds for p in s.pods]}),
        "pod_info": pod_frame({**keys, "node": [p.node for p in s.pods]}),
        "cpu_requests": pod_frame({**container, "request_core_seconds": [p.cpu_request * p.running_seconds for p in s.pods],
                                   "present_seconds": [p.running_seconds for p in s.pods]}),
        "memory_requests": pod_frame({**container, "request_byte_seconds": [p.memory_request_gib * GIB * p.running_seconds for p in s.pods],
                                      "present_seconds": [p.running_seconds for p in s.pods]}),
        "gpu_requests": pod_frame({**container, "request_gpu_seconds": [p.gpu_request * p.running_seconds for p in s.pods],
                                   "present_seconds": [p.running_seconds for p in s.pods]}),
    }
    with_cpu = [p for p in s.pods if p.cpu_usage is not None]
    if with_cpu:
        frames["cpu_usage"] = pl.DataFrame({"namespace": [p.namespace for p in with_cpu], "pod": [p.name for p in with_cpu],
                                            "container": ["app"] * len(with_cpu),
                                            "usage_core_seconds": [p.cpu_usage * p.running_seconds for p in with_cpu]})
    with_mem = [p for p in s.pods if p.memory_usage_gib is not None]
    if with_mem:
        frames["memory_usage"] = pl.DataFrame({"namespace": [p.namespace for p in with_mem], "pod": [p.name for p in with_mem],
                                               "container": ["app"] * len(with_mem),
                                               "usage_byte_seconds": [p.memory_usage_gib * GIB * p.running_seconds for p in with_mem]})
    return frames


def run(s: Scenario) -> tuple[pl.DataFrame, pl.DataFrame]:
    frames = frames_for(s)
    costs = [(INSTANCE, s.cost)] if s.cost is not None else []
    instance_costs = pl.DataFrame(
        {"hour_start": [HOUR] * (len(costs) + len(s.orphans)), "instance_id": [i for i, _ in costs + s.orphans],
         "cost": [c for _, c in costs + s.orphans], "currency": ["USD"] * (len(costs) + len(s.orphans)),
         "instance_type": ["m5.xlarge"] * (len(costs) + len(s.orphans)),
         "cluster_tag": ["c1"] * (len(costs) + len(s.orphans))},
        schema={"hour_start": pl.Datetime("us", "UTC"), "instance_id": pl.String, "cost": pl.Float64,
                "currency": pl.String, "instance_type": pl.String, "cluster_tag": pl.String})
    control_plane = pl.DataFrame({"hour_start": [HOUR] * len(s.overhead), "cluster": ["c1"] * len(s.overhead),
                                  "cost": s.overhead, "currency": ["USD"] * len(s.overhead)},
                                 schema={"hour_start": pl.Datetime("us", "UTC"), "cluster": pl.String,
                                         "cost": pl.Float64, "currency": pl.String})
    rows = allocate_hour(frames, hour=HOUR, cost_center="cc", cluster="c1", instance_costs=instance_costs,
                         control_plane=control_plane, options=s.options, cost_basis="amortized")
    nodes = node_hours(frames).select(pl.lit(HOUR).cast(pl.Datetime("us", "UTC")).alias("hour_start"), "instance_id")
    report = reconcile(rows, billed_cost(instance_costs, control_plane, nodes, "c1"))
    return rows, report


AWS_EXAMPLE = [  # docs.aws.amazon.com/cur/latest/userguide/example-split-cost-allocation-data.html
    PodSpec("pod1", "namespace1", 1, 0.1, 4, 3),
    PodSpec("pod2", "namespace2", 1, 1.9, 4, 6),
    PodSpec("pod3", "namespace1", 1, 0.5, 2, 2),
    PodSpec("pod4", "namespace2", 1, 0.5, 2, 2),
]


def totals(rows: pl.DataFrame) -> dict[str, float]:
    return dict(rows.group_by("pod").agg(pl.col("total_cost").sum()).iter_rows())


def test_aws_worked_example_exact():
    rows, report = run(Scenario(AWS_EXAMPLE))
    got = totals(rows)
    expected = {"pod1": 0.229199, "pod2": 0.400314, "pod3": 0.185243, "pod4": 0.185243}
    for pod, value in expected.items():
        assert got[pod] == pytest.approx(value, abs=1e-6)
    split = dict(rows.select("pod", pl.col("cpu_cost") + pl.col("memory_cost")).iter_rows())
    assert split["pod1"] == pytest.approx(0.218210, abs=1e-6)
    assert dict(rows.select("pod", "unused_cost").iter_rows())["pod2"] == pytest.approx(0.016484, abs=1e-6)
    ns = dict(rows.group_by("namespace").agg(pl.col("total_cost").sum()).iter_rows())
    assert ns["namespace1"] == pytest.approx(0.414443, abs=1e-6)
    assert report["ok"].all()


SCENARIOS = {
    "over_subscribed_cpu": (Scenario([PodSpec("a", "n", 1, 3.5, 1, 1), PodSpec("b", "n", 1, 2.5, 1, 1)]),
                            {"a": None, "b": None}),
    "no_usage_metrics": (Scenario([PodSpec("a", "n", 2, None, 8, None), PodSpec("b", "n", 2, None, 8, None)]),
                         {"a": 0.5, "b": 0.5}),
    "pod_living_20_minutes": (Scenario([PodSpec("short", "n", 4, 4, 16, 16, running_seconds=1200)]), {"short": 1.0}),
    "node_with_no_pods": (Scenario([PodSpec("elsewhere", "n", 1, 1, 1, 1, node="other-node")]), {"__idle__": 1.0}),
    "node_missing_from_bill": (Scenario([PodSpec("a", "n", 1, 1, 1, 1)], cost=None), {"__unpriced__": 0.0}),
    "billed_instance_missing_from_metrics": (Scenario([PodSpec("a", "n", 4, 4, 16, 16)], orphans=[("i-0ffffffffffffffff", 0.5)]),
                                             {"a": 1.0, "__unallocated__": 0.5}),
    "idle_kept_separate": (Scenario(AWS_EXAMPLE, options=AllocationConfig(idle="separate")), {"__idle__": 2 / 52}),
    "gpu_node": (Scenario([PodSpec("trainer", "ml", 2, 2, 8, 8, gpu_request=1)], gpus=1.0, cost=10.0),
                 {"trainer": 10.0}),
    # allocatable 3.5 cores / 14 GiB: a pod using all of it takes the whole node, nothing is idle
    "capacity_allocatable": (Scenario([PodSpec("a", "n", 3.5, 3.5, 14, 14)], allocatable=(3.5, 14),
                                      options=AllocationConfig(capacity="allocatable", idle="separate")), {"a": 1.0}),
    "idle_by_cluster": (Scenario(AWS_EXAMPLE, options=AllocationConfig(idle="separate", idle_by="cluster")),
                        {"__idle__": 2 / 52}),
    "cluster_overhead_separate": (Scenario(AWS_EXAMPLE, overhead=[0.1]), {"__cluster_overhead__": 0.1}),
    "cluster_overhead_shared_by_cost": (Scenario(AWS_EXAMPLE, overhead=[0.1],
                                                 options=AllocationConfig(cluster_overhead="shared")),
                                        {"pod1": 0.229199 * 1.1, "pod2": 0.400314 * 1.1}),
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_scenarios_reconcile(name):
    scenario, expected = SCENARIOS[name]
    rows, report = run(scenario)
    assert report["ok"].all(), report
    got = totals(rows)
    for pod, value in expected.items():
        assert pod in got, f"{name}: no row for {pod}: {got}"
        if value is not None:
            assert got[pod] == pytest.approx(value, abs=1e-6), f"{name}: {pod}"


def test_over_subscription_never_exceeds_instance_cost():
    rows, _ = run(SCENARIOS["over_subscribed_cpu"][0])
    assert rows["cpu_cost"].sum() == pytest.approx(9 * 4 / 52, abs=1e-12)  # the node's whole CPU price, no more
    cpu = dict(rows.select("pod", "cpu_cost").iter_rows())
    assert cpu["a"] / cpu["b"] == pytest.approx(3.5 / 2.5)


def test_gpu_node_weights_are_9_09_01():
    rows, _ = run(SCENARIOS["gpu_node"][0])
    trainer = rows.filter(pl.col("pod") == "trainer").row(0, named=True)
    unit = 10.0 / (9 * 1 + 0.9 * 4 + 0.1 * 16)
    assert trainer["gpu_cost"] == pytest.approx(9 * unit)
    assert trainer["cpu_cost"] == pytest.approx(0.9 * 2 * unit)
    assert trainer["memory_cost"] == pytest.approx(0.1 * 8 * unit)
    assert trainer["unused_cost"] == pytest.approx(10.0 - (9 + 1.8 + 0.8) * unit)


def test_data_transfer_split_by_transmitted_bytes_and_leftover_kept():
    from podledger.allocation import split_data_transfer

    pods = pl.DataFrame({"hour_start": [HOUR] * 3, "node": ["n1", "n1", "n2"], "instance_id": ["i-1", "i-1", "i-2"],
                         "pod": ["a", "b", "c"], "network_transmit_bytes": [3e9, 1e9, 0.0], "total_cost": [1.0, 1.0, 1.0]})
    transfer = pl.DataFrame({"hour_start": [HOUR] * 2, "instance_id": ["i-1", "i-2"], "cost": [0.04, 0.02]})
    rows, leftover = split_data_transfer(pods, transfer)
    network = dict(rows.select("pod", "network_cost").iter_rows())
    assert network == pytest.approx({"a": 0.03, "b": 0.01, "c": 0.0})
    assert dict(rows.select("pod", "total_cost").iter_rows())["a"] == pytest.approx(1.03)
    assert leftover.select("instance_id", "network_cost").rows() == [("i-2", pytest.approx(0.02))]  # nothing sent: idle


@pytest.mark.parametrize(("name", "scenario", "damage", "missing"), [
    ("no memory capacity row", "aws", lambda f: f["node_capacity"].filter(pl.col("resource") != "memory"), "memory"),
    ("no capacity rows for the node", "aws", lambda f: f["node_capacity"].clear(), "cpu and memory"),
    ("capacity not exported at all", "aws", None, "cpu and memory"),
    # a pod holds a GPU, the node's accelerator capacity is missing: it would be priced as a node without GPUs
    ("no accelerator capacity", "gpu_node", lambda f: f["node_capacity"].filter(pl.col("resource") != "nvidia_com_gpu"),
     "gpu"),
])
def test_a_node_with_pods_but_no_capacity_is_named_not_priced_nan(name, scenario, damage, missing):
    """kube-state-metrics' capacity missing for a node-hour that has pods: the split would give NaN costs (or price
    the node by the other resources only), so the run fails naming the node-hour and the metric."""
    from podledger.exceptions import ExportIncompleteError

    frames = frames_for(Scenario(AWS_EXAMPLE) if scenario == "aws" else SCENARIOS["gpu_node"][0])
    if damage is None:
        del frames["node_capacity"]
    else:
        frames["node_capacity"] = damage(frames)
    with pytest.raises(ExportIncompleteError, match=rf"hour 2026-11-02T03Z, node {NODE} \({INSTANCE}\): the exported "
                                                    rf"kube_node_status_capacity has no {missing} for this node"):
        allocate_hour(frames, hour=HOUR, cost_center="cc", cluster="c1",
                      instance_costs=pl.DataFrame({"hour_start": [HOUR], "instance_id": [INSTANCE], "cost": [1.0],
                                                   "currency": ["USD"], "instance_type": ["m5.xlarge"],
                                                   "cluster_tag": ["c1"]}),
                      control_plane=pl.DataFrame(schema={"hour_start": pl.Datetime("us", "UTC"), "cluster": pl.String,
                                                         "cost": pl.Float64, "currency": pl.String}),
                      options=AllocationConfig(), cost_basis="amortized")
