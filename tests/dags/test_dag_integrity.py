"""DagBag integrity: the DAG file imports cleanly, every DAG is documented, owned, tagged and retried."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.usefixtures("airflow_db")

DAGS = Path(__file__).resolve().parents[2] / "dags"


def bag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS))


def test_no_import_errors_and_expected_dags():
    dagbag = bag()
    assert dagbag.import_errors == {}
    assert {"podledger_export__demo", "podledger_enrich__demo"} <= set(dagbag.dag_ids)


@pytest.mark.parametrize("dag_id", ["podledger_export__demo", "podledger_enrich__demo", "podledger_billing__demo"])
def test_dag_hygiene(dag_id):
    dag = bag().get_dag(dag_id)
    assert dag.tags and "podledger" in dag.tags
    assert dag.doc_md and "backfill" in dag.doc_md.lower()
    for task in dag.tasks:
        assert task.owner and task.owner != "airflow", f"{dag_id}.{task.task_id} has no owner"
        assert task.retries >= 1, f"{dag_id}.{task.task_id} has no retries"


def test_export_dag_shape():
    dag = bag().get_dag("podledger_export__demo")
    assert {"plan", "export_window", "wait_for_manifests", "validate", "retention"} == set(dag.task_ids)
    assert dag.catchup and dag.params["start"] is None
    sensor = dag.get_task("wait_for_manifests")
    assert type(sensor).__name__ == "ExportManifestSensor" and sensor.mode == "reschedule"


def test_bad_cost_center_becomes_a_failing_dag_and_others_load(tmp_path, monkeypatch):
    config = tmp_path / "cc.yaml"
    config.write_text("cost_centers:\n  - name: fine\n    clusters: [{name: a}]\n"
                      "  - name: broken\n    clusters: [{name: b}]\n    time_frame_seconds: 1234\n")
    monkeypatch.setenv("PODLEDGER_CONFIG", str(config))
    dagbag = bag()
    assert dagbag.import_errors == {}
    assert "podledger_export__fine" in dagbag.dag_ids and "podledger_export__broken" not in dagbag.dag_ids
    error_dag = dagbag.get_dag("podledger_config_error__1_broken")
    assert str(config) in error_dag.doc_md and "time_frame_seconds" in error_dag.doc_md
