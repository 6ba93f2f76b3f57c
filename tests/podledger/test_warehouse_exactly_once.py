"""A load replaces exactly its slice, serialises with concurrent loads and round-trips every string byte for byte."""

from __future__ import annotations

import datetime as dt
import multiprocessing
import random
import uuid

import polars as pl
import pytest

from helpers import drop_warehouse_tables
from podledger.allocation import OUTPUT_SCHEMA
from podledger.warehouse import DuckDBLoader, LoadError, PostgresLoader

UTC = dt.UTC
START = dt.datetime(2026, 11, 2, tzinfo=UTC)
END = START + dt.timedelta(hours=3)
DSN = "host=127.0.0.1 port=5432 user=postgres dbname=test"


def rows(cost_center: str = "cc", cluster: str = "a", hours: int = 3, pods: int = 4, start: dt.datetime = START,
         **strings: list[str | None]) -> pl.DataFrame:
    records = [{name: None for name in OUTPUT_SCHEMA} | {
        "hour_start": start + dt.timedelta(hours=h), "cost_center": cost_center, "cluster": cluster,
        "namespace": "ns", "pod": f"pod-{p}", "total_cost": 0.1 * (p + 1), "cpu_cost": 0.1 * (p + 1)}
        for h in range(hours) for p in range(pods)]
    frame = pl.DataFrame(records, schema=OUTPUT_SCHEMA)
    return frame.with_columns(pl.Series(name, values, pl.String) for name, values in strings.items())


@pytest.mark.parametrize(("name", "frame", "culprit"), [
    ("hours after the slice", rows(hours=5), "hour_start=2026-11-02 03:00"),
    ("hours before the slice", rows(start=START - dt.timedelta(hours=1)), "hour_start=2026-11-01 23:00"),
    ("another cost center's rows", pl.concat([rows(), rows(cost_center="other")]), "cost_center='other'"),
    ("another cluster's rows", pl.concat([rows(), rows(cluster="b")]), "cluster='b'"),
    ("rows without a cost center", rows().with_columns(pl.lit(None, pl.String).alias("cost_center")), "cost_center=None"),
])
def test_rows_outside_the_slice_are_refused_and_nothing_changes(loader, name, frame, culprit):
    loader.load(rows(), cost_center="cc", cluster="a", start=START, end=END)
    with pytest.raises(LoadError, match="outside the slice") as error:
        loader.load(frame, cost_center="cc", cluster="a", start=START, end=END)
    assert culprit in str(error.value), (name, str(error.value))
    total = loader.query(f"SELECT count(*) AS n, sum(total_cost) AS c FROM {loader.table}").row(0)
    assert total[0] == 12 and total[1] == pytest.approx(3 * 1.0), name


def test_split_line_items_outside_the_slice_are_refused(loader):
    from podledger.split_line_items import split_line_items

    good = rows()
    items = split_line_items(rows(hours=4), region="us-east-1", account_id="1")
    with pytest.raises(LoadError, match="split line items are outside"):
        loader.load(good, cost_center="cc", cluster="a", start=START, end=END, split_items=items)


def test_the_cli_load_refuses_a_rows_file_that_does_not_match_its_arguments(tmp_path, monkeypatch, capsys):
    from podledger.cli import main

    monkeypatch.setenv("PODLEDGER_HOME", str(tmp_path))
    path = tmp_path / "rows.parquet"
    rows(cost_center="demo", cluster="demo-eks", hours=6).write_parquet(path)
    code = main(["load", "--cost-center", "demo", "--start", "2026-11-02T00:00Z", "--end", "2026-11-02T03:00Z",
                 "--rows", str(path)])
    assert code == 1
    assert "outside the slice" in capsys.readouterr().err
    import duckdb

    warehouse = tmp_path / "warehouse.duckdb"
    if warehouse.exists():
        con = duckdb.connect(str(warehouse), read_only=True)
        tables = [t[0] for t in con.sql("SHOW TABLES").fetchall()]
        assert "k8s_cost_allocation" not in tables or con.sql("SELECT count(*) FROM k8s_cost_allocation").fetchone()[0] == 0


