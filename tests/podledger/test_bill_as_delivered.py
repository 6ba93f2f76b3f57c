"""Every cent exactly once: the bill is read as delivered and the money checked against its files independently.

Each case puts real files in the S3 endpoint (a copy of the synthetic CUR 2.0 delivery, then altered as an
unlucky user's bill would be) and runs the real enrichment on windows exported from a real Prometheus. Each ends
either with the exact money, as this test computes it from the files itself, or with an error naming the culprit.
"""

from __future__ import annotations

import datetime as dt
import gzip
import io
import json
import logging
import uuid

import polars as pl
import pytest

from helpers import SYNTH_START, make_cost_center, prometheus_client, put_tree, s3_store
from podledger.enrich import enrich_cluster
from podledger.exceptions import BillingDataError, ReconciliationError
from podledger.export import export_window
from podledger.layout import plan_windows

HOURS = 2
END = SYNTH_START + dt.timedelta(hours=HOURS)
EXPORT = "cur/podledger-cur"
PERIOD = "BILLING_PERIOD=2026-11"
DATA = f"{EXPORT}/data/{PERIOD}"
MANIFEST = f"{EXPORT}/metadata/{PERIOD}/podledger-cur-Manifest.json"
FILE = f"{DATA}/podledger-cur-00001.snappy.parquet"
UTC = pl.Datetime("us", "UTC")


@pytest.fixture(scope="module")
def exported(prometheus, moto):
    """Two hours of the synthetic cluster exported once from the real Prometheus (shared by every case)."""
    bucket = f"m-delivered-{uuid.uuid4().hex[:6]}"
    store = s3_store(moto, bucket)
    cc = make_cost_center(bucket)
    client = prometheus_client(prometheus)
    for window in plan_windows(SYNTH_START, END, 3600):
        export_window(client, store, cc, cc.clusters[0], window)
    return bucket, store


@pytest.fixture
def bill(moto, synth):
    """A fresh copy of the synthetic CUR 2.0 delivery in its own bucket: (store, bucket)."""
    bucket = f"bill-{uuid.uuid4().hex[:8]}"
    store = s3_store(moto, bucket)
    put_tree(store, synth.cur_root, "cur")
    return store, bucket


def enrich(exported, bill_bucket: str, billing_store, **billing):
    bucket, store = exported
    cc = make_cost_center(bucket, billing={"uri": f"s3://{bill_bucket}/{EXPORT}", **billing})
    return enrich_cluster(cc, cc.clusters[0], SYNTH_START, END, metrics_store=store, billing_store=billing_store)


def expected_from_files(store, keys: list[str]) -> pl.DataFrame:
    """This test's own reading of the money: amortized cost per hour of the demo cluster's resources."""
    frame = pl.concat([pl.read_parquet(io.BytesIO(store.get(k))) for k in keys], how="diagonal_relaxed")
    kind = pl.col("line_item_line_item_type")
    amortized = (pl.when(kind == "SavingsPlanCoveredUsage").then(pl.col("savings_plan_savings_plan_effective_cost"))
                 .when(kind == "DiscountedUsage").then(pl.col("reservation_effective_cost"))
                 .when(kind == "SavingsPlanNegation").then(0.0).otherwise(pl.col("line_item_unblended_cost")))
    ours = (pl.col("line_item_resource_id").str.starts_with("i-")
            | (pl.col("line_item_resource_id") == "arn:aws:eks:us-east-1:123456789012:cluster/demo-eks"))
    return (frame.filter(ours & (pl.col("line_item_usage_account_id") == "123456789012"))
            .with_columns(pl.col("line_item_usage_start_date").cast(UTC).alias("hour_start"))
            .filter(pl.col("hour_start") < END)
            .group_by("hour_start").agg(amortized.sum().alias("expected")).sort("hour_start"))


def assert_exact(result, expected: pl.DataFrame) -> None:
    got = result.rows.group_by("hour_start").agg(pl.col("total_cost").sum().alias("got")).sort("hour_start")
    both = got.join(expected, on="hour_start", how="full", coalesce=True)
    assert both.height == HOURS and both.null_count().sum_horizontal().item() == 0, both
    assert ((both["got"] - both["expected"]).abs() <= 1e-9 * both["expected"].abs()).all(), both


def test_the_plain_delivery_balances_with_the_files(exported, bill):
    store, bucket = bill
    result = enrich(exported, bucket, store)
    assert_exact(result, expected_from_files(store, [FILE]))
    assert "billed_from_files" in result.reconciliation.columns


