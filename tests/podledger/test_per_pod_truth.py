"""Every pod's share, checked against the generator's truth by this test's own implementation of AWS's rule.

Three days of a synthetic cluster with StatefulSet restarts (same node and another node), an eviction and
recreation under the same name, GPU usage from DCGM (with and without a GPU request), an AMD GPU node and an
Inferentia (Neuron) node, loaded into a real Prometheus, exported to S3, priced from its CUR 2.0 delivery by the
real enrichment. Independently, the test prices every pod-hour from the generator's truth (requests, usage and
nodes per pod incarnation and hour, node prices from the bill's truth) with the rule as AWS documents it:

    per node-hour, weights CPU 9 : memory 1, or on an accelerated node GPU 9 : CPU 0.9 : memory 0.1;
    unit price = node cost / Σ(weight × capacity); allocated = max(request, usage) per resource;
    split cost = allocated / max(capacity, Σ allocated) × capacity × weight × unit;
    unused = max(capacity − Σ allocated, 0) × weight × unit, shared by allocated / Σ allocated.

Every pod row of the pipeline must equal it to 1e-9 (network and control plane are separate lines).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections import defaultdict

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from helpers import SYNTH_START, make_cost_center, prometheus_client, put_tree, s3_store
from podledger.enrich import enrich_cluster
from podledger.export import export_window
from podledger.layout import plan_windows
from podledger_lab.stack import load_blocks, start_prometheus
from podledger_lab.synth import synthesize
from podledger_lab.synth.cluster import GIB, REALISM

DAYS = 3
HOURS = 24 * DAYS
END = SYNTH_START + dt.timedelta(hours=HOURS)
UTC = pl.Datetime("us", "UTC")


@pytest.fixture(scope="module")
def realistic(tmp_path_factory, moto):
    """The cluster in its own Prometheus, exported window by window to S3; its CUR delivery in S3."""
    work = tmp_path_factory.mktemp("truth")
    out = synthesize(work / "synth", nodes=6, pods=30, hours=HOURS, start=SYNTH_START, realism=REALISM)
    load_blocks(out.openmetrics, work / "tsdb", max_block_duration=f"{HOURS}h")
    out.openmetrics.unlink()
    server = start_prometheus(work / "tsdb", work)
    suffix = uuid.uuid4().hex[:6]
    metrics, bill = s3_store(moto, f"truth-metrics-{suffix}"), s3_store(moto, f"truth-bill-{suffix}")
    put_tree(bill, out.cur_root, "cur")
    cc = make_cost_center(metrics.bucket, billing={"uri": f"s3://{bill.bucket}/cur/podledger-cur"})
    client = prometheus_client(server)
    try:
        for window in plan_windows(SYNTH_START, END, 3600):
            export_window(client, metrics, cc, cc.clusters[0], window)
        result = enrich_cluster(cc, cc.clusters[0], SYNTH_START, END, metrics_store=metrics, billing_store=bill)
    finally:
        server.stop()
    return out, result, (metrics, cc)


def expected_pod_hours(out) -> pl.DataFrame:
    """This test's own pricing of every running pod-hour from the generator's truth (see the module docstring)."""
    nodes = {n.name: n for n in out.cluster.nodes}
    by_instance = {n.instance_id: n.name for n in out.cluster.nodes}
    prices = {(row["hour_start"].replace(tzinfo=dt.UTC), by_instance[row["instance_id"]]): row["amortized_cost"]
              for row in pl.read_parquet(out.truth_instances).filter(pl.col("kind") == "instance").iter_rows(named=True)
              if row["instance_id"] in by_instance}
    truth = pl.read_parquet(out.truth_pods).filter(pl.col("running_seconds") > 0)
    per_node_hour: dict[tuple, list[dict]] = defaultdict(list)
    for row in truth.iter_rows(named=True):
        hour = row["window_start"].replace(tzinfo=dt.UTC)
        per_node_hour[(hour, row["node"])].append(row)
    expected = []
    for (hour, node_name), pods in per_node_hour.items():
        node = nodes[node_name]
        accelerated = node.gpus > 0
        weights = {"cpu": 0.9, "memory": 0.1, "gpu": 9.0} if accelerated else {"cpu": 9.0, "memory": 1.0, "gpu": 0.0}
        capacity = {"cpu": float(node.vcpu), "memory": float(node.memory_gib), "gpu": float(node.gpus)}
        unit = prices[(hour, node_name)] / sum(weights[r] * capacity[r] for r in weights)
        allocated = [{
            "cpu": max(p["cpu_request_core_hours"], p["cpu_usage_core_hours"]),
            "memory": max(p["memory_request_gib_hours"], p["memory_usage_byte_seconds"] / 3600 / GIB),
            "gpu": max(p["gpu_request_hours"], p["gpu_usage_hours"]),
        } for p in pods]
        total = {r: sum(a[r] for a in allocated) for r in weights}
        for pod, alloc in zip(pods, allocated, strict=True):
            cost = 0.0
            for r in weights:
                price = weights[r] * unit
                denominator = max(capacity[r], total[r])
                cost += (alloc[r] / denominator * capacity[r] * price) if denominator else 0.0
                if total[r] > 0:
                    cost += alloc[r] / total[r] * max(capacity[r] - total[r], 0.0) * price
            expected.append({"hour_start": hour, "uid": pod["uid"], "node": node_name, "pod": pod["pod"],
                             "expected": cost})
    return pl.DataFrame(expected).with_columns(pl.col("hour_start").cast(UTC))


@pytest.fixture(scope="module")
def compared(realistic):
    out, result, _ = realistic
    pods = result.rows.filter(~pl.col("namespace").str.starts_with("__")).select(
        "hour_start", "uid", "node", "pod", "namespace", "gpu_allocated_hours",
        (pl.col("total_cost") - pl.col("network_cost") - pl.col("overhead_cost")).alias("got"))
    expected = expected_pod_hours(out)
    return expected.join(pods, on=["hour_start", "uid", "node"], how="full", coalesce=True, suffix="_row")


def test_every_pod_hour_of_three_days_equals_the_rule_computed_from_the_truth(compared):
    missing = compared.filter(pl.col("got").is_null() | pl.col("expected").is_null())
    assert missing.height == 0, f"pod-hours on one side only:\n{missing.head(10)}"
    assert compared["hour_start"].n_unique() == HOURS
    wrong = compared.filter((pl.col("got") - pl.col("expected")).abs()
                            > 1e-9 * pl.max_horizontal(pl.col("expected").abs(), pl.lit(1e-9)))
    assert wrong.height == 0, f"{wrong.height} of {compared.height} pod-hours differ:\n{wrong.head(10)}"


@pytest.mark.parametrize(("scenario", "pod", "incarnations", "nodes"), [
    ("StatefulSet restart on the same node (once a day)", "postgres-0", DAYS + 1, 1),
    ("StatefulSet rescheduled to another node", "postgres-1", 2, 2),
    ("eviction and recreation under the same name", "batch-runner", 2, 2),
])
def test_each_incarnation_carries_only_its_own_hours(compared, scenario, pod, incarnations, nodes):
    rows = compared.filter(pl.col("pod") == pod)
    assert rows["uid"].n_unique() == incarnations, scenario
    assert rows["node"].n_unique() == nodes, scenario
    # The hour of a restart has one row per incarnation, each priced by the rule from its own usage.
    per_hour = rows.group_by("hour_start").agg(pl.col("uid").n_unique().alias("n"))
    assert per_hour["n"].max() == 2, scenario


def test_accelerators_amd_neuron_and_gpu_usage_without_a_request(compared, realistic):
    out, result, _ = realistic
    nodes = {n.name: n for n in out.cluster.nodes}
    by_pod = {p: compared.filter(pl.col("pod") == p) for p in ("renderer-0", "inference-0", "notebook-0")}
    for pod in ("renderer-0", "inference-0"):  # a GPU request on an AMD node, a Neuron device on an inf2 node
        node = nodes[by_pod[pod]["node"][0]]
        assert node.accelerator in ("amd_com_gpu", "aws_amazon_com_neuron")
        assert (by_pod[pod]["gpu_allocated_hours"] == 1.0).all(), pod
        # GPU weights: the pod holding the node's only accelerator pays most of the node.
        price = pl.read_parquet(out.truth_instances).filter(pl.col("instance_id") == node.instance_id)["amortized_cost"][0]
        assert (by_pod[pod]["got"] > 0.9 * price).all(), pod
    # Time-slicing: 30 % of a GPU used without a request is allocated as max(0, 0.3) GPU-hours.
    assert by_pod["notebook-0"]["gpu_allocated_hours"].to_list() == pytest.approx([0.3] * HOURS, rel=1e-9)


@pytest.mark.parametrize("options", [
    {}, {"idle": "separate", "idle_by": "cluster", "cluster_overhead": "shared"},
    {"idle": "separate", "capacity": "allocatable"}], ids=["default", "idle-by-cluster-overhead-shared", "allocatable"])
def test_a_stacked_day_allocates_exactly_as_its_hours_one_by_one(realistic, options):
    """Enrichment allocates a day's 24 hours in one vectorised pass; each hour must come out as if alone.

    The second day of the realistic cluster (restarts, evictions, accelerators), priced by a made-up bill that
    exercises every sentinel: unpriced node-hours, an instance tagged for the cluster but absent from the metrics,
    data transfer, and an EKS control plane in some hours only (kept as its own row where no pod carries it).
    """
    from podledger.allocation import allocate_hour, allocate_hours
    from podledger.config import AllocationConfig
    from podledger.enrich import combine_windows
    from podledger.hours import stack_hours
    from podledger.storage import split_uri
    from podledger.usage import node_hours
    from podledger.windows import read_window_frames

    _, _, (metrics, cc) = realistic
    cluster = cc.clusters[0].name
    _, _, prefix = split_uri(cc.storage.uri)
    day = [SYNTH_START + dt.timedelta(hours=24 + h) for h in range(24)]
    hour_frames = [(h, combine_windows([read_window_frames(metrics, prefix, cluster, w)
                                        for w in plan_windows(h, h + dt.timedelta(hours=1), 3600)])) for h in day]
    nodes = pl.concat([node_hours(f).with_columns(pl.lit(h).cast(UTC).alias("hour_start")) for h, f in hour_frames])
    priced = nodes.with_row_index("i").filter(pl.col("i") % 7 != 3)  # some node-hours are not billed yet
    costs = pl.concat([
        priced.select("hour_start", "instance_id", (0.5 + pl.col("i").cast(pl.Float64) / 1000).alias("cost")),
        pl.DataFrame({"hour_start": day[5:9], "instance_id": ["i-0orphan"] * 4, "cost": [0.25] * 4})
        .with_columns(pl.col("hour_start").cast(UTC))]).with_columns(
        pl.lit("USD").alias("currency"), pl.lit("m5.large").alias("instance_type"), pl.lit(cluster).alias("cluster_tag"))
    transfer = priced.filter(pl.col("i") % 3 == 0).select("hour_start", "instance_id", pl.lit(0.01).alias("cost"))
    plane = pl.DataFrame({"hour_start": day[::2], "cluster": [cluster] * 12, "cost": [0.1] * 12,
                          "currency": ["USD"] * 12}).with_columns(pl.col("hour_start").cast(UTC))
    common = {"cost_center": cc.name, "cluster": cluster, "instance_costs": costs, "control_plane": plane,
              "options": AllocationConfig.model_validate(options), "cost_basis": "amortized", "transfer_costs": transfer}

    stacked = allocate_hours(stack_hours(hour_frames), hours=day, **common)
    alone = pl.concat([allocate_hour(frames, hour=h, **common) for h, frames in hour_frames])
    # enrichment hands its day's frames over (emptied once pods and nodes are read): the same rows
    handed = stack_hours(hour_frames)
    order = ["hour_start", "namespace", "pod", "uid", "node"]
    assert_frame_equal(allocate_hours(handed, hours=day, release_frames=True, **common).sort(order, nulls_last=True),
                       stacked.sort(order, nulls_last=True), rel_tol=1e-12)
    assert handed == {}

    key = ["hour_start", "namespace", "pod", "uid", "node"]
    assert stacked.height == alone.height > 24 * 30
    shared = options.get("cluster_overhead") == "shared"
    assert set(stacked["namespace"]) >= {"__unpriced__", "__unallocated__"} | (
        {"__idle__"} if options.get("idle") == "separate" else set()) | (set() if shared else {"__cluster_overhead__"})
    assert (stacked["overhead_cost"].filter(~stacked["namespace"].str.starts_with("__")).sum() > 0) == shared
    joined = stacked.join(alone, on=key, how="full", nulls_equal=True, suffix="_alone")
    assert joined.filter(pl.col("hour_start").is_null() | pl.col("hour_start_alone").is_null()).height == 0
    for column, dtype in stacked.schema.items():
        if column in key:
            continue
        if dtype == pl.Float64:
            worst = joined.select((pl.col(column).fill_null(0.0) - pl.col(f"{column}_alone").fill_null(0.0)).abs().max()).item()
            assert worst <= 1e-12, f"{column}: off by {worst}"
        else:
            differs = joined.filter(pl.col(column).ne_missing(pl.col(f"{column}_alone")))
            assert differs.height == 0, f"{column}: {differs.select(*key, column, f'{column}_alone').head(3)}"
    assert stacked["total_cost"].sum() == pytest.approx(costs["cost"].sum() + transfer["cost"].sum() + plane["cost"].sum(),
                                                        rel=1e-12)