ALPHABET = ['"', "'", "\\", "\\N", "\n", "\r\n", "\t", ",", ";", " ", "NULL", "null", "", "é", "☕", "日本", "🙂",
            "\u200b", "\\.", "a", "Z", "0", "{", "}", ":", "|", "$1"]


def random_strings(seed: int, n: int) -> list[str | None]:
    rng = random.Random(seed)
    values: list[str | None] = ["\\N", "", " ", "\\.", None, "NULL"]
    while len(values) < n:
        values.append("".join(rng.choice(ALPHABET) for _ in range(rng.randint(1, 8))))
    return values[:n]


def test_every_string_round_trips_byte_for_byte(loader):
    n = 3 * 4
    frame = rows(namespace=random_strings(1, n), pod=[f"p{i}" + (s or "") for i, s in enumerate(random_strings(2, n))],
                 pod_labels=random_strings(3, n), controller_name=random_strings(4, n))
    loader.load(frame, cost_center="cc", cluster="a", start=START, end=END)
    back = loader.query(f"SELECT hour_start, pod, namespace, pod_labels, controller_name FROM {loader.table}")
    expected = frame.select("hour_start", "pod", "namespace", "pod_labels", "controller_name")
    key = ["hour_start", "pod"]
    joined = expected.join(back.with_columns(pl.col("hour_start").cast(pl.Datetime("us", "UTC"))), on=key,
                           how="full", suffix="_back")
    assert joined.height == n
    for column in ("namespace", "pod_labels", "controller_name"):
        for want, got in zip(joined[column].to_list(), joined[f"{column}_back"].to_list(), strict=True):
            assert want == got, f"{column}: {want!r} came back as {got!r}"


# --- 8 processes loading the same slice at once, 20 times -------------------------------------------------------------

def _load_rounds(kind: str, target: str, table: str, rounds: int, start_barrier, done_barrier) -> None:
    loader = DuckDBLoader(target, table) if kind == "duckdb" else PostgresLoader(target, table)
    frame = rows(hours=3, pods=50)
    try:
        for _ in range(rounds):
            start_barrier.wait(timeout=120)
            loader.load(frame, cost_center="cc", cluster="a", start=START, end=END)
            done_barrier.wait(timeout=300)
    except BaseException:
        start_barrier.abort()  # fail the round at once instead of leaving the others waiting
        done_barrier.abort()
        raise


@pytest.mark.parametrize("kind", ["postgres", "duckdb"])
def test_eight_concurrent_loads_of_one_slice_leave_one_copy_twenty_times(kind, tmp_path):
    processes, rounds = 8, 20
    table = f"alloc_{uuid.uuid4().hex[:8]}"
    target = DSN if kind == "postgres" else str(tmp_path / "w.duckdb")
    context = multiprocessing.get_context("spawn")
    start_barrier, done_barrier = context.Barrier(processes + 1), context.Barrier(processes + 1)
    workers = [context.Process(target=_load_rounds, args=(kind, target, table, rounds, start_barrier, done_barrier))
               for _ in range(processes)]
    for worker in workers:
        worker.start()
    checker = DuckDBLoader(target, table) if kind == "duckdb" else PostgresLoader(target, table)
    copies = []
    try:
        for _ in range(rounds):
            start_barrier.wait(timeout=180)
            done_barrier.wait(timeout=300)
            if kind == "duckdb":
                con = checker.connect(read_only=True)
                copies.append(con.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
                con.close()
            else:
                copies.append(checker.query(f"SELECT count(*) FROM {table}").item())
    finally:
        for worker in workers:
            worker.join(timeout=60)
            if worker.is_alive():
                worker.kill()
        if kind == "postgres":
            drop_warehouse_tables(table)
    assert all(w.exitcode == 0 for w in workers), [w.exitcode for w in workers]
    assert copies == [3 * 50] * rounds, copies
