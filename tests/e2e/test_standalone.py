"""End to end under `airflow standalone` on PostgreSQL: the README's UI flow, `airflow backfill create`, Assets.

Two days of a small synthetic cluster in a real Prometheus, its CUR 2.0 export in S3 (moto), and a cost center
shaped like the demo's (catchup from 2026-11-02, end_date 2026-11-03, every 12 h) whose warehouse is PostgreSQL.
Airflow runs as production runs it: its metadata in PostgreSQL (a throwaway database per run, dropped after),
LocalExecutor, parallelism 4. The README's UI flow, over the REST API the UI itself calls:
  1. unpause both DAGs: catchup creates exactly the 2 runs of the demo day, none after end_date;
  2. "Trigger DAG" with the form's documented logical date and params start/end (hours 00-06 of day 2);
  3. "Trigger DAG" with the form's defaults (logical date now, after end_date): it must not fail;
  4. `airflow backfill create` over the demo day re-runs both runs (complete windows skipped, load replaces);
  5. every export run emits the metrics Asset, and the enrichment DAG runs from those events.
Every DagRun the flow creates must end in success, and the warehouse must hold each of the 30 hours exactly once
per pod, reconciled with the bill to 1e-9. Everything is stopped by PID (SIGINT to standalone's process group).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import polars as pl
import pytest
import requests

from helpers import SYNTH_START, drop_warehouse_tables
from podledger_lab.stack import free_port, load_blocks, start_prometheus

ROOT = Path(__file__).resolve().parents[2]
DAYS = 2
PG_DSN = "host=127.0.0.1 user=postgres dbname=test"
HOURS = 24 + 6  # the demo day by catchup, hours 00-06 of day 2 by the form
EXPORT, ENRICH = "podledger_export__e2e", "podledger_enrich__e2e"


@pytest.fixture(scope="module")
def two_days(tmp_path_factory):
    """Two days of a 4-node cluster in its own Prometheus; the CUR export and the truth."""
    from podledger_lab.synth import synthesize

    work = tmp_path_factory.mktemp("e2e-synth")
    out = synthesize(work / "synth", nodes=4, pods=20, hours=24 * DAYS, start=SYNTH_START)
    load_blocks(out.openmetrics, work / "tsdb", max_block_duration=f"{24 * DAYS}h")
    out.openmetrics.unlink()
    server = start_prometheus(work / "tsdb", work)
    yield out, server
    server.stop()


class Standalone:
    """`airflow standalone` in its own session on free loopback ports, stopped by SIGINT to its PID."""

    def __init__(self, home: Path, env: dict[str, str]) -> None:
        self.home, self.env = home, env
        self.port = int(env["AIRFLOW__API__PORT"])
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = home / "standalone.log"
        airflow = str(Path(sys.executable).with_name("airflow"))
        with self.log.open("ab") as log:
            # SIGINT is standalone's clean stop; a child of a background job may have it ignored: reset it.
            self.proc = subprocess.Popen([airflow, "standalone"], env=env, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True,
                                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        self.token = ""

    def wait_ready(self, timeout: float = 240) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"standalone exited: {self.log.read_text()[-3000:]}"
            try:
                if requests.get(f"{self.url}/api/v2/monitor/health", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            time.sleep(2)
        else:
            raise AssertionError(f"standalone not healthy after {timeout}s: {self.log.read_text()[-3000:]}")
        # Log in as the UI does: the admin password standalone generated, exchanged for a JWT.
        passwords = self.home / "simple_auth_manager_passwords.json.generated"
        while not passwords.exists() and time.monotonic() < deadline:
            time.sleep(1)
        answer = requests.post(f"{self.url}/auth/token", timeout=10,
                               json={"username": "admin", "password": json.loads(passwords.read_text())["admin"]})
        assert answer.status_code in (200, 201), answer.text
        self.token = answer.json()["access_token"]

    def api(self, method: str, path: str, **kwargs) -> requests.Response:
        return requests.request(method, f"{self.url}/api/v2{path}", headers={"Authorization": f"Bearer {self.token}"},
                                timeout=30, **kwargs)

    def wait_for_dag(self, dag_id: str, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.api("GET", f"/dags/{dag_id}").status_code == 200:
                return
            time.sleep(2)
        raise AssertionError(f"DAG {dag_id} never parsed: {self.log.read_text()[-3000:]}")

    def runs(self, dag_id: str) -> list[dict]:
        answer = self.api("GET", f"/dags/{dag_id}/dagRuns", params={"limit": 100})
        assert answer.status_code == 200, answer.text
        return answer.json()["dag_runs"]

    def wait_runs(self, dag_id: str, done, timeout: float) -> list[dict]:
        """Wait until ``done(runs)`` holds and no run of ``dag_id`` is queued or running; fail on a failed run."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            runs = self.runs(dag_id)
            failed = [r["dag_run_id"] for r in runs if r["state"] == "failed"]
            assert not failed, f"{dag_id} runs failed: {failed}; {self.task_failures(dag_id, failed[0])}"
            if done(runs) and all(r["state"] == "success" for r in runs):
                return runs
            time.sleep(3)
        raise AssertionError(f"{dag_id}: timed out; runs {[(r['dag_run_id'], r['state']) for r in self.runs(dag_id)]}")

    def task_failures(self, dag_id: str, run_id: str) -> str:
        """The log of the first task that failed in the run (not one that was merely upstream_failed)."""
        from urllib.parse import quote

        run = quote(run_id, safe="")
        tis = self.api("GET", f"/dags/{dag_id}/dagRuns/{run}/taskInstances").json().get("task_instances", [])
        failed = [t for t in tis if t["state"] == "failed"] or [t for t in tis if t["state"] == "upstream_failed"]
        if not failed:
            return "no failed task"
        t = failed[0]
        log = self.api("GET", f"/dags/{dag_id}/dagRuns/{run}/taskInstances/{t['task_id']}/logs/{max(t['try_number'], 1)}",
                       params={"map_index": t["map_index"]})
        return f"task {t['task_id']}[{t['map_index']}] {t['state']}: {log.text[-3000:]}"

    def stop(self) -> None:
        """SIGINT to standalone (it stops its components); SIGKILL the process group if anything is left."""
        try:
            os.kill(self.proc.pid, signal.SIGINT)
            self.proc.wait(timeout=60)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=10)


