"""What Prometheus really holds: only the seed's metrics, a cluster without init containers, AWS's GPU example.

Each case filters the synthetic cluster's OpenMetrics as a relabel allow-list would, loads it into a real
Prometheus, exports, validates and prices it through the real pipeline.
"""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path

import polars as pl
import pytest

from helpers import SYNTH_START, make_cost_center, prometheus_client, put_tree, s3_store
from podledger.enrich import enrich_cluster
from podledger.export import export_window
from podledger.layout import plan_windows
from podledger.validate import validate_windows
from podledger_lab.stack import load_blocks, start_prometheus
from podledger_lab.synth import synthesize

HOURS = 3
END = SYNTH_START + dt.timedelta(hours=HOURS)
# The seed exporter's documented metrics: 11 required series shapes and its recommended ones.
SEED_METRICS = {
    "kube_node_info", "container_cpu_usage_seconds_total", "container_memory_working_set_bytes",
    "kube_node_status_capacity", "kube_pod_container_resource_requests", "kube_pod_init_container_resource_requests",
    "container_network_receive_bytes_total", "container_network_transmit_bytes_total",
    "kube_pod_labels", "kube_node_labels", "kube_namespace_labels", "kube_pod_info", "kube_replicaset_owner",
    "kube_job_owner",
}


def keep_only(source: Path, target: Path, keep) -> None:  # noqa: ANN001 - a predicate on metric names
    with source.open() as lines, target.open("w") as out:
        for line in lines:
            if line.startswith("#") or keep(line.split("{", 1)[0].split(" ", 1)[0]):
                out.write(line)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    work = tmp_path_factory.mktemp("metric-sets")
    return work, synthesize(work / "synth", nodes=4, pods=24, hours=HOURS, start=SYNTH_START)


def run(work: Path, synth, keep, moto, name: str):  # noqa: ANN001, ANN201
    """Filter, load, export, validate and enrich; return (findings, result)."""
    filtered = work / f"{name}.om"
    keep_only(synth.openmetrics, filtered, keep)
    load_blocks(filtered, work / f"{name}-tsdb")
    server = start_prometheus(work / f"{name}-tsdb", work)
    suffix = uuid.uuid4().hex[:6]
    metrics, bill = s3_store(moto, f"sets-m-{suffix}"), s3_store(moto, f"sets-b-{suffix}")
    put_tree(bill, synth.cur_root, "cur")
    cc = make_cost_center(metrics.bucket, billing={"uri": f"s3://{bill.bucket}/cur/podledger-cur"})
    windows = plan_windows(SYNTH_START, END, 3600)
    try:
        client = prometheus_client(server)
        for window in windows:
            export_window(client, metrics, cc, cc.clusters[0], window)
    finally:
        server.stop()
    findings = validate_windows(metrics, cc, [("demo-eks", w) for w in windows])
    result = enrich_cluster(cc, cc.clusters[0], SYNTH_START, END, metrics_store=metrics, billing_store=bill)
    return findings, result


def test_only_the_seeds_metrics_prices_pods_and_says_what_is_missing(synthetic, moto):
    work, synth = synthetic
    findings, result = run(work, synth, lambda name: name in SEED_METRICS, moto, "seed")
    rules = {f.rule for f in findings}
    assert "pod_phase_missing" in rules and not [f for f in findings if f.severity == "error"], findings
    warning = next(f for f in findings if f.rule == "pod_phase_missing")
    assert "kube_pod_info" in warning.message and "Completed" in warning.message
    pods = result.rows.filter(~pl.col("namespace").str.starts_with("__"))
    per_hour = pods.group_by("hour_start").agg(pl.col("total_cost").sum(), pl.len())
    assert per_hour.height == HOURS and (per_hour["total_cost"] > 0).all(), "never every cent to __idle__"
    # Pods that do not linger after they end are present exactly while they run: their hours match the truth.
    truth = pl.read_parquet(synth.truth_pods).filter(pl.col("running_seconds") > 0)
    lingering = {p.uid for p in synth.cluster.pods if p.linger}
    joined = truth.filter(~pl.col("uid").is_in(list(lingering))).join(
        pods, left_on=["window_start", "uid"], right_on=["hour_start", "uid"], how="inner")
    assert joined.height > 0.8 * truth.height
    assert ((joined["running_hours"] - joined["running_seconds"] / 3600).abs() < 1e-9).all()


def test_without_any_pod_presence_validation_and_enrichment_fail_naming_the_effect(synthetic, moto):
    from podledger.exceptions import ValidationFailed

    work, synth = synthetic
    with pytest.raises(ValidationFailed, match=r"pod_presence_missing.*every cent of every node-hour would go to __idle__"):
        run(work, synth, lambda name: name in SEED_METRICS - {"kube_pod_info"}, moto, "nopresence")


def test_a_cluster_without_init_containers_is_not_an_error(synthetic, moto):
    work, synth = synthetic
    findings, result = run(work, synth, lambda name: not name.startswith("kube_pod_init_container"), moto, "noinit")
    assert not [f for f in findings if f.severity == "error"], findings
    assert result.reconciliation["ok"].all()
