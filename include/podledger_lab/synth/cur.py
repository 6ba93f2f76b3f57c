"""Write the AWS CUR 2.0 (Data Exports) delivery matching a synthetic cluster, and its per-instance truth.

Purchase options per node: On-Demand, Spot (empty product_instance_type, type in the description),
Savings-Plan-covered (with its SavingsPlanNegation row) and RI-covered (DiscountedUsage). Besides the
nodes: a tagged instance that never shows up in Prometheus, the EKS control plane, EBS volumes, data
transfer under AmazonEC2 with servicecode AWSDataTransfer, and account-level rows (SP recurring fee,
RI fee, S3, tax, credit) that must not leak into node prices.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from podledger_lab.synth.cluster import ACCOUNT_ID, REGION, Cluster, Node, stable_hex

UTC = dt.UTC
SPOT_DISCOUNT = 0.35  # spot price as a fraction of on-demand
SP_RATE = 0.72  # savings plan effective cost as a fraction of on-demand
RI_RATE = 0.62  # reserved instance effective cost as a fraction of on-demand
EKS_HOURLY = 0.10
EXPORT_NAME = "podledger-cur"

STRING_COLUMNS = (
    "bill_payer_account_id", "identity_line_item_id", "identity_time_interval", "line_item_usage_account_id",
    "line_item_line_item_type", "line_item_product_code", "line_item_usage_type", "line_item_operation",
    "line_item_availability_zone", "line_item_resource_id", "line_item_currency_code", "line_item_unblended_rate",
    "line_item_line_item_description", "pricing_public_on_demand_rate", "pricing_term", "pricing_unit",
    "product_instance_type", "product_product_family", "product_region_code", "product_servicecode",
    "reservation_reservation_a_r_n", "savings_plan_savings_plan_a_r_n",
)
DOUBLE_COLUMNS = (
    "line_item_usage_amount", "line_item_unblended_cost", "line_item_net_unblended_cost", "pricing_public_on_demand_cost",
    "reservation_effective_cost", "reservation_net_effective_cost", "reservation_unused_amortized_upfront_fee_for_billing_period",
    "reservation_unused_recurring_fee", "savings_plan_savings_plan_effective_cost",
    "savings_plan_net_savings_plan_effective_cost", "savings_plan_total_commitment_to_date", "savings_plan_used_commitment",
)
TIMESTAMP_COLUMNS = ("bill_billing_period_start_date", "bill_billing_period_end_date", "line_item_usage_start_date",
                     "line_item_usage_end_date")
MAP_COLUMNS = ("product", "resource_tags")


def _period(moment: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    start = moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = (start + dt.timedelta(days=32)).replace(day=1)
    return start, end


class _Rows:
    def __init__(self) -> None:
        self.rows: list[dict] = []

    def add(self, hour: dt.datetime, period: tuple[dt.datetime, dt.datetime], **values: object) -> None:
        end = hour + dt.timedelta(hours=1)
        row: dict[str, object] = dict.fromkeys(STRING_COLUMNS + DOUBLE_COLUMNS)
        row.update({
            "bill_billing_period_start_date": period[0], "bill_billing_period_end_date": period[1],
            "line_item_usage_start_date": hour, "line_item_usage_end_date": end,
            "identity_time_interval": f"{hour:%Y-%m-%dT%H:%M:%SZ}/{end:%Y-%m-%dT%H:%M:%SZ}",
            "bill_payer_account_id": ACCOUNT_ID, "line_item_usage_account_id": ACCOUNT_ID,
            "line_item_currency_code": "USD", "product": {}, "resource_tags": {},
        })
        row.update(values)
        row["identity_line_item_id"] = stable_hex(json.dumps({k: str(v) for k, v in row.items()}, sort_keys=True), length=52)
        self.rows.append(row)


def _instance_rows(rows: _Rows, hour: dt.datetime, period: tuple, node: Node, cluster: str) -> float:
    """Add a node's usage rows for one hour; return its amortized cost (the truth)."""
    od = node.on_demand_rate
    tags = {"user_eks_cluster_name": cluster,
            "user_eks_nodegroup_name": node.labels.get("eks_amazonaws_com_nodegroup", "general"),
            "aws_eks_cluster_name": cluster}
    common = dict(line_item_product_code="AmazonEC2", line_item_operation="RunInstances",
                  line_item_availability_zone=node.zone, line_item_resource_id=node.instance_id,
                  line_item_usage_amount=1.0, pricing_unit="Hrs", product_region_code=REGION,
                  product_servicecode="AmazonEC2", product_product_family="Compute Instance",
                  pricing_public_on_demand_cost=od, pricing_public_on_demand_rate=f"{od:.10f}",
                  product={"region": REGION, "vcpu": str(node.vcpu), "memory": f"{node.memory_gib} GiB",
                           "instance_type_family": node.instance_type.split(".")[0], "operating_system": "Linux"},
                  resource_tags=tags)
    desc = f"${od} per On Demand Linux {node.instance_type} Instance Hour"
    if node.purchase == "on_demand":
        rows.add(hour, period, **common, line_item_line_item_type="Usage", line_item_usage_type=f"BoxUsage:{node.instance_type}",
                 line_item_unblended_cost=od, line_item_unblended_rate=f"{od:.10f}", pricing_term="OnDemand",
                 product_instance_type=node.instance_type, line_item_line_item_description=desc)
        return od
    if node.purchase == "spot":
        price = round(od * SPOT_DISCOUNT, 8)
        rows.add(hour, period, **common, line_item_line_item_type="Usage", line_item_usage_type=f"SpotUsage:{node.instance_type}",
                 line_item_unblended_cost=price, line_item_unblended_rate=f"{price:.10f}", pricing_term="",
                 product_instance_type="",  # empty on Spot rows: the type is in the description
                 line_item_line_item_description=f"{node.instance_type} Linux/UNIX Spot Instance-hour in {REGION} in VPC Zone #1")
        return price
    if node.purchase == "savings_plan":
        effective = round(od * SP_RATE, 8)
        arn = f"arn:aws:savingsplans::{ACCOUNT_ID}:savingsplan/{stable_hex('sp', length=36)}"
        rows.add(hour, period, **common, line_item_line_item_type="SavingsPlanCoveredUsage",
                 line_item_usage_type=f"BoxUsage:{node.instance_type}", line_item_unblended_cost=od,
                 line_item_unblended_rate=f"{od:.10f}", pricing_term="OnDemand", product_instance_type=node.instance_type,
                 savings_plan_savings_plan_a_r_n=arn, savings_plan_savings_plan_effective_cost=effective,
                 line_item_line_item_description=desc)
        rows.add(hour, period, **{**common, "pricing_public_on_demand_cost": 0.0}, line_item_line_item_type="SavingsPlanNegation",
                 line_item_usage_type=f"BoxUsage:{node.instance_type}", line_item_unblended_cost=-od,
                 line_item_unblended_rate=f"{-od:.10f}", pricing_term="OnDemand", product_instance_type=node.instance_type,
                 savings_plan_savings_plan_a_r_n=arn,
                 line_item_line_item_description=f"SavingsPlanNegation used by AccountId : {ACCOUNT_ID} and UsageSku : X")
        return effective
    effective = round(od * RI_RATE, 8)
    rows.add(hour, period, **common, line_item_line_item_type="DiscountedUsage",
             line_item_usage_type=f"BoxUsage:{node.instance_type}", line_item_unblended_cost=0.0,
             line_item_unblended_rate="0.0000000000", pricing_term="Reserved", product_instance_type=node.instance_type,
             reservation_reservation_a_r_n=f"arn:aws:ec2:{REGION}:{ACCOUNT_ID}:reserved-instances/{stable_hex('ri', length=36)}",
             reservation_effective_cost=effective,
             line_item_line_item_description=f"USD 0.0 hourly fee per Linux/UNIX (Amazon VPC), {node.instance_type} instance")
    return effective


