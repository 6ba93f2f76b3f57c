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


IDLE = "__idle__"


def share_idle(rows: pl.DataFrame) -> pl.DataFrame:
    """The reference, row by row: OpenCost's "share idle": each cluster-hour's __idle__ cost spread onto its pods in proportion to their cost."""
    is_idle = pl.col("namespace") == IDLE
    idle = rows.filter(is_idle).group_by("hour_start", "cluster").agg(pl.col("total_cost").sum().alias("idle"))
    pods = rows.filter(~pl.col("namespace").str.starts_with("__"))
    pod_total = pods.group_by("hour_start", "cluster").agg(pl.col("total_cost").sum().alias("pod_total"))
    shared = (pods.join(idle, on=["hour_start", "cluster"], how="left").join(pod_total, on=["hour_start", "cluster"])
              .with_columns(pl.when(pl.col("pod_total") > 0)
                            .then(pl.col("total_cost") / pl.col("pod_total") * pl.col("idle").fill_null(0.0))
                            .otherwise(0.0).alias("share"))
              .with_columns((pl.col("unused_cost") + pl.col("share")).alias("unused_cost"),
                            (pl.col("total_cost") + pl.col("share")).alias("total_cost"))
              .drop("idle", "pod_total", "share"))
    # Hours whose pods cost nothing keep their idle row (nothing to share it onto).
    kept_idle = rows.filter(is_idle).join(pod_total.filter(pl.col("pod_total") > 0), on=["hour_start", "cluster"],
                                          how="anti")
    others = rows.filter(pl.col("namespace").str.starts_with("__") & ~is_idle)
    return pl.concat([shared, kept_idle, others], how="diagonal_relaxed")


def _records() -> list[dict]:
    pods = [("shop", "web-1", "a", "Deployment", "web", '{"team": "checkout"}', 1.0),
            ("shop", "web-2", "b", "Deployment", "web", '{"team": "checkout"}', 2.0),
            ("data", "etl-0", "c", "StatefulSet", "etl", '{"app": "etl"}', 4.0),
            ("__idle__", "__idle__", None, "__idle__", "__idle__", None, 0.5)]
    return [{name: None for name in OUTPUT_SCHEMA} | {
        "hour_start": START + dt.timedelta(hours=h), "cost_center": "demo", "cluster": "demo-eks", "node": "n1",
        "namespace": ns, "pod": pod, "uid": uid, "controller_kind": kind, "controller_name": name, "pod_labels": labels,
        "namespace_labels": json.dumps({"team": "data-platform"}) if ns == "data" else "{}",
        # hour 5 has no pod cost: its idle cannot be shared and stays; costs vary by hour so shares differ
        "total_cost": 0.0 if h == 5 and uid else cost * (1 + h % 3), "cpu_cost": cost * 0.8, "memory_cost": cost * 0.2,
        "unused_cost": cost * 0.1, "efficiency": 0.5, "currency": "USD"}
        for h in range(48) for ns, pod, uid, kind, name, labels, cost in pods]


@pytest.fixture
def loaded(loader):
    """The same two days loaded into a DuckDB file or a PostgreSQL table, with the cost center reading it."""
    from podledger.config import CostCenterConfig

    records = _records()
    for day in range(2):
        day_rows = [r for r in records if r["hour_start"].day == 2 + day]
        loader.load(pl.DataFrame(day_rows, schema=OUTPUT_SCHEMA), cost_center="demo", cluster="demo-eks",
                    start=START + dt.timedelta(days=day), end=START + dt.timedelta(days=day + 1))
    postgres = not isinstance(loader, DuckDBLoader)
    warehouse = {"kind": "postgres", "table": loader.table} if postgres else {"path": str(loader.path),
                                                                             "table": loader.table}
    return loader, CostCenterConfig.model_validate({"name": "demo", "clusters": [{"name": "demo-eks"}],
                                                    "warehouse": warehouse})


def _same(got: pl.DataFrame, want: pl.DataFrame, on: list[str], columns: tuple[str, ...]) -> None:
    joined = got.join(want, on=on, how="full", suffix="_rows", nulls_equal=True)
    assert joined.height == got.height == want.height, joined
    for column in columns:
        assert ((joined[column] - joined[f"{column}_rows"]).abs() < 1e-9).all(), (column, joined)


@pytest.mark.parametrize("by", ["namespace", "controller", "pod", "node", "label:team"])
@pytest.mark.parametrize("idle", ["separate", "shared"])
@pytest.mark.parametrize("step", ["hour", "day", None])
def test_the_warehouse_aggregation_equals_the_report_on_rows(loaded, by, idle, step):
    """The explorer aggregates in SQL (from the table or a rollup); the numbers are cost_report's on the rows."""
    from podledger.explorer import allocation_sql, read_rows
    from podledger.report import cost_report

    loader, cc = loaded
    end = START + dt.timedelta(days=2)
    rows = read_rows(loader, cc, START, end)
    want = cost_report(share_idle(rows) if idle == "shared" else rows, by=by, step=step)
    on = [*([step] if step else []), by]
    for lean in (False, True):
        got = allocation_sql(loader, cc, START, end, by=by, step=step, idle=idle, lean=lean)
        _same(got, want.select(got.columns) if lean else want, on,
              ("total_cost",) if lean else ("total_cost", "unused_cost", "cpu_cost", "efficiency", "pods"))
    if idle == "shared":
        if by in ("namespace", "label:team"):
            assert "__idle__" in got[by].to_list(), "the hour without pod cost keeps its idle"
        assert got["total_cost"].sum() == pytest.approx(rows["total_cost"].sum())


