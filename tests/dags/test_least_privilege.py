"""Under exactly the seed's IAM policy: export (twice), validation, retention, enrichment reads, the CLI.

moto does not evaluate IAM condition keys, so the S3 endpoint here is a policy evaluator in front of moto
(tests/servers/s3_policy_proxy.py, its own process on loopback) enforcing the seed exporter's policy on the
metrics bucket (ListBucket only with delimiter "/" and a prefix under S3_PREFIX; Get/Put/DeleteObject under
S3_PREFIX/) and the read-only enrichment policy on the billing bucket, answering 403 for a missing key as AWS does.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import uuid
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError

from helpers import ACCESS_KEY, SECRET_KEY, SYNTH_START, block_airflow_imports, make_cost_center, put_tree, s3_store
from podledger.layout import Window, metric_key
from podledger_lab.stack import _spawn, free_port

DAGS = Path(__file__).resolve().parents[2] / "dags"
PROXY = Path(__file__).resolve().parents[1] / "servers" / "s3_policy_proxy.py"
PREFIX = "k8s/prometheus"


@pytest.fixture
def policy_endpoint(moto, synth, tmp_path):
    """(proxy URL, metrics bucket, billing bucket, denied-calls log); buckets prepared directly on moto."""
    suffix = uuid.uuid4().hex[:8]
    metrics, billing = f"lp-metrics-{suffix}", f"lp-billing-{suffix}"
    s3_store(moto, metrics)
    bill = s3_store(moto, billing)
    put_tree(bill, synth.cur_root, "cur")
    log = tmp_path / "denied.jsonl"
    log.touch()
    config = tmp_path / "policy.json"
    config.write_text(json.dumps({"upstream": moto.url, "log": str(log), "access_log": str(tmp_path / "access.jsonl"),
                                  "buckets": {
        metrics: {"prefix": PREFIX, "write": True},      # the seed exporter's role
        billing: {"prefix": "cur", "write": False},       # a read-only role for enrichment
    }}))
    port = free_port()
    server = _spawn("s3-policy", [sys.executable, str(PROXY), str(port), str(config)], tmp_path / "proxy.log", port,
                    f"http://127.0.0.1:{port}", "/-/ready", 30)
    yield server.url, metrics, billing, log
    server.stop()


def _client(url: str):  # noqa: ANN202
    return boto3.client("s3", endpoint_url=url, aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
                        region_name="us-east-1")


def test_the_evaluator_denies_what_the_policy_does_not_grant(policy_endpoint):
    url, metrics, billing, log = policy_endpoint
    s3 = _client(url)
    s3.list_objects_v2(Bucket=metrics, Prefix=f"{PREFIX}/", Delimiter="/")  # granted
    for call in (lambda: s3.list_objects_v2(Bucket=metrics, Prefix=f"{PREFIX}/"),  # no delimiter
                 lambda: s3.list_objects_v2(Bucket=metrics, Prefix="other/", Delimiter="/"),
                 lambda: s3.head_bucket(Bucket=metrics),
                 lambda: s3.put_object(Bucket=metrics, Key="outside/x", Body=b"x"),
                 lambda: s3.put_object(Bucket=billing, Key="cur/x", Body=b"x")):  # read-only
        with pytest.raises(ClientError, match="AccessDenied|403"):
            call()
    # A missing key under the prefix: 403, not 404 (no unconditional ListBucket).
    with pytest.raises(ClientError) as error:
        s3.head_object(Bucket=metrics, Key=f"{PREFIX}/missing.json")
    assert error.value.response["Error"]["Code"] in ("403", "AccessDenied")
    denied = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(denied) == 5 and "s3:delimiter" in denied[0]["reason"]


def test_dags_and_cli_run_under_the_seeds_policy_with_no_denied_call(airflow_db, stack_env, policy_endpoint, moto,
                                                                    tmp_path, monkeypatch):
    from airflow.dag_processing.dagbag import DagBag
    from airflow.utils.state import DagRunState

    from podledger.cli import main as cli

    url, metrics, billing, log = policy_endpoint
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps({
        "conn_type": "aws", "login": ACCESS_KEY, "password": SECRET_KEY,
        "extra": {"endpoint_url": url, "region_name": "us-east-1"}}))
    # A window 40 days before the runs' hours, for retention to delete once it is old by export time too.
    old = Window(SYNTH_START - dt.timedelta(days=40), SYNTH_START - dt.timedelta(days=40, hours=-1))
    stale = metric_key(PREFIX, "demo-eks", old, "cpu_usage")
    s3_store(moto, metrics).put(stale, b"old")
    cc = make_cost_center(metrics, name="leastpriv", billing={"uri": f"s3://{billing}/cur/podledger-cur"},
                          warehouse={"path": str(tmp_path / "w.duckdb")})
    config = tmp_path / "cost_centers.yaml"
    config.write_text(json.dumps({"cost_centers": [json.loads(cc.model_dump_json())]}))
    monkeypatch.setenv("PODLEDGER_CONFIG", str(config))
    dagbag = DagBag(dag_folder=str(DAGS))
    conf = {"start": SYNTH_START.isoformat(), "end": (SYNTH_START + dt.timedelta(hours=2)).isoformat()}
    for attempt in ("first export", "re-run: complete windows skipped"):
        run = dagbag.get_dag("podledger_export__leastpriv").test(run_conf=conf)
        assert run.state == DagRunState.SUCCESS, attempt
    run = dagbag.get_dag("podledger_enrich__leastpriv").test(run_conf=conf)
    assert run.state == DagRunState.SUCCESS
    span = ["--cost-center", "leastpriv", "--config", str(config), "--start", conf["start"], "--end", conf["end"]]
    assert cli(["validate", *span]) == 0
    assert cli(["allocate", *span, "--out", str(tmp_path / "rows.parquet")]) == 0
    keys = s3_store(moto, metrics).list(PREFIX)
    # The runs' retention kept what they exported today, and the stale window too (written today as well).
    assert stale in keys and sum(k.endswith("_manifest.json") for k in keys) == 2
    # 31 days on, every window is old by both clocks (window start and export time): retention deletes them
    # under the policy, by delimited listings and DeleteObjects only.
    later = (dt.datetime.now(dt.UTC) + dt.timedelta(days=31)).isoformat()
    assert cli(["retention", "--cost-center", "leastpriv", "--config", str(config), "--now", later]) == 0
    denied = log.read_text().splitlines()
    assert denied == [], f"{len(denied)} call(s) denied by the seed's policy, first: {denied[:1]}"
    keys = s3_store(moto, metrics).list(PREFIX)
    assert stale not in keys, "retention deleted the expired window under the policy"
    assert not [k for k in keys if "_manifests/" in k or "/metric=" in k], keys[:3]


@pytest.mark.parametrize("with_airflow", [True, False], ids=["through Airflow's AwsBaseHook", "without Airflow"])
def test_the_cli_assumes_the_connections_role_as_the_dags_do(policy_endpoint, moto, tmp_path, monkeypatch, with_airflow):
    """ROLE_ARN / ROLE_EXTERNAL_ID: the CLI's S3 calls are signed with the assumed role's keys, not the base ones."""
    from podledger.cli import store_for

    url, metrics, _, _ = policy_endpoint
    monkeypatch.setenv("AIRFLOW_CONN_AWS_EXPORTER", json.dumps({
        "conn_type": "aws", "login": ACCESS_KEY, "password": SECRET_KEY,
        "extra": {"endpoint_url": url, "region_name": "us-east-1",
                  "role_arn": "arn:aws:iam::123456789012:role/podledger-exporter",
                  "assume_role_kwargs": {"ExternalId": "seed-external-id"},
                  "service_config": {"sts": {"endpoint_url": moto.url}}}}))
    if not with_airflow:
        block_airflow_imports(monkeypatch)
    store = store_for(f"s3://{metrics}/{PREFIX}", "aws_exporter")
    store.put(f"{PREFIX}/probe.txt", b"x")
    assert store.exists(f"{PREFIX}/probe.txt") and not store.exists(f"{PREFIX}/missing.txt")
    signers = {json.loads(line)["akid"] for line in (tmp_path / "access.jsonl").read_text().splitlines()}
    assert signers and ACCESS_KEY not in signers, f"signed with the base keys: {signers}"
