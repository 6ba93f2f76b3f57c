"""A day of a month's bill file is read by ranged GETs: the footer and that day's column chunks, not the object.

A CUR 2.0 delivery for a large account is hundreds of MB a month, and every enrichment task (one cluster-day) reads
it twice (the billing frames and the independent check), and the billing watch reads it at every check. Both
stores (S3Hook and s3fs) are measured at the network call, against moto on loopback.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import random

import polars as pl
import pytest

from helpers import ACCESS_KEY, SECRET_KEY, block_airflow_imports, s3_options
from podledger.bill_check import bill_lines
from podledger.connections import env_var_name
from podledger.deliveries import read_bill_file
from podledger.storage import FsspecStore

UTC = dt.UTC
START = dt.datetime(2026, 10, 1, tzinfo=UTC)
DAY = START + dt.timedelta(days=17)
KEY = "cur/data/BILLING_PERIOD=2026-10/big-00001.snappy.parquet"
ROWS_AN_HOUR = 170
ROWS_A_DAY = 24 * ROWS_AN_HOUR


def _month_file() -> tuple[bytes, pl.DataFrame]:
    """A month of CUR 2.0-shaped rows, one row group a day (as AWS writes them, in usage order), with wide
    incompressible columns so the file is far bigger than what a day's check reads."""
    rng = random.Random(7)
    rows = ROWS_A_DAY * 31
    hours = pl.datetime_range(START, START + dt.timedelta(days=31), "1h", closed="left", eager=True, time_zone="UTC")
    frame = pl.DataFrame({
        "line_item_usage_start_date": hours.gather(pl.int_range(rows, eager=True) // ROWS_AN_HOUR),
        "line_item_resource_id": [f"i-{i % 900:017d}" for i in range(rows)],
        "line_item_line_item_type": ["Usage"] * rows,
        "line_item_unblended_cost": [round(rng.random(), 6) for _ in range(rows)],
        "line_item_currency_code": ["USD"] * rows,
        **{f"product_attribute_{i}": [rng.randbytes(16).hex() for _ in range(rows)] for i in range(8)},
    })
    buffer = io.BytesIO()
    frame.write_parquet(buffer, row_group_size=ROWS_A_DAY, compression="snappy")
    return buffer.getvalue(), frame


@pytest.fixture(scope="module")
def month(moto):
    from podledger_lab.demo import ensure_bucket

    data, frame = _month_file()
    client = ensure_bucket(moto, "ranged-bill")
    client.put_object(Bucket="ranged-bill", Key=KEY, Body=data)
    return data, frame


@pytest.fixture
def hook_store(moto, monkeypatch):
    monkeypatch.setenv(env_var_name("aws_default"), json.dumps({
        "conn_type": "aws", "login": ACCESS_KEY, "password": SECRET_KEY,
        "extra": {"endpoint_url": moto.url, "region_name": "us-east-1"}}))
    from podledger_airflow.stores import S3HookStore

    return S3HookStore("ranged-bill")


def _fetched_by_hook(monkeypatch) -> list[int]:
    from podledger_airflow import stores

    fetched: list[int] = []
    readinto = stores._RangeReader.readinto

    def counting(self, buffer):  # noqa: ANN001, ANN202
        n = readinto(self, buffer)
        fetched.append(n)
        return n

    monkeypatch.setattr(stores._RangeReader, "readinto", counting)
    return fetched


def _fetched_by_s3fs(monkeypatch) -> list[int]:
    import s3fs

    fetched: list[int] = []
    fetch = s3fs.core.S3File._fetch_range

    def counting(self, start, end):  # noqa: ANN001, ANN202
        data = fetch(self, start, end)
        fetched.append(len(data))
        return data

    monkeypatch.setattr(s3fs.core.S3File, "_fetch_range", counting)
    return fetched


@pytest.mark.parametrize("kind", ["S3Hook", "s3fs"])
def test_a_days_bill_is_read_by_ranges_not_whole(kind, month, moto, hook_store, monkeypatch):
    data, frame = month
    store = hook_store if kind == "S3Hook" else FsspecStore("s3", "ranged-bill", s3_options(moto.url))
    fetched = (_fetched_by_hook if kind == "S3Hook" else _fetched_by_s3fs)(monkeypatch)
    whole_get = store.get  # a whole-object GET counts too

    def counting_get(key: str) -> bytes:
        body = whole_get(key)
        fetched.append(len(body))
        return body

    monkeypatch.setattr(store, "get", counting_get)
    end = DAY + dt.timedelta(days=1)
    expected = frame.filter(pl.col("line_item_usage_start_date").is_between(DAY, end, closed="left"))

    got = read_bill_file(store, KEY, columns=["line_item_usage_start_date", "line_item_resource_id",
                                              "line_item_unblended_cost"],
                         between=("line_item_usage_start_date", DAY, end))
    assert got.height == expected.height == ROWS_A_DAY
    assert got["line_item_unblended_cost"].sum() == pytest.approx(expected["line_item_unblended_cost"].sum(), abs=0)
    assert sorted(got["line_item_resource_id"]) == sorted(expected["line_item_resource_id"])
    assert 0 < sum(fetched) < len(data) / 10, f"{sum(fetched):,} of {len(data):,} bytes fetched for a day's 3 columns"
    print(f"{kind}: a day's 3 columns: {sum(fetched):,} of {len(data):,} bytes in {len(fetched)} GETs")

    # The independent check reads its own columns of the same day, by ranges too.
    fetched.clear()
    lines = bill_lines(store, [KEY], fmt="cur2", basis="unblended", tag_keys=("aws:eks:cluster-name",),
                       between=(DAY, end))
    assert float(lines["billed"].sum()) == pytest.approx(float(expected["line_item_unblended_cost"].sum()), rel=1e-12)
    assert 0 < sum(fetched) < len(data) / 10, f"{sum(fetched):,} of {len(data):,} bytes fetched by the check"
    print(f"{kind}: the check's day: {sum(fetched):,} of {len(data):,} bytes in {len(fetched)} GETs")


def test_a_missing_bill_file_is_named(month, hook_store):
    from podledger.exceptions import BillingDataError

    with pytest.raises(BillingDataError, match="missing-00002.snappy.parquet: cannot read this bill file"):
        read_bill_file(hook_store, KEY.replace("big-00001", "missing-00002"))


@pytest.mark.parametrize(("extra", "pool", "retries"), [
    ({}, None, None),  # boto3's default pool of 10, raised to the requests a day's fetch keeps in flight
    ({"config_kwargs": {"max_pool_connections": 64, "retries": {"max_attempts": 7}}}, 64, 7),  # the user's, kept
    ({"config_kwargs": {"max_pool_connections": 4, "connect_timeout": 3}}, None, None),  # too small: raised
])
def test_the_hooks_connection_pool_holds_the_requests_in_flight(extra, pool, retries, moto, monkeypatch):
    from podledger.storage import FETCH_THREADS

    monkeypatch.setenv(env_var_name("aws_pool"), json.dumps({
        "conn_type": "aws", "login": ACCESS_KEY, "password": SECRET_KEY,
        "extra": {"endpoint_url": moto.url, "region_name": "us-east-1", **extra}}))
    from podledger_airflow.stores import S3HookStore

    config = S3HookStore("any", "aws_pool").hook.get_conn().meta.config
    assert config.max_pool_connections == (pool or FETCH_THREADS)
    if retries:
        assert config.retries["total_max_attempts"] == retries + 1  # (botocore counts the first attempt too)
    if "connect_timeout" in extra.get("config_kwargs", {}):
        assert config.connect_timeout == 3  # the connection's other settings survive the raise


@pytest.mark.parametrize("with_airflow", [True, False], ids=["through Airflow's AwsBaseHook", "without Airflow"])
@pytest.mark.parametrize(("extra", "pool", "retries"), [
    ({}, None, None),  # aiobotocore's default pool of 10, raised to the requests a day's fetch keeps in flight
    ({"config_kwargs": {"max_pool_connections": 64, "retries": {"max_attempts": 7}}}, 64, 7),  # the user's, kept
    ({"config_kwargs": {"max_pool_connections": 4, "connect_timeout": 3}}, None, None),  # too small: raised
])
def test_the_clis_s3_client_has_the_connections_settings_and_the_pool(extra, pool, retries, with_airflow, moto,
                                                                     monkeypatch):
    """The CLI's s3fs store: the connection's client settings (as the DAGs' hook applies them) and 16 connections."""
    from podledger.cli import store_for
    from podledger.storage import FETCH_THREADS

    monkeypatch.setenv(env_var_name("aws_cli_pool"), json.dumps({
        "conn_type": "aws", "login": ACCESS_KEY, "password": SECRET_KEY,
        "extra": {"endpoint_url": moto.url, "region_name": "us-east-1", **extra}}))
    if not with_airflow:
        block_airflow_imports(monkeypatch)
    store = store_for(f"s3://cli-pool-{len(extra)}-{with_airflow}/k8s", "aws_cli_pool")
    store._fs.connect()
    config = store._fs.s3.meta.config
    assert config.max_pool_connections == (pool or FETCH_THREADS)
    if retries:
        assert config.retries["total_max_attempts"] == retries + 1  # (botocore counts the first attempt too)
    if "connect_timeout" in extra.get("config_kwargs", {}):
        assert config.connect_timeout == 3  # the connection's other settings survive the raise
