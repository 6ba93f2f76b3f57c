"""Warehouse loaders: replace a (cost center, cluster, hour range) slice of k8s_cost_allocation atomically."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import Protocol

import polars as pl

from podledger.allocation import OUTPUT_SCHEMA
from podledger.exceptions import PodledgerError

log = logging.getLogger(__name__)

SQL_DIR = Path(__file__).resolve().parents[1] / "sql"
_DUCKDB_TYPES = {pl.String: "VARCHAR", pl.Float64: "DOUBLE", pl.Datetime("us", "UTC"): "TIMESTAMPTZ"}


def ddl(table: str) -> str:
    """Return CREATE TABLE IF NOT EXISTS for the allocation table (columns from OUTPUT_SCHEMA)."""
    columns = ",\n  ".join(f"{name} {_DUCKDB_TYPES[dtype]}" for name, dtype in OUTPUT_SCHEMA.items())
    return f"CREATE TABLE IF NOT EXISTS {table} (\n  {columns}\n)"


class Loader(Protocol):
    """A warehouse: load replaces exactly the slice it is given, in one transaction."""

    def load(self, rows: pl.DataFrame, *, cost_center: str, cluster: str, start: dt.datetime, end: dt.datetime) -> int: ...


class DuckDBLoader:
    """Load into a DuckDB file from Arrow; delete + insert of the slice in one transaction."""

    def __init__(self, path: str | Path, table: str = "k8s_cost_allocation") -> None:
        if not table.isidentifier():
            raise PodledgerError(f"warehouse table name {table!r} is not a valid identifier")
        self.path = Path(path)
        self.table = table

    def connect(self):  # noqa: ANN201 - duckdb connection
        import duckdb

        self.path.parent.mkdir(parents=True, exist_ok=True)
        return duckdb.connect(str(self.path))

    def load(self, rows: pl.DataFrame, *, cost_center: str, cluster: str, start: dt.datetime, end: dt.datetime,
             split_items: pl.DataFrame | None = None) -> int:
        """Replace the rows of (cost_center, cluster, [start, end)) with ``rows`` (and the split line items)."""
        con = self.connect()
        try:
            con.register("podledger_rows", rows.select(list(OUTPUT_SCHEMA)).to_arrow())
            con.execute("BEGIN TRANSACTION")
            con.execute(ddl(self.table))
            con.execute(f"DELETE FROM {self.table} WHERE cost_center = ? AND cluster = ? AND hour_start >= ? AND hour_start < ?",
                        [cost_center, cluster, start, end])
            con.execute(f"INSERT INTO {self.table} SELECT * FROM podledger_rows")
            if split_items is not None:
                table = f"{self.table}_split_line_items"
                con.register("podledger_items", split_items.to_arrow())
                con.execute(f"CREATE TABLE IF NOT EXISTS {table} AS SELECT * FROM podledger_items WHERE false")
                con.execute(f"DELETE FROM {table} WHERE cost_center = ? AND cluster = ? AND line_item_usage_start_date >= ? "
                            "AND line_item_usage_start_date < ?", [cost_center, cluster, start, end])
                con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM podledger_items")
            con.execute("COMMIT")
        except Exception:
            con.execute("ROLLBACK")
            raise
        finally:
            con.close()
        log.info("warehouse %s table %s: replaced %s/%s [%s, %s) with %d rows", self.path, self.table, cost_center,
                 cluster, start, end, rows.height)
        return rows.height

    def query(self, sql: str, params: list | None = None) -> pl.DataFrame:
        """Run a read query and return a polars frame."""
        con = self.connect()
        try:
            frame = con.sql(sql, params=params or None).pl()
        finally:
            con.close()
        # DuckDB reports TIMESTAMPTZ as Etc/UTC; podledger frames use UTC.
        return frame.with_columns(pl.col(n).dt.convert_time_zone("UTC") for n, t in frame.schema.items()
                                  if isinstance(t, pl.Datetime) and t.time_zone)