@pytest.mark.parametrize("idle", ["separate", "shared"])
def test_the_rollups_the_loader_keeps_answer_like_the_table(loaded, idle):
    from podledger.explorer import _aggregate_hours, _aggregate_rollup

    loader, cc = loaded
    end = START + dt.timedelta(days=2)
    for rollup, step in (("daily_rollup", "day"), ("hourly_labels", "hour"), ("hourly_labels", None)):
        kwargs = {"by": "label:team", "step": step, "idle": idle, "cluster": None, "lean": False}
        from_rollup = _aggregate_rollup(loader, cc, START, end, rollup=rollup, **kwargs)
        from_table = _aggregate_hours(loader, cc, START, end, **kwargs)
        _same(from_rollup, from_table, [*([step] if step else []), "label:team"],
              ("total_cost", "unused_cost", "cpu_cost", "efficiency", "pods"))
    count = "SELECT count(*) AS n FROM {}"
    # A row per pod and day; day 1's __idle__ twice: shared away in 23 hours, kept in hour 5 (no pod cost).
    assert loader.query(count.format(f"{loader.table}_daily_rollup")).item() == 2 * 4 + 1
    # A row per label set and hour: web-1 and web-2 share theirs.
    assert loader.query(count.format(f"{loader.table}_hourly_labels")).item() == 48 * 3


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


def test_a_rollup_built_by_an_older_podledger_is_rebuilt_whole_on_the_next_load(loaded):
    """The daily rollup of podledger 0.3 had no shared_away column: the next load rebuilds it for every slice."""
    loader, cc = loaded
    rollup = f"{loader.table}_daily_rollup"
    before = loader.query(f"SELECT * FROM {rollup} ORDER BY day, namespace, pod, shared_away")
    if isinstance(loader, DuckDBLoader):
        import duckdb

        with duckdb.connect(str(loader.path)) as con:
            con.execute(f"ALTER TABLE {rollup} DROP COLUMN shared_away")
            con.execute(f"DELETE FROM {rollup} WHERE day >= TIMESTAMPTZ '2026-11-02 00:00:00+00'")
    else:
        import psycopg

        with psycopg.connect(loader.dsn) as con:
            con.execute(f"ALTER TABLE {rollup} DROP COLUMN shared_away")
            con.execute(f"DELETE FROM {rollup}")
    records = [r for r in _records() if r["hour_start"].day == 3]  # load day 2 only: day 1 is rebuilt too
    loader.load(pl.DataFrame(records, schema=OUTPUT_SCHEMA), cost_center="demo", cluster="demo-eks",
                start=START + dt.timedelta(days=1), end=START + dt.timedelta(days=2))
    after = loader.query(f"SELECT * FROM {rollup} ORDER BY day, namespace, pod, shared_away")
    assert after.height == before.height == 9
    from polars.testing import assert_frame_equal

    assert_frame_equal(after.select(before.columns), before, check_exact=False, rel_tol=1e-12, abs_tol=1e-12)


def test_rightsizing_and_reconciliation_are_computed_by_the_warehouse_as_on_the_rows(loaded):
    from podledger.explorer import read_rows, reconciliation
    from podledger.rightsizing import recommendations, recommendations_sql

    loader, cc = loaded
    end = START + dt.timedelta(days=2)
    rows = read_rows(loader, cc, START, end).with_columns(
        running_hours=pl.lit(1.0), cpu_usage_core_hours=pl.col("hour_start").dt.hour() / 10,
        cpu_request_core_hours=pl.lit(2.0), cpu_allocated_core_hours=pl.lit(2.0),
        memory_usage_gib_hours=pl.lit(1.5), memory_request_gib_hours=pl.lit(4.0), memory_allocated_gib_hours=pl.lit(4.0))
    for day in range(2):  # reload with usage and requests for the recommendation
        part = rows.filter(pl.col("hour_start").dt.day() == 2 + day).select(list(OUTPUT_SCHEMA))
        loader.load(part, cost_center="demo", cluster="demo-eks", start=START + dt.timedelta(days=day),
                    end=START + dt.timedelta(days=day + 1))
    want = recommendations(rows)
    got = recommendations_sql(loader, loader.table, "demo", START, end, postgres=not isinstance(loader, DuckDBLoader))
    assert got.columns == want.columns and got.height == want.height == 2
    _same(got, want, ["controller_name"], ("cpu_recommended_cores", "memory_recommended_gib", "avg_pods",
                                           "price_per_core_hour", "monthly_saving", "hours_observed"))
    etl = got.filter(pl.col("controller_name") == "etl")["cpu_recommended_cores"].item()
    used = rows.filter(pl.col("controller_name") == "etl")["cpu_usage_core_hours"]
    assert used.quantile(0.5, "linear") * 1.2 < etl <= used.max() * 1.2

    report = reconciliation(loader, cc, START, end)
    assert report.height == 48
    per_hour = rows.group_by("hour_start").agg(pl.col("total_cost").sum()).sort("hour_start")
    assert ((report["allocated"] - per_hour["total_cost"]).abs() < 1e-9).all()
    assert ((report["idle"] - 0.5 * (1 + report["hour_start"].dt.hour() % 3)).abs() < 1e-9).all()
