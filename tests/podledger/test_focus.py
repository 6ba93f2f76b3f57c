"""FOCUS billing from AWS, GCP and Azure: node matching per provider, only compute usage priced, reconciled."""

from __future__ import annotations

import datetime as dt
import io

import polars as pl
import pytest
from test_allocation import AWS_EXAMPLE, HOUR, Scenario, frames_for

from helpers import SYNTH_START, make_cost_center, s3_store
from podledger.allocation import allocate_hour, billed_cost, reconcile
from podledger.config import AllocationConfig
from podledger.focus import focus_instance_costs, node_key
from podledger.usage import node_hours

PROVIDER_IDS = {
    "aws": ("aws:///us-east-1a/i-0ABC123", "i-0abc123"),
    "gcp": ("gce://my-project/europe-west4-a/gke-prod-pool-1-abcd", "europe-west4-a/gke-prod-pool-1-abcd"),
    "azure": ("azure:///subscriptions/S1/resourceGroups/MC_rg_aks_westeurope/providers/Microsoft.Compute/"
              "virtualMachineScaleSets/aks-nodepool1-123-vmss/virtualMachines/3",
              "/subscriptions/s1/resourcegroups/mc_rg_aks_westeurope/providers/microsoft.compute/"
              "virtualmachinescalesets/aks-nodepool1-123-vmss/virtualmachines/3"),
}


@pytest.mark.parametrize("provider", list(PROVIDER_IDS))
def test_node_key_per_provider(provider):
    provider_id, key = PROVIDER_IDS[provider]
    assert node_key(provider_id) == key


def focus_rows(provider: str, resource_id: str, name: str | None, zone: str | None, cost: float) -> pl.DataFrame:
    """A FOCUS export slice: the node's compute usage plus rows that must never reach a node price."""
    base = {"ChargePeriodStart": HOUR, "ProviderName": provider, "BillingCurrency": "USD", "SubAccountId": "acct",
            "RegionId": "r", "ResourceName": name, "AvailabilityZone": zone}
    rows = [
        {**base, "ResourceId": resource_id, "ChargeCategory": "Usage", "ServiceCategory": "Compute",
         "EffectiveCost": cost, "BilledCost": cost * 1.2, "ListCost": cost * 1.5},
        {**base, "ResourceId": resource_id, "ChargeCategory": "Usage", "ServiceCategory": "Storage",
         "EffectiveCost": 0.3, "BilledCost": 0.3, "ListCost": 0.3},  # the node's disk: not the node's compute
        {**base, "ResourceId": None, "ChargeCategory": "Purchase", "ServiceCategory": "Compute",
         "EffectiveCost": 0.0, "BilledCost": 100.0, "ListCost": 0.0},
        {**base, "ResourceId": None, "ChargeCategory": "Tax", "ServiceCategory": "Other",
         "EffectiveCost": 7.0, "BilledCost": 7.0, "ListCost": 0.0},
        {**base, "ResourceId": resource_id, "ChargeCategory": "Credit", "ServiceCategory": "Compute",
         "EffectiveCost": -0.2, "BilledCost": -0.2, "ListCost": 0.0},
    ]
    return pl.DataFrame(rows, schema_overrides={"ChargePeriodStart": pl.Datetime("us", "UTC")})


CASES = {  # provider -> (ProviderName, ResourceId, ResourceName, AvailabilityZone)
    "aws": ("AWS", "i-0abc123", None, "us-east-1a"),
    "gcp": ("Google Cloud", "//compute.googleapis.com/projects/441570621172/zones/europe-west4-a/instances/812",
            "GKE-prod-pool-1-abcd", "europe-west4-a"),
    "azure": ("Microsoft", PROVIDER_IDS["azure"][1].upper(), "aks-nodepool1-123-vmss_3", None),
}