def build_cur(cluster: Cluster) -> tuple[pa.Table, list[dict]]:
    """Return the CUR 2.0 rows for the cluster's hours and the per-instance-hour amortized cost truth."""
    rows = _Rows()
    truth: list[dict] = []
    start = dt.datetime.fromtimestamp(cluster.start, UTC)
    hours = (cluster.end - cluster.start) // 3600
    for h in range(hours):
        hour = start + dt.timedelta(hours=h)
        period = _period(hour)
        for node in cluster.nodes + cluster.orphan_instances:
            cost = _instance_rows(rows, hour, period, node, cluster.name)
            truth.append({"cluster": cluster.name, "hour_start": hour, "instance_id": node.instance_id, "kind": "instance",
                          "node": node.name if node in cluster.nodes else None, "amortized_cost": cost})
            truth.append({"cluster": cluster.name, "hour_start": hour, "instance_id": node.instance_id,
                          "kind": "data_transfer", "node": node.name if node in cluster.nodes else None,
                          "amortized_cost": 0.015})
            gb = 100.0
            rows.add(hour, period, line_item_line_item_type="Usage", line_item_product_code="AmazonEC2",
                     line_item_usage_type="EBS:VolumeUsage.gp3", line_item_operation="CreateVolume-Gp3",
                     line_item_resource_id=f"vol-{stable_hex(node.instance_id, 'vol', length=17)}",
                     line_item_usage_amount=gb / 730, line_item_unblended_cost=round(0.08 * gb / 730, 10),
                     line_item_unblended_rate="0.08", pricing_unit="GB-Mo", product_servicecode="AmazonEC2",
                     product_product_family="Storage", product_region_code=REGION,
                     pricing_public_on_demand_cost=round(0.08 * gb / 730, 10),
                     resource_tags={"user_eks_cluster_name": cluster.name})
            rows.add(hour, period, line_item_line_item_type="Usage", line_item_product_code="AmazonEC2",
                     line_item_usage_type="USE1-DataTransfer-Regional-Bytes", line_item_operation="InterZone-In",
                     line_item_resource_id=node.instance_id, line_item_usage_amount=1.5, line_item_unblended_cost=0.015,
                     line_item_unblended_rate="0.01", pricing_unit="GB", product_servicecode="AWSDataTransfer",
                     product_product_family="Data Transfer", product_region_code=REGION, pricing_public_on_demand_cost=0.015)
        rows.add(hour, period, line_item_line_item_type="Usage", line_item_product_code="AmazonEKS",
                 line_item_usage_type="USE1-AmazonEKS-Hours:perCluster", line_item_operation="CreateOperation",
                 line_item_resource_id=f"arn:aws:eks:{REGION}:{ACCOUNT_ID}:cluster/{cluster.name}", line_item_usage_amount=1.0,
                 line_item_unblended_cost=EKS_HOURLY, line_item_unblended_rate="0.1", pricing_unit="hours",
                 product_servicecode="AmazonEKS", product_region_code=REGION, pricing_public_on_demand_cost=EKS_HOURLY)
        truth.append({"cluster": cluster.name, "hour_start": hour, "instance_id": "__cluster_overhead__",
                      "kind": "control_plane", "node": None, "amortized_cost": EKS_HOURLY})
        rows.add(hour, period, line_item_line_item_type="SavingsPlanRecurringFee", line_item_product_code="ComputeSavingsPlans",
                 line_item_usage_type="ComputeSP:1yrNoUpfront", line_item_operation="", line_item_unblended_cost=0.5,
                 savings_plan_total_commitment_to_date=0.5, savings_plan_used_commitment=0.45)
        rows.add(hour, period, line_item_line_item_type="Usage", line_item_product_code="AmazonS3",
                 line_item_usage_type="TimedStorage-ByteHrs", line_item_operation="StandardStorage",
                 line_item_resource_id="podledger-unrelated-bucket", line_item_unblended_cost=0.02,
                 line_item_usage_amount=1.0, pricing_unit="GB-Mo", product_servicecode="AmazonS3")
    period = _period(start)
    rows.add(period[0], period, line_item_line_item_type="RIFee", line_item_product_code="AmazonEC2",
             line_item_usage_type="HeavyUsage:m5.xlarge", line_item_unblended_cost=25.0, reservation_unused_recurring_fee=0.0,
             reservation_unused_amortized_upfront_fee_for_billing_period=0.0)
    rows.add(period[0], period, line_item_line_item_type="Tax", line_item_product_code="AmazonEC2",
             line_item_usage_type="", line_item_unblended_cost=3.21)
    rows.add(period[0], period, line_item_line_item_type="Credit", line_item_product_code="AmazonEC2",
             line_item_usage_type="", line_item_unblended_cost=-5.0)
    return _to_table(rows.rows), truth


