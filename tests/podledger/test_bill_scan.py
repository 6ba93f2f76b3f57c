"""Bill files scanned where they lie: a local file, or an S3 object by polars' ranged GETs with the store's own
credentials, and a restated file (same key, new content) read anew in the same process."""

from __future__ import annotations

import datetime as dt
import io

import polars as pl
import pytest

from helpers import s3_options
from podledger.deliveries import read_bill_file
from podledger.storage import FsspecStore, polars_s3_options

UTC = dt.UTC
DAY = dt.datetime(2026, 10, 3, tzinfo=UTC)
KEY = "cur/data/BILLING_PERIOD=2026-10/scan-00001.snappy.parquet"


def _bill(cost: float) -> bytes:
    hours = pl.datetime_range(DAY - dt.timedelta(days=1), DAY + dt.timedelta(days=2), "1h", closed="left",
                              eager=True, time_zone="UTC")
    frame = pl.DataFrame({"line_item_usage_start_date": hours, "line_item_resource_id": "i-0abc",
                          "line_item_unblended_cost": cost})
    buffer = io.BytesIO()
    frame.write_parquet(buffer, row_group_size=24)
    return buffer.getvalue()


@pytest.mark.parametrize("scheme", ["s3", "file"])
def test_a_restated_bill_is_read_anew_and_only_the_hours_asked(scheme, moto, tmp_path):
    from podledger_lab.demo import ensure_bucket

    if scheme == "s3":
        ensure_bucket(moto, "bill-scan")
        store = FsspecStore("s3", "bill-scan", s3_options(moto.url))
    else:
        store = FsspecStore("file", str(tmp_path))
    between = ("line_item_usage_start_date", DAY, DAY + dt.timedelta(days=1))
    for cost in (1.25, 2.5):  # the delivery, then its restatement under the same key
        store.put(KEY, _bill(cost))
        frame = read_bill_file(store, KEY, between=between)
        assert frame.height == 24
        assert frame["line_item_unblended_cost"].sum() == pytest.approx(24 * cost, abs=0)
        assert frame["line_item_usage_start_date"].min() == DAY


def test_polars_options_carry_the_store_credentials_and_need_a_region():
    options = {"key": "AKIA", "secret": "s3cr3t", "token": "tok",
               "client_kwargs": {"endpoint_url": "http://127.0.0.1:9000", "region_name": "eu-west-1"}}
    assert polars_s3_options(options) == {
        "aws_region": "eu-west-1", "aws_access_key_id": "AKIA", "aws_secret_access_key": "s3cr3t",
        "aws_session_token": "tok", "aws_endpoint_url": "http://127.0.0.1:9000", "aws_allow_http": "true"}
    # Without a region polars would ask the wrong endpoint: the store falls back to fetching the object.
    assert polars_s3_options({"key": "AKIA", "secret": "s3cr3t"}) is None


def test_a_bill_read_whole_for_want_of_a_region_says_so_once(moto, caplog):
    from podledger_lab.demo import ensure_bucket

    ensure_bucket(moto, "bill-no-region")
    options = s3_options(moto.url)
    options["client_kwargs"] = {"endpoint_url": moto.url}  # no region_name
    store = FsspecStore("s3", "bill-no-region", options)
    store.put(KEY, _bill(1.25))
    between = ("line_item_usage_start_date", DAY, DAY + dt.timedelta(days=1))
    with caplog.at_level("WARNING", logger="podledger.storage"):
        for _ in range(2):
            frame = read_bill_file(store, KEY, between=between)
            assert frame["line_item_unblended_cost"].sum() == pytest.approx(24 * 1.25, abs=0)
    said = [r.getMessage() for r in caplog.records if "read whole" in r.getMessage()]
    assert len(said) == 1, said
    assert f"s3://bill-no-region/{KEY}" in said[0] and "region_name" in said[0]


def test_a_missing_bill_file_is_named_on_every_path(moto, tmp_path):
    from podledger.exceptions import BillingDataError
    from podledger_lab.demo import ensure_bucket

    ensure_bucket(moto, "bill-scan")
    for store in (FsspecStore("s3", "bill-scan", s3_options(moto.url)), FsspecStore("file", str(tmp_path))):
        with pytest.raises(BillingDataError, match="missing-00009.snappy.parquet: cannot read this bill file"):
            read_bill_file(store, KEY.replace("scan-00001", "missing-00009"))