@pytest.mark.parametrize("provider", list(CASES))
def test_focus_prices_the_node_and_reconciles(provider):
    name, resource_id, resource_name, zone = CASES[provider]
    frames = frames_for(Scenario(AWS_EXAMPLE))
    frames["node_info"] = frames["node_info"].with_columns(pl.lit(PROVIDER_IDS[provider][0]).alias("provider_id"))
    focus = focus_rows(name, resource_id, resource_name, zone, cost=1.0)
    costs = focus_instance_costs(focus, "amortized")
    assert costs.select("instance_id", "cost").rows() == [(PROVIDER_IDS[provider][1], 1.0)]
    assert focus_instance_costs(focus, "public_on_demand")["cost"].to_list() == [1.5]
    plane = pl.DataFrame(schema={"hour_start": pl.Datetime("us", "UTC"), "cluster": pl.String, "cost": pl.Float64,
                                 "currency": pl.String})
    rows = allocate_hour(frames, hour=HOUR, cost_center="cc", cluster="c1", instance_costs=costs, control_plane=plane,
                         options=AllocationConfig(), cost_basis="amortized")
    got = dict(rows.select("pod", "total_cost").iter_rows())
    assert got["pod1"] == pytest.approx(0.229199, abs=1e-6)
    nodes = node_hours(frames).select(pl.lit(HOUR).cast(pl.Datetime("us", "UTC")).alias("hour_start"), "instance_id")
    assert reconcile(rows, billed_cost(costs, plane, nodes, "c1"))["ok"].all()


def test_azure_scale_set_row_is_shared_by_its_nodes():
    vmss = "/subscriptions/s1/resourcegroups/rg/providers/microsoft.compute/virtualmachinescalesets/pool"
    focus = focus_rows("Microsoft", vmss.upper(), "pool", None, cost=3.0)
    nodes = pl.DataFrame({"hour_start": [HOUR] * 3, "instance_id": [f"{vmss}/virtualmachines/{i}" for i in range(3)]},
                         schema_overrides={"hour_start": pl.Datetime("us", "UTC")})
    costs = focus_instance_costs(focus, "amortized", nodes)
    assert sorted(costs["cost"].to_list()) == pytest.approx([1.0, 1.0, 1.0])
    assert set(costs["instance_id"]) == set(nodes["instance_id"])


def test_aws_focus_export_through_enrichment(stack_env, synth, prometheus, moto, fresh_bucket, store_factory):
    """The synthetic cluster exported from Prometheus, priced from an AWS FOCUS 1.2 export in S3."""
    from podledger.connections import ConnectionInfo
    from podledger.enrich import enrich_cluster
    from podledger.export import export_window
    from podledger.layout import plan_windows
    from podledger.promclient import client_from_connection

    truth = pl.read_parquet(synth.truth_instances).filter(pl.col("kind") == "instance")
    tag_type = pl.List(pl.Struct({"key": pl.String, "value": pl.String}))
    focus = truth.select(
        pl.lit([{"key": "aws:eks:cluster-name", "value": "demo-eks"}], dtype=tag_type).alias("Tags"),
        pl.col("hour_start").cast(pl.Datetime("us", "UTC")).alias("ChargePeriodStart"), pl.lit("AWS").alias("ProviderName"),
        pl.col("instance_id").alias("ResourceId"), pl.lit("Usage").alias("ChargeCategory"),
        pl.lit("Compute").alias("ServiceCategory"), pl.col("amortized_cost").alias("EffectiveCost"),
        pl.col("amortized_cost").alias("BilledCost"), pl.col("amortized_cost").alias("ListCost"),
        pl.lit("USD").alias("BillingCurrency"))
    billing = s3_store(moto, "focus-billing")
    buffer = io.BytesIO()
    focus.write_parquet(buffer)
    billing.put("focus/data/BILLING_PERIOD=2026-11/focus-00001.parquet", buffer.getvalue())
    cc = make_cost_center(fresh_bucket, billing={"format": "focus", "uri": "s3://focus-billing/focus"})
    store = store_factory(fresh_bucket)
    client = client_from_connection(ConnectionInfo("p", host="127.0.0.1", port=prometheus.port))
    windows = plan_windows(SYNTH_START, SYNTH_START + dt.timedelta(hours=2), 3600)
    for window in windows:
        export_window(client, store, cc, cc.clusters[0], window)
    result = enrich_cluster(cc, cc.clusters[0], windows[0].start, windows[-1].end, metrics_store=store, billing_store=billing)
    assert result.reconciliation["ok"].all()
    # The instance tagged aws:eks:cluster-name but absent from Prometheus is the cluster's (__unallocated__).
    in_range = truth.with_columns(pl.col("hour_start").cast(pl.Datetime("us", "UTC"))).filter(
        pl.col("hour_start") < windows[-1].end)
    assert "__unallocated__" in result.rows["namespace"].to_list()
    expected = in_range["amortized_cost"].sum()
    assert result.rows["total_cost"].sum() == pytest.approx(expected, rel=1e-12)
