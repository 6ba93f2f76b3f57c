"""`podledger report`: the warehouse by namespace, controller, pod, node, label, per step, as a table or CSV."""

from __future__ import annotations

import datetime as dt
import io
import json

import polars as pl
import pytest

from podledger.allocation import OUTPUT_SCHEMA
from podledger.cli import main as cli
from podledger.warehouse import DuckDBLoader

START = dt.datetime(2026, 11, 2, tzinfo=dt.UTC)


@pytest.fixture
def warehouse(tmp_path, monkeypatch):
    monkeypatch.setenv("PODLEDGER_HOME", str(tmp_path))
    pods = [("shop", "web-1", "a", "Deployment", "web", '{"team": "checkout"}', 1.0),
            ("shop", "web-2", "b", "Deployment", "web", '{"team": "checkout"}', 2.0),
            ("data", "etl-0", "c", "StatefulSet", "etl", '{"app": "etl"}', 4.0),
            ("__idle__", "__idle__", None, "__idle__", "__idle__", None, 0.5)]
    records = [{name: None for name in OUTPUT_SCHEMA} | {
        "hour_start": START + dt.timedelta(hours=h), "cost_center": "demo", "cluster": "demo-eks", "node": "n1",
        "namespace": ns, "pod": pod, "uid": uid, "controller_kind": kind, "controller_name": name, "pod_labels": labels,
        "namespace_labels": json.dumps({"team": "data-platform"}) if ns == "data" else "{}",
        "total_cost": cost, "cpu_cost": cost * 0.8, "memory_cost": cost * 0.2, "efficiency": 0.5, "currency": "USD"}
        for h in range(48) for ns, pod, uid, kind, name, labels, cost in pods]
    for day in range(2):
        day_rows = [r for r in records if r["hour_start"].day == 2 + day]
        DuckDBLoader(tmp_path / "warehouse.duckdb").load(
            pl.DataFrame(day_rows, schema=OUTPUT_SCHEMA), cost_center="demo", cluster="demo-eks",
            start=START + dt.timedelta(days=day), end=START + dt.timedelta(days=day + 1))
    return tmp_path / "warehouse.duckdb"


def _csv(capsys, *args: str) -> pl.DataFrame:
    assert cli(["report", "--cost-center", "demo", "--start", "2026-11-02T00:00Z", "--end", "2026-11-04T00:00Z",
                *args, "--csv"]) == 0
    return pl.read_csv(io.StringIO(capsys.readouterr().out))


def test_by_namespace_equals_a_sql_query_on_the_warehouse(warehouse, capsys):
    import duckdb

    report = _csv(capsys)
    sql = dict(duckdb.connect(str(warehouse), read_only=True).sql(
        "SELECT namespace, sum(total_cost) FROM k8s_cost_allocation GROUP BY 1").fetchall())
    assert dict(report.select("namespace", "total_cost").iter_rows()) == pytest.approx(sql)
    assert report["namespace"].to_list()[0] == "data", "most expensive first"


@pytest.mark.parametrize(("by", "expected"), [
    ("controller", {"Deployment/web": 144.0, "StatefulSet/etl": 192.0, "__idle__/__idle__": 24.0}),
    ("pod", {"shop/web-1": 48.0, "shop/web-2": 96.0, "data/etl-0": 192.0, "__idle__/__idle__": 24.0}),
    # A pod label, else the namespace's label; sentinels keep their owner.
    ("label:team", {"checkout": 144.0, "data-platform": 192.0, "__idle__": 24.0}),
])
def test_aggregations(warehouse, capsys, by, expected):
    report = _csv(capsys, "--by", by)
    assert dict(report.select(by, "total_cost").iter_rows()) == pytest.approx(expected)


def test_steps(warehouse, capsys):
    daily = _csv(capsys, "--step", "day")
    assert daily["day"].n_unique() == 2 and daily.height == 2 * 3
    weekly = _csv(capsys, "--step", "week", "--by", "label:team")
    assert weekly["week"].n_unique() == 1 and weekly["total_cost"].sum() == pytest.approx(360.0)


@pytest.mark.parametrize("by", ["namespace", "controller", "pod", "node", "label:team"])
@pytest.mark.parametrize("idle", ["separate", "shared"])
def test_the_warehouse_aggregation_equals_the_report_on_rows(warehouse, by, idle):
    """The explorer aggregates in SQL; the numbers are those of cost_report (and share_idle) on the rows."""
    from podledger.config import CostCenterConfig
    from podledger.explorer import allocation_sql, read_rows, share_idle
    from podledger.report import cost_report

    cc = CostCenterConfig.model_validate({"name": "demo", "clusters": [{"name": "demo-eks"}],
                                          "warehouse": {"path": str(warehouse)}})
    loader = DuckDBLoader(warehouse)
    end = START + dt.timedelta(days=2)
    got = allocation_sql(loader, cc, START, end, by=by, step="day", idle=idle)
    rows = read_rows(loader, cc, START, end)
    want = cost_report(share_idle(rows) if idle == "shared" else rows, by=by, step="day")
    joined = got.join(want, on=["day", by], how="full", suffix="_rows")
    assert joined.height == got.height == want.height
    assert ((joined["total_cost"] - joined["total_cost_rows"]).abs() < 1e-9).all(), joined
    if idle == "shared":
        assert "__idle__" not in got[by].to_list() and got["total_cost"].sum() == pytest.approx(rows["total_cost"].sum())


@pytest.mark.parametrize("idle", ["separate", "shared"])
def test_the_daily_rollup_the_loader_keeps_answers_like_the_table(warehouse, idle):
    from podledger.config import CostCenterConfig
    from podledger.explorer import _aggregate

    cc = CostCenterConfig.model_validate({"name": "demo", "clusters": [{"name": "demo-eks"}],
                                          "warehouse": {"path": str(warehouse)}})
    loader = DuckDBLoader(warehouse)
    end = START + dt.timedelta(days=2)
    kwargs = {"by": "label:team", "step": "day", "idle": idle, "cluster": None}
    from_rollup = _aggregate(loader, cc, START, end, rollup=True, **kwargs)
    from_table = _aggregate(loader, cc, START, end, rollup=False, **kwargs)
    joined = from_rollup.join(from_table, on=["day", "label:team"], how="full", suffix="_table")
    assert joined.height == from_rollup.height == from_table.height == 2 * (3 if idle == "separate" else 2)
    for column in ("total_cost", "unused_cost", "cpu_cost", "efficiency"):
        assert ((joined[column] - joined[f"{column}_table"]).abs() < 1e-9).all(), column
    rollup_rows = loader.query("SELECT count(*) AS n FROM k8s_cost_allocation_daily_rollup").item()
    assert rollup_rows == 2 * 4, "one row per pod (and sentinel) and day"


def test_the_charts_lean_series_has_the_reports_totals(warehouse):
    from podledger.config import CostCenterConfig
    from podledger.explorer import allocation_sql

    cc = CostCenterConfig.model_validate({"name": "demo", "clusters": [{"name": "demo-eks"}],
                                          "warehouse": {"path": str(warehouse)}})
    loader = DuckDBLoader(warehouse)
    end = START + dt.timedelta(days=2)
    for step in ("hour", "day"):
        full = allocation_sql(loader, cc, START, end, by="namespace", step=step).select(step, "namespace", "total_cost")
        lean = allocation_sql(loader, cc, START, end, by="namespace", step=step, lean=True)
        assert lean.columns == [step, "namespace", "total_cost"]
        assert lean.sort(step, "namespace").equals(full.sort(step, "namespace")), step