def _to_table(rows: list[dict]) -> pa.Table:
    columns: dict[str, pa.Array] = {}
    for name in TIMESTAMP_COLUMNS:
        columns[name] = pa.array([r[name] for r in rows], pa.timestamp("ms", tz="UTC"))
    for name in STRING_COLUMNS:
        columns[name] = pa.array([r[name] for r in rows], pa.string())
    for name in DOUBLE_COLUMNS:
        columns[name] = pa.array([r[name] for r in rows], pa.float64())
    for name in MAP_COLUMNS:
        columns[name] = pa.array([sorted(r[name].items()) for r in rows], pa.map_(pa.string(), pa.string()))
    return pa.table(columns)


def write_cur_export(table: pa.Table, root: Path, export_name: str = EXPORT_NAME) -> list[Path]:
    """Write the Data Exports layout under ``root``: data/BILLING_PERIOD=YYYY-MM/*.parquet + metadata manifest."""
    written: list[Path] = []
    starts = table.column("bill_billing_period_start_date").to_pylist()
    for period_start in sorted(set(starts)):
        mask = pa.array([s == period_start for s in starts])
        part = table.filter(mask)
        label = f"BILLING_PERIOD={period_start:%Y-%m}"
        data_dir = root / export_name / "data" / label
        meta_dir = root / export_name / "metadata" / label
        data_dir.mkdir(parents=True, exist_ok=True)
        meta_dir.mkdir(parents=True, exist_ok=True)
        data_file = data_dir / f"{export_name}-00001.snappy.parquet"
        pq.write_table(part, data_file, compression="snappy")
        manifest = {
            "exportArn": f"arn:aws:bcm-data-exports:{REGION}:{ACCOUNT_ID}:export/{export_name}",
            "billingPeriod": f"{period_start:%Y-%m}",
            "executionId": stable_hex(label, part.num_rows, length=32),
            "dataFiles": [f"{export_name}/data/{label}/{data_file.name}"],
            "columns": [{"name": f.name, "type": str(f.type)} for f in part.schema],
        }
        manifest_file = meta_dir / f"{export_name}-Manifest.json"
        manifest_file.write_text(json.dumps(manifest, indent=1))
        written += [data_file, manifest_file]
    return written
