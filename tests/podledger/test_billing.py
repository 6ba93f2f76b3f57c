"""CUR 2.0 node pricing on the synthetic delivery: every purchase option, nothing else leaks in."""

from __future__ import annotations

import polars as pl
import pytest

from podledger.billing import control_plane_costs, instance_hour_costs
from podledger_lab.synth import build_cluster
from podledger_lab.synth.cur import build_cur


@pytest.fixture(scope="module")
def cur():
    cluster = build_cluster(nodes=8, pods=30, hours=2)
    table, truth = build_cur(cluster)
    frame = pl.from_arrow(table).with_columns(
        pl.col("resource_tags").map.entries(), pl.col("product").map.entries(),
        pl.col("line_item_usage_start_date").alias("hour_start"))
    return frame, pl.DataFrame(truth), cluster


def test_amortized_node_prices_match_truth(cur):
    frame, truth, cluster = cur
    costs = instance_hour_costs(frame, "amortized", ("aws_eks_cluster_name", "user_eks_cluster_name"))
    expected = truth.filter(pl.col("kind") == "instance")
    joined = expected.join(costs, on="instance_id", how="left").filter(pl.col("hour_start") == pl.col("hour_start_right"))
    assert joined.height == expected.height
    assert (joined["amortized_cost"] - joined["cost"]).abs().max() < 1e-12
    spot = [n for n in cluster.nodes if n.purchase == "spot"][0]
    assert costs.filter(pl.col("instance_id") == spot.instance_id)["instance_type"][0] == spot.instance_type
    assert set(costs["cluster_tag"].unique()) == {cluster.name}


def test_cost_bases_differ_as_aws_defines_them(cur):
    frame, _, cluster = cur
    sp = [n for n in cluster.nodes if n.purchase == "savings_plan"][0]
    ri = [n for n in cluster.nodes if n.purchase == "reserved"][0]

    def price(basis: str, node) -> float:
        costs = instance_hour_costs(frame, basis, ())
        return costs.filter(pl.col("instance_id") == node.instance_id)["cost"][0]

    assert price("public_on_demand", sp) == pytest.approx(sp.on_demand_rate)
    assert price("unblended", sp) == pytest.approx(0.0)  # covered usage minus its negation
    assert price("amortized", sp) == pytest.approx(sp.on_demand_rate * 0.72)
    assert price("amortized", ri) == pytest.approx(ri.on_demand_rate * 0.62)
    assert price("net_amortized", ri) == pytest.approx(ri.on_demand_rate * 0.62)  # no discounts: falls back


def test_data_transfer_rows_under_amazon_ec2_are_tied_to_their_instance(cur):
    from podledger.billing import data_transfer_costs

    frame, truth, _ = cur
    transfer = data_transfer_costs(frame, "amortized")
    expected = truth.filter(pl.col("kind") == "data_transfer")
    assert transfer.height == expected.height and transfer["cost"].sum() == pytest.approx(expected["amortized_cost"].sum())


def test_control_plane_is_priced_per_cluster(cur):
    frame, _, cluster = cur
    plane = control_plane_costs(frame, "amortized")
    assert plane["cluster"].unique().to_list() == [cluster.name] and plane["cost"].sum() == pytest.approx(0.2)


def test_region_prefixed_and_dedicated_usage_types_are_instance_hours():
    import datetime as dt

    from podledger.billing import LINE_ITEM_TYPE, instance_hour_costs

    hour = dt.datetime(2026, 11, 2, tzinfo=dt.UTC)
    rows = pl.DataFrame({
        "hour_start": [hour] * 5, LINE_ITEM_TYPE: ["Usage"] * 5, "line_item_product_code": ["AmazonEC2"] * 5,
        "line_item_usage_type": ["USW2-BoxUsage:m5.large", "EUC1-SpotUsage:c5.xlarge", "DedicatedUsage:r5.large",
                                 "USW2-DataTransfer-Regional-Bytes", "USW2-EBS:VolumeUsage.gp3"],
        "line_item_operation": ["RunInstances", "RunInstances:SV001", "RunInstances", "RunInstances", "CreateVolume-Gp3"],
        "line_item_resource_id": ["i-1", "i-2", "i-3", "i-1", "vol-1"],
        "line_item_unblended_cost": [1.0, 2.0, 3.0, 0.5, 0.1], "pricing_public_on_demand_cost": [1.0, 2.0, 3.0, 0.5, 0.1],
        "line_item_currency_code": ["USD"] * 5, "product_servicecode": ["AmazonEC2", "AmazonEC2", "AmazonEC2",
                                                                        "AWSDataTransfer", "AmazonEC2"],
        "product_instance_type": ["m5.large", "", "r5.large", None, None],
        "line_item_line_item_description": ["", "c5.xlarge Linux/UNIX Spot Instance-hour", "", "", ""],
        "resource_tags": [[]] * 5, "savings_plan_savings_plan_effective_cost": [None] * 5,
        "savings_plan_net_savings_plan_effective_cost": [None] * 5, "reservation_effective_cost": [None] * 5,
        "reservation_net_effective_cost": [None] * 5, "line_item_net_unblended_cost": [None] * 5,
    }, schema_overrides={"resource_tags": pl.List(pl.Struct({"key": pl.String, "value": pl.String}))})
    costs = instance_hour_costs(rows, "amortized", ())
    assert dict(costs.select("instance_id", "cost").iter_rows()) == {"i-1": 1.0, "i-2": 2.0, "i-3": 3.0}
    assert dict(costs.select("instance_id", "instance_type").iter_rows())["i-2"] == "c5.xlarge"
