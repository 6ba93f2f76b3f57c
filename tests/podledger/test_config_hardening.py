"""The config is validated completely when loaded: every bad value is refused up front, naming its field.

A seeded generator then throws thousands of broken cost centers at the loader (never a traceback, every rejection
names a field) and mixes good and bad ones in the real DAG file (it always imports, every good DAG is there).
"""

from __future__ import annotations

import copy
import json
import random
from pathlib import Path

import pytest

from podledger.config import load_config

GOOD = {"name": "good", "clusters": [{"name": "prod"}], "storage": {"uri": "s3://good-bucket/k8s"}}


def _load(tmp_path: Path, *cost_centers) -> object:
    path = tmp_path / "cc.yaml"
    path.write_text(json.dumps({"cost_centers": [GOOD, *cost_centers]}))
    return load_config(path)


def _bad(**fields) -> dict:
    return {"name": "bad", "clusters": [{"name": "prod"}], "storage": {"uri": "s3://bad-bucket/k8s"}, **fields}


@pytest.mark.parametrize(("name", "cost_center", "field"), [
    ("bad cron in schedule", _bad(schedule="every 5 minutes"), "schedule"),
    ("bad cron in billing.check_schedule", _bad(billing={"check_schedule": "61 * * * *"}), "billing.check_schedule"),
    ("a 300-character name", _bad(name="x" * 300), "name"),
    ("a name ending in a newline", _bad(name="bad\n"), "name"),
    ("s3:// without a bucket", _bad(storage={"uri": "s3://"}), "storage.uri"),
    ("s3:// with an upper-case bucket", _bad(storage={"uri": "s3://My Bucket/x"}), "storage.uri"),
    ("a billing uri with spaces", _bad(billing={"uri": "s3://billing/my export"}), "billing.uri"),
    ("end_date before the start", _bad(initial_backfill_date="2026-11-10", end_date="2026-11-01"), "(root)"),
    ("a warehouse table named order", _bad(warehouse={"table": "order"}), "warehouse.table"),
    ("a warehouse table with a dot", _bad(warehouse={"table": "public.costs"}), "warehouse.table"),
    ("retention_days 10000000", _bad(storage={"uri": "s3://bad-bucket/k8s", "retention_days": 10_000_000}),
     "storage.retention_days"),
    ("time_frame_seconds 7200", _bad(time_frame_seconds=7200), "time_frame_seconds"),
    ("time_frame_seconds not dividing an hour", _bad(time_frame_seconds=1000), "time_frame_seconds"),
    ("a connection id with a slash", _bad(clusters=[{"name": "prod", "prometheus_conn_id": "a/b"}]),
     "clusters.0.prometheus_conn_id"),
    ("an owner with a newline", _bad(owner="team\nx"), "owner"),
])
def test_each_bad_value_is_refused_up_front_naming_its_field(tmp_path, name, cost_center, field):
    loaded = _load(tmp_path, cost_center)
    assert [c.name for c in loaded.cost_centers] == ["good"], name
    (label, message), = loaded.errors
    assert f"field '{field}'" in message, (name, message)


NASTY = [None, "", " ", "\n", "x" * 300, "☕", "../..", "s3://", "s3://b", "file://rel", -1, 0, 10**12, 1.5, float("nan"),
         True, [], {}, [1, 2], {"a": 1}, "*/5 * * * *", "@daily", "order", "2026-13-40", "2026-11-02", "0 0 31 2 *"]
FIELDS = ["name", "owner", "schedule", "time_frame_seconds", "initial_backfill_date", "backfill_days", "end_date",
          "queries_batch_size", "cluster_label", "query_timeout_seconds", "query_retries", "retries",
          "retry_delay_seconds", "clusters", "clusters.0.name", "clusters.0.prometheus_conn_id", "clusters.0.pool",
          "clusters.0.scrape_interval_seconds", "storage", "storage.uri", "storage.format", "storage.retention_days",
          "billing.uri", "billing.format", "billing.check_schedule", "billing.poke_interval_seconds",
          "allocation.cpu_weight", "allocation.idle", "allocation.accelerators", "warehouse.table", "warehouse.kind",
          "metrics.disable", "metrics.raw", "discovery", "unknown_field"]


def mutate(rng: random.Random, index: int) -> dict:
    """A valid cost center with one to three fields replaced by nasty values."""
    center = copy.deepcopy({**GOOD, "name": f"cc{index}", "storage": {"uri": f"s3://fuzz-{index}/k8s"}})
    for _ in range(rng.randint(1, 3)):
        path = rng.choice(FIELDS).split(".")
        node = center
        for part in path[:-1]:
            if part.isdigit():
                node = node[int(part)] if isinstance(node, list) and node else {}
            else:
                node = node.setdefault(part, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict):
            node[path[-1]] = rng.choice(NASTY)
    return center


def test_generated_configs_never_raise_and_every_rejection_names_a_field(tmp_path):
    rng = random.Random(20261125)
    rejected = 0
    for batch in range(40):
        centers = [mutate(rng, batch * 25 + i) for i in range(25)]
        path = tmp_path / f"fuzz-{batch}.yaml"
        path.write_text(json.dumps({"cost_centers": centers}, default=str))
        loaded = load_config(path)  # never raises for a file of cost centers, whatever they hold
        assert len(loaded.cost_centers) + len(loaded.errors) == len(centers)
        for _label, message in loaded.errors:
            assert "field '" in message and str(path) in message, message
        rejected += len(loaded.errors)
    assert rejected > 500, "the generator must actually produce broken cost centers"


def test_the_dag_file_imports_with_good_and_bad_cost_centers_mixed(tmp_path, monkeypatch, airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    rng = random.Random(7)
    goods = [{**GOOD, "name": f"good{i}", "storage": {"uri": f"s3://good-{i}/k8s"}} for i in range(3)]
    bads = [mutate(rng, i) for i in range(30)] + [_bad(name="x" * 300), _bad(schedule="61 * * * *")]
    path = tmp_path / "mixed.yaml"
    path.write_text(json.dumps({"cost_centers": goods + bads}, default=str))
    monkeypatch.setenv("PODLEDGER_CONFIG", str(path))
    dagbag = DagBag(dag_folder=str(Path(__file__).resolve().parents[2] / "dags"))
    assert dagbag.import_errors == {}
    for good in goods:
        assert {f"podledger_{kind}__{good['name']}" for kind in ("export", "enrich", "billing")} <= set(dagbag.dag_ids)
    errors = [d for d in dagbag.dag_ids if d.startswith("podledger_config_error__")]
    loaded = load_config(path)
    assert len(errors) == len(loaded.errors) and all(len(d) < 250 for d in errors)
