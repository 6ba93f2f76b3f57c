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
    (error_id,) = [d for d in dagbag.dag_ids if d.startswith("podledger_config_error__1_broken_")]
    error_dag = dagbag.get_dag(error_id)
    assert str(config) in error_dag.doc_md and "time_frame_seconds" in error_dag.doc_md


def test_pools_per_prometheus_endpoint_and_schedule_switches(tmp_path, monkeypatch):
    config = tmp_path / "cc.yaml"
    config.write_text("cost_centers:\n  - name: one\n    clusters: [{name: a, pool: prom_a}]\n"
                      "  - name: two\n    catchup: false\n    initial_backfill_date: 2026-11-02\n"
                      "    end_date: 2026-11-04\n    storage: {uri: 's3://podledger/two'}\n"
                      "    clusters: [{name: a, pool: prom_a}, {name: b, pool: prom_b}, {name: c}]\n")
    monkeypatch.setenv("PODLEDGER_CONFIG", str(config))
    dagbag = bag()
    assert dagbag.import_errors == {}
    one = dagbag.get_dag("podledger_export__one")
    assert one.get_task("export_window").pool == "prom_a" and one.catchup
    two = dagbag.get_dag("podledger_export__two")
    # end_date is exclusive: Airflow's (inclusive) end is the instant before 2026-11-04 00:00 UTC.
    assert not two.catchup and two.end_date.isoformat() == "2026-11-03T23:59:59.999999+00:00"
    pools = {t.task_id: t.pool for t in two.tasks if t.task_id.startswith("export_window")}
    assert pools == {"export_window__prom_a": "prom_a", "export_window__prom_b": "prom_b",
                     "export_window__default": "default_pool"}
    # The DAG's doc says what this config does: the schedule switches and every pool the exports use.
    assert "Catchup is on" in one.doc_md and "`prom_a`" in one.doc_md
    assert "Catchup is off" in two.doc_md and "stops at 2026-11-04 00:00 UTC" in two.doc_md
    assert "`prom_a`, `prom_b` and `default_pool`" in two.doc_md


def test_demo_catchup_schedules_only_the_demo_day_and_params_are_optional():
    """The sample cost center's catchup creates the 4 intervals of 2026-11-02, none starting at end_date."""
    from airflow.timetables.base import TimeRestriction

    dag = bag().get_dag("podledger_export__demo")
    restriction = TimeRestriction(dag.start_date, dag.end_date, catchup=True)
    intervals, last = [], None
    while (info := dag.timetable.next_dagrun_info(last_automated_data_interval=last, restriction=restriction)):
        intervals.append((info.data_interval.start.isoformat(), info.data_interval.end.isoformat()))
        last = info.data_interval
        assert len(intervals) < 50, "catchup never ends"
    assert [s for s, _ in intervals] == [f"2026-11-02T{h:02d}:00:00+00:00" for h in (0, 6, 12, 18)]
    assert intervals[-1][1] == "2026-11-03T00:00:00+00:00"
    # The trigger form marks a field required (*) unless its type admits null: none of ours is required.
    for name in dag.params:
        schema = dag.params.get_param(name).schema
        assert "null" in schema["type"], f"param {name} would be required in the trigger form"
    assert "2026-11-02T23:30:00Z" in dag.params.get_param("start").description
