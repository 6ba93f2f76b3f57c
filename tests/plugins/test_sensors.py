"""Sensors under dag.test(): data arriving after the sensor started, timeouts naming what is missing."""

from __future__ import annotations

import datetime as dt
import json
import textwrap
import threading
import time

import pytest

from helpers import SYNTH_START, make_cost_center, s3_options
from podledger.layout import Window, manifest_key
from podledger.storage import FsspecStore

pytestmark = pytest.mark.usefixtures("airflow_db")

SENSOR_DAG = '''
import datetime as dt
from airflow.sdk import dag
from podledger_airflow.sensors import CurCoverageSensor, ExportManifestSensor

ITEMS = {items!r}

@dag(dag_id="{dag_id}", schedule=None, start_date=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc), catchup=False)
def sensor_dag():
    ExportManifestSensor(task_id="wait_for_manifests", bucket_name="{bucket}", prefix="k8s/prometheus", items=ITEMS,
                         poke_interval=1, timeout={timeout}, mode="{mode}", deferrable={deferrable})

sensor_dag()
'''


def _run(tmp_path, name: str, source: str):
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db

    folder = tmp_path / name
    folder.mkdir()
    (folder / f"{name}.py").write_text(textwrap.dedent(source))
    bag = DagBag(dag_folder=str(folder))
    assert bag.import_errors == {}
    from airflow.dag_processing.bundles.manager import DagBundlesManager

    # A DAG outside the dags folder: register it so dag.test() finds its serialized version.
    DagBundlesManager().sync_bundles_to_db()
    sync_bag_to_db(bag, "dags-folder", None)
    return bag.get_dag(name).test()


def _items(hours: int) -> list[dict]:
    return [{"cluster": "demo-eks", "window": Window(SYNTH_START + dt.timedelta(hours=h),
                                                      SYNTH_START + dt.timedelta(hours=h + 1)).to_dict()} for h in range(hours)]


def _later(seconds: float, action) -> threading.Thread:
    def run() -> None:
        time.sleep(seconds)
        action()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("mode, deferrable", [("reschedule", False), ("poke", True)])
def test_export_sensor_waits_for_manifests_written_after_it_started(stack_env, moto, fresh_bucket, tmp_path, mode, deferrable):
    from airflow.utils.state import DagRunState

    store = FsspecStore("s3", fresh_bucket, s3_options(moto.url))
    items = _items(2)

    def deliver() -> None:
        for item in items:
            store.put(manifest_key("k8s/prometheus", item["cluster"], Window.from_dict(item["window"])), b"{}")

    writer = _later(4, deliver)
    started = time.monotonic()
    dag_id = f"sensor_arrival_{mode}"
    run = _run(tmp_path, dag_id, SENSOR_DAG.format(items=items, dag_id=dag_id, bucket=fresh_bucket, timeout=120,
                                                   mode=mode, deferrable=deferrable))
    writer.join()
    assert run.state == DagRunState.SUCCESS
    assert time.monotonic() - started >= 4, "the sensor must have waited for the files"


def test_export_sensor_timeout_names_missing_cluster_windows(stack_env, moto, fresh_bucket, tmp_path, capsys):
    from airflow.utils.state import DagRunState

    store = FsspecStore("s3", fresh_bucket, s3_options(moto.url))
    items = _items(3)
    first = items[0]
    store.put(manifest_key("k8s/prometheus", "demo-eks", Window.from_dict(first["window"])), b"{}")
    run = _run(tmp_path, "sensor_timeout", SENSOR_DAG.format(items=items, dag_id="sensor_timeout", bucket=fresh_bucket,
                                                              timeout=3, mode="poke", deferrable=False))
    assert run.state == DagRunState.FAILED
    out = capsys.readouterr()
    text = out.out + out.err
    assert "waiting for 2 of 3 cluster-windows" in text
    assert "demo-eks@2026-11-02T01:00Z" in text and "demo-eks@2026-11-02T02:00Z" in text