def test_a_stale_copy_beside_the_delivery_is_ignored_and_named(exported, bill, caplog):
    store, bucket = bill
    stale = f"{DATA}/podledger-cur-00001 (copy).snappy.parquet"
    store.put(stale, store.get(FILE))  # an older delivery left in place, or a copy: same line items
    with caplog.at_level(logging.WARNING, logger="podledger.deliveries"):
        result = enrich(exported, bucket, store)
    assert_exact(result, expected_from_files(store, [FILE]))  # once, not twice
    assert any(stale in r.getMessage() and "not part of the current delivery" in r.getMessage() for r in caplog.records)


def test_the_same_line_items_in_two_listed_files_are_an_error_naming_both(exported, bill):
    store, bucket = bill
    second = f"{DATA}/podledger-cur-00002.snappy.parquet"
    store.put(second, store.get(FILE))
    manifest = json.loads(store.get(MANIFEST))
    manifest["dataFiles"].append(f"s3://{bucket}/{second}")
    store.put(MANIFEST, json.dumps(manifest).encode())
    with pytest.raises(BillingDataError, match="more than once") as error:
        enrich(exported, bucket, store)
    assert "podledger-cur-00001" in str(error.value) and "podledger-cur-00002" in str(error.value)


def test_a_restated_period_is_read_from_its_new_delivery_only(exported, bill):
    store, bucket = bill
    old = pl.read_parquet(io.BytesIO(store.get(FILE)))
    money = [c for c, t in old.schema.items() if t == pl.Float64 and c.endswith(("_cost", "effective_cost"))]
    restated = old.with_columns(pl.col(c) * 1.25 for c in money)
    new = f"{DATA}/podledger-cur-restated-00001.snappy.parquet"
    buffer = io.BytesIO()
    restated.write_parquet(buffer)
    store.put(new, buffer.getvalue())  # the old file stays (as AWS leaves it when not overwriting)
    manifest = json.loads(store.get(MANIFEST))
    manifest.update(dataFiles=[f"s3://{bucket}/{new}"], executionId="restated-execution")
    store.put(MANIFEST, json.dumps(manifest).encode())
    result = enrich(exported, bucket, store)
    expected = expected_from_files(store, [new])
    assert_exact(result, expected)
    assert expected["expected"].sum() == pytest.approx(1.25 * expected_from_files(store, [FILE])["expected"].sum())


def test_a_data_file_without_its_manifest_is_refused(exported, bill):
    store, bucket = bill
    store.delete([MANIFEST])
    with pytest.raises(BillingDataError, match="no manifest"):
        enrich(exported, bucket, store)


def test_another_accounts_cluster_of_the_same_name_is_never_charged_to_ours(exported, bill, caplog):
    """A payer CUR: linked account 999999999999 also runs an EKS cluster named demo-eks, with a tagged instance."""
    store, bucket = bill
    frame = pl.read_parquet(io.BytesIO(store.get(FILE)))
    plane = frame.filter(pl.col("line_item_product_code") == "AmazonEKS")
    tagged = frame.filter(pl.col("line_item_usage_type").str.contains("BoxUsage")).group_by(
        "line_item_usage_start_date").head(1).select(frame.columns)
    other = "999999999999"
    intruders = pl.concat([
        plane.with_columns(pl.col("line_item_resource_id").str.replace("123456789012", other),
                           pl.lit(other).alias("line_item_usage_account_id")),
        tagged.with_columns(pl.lit("i-0ther0account0001").alias("line_item_resource_id"),
                            pl.lit(other).alias("line_item_usage_account_id")),
    ]).with_columns((pl.col("identity_line_item_id") + "-other").alias("identity_line_item_id"))
    buffer = io.BytesIO()
    pl.concat([frame, intruders]).write_parquet(buffer)
    store.put(FILE, buffer.getvalue())
    with caplog.at_level(logging.WARNING, logger="podledger.enrich"):
        result = enrich(exported, bucket, store)
    assert_exact(result, expected_from_files(store, [FILE]))  # the test's own reading keeps account 123456789012 only
    assert "i-0ther0account0001" not in result.rows["instance_id"].drop_nulls().to_list()
    assert any(other in r.getMessage() and "same name" in r.getMessage() for r in caplog.records)


def test_the_independent_check_catches_a_reader_that_doubles_a_node(exported, bill, monkeypatch):
    """A bug in the bill reader balances with itself; the check from the files does not."""
    import podledger.enrich as enrich_module
    from podledger.billing import instance_hour_costs

    def doubled(cur, basis, keys):
        costs = instance_hour_costs(cur, basis, keys)
        first = costs["instance_id"].sort()[0]
        return costs.with_columns(pl.when(pl.col("instance_id") == first).then(pl.col("cost") * 2)
                                  .otherwise(pl.col("cost")).alias("cost"))

    monkeypatch.setattr(enrich_module, "instance_hour_costs", doubled)
    store, bucket = bill
    with pytest.raises(ReconciliationError, match=r"hour 2026-11-02T00Z .* the bill's files say"):
        enrich(exported, bucket, store)