def _stack_connections(prometheus_port: int, moto_url: str) -> dict[str, str]:
    from helpers import ACCESS_KEY, SECRET_KEY

    return {
        "AIRFLOW_CONN_AWS_DEFAULT": json.dumps({"conn_type": "aws", "login": ACCESS_KEY, "password": SECRET_KEY,
                                                "extra": {"endpoint_url": moto_url, "region_name": "us-east-1"}}),
        "AIRFLOW_CONN_PROM_E2E": json.dumps({"conn_type": "http", "host": "127.0.0.1", "port": prometheus_port}),
        "AIRFLOW_CONN_WAREHOUSE_E2E": "postgres://postgres@127.0.0.1:5432/test",
    }


def test_readme_ui_flow_backfill_assets_postgres(two_days, moto, metadata_db, tmp_path):
    import psycopg

    from podledger_lab.demo import ensure_bucket, upload_tree

    synth, prometheus = two_days
    suffix = uuid.uuid4().hex[:8]
    metrics_bucket, billing_bucket, table = f"e2e-metrics-{suffix}", f"e2e-billing-{suffix}", f"alloc_e2e_{suffix}"
    ensure_bucket(moto, metrics_bucket)
    upload_tree(moto, billing_bucket, "cur", synth.cur_root)
    config = tmp_path / "cost_centers.yaml"
    config.write_text(json.dumps({"cost_centers": [{
        "name": "e2e", "schedule": "0 */12 * * *", "initial_backfill_date": "2026-11-02", "end_date": "2026-11-03",
        "catchup": True, "retries": 1, "retry_delay_seconds": 5, "query_retries": 2,
        "clusters": [{"name": "demo-eks", "prometheus_conn_id": "prom_e2e", "pool": "prometheus_e2e"}],
        "storage": {"uri": f"s3://{metrics_bucket}/k8s/prometheus"},
        "billing": {"uri": f"s3://{billing_bucket}/cur/podledger-cur", "poke_interval_seconds": 5},
        "warehouse": {"kind": "postgres", "conn_id": "warehouse_e2e", "table": table},
    }]}))
    home = tmp_path / "airflow-home"
    home.mkdir()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "PYTEST"))}
    env.update(_stack_connections(prometheus.port, moto.url))
    env.update({
        "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata_db,
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__PARALLELISM": "4", "AIRFLOW__API__HOST": "127.0.0.1", "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__SCHEDULER__MIN_FILE_PROCESS_INTERVAL": "5",
        "PODLEDGER_CONFIG": str(config), "AWS_DEFAULT_REGION": "us-east-1",
        # standalone starts its components as `airflow ...` from PATH: the project's virtualenv first.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    })
    airflow = Standalone(home, env)
    try:
        airflow.wait_ready()
        for dag_id in (EXPORT, ENRICH):
            airflow.wait_for_dag(dag_id)
        # The pool bounding window exports against this Prometheus, as an operator creates it in the UI.
        answer = airflow.api("POST", "/pools", json={"name": "prometheus_e2e", "slots": 2,
                                                     "description": "podledger: exports against prom_e2e"})
        assert answer.status_code in (200, 201), answer.text

        # 1. Unpause, as the README says: catchup schedules the demo day, and nothing at or after end_date.
        for dag_id in (ENRICH, EXPORT):
            assert airflow.api("PATCH", f"/dags/{dag_id}", json={"is_paused": False}).status_code == 200
        runs = airflow.wait_runs(EXPORT, lambda runs: sum(r["run_type"] == "scheduled" for r in runs) >= 2, timeout=600)
        scheduled = sorted(r["data_interval_start"][:16] for r in runs if r["run_type"] == "scheduled")
        assert scheduled == ["2026-11-02T00:00", "2026-11-02T12:00"], scheduled

        # 2. The form, as documented: a logical date before end_date and the params (hours 00-06 of day 2).
        form = airflow.api("GET", f"/dags/{EXPORT}/details").json()["params"]
        assert "2026-11-02T23:30:00Z" in form["start"]["description"]
        conf = {"start": "2026-11-03T00:00:00Z", "end": "2026-11-03T06:00:00Z", "clusters": None, "force": False}
        answer = airflow.api("POST", f"/dags/{EXPORT}/dagRuns",
                             json={"dag_run_id": "ui_trigger", "logical_date": "2026-11-02T23:30:00Z", "conf": conf})
        assert answer.status_code == 200, answer.text
        # 3. The form's defaults: logical date now (after end_date), params untouched.
        now = dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()
        answer = airflow.api("POST", f"/dags/{EXPORT}/dagRuns",
                             json={"dag_run_id": "ui_default", "logical_date": now, "conf": {}})
        assert answer.status_code == 200, answer.text
        manual = {"ui_trigger", "ui_default"}
        airflow.wait_runs(EXPORT, lambda runs: manual <= {r["dag_run_id"] for r in runs}, timeout=600)

        # 4. History through the CLI, as an operator runs it (it only marks runs; the scheduler runs them).
        result = subprocess.run([str(Path(sys.executable).with_name("airflow")), "backfill", "create", "--dag-id", EXPORT,
                                 "--from-date", "2026-11-02T00:00:00", "--to-date", "2026-11-02T12:00:00",
                                 "--reprocess-behavior", "completed"], env=env, capture_output=True, text=True,
                                timeout=180)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
        runs = airflow.wait_runs(EXPORT, lambda runs: sum(r["run_type"] == "backfill" for r in runs) == 2, timeout=900)
        assert sorted(r["data_interval_start"][:16] for r in runs if r["run_type"] == "backfill") == scheduled

        # 5. Enrichment ran from the Assets the export runs emitted, until every hour is in the warehouse.
        def all_hours_loaded(_runs) -> bool:
            with psycopg.connect(PG_DSN) as con:
                exists = con.execute("SELECT to_regclass(%s)", (table,)).fetchone()[0]
                return bool(exists) and con.execute(f"SELECT count(DISTINCT hour_start) FROM {table}").fetchone()[0] == HOURS

        enrich_runs = airflow.wait_runs(ENRICH, all_hours_loaded, timeout=900)
        assert all(r["run_type"] == "asset_triggered" for r in enrich_runs), enrich_runs
        events = airflow.api("GET", "/assets/events", params={"limit": 100}).json()["asset_events"]
        assert sum(e.get("source_dag_id") == EXPORT for e in events) >= 2 + 1 + 2
        # Every DagRun the flow created, of both DAGs, ended in success (wait_runs fails on any failed run).
        for dag_id in (EXPORT, ENRICH):
            states = {r["dag_run_id"]: r["state"] for r in airflow.runs(dag_id)}
            assert states and set(states.values()) == {"success"}, (dag_id, states)
        assert len(airflow.runs(EXPORT)) == 4, "2 scheduled (then backfilled) + 2 triggered, nothing after end_date"

        # 6. Exactly one copy of every hour, reconciled with the bill.
        with psycopg.connect(PG_DSN) as con:
            copies = con.execute(f"SELECT count(*) FROM (SELECT hour_start, node, namespace, pod, uid, count(*) AS n "
                                 f"FROM {table} GROUP BY 1, 2, 3, 4, 5 HAVING count(*) > 1) d").fetchone()[0]
            hourly = con.execute(f"SELECT hour_start, sum(total_cost) FROM {table} WHERE cost_center = 'e2e' "
                                 "GROUP BY 1 ORDER BY 1").fetchall()
        assert copies == 0, f"{copies} (hour, pod) rows loaded more than once"
        allocated = pl.DataFrame(hourly, schema={"hour_start": pl.Datetime("us", "UTC"), "allocated": pl.Float64},
                                 orient="row")
        truth = (pl.read_parquet(synth.truth_instances).group_by("hour_start").agg(pl.col("amortized_cost").sum())
                 .with_columns(pl.col("hour_start").cast(pl.Datetime("us", "UTC"))))
        check = allocated.join(truth, on="hour_start", how="inner")
        assert check.height == HOURS and allocated.height == HOURS
        assert ((check["allocated"] - check["amortized_cost"]).abs() <= 1e-9 * check["amortized_cost"]).all(), check
        first, last = check["hour_start"].min(), check["hour_start"].max()
        assert first == SYNTH_START and last == SYNTH_START + dt.timedelta(hours=HOURS - 1)
    finally:
        airflow.stop()
        drop_warehouse_tables(table)
    assert airflow.proc.poll() is not None