BILLING_DAG = '''
import datetime as dt
from airflow.sdk import dag
from podledger_airflow.sensors import CurCoverageSensor

@dag(dag_id="billing_arrival", schedule=None, start_date=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc), catchup=False)
def billing_arrival():
    CurCoverageSensor(task_id="wait_for_billing_data", billing_uri="s3://{bucket}/cur/podledger-cur",
                      hour_range={{"start": "2026-11-02T00:00:00+00:00", "end": "2026-11-02T03:00:00+00:00"}},
                      poke_interval=1, timeout=120, deferrable=True)

billing_arrival()
'''


def test_billing_sensor_defers_until_the_cur_delivery_arrives(stack_env, moto, synth, tmp_path):
    from airflow.utils.state import DagRunState

    from podledger_lab.demo import ensure_bucket, upload_tree

    ensure_bucket(moto, "late-billing")
    writer = _later(4, lambda: upload_tree(moto, "late-billing", "cur", synth.cur_root))
    started = time.monotonic()
    run = _run(tmp_path, "billing_arrival", BILLING_DAG.format(bucket="late-billing"))
    writer.join()
    assert run.state == DagRunState.SUCCESS and time.monotonic() - started >= 4


def test_restated_billing_period_is_detected_once(moto, synth):
    from podledger.billing_watch import detect_updates
    from podledger_lab.demo import ensure_bucket, upload_tree

    ensure_bucket(moto, "restated-billing")
    upload_tree(moto, "restated-billing", "cur", synth.cur_root)
    billing = FsspecStore("s3", "restated-billing", s3_options(moto.url))
    state = FsspecStore("s3", "restated-billing", s3_options(moto.url))
    first = detect_updates(billing, "cur/podledger-cur", ["2026-10", "2026-11"], state, "state")
    assert [(u["billing_period"], u["restated"]) for u in first] == [("2026-11", False)]
    assert detect_updates(billing, "cur/podledger-cur", ["2026-11"], state, "state") == []
    key = "cur/podledger-cur/metadata/BILLING_PERIOD=2026-11/podledger-cur-Manifest.json"
    manifest = json.loads(billing.get(key))
    billing.put(key, json.dumps({**manifest, "executionId": "re-delivered-after-credits"}).encode())
    again = detect_updates(billing, "cur/podledger-cur", ["2026-11"], state, "state")
    assert again == [{"billing_period": "2026-11", "execution_id": "re-delivered-after-credits",
                      "previous_execution_id": manifest["executionId"], "restated": True}]


def test_billing_dag_emits_one_asset_event_per_billing_period(stack_env, moto, synth, fresh_bucket, tmp_path, monkeypatch):
    from airflow.dag_processing.dagbag import DagBag
    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState

    from helpers import ROOT
    from podledger_lab.demo import ensure_bucket, upload_tree

    # Two billing periods delivered: November (the synthetic month) and a copy of it filed as October.
    ensure_bucket(moto, "two-periods")
    upload_tree(moto, "two-periods", "cur", synth.cur_root)
    store = FsspecStore("s3", "two-periods", s3_options(moto.url))
    for key in store.list("cur/podledger-cur"):
        copy = key.replace("BILLING_PERIOD=2026-11", "BILLING_PERIOD=2026-10")
        body = store.get(key)
        if key.endswith("Manifest.json"):
            body = json.dumps({**json.loads(body), "executionId": "october-delivery"}).encode()
        store.put(copy, body)
    cc = make_cost_center(fresh_bucket, name="billwatch", initial_backfill_date="2026-10-01",
                          billing={"uri": "s3://two-periods/cur/podledger-cur"})
    config = tmp_path / "cc.yaml"
    config.write_text(json.dumps({"cost_centers": [json.loads(cc.model_dump_json())]}))
    monkeypatch.setenv("PODLEDGER_CONFIG", str(config))
    dag = DagBag(dag_folder=str(ROOT / "dags")).get_dag("podledger_billing__billwatch")
    run = dag.test(logical_date=dt.datetime(2026, 11, 2, 8, tzinfo=dt.UTC))
    assert run.state == DagRunState.SUCCESS
    with create_session() as session:
        events = [e for e in session.query(AssetEvent).all() if (e.extra or {}).get("cost_center") == "billwatch"]
        periods = sorted(p for e in events for p in e.extra["billing_periods"])
        assert periods == ["2026-10", "2026-11"], "one event per billing period"
        assert {e.asset.name for e in events} == {"podledger_billwatch_billing"}
