"""Shared fixtures: Airflow test settings (set before Airflow is imported) and the real local stack."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_HOME = ROOT / ".airflow-test-home"
os.environ["AIRFLOW_HOME"] = str(_HOME)
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(ROOT / "dags")
os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(ROOT / "plugins")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION"] = "True"
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
sys.path.insert(0, str(ROOT / "plugins"))

import pytest  # noqa: E402

from helpers import ACCESS_KEY, SECRET_KEY, SYNTH_HOURS, SYNTH_START, s3_options  # noqa: E402
from podledger.connections import env_var_name  # noqa: E402
from podledger.storage import FsspecStore  # noqa: E402
from podledger_lab.stack import Server, load_blocks, start_moto, start_prometheus  # noqa: E402


@pytest.fixture(scope="session")
def synth(tmp_path_factory):
    """A small synthetic cluster (8 nodes, ~60 pods, 4 hours) with its bill and truth."""
    from podledger_lab.synth import synthesize

    return synthesize(tmp_path_factory.mktemp("synth"), nodes=8, pods=60, hours=SYNTH_HOURS, start=SYNTH_START)


@pytest.fixture(scope="session")
def prometheus(synth, tmp_path_factory) -> Server:
    """Debian's Prometheus on a free loopback port, loaded with the synthetic cluster's blocks."""
    work = tmp_path_factory.mktemp("prometheus")
    load_blocks(synth.openmetrics, work / "tsdb")
    server = start_prometheus(work / "tsdb", work)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def moto(tmp_path_factory) -> Server:
    """moto's S3 server on a free loopback port."""
    server = start_moto(tmp_path_factory.mktemp("moto"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def billing_bucket(moto, synth) -> str:
    """A bucket holding the synthetic CUR 2.0 export under cur/."""
    from podledger_lab.demo import upload_tree

    upload_tree(moto, "billing", "cur", synth.cur_root)
    return "billing"


@pytest.fixture
def stack_env(prometheus, moto, billing_bucket, monkeypatch, tmp_path):
    """Point the Airflow-style connections (env vars) at the local stack for one test."""
    monkeypatch.setenv(env_var_name("aws_default"), json.dumps({
        "conn_type": "aws", "login": ACCESS_KEY, "password": SECRET_KEY,
        "extra": {"endpoint_url": moto.url, "region_name": "us-east-1"}}))
    monkeypatch.setenv(env_var_name("prometheus_test"), json.dumps({"conn_type": "http", "host": "127.0.0.1",
                                                                     "port": prometheus.port}))
    monkeypatch.setenv("PODLEDGER_HOME", str(tmp_path))
    return {"prometheus": prometheus, "moto": moto}


@pytest.fixture
def fresh_bucket(moto, request) -> str:
    """An empty metrics bucket named after the test."""
    from podledger_lab.demo import ensure_bucket

    name = "m-" + "".join(ch if ch.isalnum() else "-" for ch in request.node.name.lower())[:50].strip("-")
    ensure_bucket(moto, name)
    return name


@pytest.fixture
def store_factory(moto):
    def make(bucket: str) -> FsspecStore:
        return FsspecStore("s3", bucket, s3_options(moto.url))

    return make


@pytest.fixture(scope="session")
def airflow_db():
    """A fresh Airflow metadata DB (SQLite under .airflow-test-home) for dag.test() runs."""
    from airflow.utils import db

    db.resetdb()
    yield
