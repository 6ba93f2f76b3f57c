"""Benchmark loading allocation rows: podledger's loaders next to a plain COPY of the same rows, one run.

    .venv/bin/python bench/load.py --rows 10000000 --dsn "host=127.0.0.1 user=postgres dbname=test"
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import tempfile
import time
import uuid
from pathlib import Path

import polars as pl


def make_rows(n: int) -> pl.DataFrame:
    """Return ``n`` allocation rows shaped like OUTPUT_SCHEMA (values vary; nulls where real rows have them)."""
    from podledger.allocation import OUTPUT_SCHEMA

    i = pl.int_range(n, eager=True)
    start = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    columns = {}
    for name, dtype in OUTPUT_SCHEMA.items():
        if dtype == pl.Float64:
            columns[name] = (i % 997).cast(pl.Float64) / 1000.0
        elif isinstance(dtype, pl.Datetime):
            columns[name] = pl.datetime_range(start, start + dt.timedelta(hours=(n // 15000) + 1), "1h", eager=True,
                                              time_zone="UTC").gather((i // 15000).cast(pl.Int64))
        else:
            columns[name] = "v" + (i % 15000).cast(pl.String)
    frame = pl.DataFrame(columns).with_columns(pl.lit("bench").alias("cost_center"), pl.lit("c1").alias("cluster"),
                                               pl.lit(None, pl.String).alias("controller_name"))
    return frame.cast(OUTPUT_SCHEMA)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--dsn", default="host=127.0.0.1 user=postgres dbname=test")
    args = parser.parse_args()

    import psycopg

    from podledger.warehouse import _POSTGRES_TYPES, DuckDBLoader, PostgresLoader, ddl

    rows = make_rows(args.rows)
    start, end = rows["hour_start"].min(), rows["hour_start"].max() + dt.timedelta(hours=1)
    print(f"{rows.height:,} rows, {len(rows.columns)} columns")

    table = f"bench_{uuid.uuid4().hex[:8]}"
    baseline = f"{table}_plain"
    try:
        # Baseline: the same rows, already serialised, through a plain COPY ... FROM STDIN.
        buffer = io.BytesIO()
        rows.write_csv(buffer, include_header=False, null_value="\\N")
        data = buffer.getvalue()
        with psycopg.connect(args.dsn) as con:
            con.execute(ddl(baseline, _POSTGRES_TYPES))
            t = time.perf_counter()
            with con.cursor().copy(f"COPY {baseline} FROM STDIN (FORMAT csv, NULL '\\N')") as copy:
                for offset in range(0, len(data), 64 << 20):
                    copy.write(data[offset:offset + (64 << 20)])
            con.commit()
            plain = time.perf_counter() - t
        del data, buffer
        # podledger's COPY step on the same frame: binary from Arrow (serialisation included in the time).
        from podledger.warehouse import OUTPUT_SCHEMA, copy_binary

        binary_table = f"{table}_binary"
        with psycopg.connect(args.dsn) as con:
            con.execute(ddl(binary_table, _POSTGRES_TYPES))
            t = time.perf_counter()
            with con.cursor() as cur:
                copy_binary(cur, binary_table, rows.select(list(OUTPUT_SCHEMA)))
            con.commit()
            binary = time.perf_counter() - t
            same = con.execute(f"SELECT count(*), sum(total_cost) FROM {binary_table}").fetchone()
            con.execute(f"DROP TABLE {binary_table}")
        assert same[0] == rows.height and abs(same[1] - rows["total_cost"].sum()) < 1e-6 * rows.height
        t = time.perf_counter()
        PostgresLoader(args.dsn, table).load(rows, cost_center="bench", cluster="c1", start=start, end=end)
        loader = time.perf_counter() - t
        print(f"  PostgreSQL plain CSV COPY FROM STDIN (pre-serialised, not timed): {rows.height / plain:,.0f} rows/s "
              f"({plain:.1f}s)")
        print(f"  PostgreSQL podledger binary COPY from Arrow (serialisation timed): {rows.height / binary:,.0f} rows/s "
              f"({binary:.1f}s) = {plain / binary:.2f}x of plain CSV COPY")
        print(f"  PostgreSQL podledger loader (delete, COPY, read-back, daily and hourly rollups, one transaction): "
              f"{rows.height / loader:,.0f} rows/s ({loader:.1f}s)")
    finally:
        with psycopg.connect(args.dsn) as con:
            for name in (table, baseline, *(f"{table}_{suffix}" for suffix in (
                    "split_line_items", "reconciliation", "daily_rollup", "hourly_labels"))):
                con.execute(f"DROP TABLE IF EXISTS {name} CASCADE")
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        DuckDBLoader(Path(tmp) / "bench.duckdb", "bench").load(rows, cost_center="bench", cluster="c1", start=start, end=end)
        duck = time.perf_counter() - t
        print(f"  DuckDB loader (from Arrow, one transaction): {rows.height / duck:,.0f} rows/s ({duck:.1f}s)")


if __name__ == "__main__":
    main()