# --- FOCUS as providers export it -------------------------------------------------------------------------------------

def focus_from_truth(synth, currency: str = "USD") -> pl.DataFrame:
    truth = pl.read_parquet(synth.truth_instances).filter(pl.col("kind") == "instance")
    return truth.select(
        pl.col("hour_start").cast(UTC).dt.strftime("%Y-%m-%d %H:%M:%S").alias("ChargePeriodStart"),
        pl.lit("AWS").alias("ProviderName"), pl.col("instance_id").alias("ResourceId"),
        pl.lit("Usage").alias("ChargeCategory"), pl.lit("Compute").alias("ServiceCategory"),
        pl.col("amortized_cost").alias("EffectiveCost"), pl.col("amortized_cost").alias("BilledCost"),
        pl.col("amortized_cost").alias("ListCost"), pl.lit(currency).alias("BillingCurrency"),
        pl.lit(None, pl.String).alias("ResourceName"),
        pl.lit('{"CostCenter": "1234", "aws:eks:cluster-name": "demo-eks"}').alias("Tags"))


def put_focus_csv(store, key: str, frame: pl.DataFrame, gzipped: bool) -> None:
    buffer = io.BytesIO()
    frame.write_csv(buffer, null_value="NULL", quote_style="non_numeric")
    store.put(key, gzip.compress(buffer.getvalue()) if gzipped else buffer.getvalue())


@pytest.mark.parametrize("gzipped", [False, True], ids=["csv", "csv.gz"])
def test_focus_csv_as_exported_with_json_tags_prices_and_keeps_the_tagged_orphan(exported, moto, synth, gzipped):
    store = s3_store(moto, f"focus-{uuid.uuid4().hex[:8]}")
    focus = focus_from_truth(synth)
    put_focus_csv(store, f"focus/data/{PERIOD}/part-0.csv" + (".gz" if gzipped else ""), focus, gzipped)
    bucket, metrics = exported
    cc = make_cost_center(bucket, billing={"format": "focus", "uri": f"s3://{store.bucket}/focus"})
    result = enrich_cluster(cc, cc.clusters[0], SYNTH_START, END, metrics_store=metrics, billing_store=store)
    # The instance tagged aws:eks:cluster-name (in the JSON Tags) but absent from Prometheus lands on __unallocated__.
    assert "__unallocated__" in result.rows["namespace"].to_list()
    expected = (focus.with_columns(pl.col("ChargePeriodStart").str.to_datetime(time_zone="UTC").alias("hour_start"))
                .filter(pl.col("hour_start") < END).group_by("hour_start")
                .agg(pl.col("EffectiveCost").sum().alias("expected")))
    assert_exact(result, expected)


def test_focus_with_two_currencies_in_a_period_is_an_error_naming_file_and_currencies(exported, moto, synth):
    store = s3_store(moto, f"focus-{uuid.uuid4().hex[:8]}")
    put_focus_csv(store, f"focus/data/{PERIOD}/usd.csv", focus_from_truth(synth, "USD"), False)
    put_focus_csv(store, f"focus/data/{PERIOD}/eur.csv", focus_from_truth(synth, "EUR").with_columns(
        pl.col("ResourceId") + "-eu"), False)
    bucket, metrics = exported
    cc = make_cost_center(bucket, billing={"format": "focus", "uri": f"s3://{store.bucket}/focus"})
    with pytest.raises(BillingDataError, match=r"mixes currencies \['EUR', 'USD'\]") as error:
        enrich_cluster(cc, cc.clusters[0], SYNTH_START, END, metrics_store=metrics, billing_store=store)
    assert "eur.csv" in str(error.value) and "usd.csv" in str(error.value)


def test_focus_charges_delivered_twice_are_an_error_naming_both_files(exported, moto, synth):
    store = s3_store(moto, f"focus-{uuid.uuid4().hex[:8]}")
    focus = focus_from_truth(synth)
    put_focus_csv(store, f"focus/data/{PERIOD}/a.csv", focus, False)
    put_focus_csv(store, f"focus/data/{PERIOD}/a-copy.csv.gz", focus, True)
    bucket, metrics = exported
    cc = make_cost_center(bucket, billing={"format": "focus", "uri": f"s3://{store.bucket}/focus"})
    with pytest.raises(BillingDataError, match="identical row") as error:
        enrich_cluster(cc, cc.clusters[0], SYNTH_START, END, metrics_store=metrics, billing_store=store)
    assert "a.csv" in str(error.value) and "a-copy.csv.gz" in str(error.value)


def test_a_damaged_bill_file_names_itself(exported, bill):
    store, bucket = bill
    store.put(FILE, store.get(FILE)[: 4096])  # truncated in transit
    with pytest.raises(BillingDataError, match="cannot read this bill file") as error:
        enrich(exported, bucket, store)
    assert FILE in str(error.value)
