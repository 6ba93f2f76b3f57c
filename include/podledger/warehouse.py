"""Warehouse loaders: replace a (cost center, cluster, hour range) slice of k8s_cost_allocation atomically."""

from __future__ import annotations

import datetime as dt
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import polars as pl

from podledger.allocation import OUTPUT_SCHEMA
from podledger.config import WarehouseConfig
from podledger.connections import ConnectionInfo
from podledger.exceptions import PodledgerError
from podledger.rollups import refresh_rollups

if TYPE_CHECKING:
    import duckdb
    import psycopg

log = logging.getLogger(__name__)

SQL_DIR = Path(__file__).resolve().parents[1] / "sql"
_DUCKDB_TYPES: dict[pl.DataType, str] = {pl.String(): "VARCHAR", pl.Float64(): "DOUBLE",
                                         pl.Datetime("us", "UTC"): "TIMESTAMPTZ"}
_POSTGRES_TYPES: dict[pl.DataType, str] = {pl.String(): "TEXT", pl.Float64(): "DOUBLE PRECISION",
                                           pl.Datetime("us", "UTC"): "TIMESTAMPTZ"}


def ddl(table: str, types: dict[pl.DataType, str] = _DUCKDB_TYPES) -> str:
    """Return CREATE TABLE IF NOT EXISTS for the allocation table (columns from OUTPUT_SCHEMA)."""
    columns = ",\n  ".join(f"{name} {types[dtype]}" for name, dtype in OUTPUT_SCHEMA.items())
    return f"CREATE TABLE IF NOT EXISTS {table} (\n  {columns}\n)"


def view_statements(table: str) -> list[str]:
    """Return the CREATE VIEW statements of include/sql/views.sql for ``table``."""
    text = (SQL_DIR / "views.sql").read_text().replace("{table}", table)
    body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--"))
    return [statement.strip() for statement in body.split(";") if statement.strip()]


def add_missing_columns(table: str, types: dict[pl.DataType, str]) -> list[str]:
    """Return ALTER statements adding columns a newer podledger writes, so old tables keep loading."""
    return [f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {name} {types[dtype]}" for name, dtype in OUTPUT_SCHEMA.items()]


class LoadError(PodledgerError):
    """Rows do not belong to the slice being replaced, or the warehouse does not hold what was loaded."""


def check_slice(rows: pl.DataFrame, *, cost_center: str, cluster: str, start: dt.datetime, end: dt.datetime,
                time_column: str = "hour_start", what: str = "row") -> None:
    """Refuse any row outside (cost_center, cluster, [start, end)): a load replaces exactly the slice it is given.

    Raises :class:`LoadError` naming how many rows are outside and the first of them.
    """
    if not rows.height:
        return
    when = pl.col(time_column)
    outside = (pl.col("cost_center").is_null() | (pl.col("cost_center") != cost_center)
               | pl.col("cluster").is_null() | (pl.col("cluster") != cluster)
               | when.is_null() | (when < start) | (when >= end))
    bad = rows.with_row_index("row_number").filter(outside)
    if bad.height:
        first = bad.row(0, named=True)
        raise LoadError(
            f"refusing to load: {bad.height} of {rows.height} {what}s are outside the slice cost center {cost_center!r}, "
            f"cluster {cluster!r}, [{start:%Y-%m-%dT%H:%M}Z, {end:%Y-%m-%dT%H:%M}Z); first: {what} {first['row_number']} "
            f"(cost_center={first['cost_center']!r}, cluster={first['cluster']!r}, {time_column}={first[time_column]}). "
            "Give the load the range and cost center the rows were allocated for")


def check_slices(rows: pl.DataFrame, split_items: pl.DataFrame | None, reconciliation: pl.DataFrame | None, *,
                 cost_center: str, cluster: str, start: dt.datetime, end: dt.datetime) -> None:
    """:func:`check_slice` for everything one load writes: rows, split line items, reconciliation hours."""
    check_slice(rows, cost_center=cost_center, cluster=cluster, start=start, end=end)
    if split_items is not None:
        check_slice(split_items, cost_center=cost_center, cluster=cluster, start=start, end=end,
                    time_column="line_item_usage_start_date", what="split line item")
    if reconciliation is not None:
        check_slice(reconciliation, cost_center=cost_center, cluster=cluster, start=start, end=end,
                    what="reconciliation hour")


def check_loaded(loaded: pl.DataFrame, rows: pl.DataFrame, where: str) -> None:
    """Compare the warehouse's hourly (count, Σ total_cost) of a slice, read back, with the rows given to the load."""
    expected = rows.group_by("hour_start").agg(pl.len().alias("expected_rows"),
                                               pl.col("total_cost").sum().alias("expected_cost"))
    got = loaded.rename({"rows": "loaded_rows", "cost": "loaded_cost"}).with_columns(
        pl.col("hour_start").cast(pl.Datetime("us", "UTC")), pl.col("loaded_rows").cast(pl.Int64),
        pl.col("loaded_cost").cast(pl.Float64))
    both = (expected.with_columns(pl.col("expected_rows").cast(pl.Int64))
            .join(got, on="hour_start", how="full", coalesce=True).fill_null(0).sort("hour_start"))
    tolerance = 1e-9 * pl.max_horizontal(pl.col("expected_cost").abs(), pl.lit(1e-12))
    bad = both.filter((pl.col("expected_rows") != pl.col("loaded_rows"))
                      | ((pl.col("expected_cost") - pl.col("loaded_cost")).abs() > tolerance))
    if bad.height:
        first = bad.row(0, named=True)
        raise LoadError(f"{where}: read back after loading, hour {first['hour_start']:%Y-%m-%dT%H}Z holds "
                        f"{first['loaded_rows']} rows costing {first['loaded_cost']!r}, expected {first['expected_rows']} "
                        f"rows costing {first['expected_cost']!r} ({bad.height} hour(s) differ); the load was rolled back")


RECONCILIATION_COLUMNS: dict[str, pl.DataType] = {
    "hour_start": pl.Datetime("us", "UTC"), "cost_center": pl.String(), "cluster": pl.String(),
    "allocated_cost": pl.Float64(), "billed_cost": pl.Float64(), "billed_from_files": pl.Float64(),
    "difference": pl.Float64()}


def reconciliation_rows(report: pl.DataFrame, cost_center: str) -> pl.DataFrame:
    """The per-hour reconciliation of an enrichment in the warehouse's shape (for the cost explorer)."""
    frame = report.with_columns(pl.lit(cost_center).alias("cost_center"))
    for name, dtype in RECONCILIATION_COLUMNS.items():
        if name not in frame.columns:
            frame = frame.with_columns(pl.lit(None, dtype).alias(name))
    return frame.select(pl.col(n).cast(t) for n, t in RECONCILIATION_COLUMNS.items())


READBACK_SQL = ("SELECT hour_start, count(*) AS rows, sum(total_cost) AS cost FROM {table} WHERE cost_center = {p} "
                "AND cluster = {p} AND hour_start >= {p} AND hour_start < {p} GROUP BY hour_start")


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

    def connect(self, *, read_only: bool = False, wait_seconds: float = 120.0) -> duckdb.DuckDBPyConnection:
        """Open the file; while another process holds its write lock, wait (loads serialise, never interleave)."""
        import duckdb

        self.path.parent.mkdir(parents=True, exist_ok=True)
        first_try = time.monotonic()
        deadline = first_try + wait_seconds
        delay = 0.05
        while True:
            try:
                con = duckdb.connect(str(self.path), read_only=read_only)
            except duckdb.IOException as exc:
                message = str(exc).lower()
                # Another process holds the write lock, or is creating the file (its header is written with its
                # first commit, which can take a whole load): wait while the file is new or still being written.
                # A file that stays invalid and untouched is an error after a few seconds.
                creating = "not a valid duckdb database" in message and (
                    time.monotonic() < first_try + 10 or self._written_within(wait_seconds))
                if not ("lock" in message or creating) or time.monotonic() > deadline:
                    raise LoadError(f"warehouse {self.path}: cannot open it ({exc})") from exc
                time.sleep(delay)
                delay = min(delay * 2, 1.0)
            else:
                con.execute("SET TimeZone = 'UTC'")  # date_trunc and friends on TIMESTAMPTZ work in UTC
                return con

    def _written_within(self, seconds: float) -> bool:
        """Whether the file (or its write-ahead log) changed in the last ``seconds``: someone is writing it."""
        wal = self.path.with_name(self.path.name + ".wal")
        stamps = [p.stat().st_mtime for p in (self.path, wal) if p.exists()]
        return bool(stamps) and time.time() - max(stamps) < seconds

    def load(self, rows: pl.DataFrame, *, cost_center: str, cluster: str, start: dt.datetime, end: dt.datetime,
             split_items: pl.DataFrame | None = None, reconciliation: pl.DataFrame | None = None) -> int:
        """Replace the rows of (cost_center, cluster, [start, end)) with ``rows`` (and the split line items)."""
        check_slices(rows, split_items, reconciliation, cost_center=cost_center, cluster=cluster, start=start, end=end)
        con = self.connect()
        try:
            con.register("podledger_rows", rows.select(list(OUTPUT_SCHEMA)).to_arrow())
            con.execute("BEGIN TRANSACTION")
            con.execute(ddl(self.table))
            for statement in add_missing_columns(self.table, _DUCKDB_TYPES):
                con.execute(statement)
            con.execute(f"DELETE FROM {self.table} WHERE cost_center = ? AND cluster = ? AND hour_start >= ? AND hour_start < ?",
                        [cost_center, cluster, start, end])
            con.execute(f"INSERT INTO {self.table} BY NAME SELECT * FROM podledger_rows")
            for statement in view_statements(self.table):
                con.execute(statement)
            if split_items is not None:
                table = f"{self.table}_split_line_items"
                con.register("podledger_items", split_items.to_arrow())
                con.execute(f"CREATE TABLE IF NOT EXISTS {table} AS SELECT * FROM podledger_items WHERE false")
                con.execute(f"DELETE FROM {table} WHERE cost_center = ? AND cluster = ? AND line_item_usage_start_date >= ? "
                            "AND line_item_usage_start_date < ?", [cost_center, cluster, start, end])
                con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM podledger_items")
            if reconciliation is not None:
                table = f"{self.table}_reconciliation"
                con.register("podledger_recon", reconciliation.select(list(RECONCILIATION_COLUMNS)).to_arrow())
                con.execute(f"CREATE TABLE IF NOT EXISTS {table} AS SELECT * FROM podledger_recon WHERE false")
                con.execute(f"DELETE FROM {table} WHERE cost_center = ? AND cluster = ? AND hour_start >= ? "
                            "AND hour_start < ?", [cost_center, cluster, start, end])
                con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM podledger_recon")
            loaded = pl.DataFrame(con.execute(READBACK_SQL.format(table=self.table, p="?"),
                                              [cost_center, cluster, start, end]).fetchall(),
                                  schema=["hour_start", "rows", "cost"], orient="row")
            check_loaded(loaded, rows, f"warehouse {self.path} table {self.table}, {cost_center}/{cluster}")
            refresh_rollups(lambda sql, params: con.execute(sql, params or None).fetchall(), self.table, False,
                            cost_center, cluster, start, end)
            con.execute("COMMIT")
        except Exception:
            con.execute("ROLLBACK")
            raise
        finally:
            con.close()
        log.info("warehouse %s table %s: replaced %s/%s [%s, %s) with %d rows", self.path, self.table, cost_center,
                 cluster, start, end, rows.height)
        return rows.height

    def query(self, sql: str, params: list[Any] | None = None, *, read_only: bool = False) -> pl.DataFrame:
        """Run a read query and return a polars frame (``read_only``: never blocks a load for long, waits for one)."""
        con = self.connect(read_only=read_only, wait_seconds=10.0 if read_only else 120.0)
        try:
            frame: pl.DataFrame = con.sql(sql, params=params or None).pl()
        finally:
            con.close()
        # DuckDB reports TIMESTAMPTZ as Etc/UTC; podledger frames use UTC.
        return frame.with_columns(pl.col(n).dt.convert_time_zone("UTC") for n, t in frame.schema.items()
                                  if isinstance(t, pl.Datetime) and t.time_zone)


COPY_BATCH_ROWS = 500_000


def copy_binary(cur: psycopg.Cursor[Any], table: str, frame: pl.DataFrame) -> None:
    """COPY ``frame`` into ``table`` in PostgreSQL's binary format, encoded from Arrow by pgpq (no text parsing on
    either side); batches bound memory. Every value round-trips exactly: NULL is NULL, any text is itself, floats
    keep all their bits. (PostgreSQL text cannot hold NUL.)"""
    import pgpq

    columns = ", ".join(frame.columns)
    # An all-null column without a type (e.g. read back from another warehouse) is text NULLs.
    frame = frame.with_columns(pl.col(c).cast(pl.String) for c, t in frame.schema.items() if t == pl.Null)
    arrow = frame.to_arrow(compat_level=pl.CompatLevel.oldest())  # large_string, which pgpq encodes
    encoder = pgpq.ArrowToPostgresBinaryEncoder(arrow.schema)
    with cur.copy(f"COPY {table} ({columns}) FROM STDIN (FORMAT binary)") as copy:
        copy.write(encoder.write_header())
        for batch in arrow.to_batches(max_chunksize=COPY_BATCH_ROWS):
            copy.write(encoder.write_batch(batch))
        copy.write(encoder.finish())


class PostgresLoader:
    """Load into PostgreSQL with binary COPY from Arrow (pgpq, psycopg 3), slice replaced in one transaction.

    The whole transaction (DDL, DELETE, COPY, read-back) holds a transaction-scoped advisory lock on the table:
    loads of the same or overlapping slices serialise and never duplicate; the lock goes with the COMMIT.
    """

    def __init__(self, dsn: str, table: str = "k8s_cost_allocation") -> None:
        if not table.replace(".", "_").isidentifier():
            raise PodledgerError(f"warehouse table name {table!r} is not a valid identifier")
        self.dsn = dsn
        self.table = table

    def load(self, rows: pl.DataFrame, *, cost_center: str, cluster: str, start: dt.datetime, end: dt.datetime,
             split_items: pl.DataFrame | None = None, reconciliation: pl.DataFrame | None = None) -> int:
        """Replace the rows of (cost_center, cluster, [start, end)) with ``rows``; return rows inserted."""
        import psycopg

        check_slices(rows, split_items, reconciliation, cost_center=cost_center, cluster=cluster, start=start, end=end)
        with psycopg.connect(self.dsn) as con:  # one transaction: commit on success, rollback on error
            with con.cursor() as cur:
                cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [self.table])
                cur.execute(ddl(self.table, _POSTGRES_TYPES))
                for statement in add_missing_columns(self.table, _POSTGRES_TYPES):
                    cur.execute(statement)
                cur.execute(f"CREATE INDEX IF NOT EXISTS {self.table.replace('.', '_')}_slice ON {self.table} "
                            "(cost_center, cluster, hour_start)")
                for statement in view_statements(self.table):
                    cur.execute(statement)
                # No commit before the COPY: it would release the lock and let a concurrent load interleave.
                cur.execute(f"DELETE FROM {self.table} WHERE cost_center = %s AND cluster = %s AND hour_start >= %s "
                            "AND hour_start < %s", [cost_center, cluster, start, end])
                copy_binary(cur, self.table, rows.select(pl.col(n).cast(t) for n, t in OUTPUT_SCHEMA.items()))
                if split_items is not None:
                    self._load_items(cur, split_items, cost_center, cluster, start, end)
                if reconciliation is not None:
                    self._load_reconciliation(cur, reconciliation, cost_center, cluster, start, end)
                cur.execute(READBACK_SQL.format(table=self.table, p="%s"), [cost_center, cluster, start, end])
                loaded = pl.DataFrame(cur.fetchall(), schema=["hour_start", "rows", "cost"], orient="row")
                check_loaded(loaded, rows, f"warehouse postgres table {self.table}, {cost_center}/{cluster}")
                # Fresh statistics: without them the planner takes a freshly copied table for empty and joins the
                # rollups' per-hour sums by nested loops (minutes on millions of rows instead of seconds).
                cur.execute(f"ANALYZE {self.table}")
                refresh_rollups(lambda sql, params: _run(cur, sql, params), self.table, True, cost_center, cluster,
                                start, end)
        log.info("warehouse postgres table %s: replaced %s/%s [%s, %s) with %d rows", self.table, cost_center, cluster,
                 start, end, rows.height)
        return rows.height

    def _load_reconciliation(self, cur: psycopg.Cursor[Any], report: pl.DataFrame, cost_center: str, cluster: str,
                             start: dt.datetime, end: dt.datetime) -> None:
        table = f"{self.table}_reconciliation"
        columns = ", ".join(f"{n} {_POSTGRES_TYPES[t]}" for n, t in RECONCILIATION_COLUMNS.items())
        cur.execute(f"CREATE TABLE IF NOT EXISTS {table} ({columns})")
        cur.execute(f"DELETE FROM {table} WHERE cost_center = %s AND cluster = %s AND hour_start >= %s AND hour_start < %s",
                    [cost_center, cluster, start, end])
        copy_binary(cur, table, report.select(list(RECONCILIATION_COLUMNS)))

    def _load_items(self, cur: psycopg.Cursor[Any], items: pl.DataFrame, cost_center: str, cluster: str, start: dt.datetime,
                    end: dt.datetime) -> None:
        table = f"{self.table}_split_line_items"
        types = {name: "TIMESTAMPTZ" if isinstance(dtype, pl.Datetime) else "DOUBLE PRECISION" if dtype == pl.Float64
                 else "TEXT" for name, dtype in items.schema.items()}
        cur.execute(f"CREATE TABLE IF NOT EXISTS {table} ({', '.join(f'{n} {t}' for n, t in types.items())})")
        cur.execute(f"DELETE FROM {table} WHERE cost_center = %s AND cluster = %s AND line_item_usage_start_date >= %s "
                    "AND line_item_usage_start_date < %s", [cost_center, cluster, start, end])
        copy_binary(cur, table, items)

    def query(self, sql: str, params: list[Any] | None = None, *, read_only: bool = False) -> pl.DataFrame:
        """Run a read query and return a polars frame."""
        import psycopg

        with psycopg.connect(self.dsn) as con, con.cursor() as cur:
            cur.execute(sql, params or [])
            names = [d.name for d in cur.description or []]
            frame = pl.DataFrame(cur.fetchall(), schema=names, orient="row", infer_schema_length=None)
        return frame.with_columns(pl.col(n).dt.convert_time_zone("UTC") for n, t in frame.schema.items()
                                  if isinstance(t, pl.Datetime) and t.time_zone)


def _run(cur: psycopg.Cursor[Any], sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
    cur.execute(sql, params)
    return cur.fetchall() if cur.description else []


def postgres_dsn(conn: ConnectionInfo) -> str:
    """Return a libpq DSN for a connection (secrets stay in the connection, never in logs)."""
    from psycopg.conninfo import make_conninfo

    params = {"host": conn.host or "127.0.0.1", "port": conn.port or 5432, "dbname": conn.schema or "postgres",
              "user": conn.login or None, "password": conn.password or None,
              "sslmode": conn.extra.get("sslmode")}
    return make_conninfo("", **{k: v for k, v in params.items() if v is not None})


Warehouse = DuckDBLoader | PostgresLoader
"""A warehouse podledger loads into and reads back from (``table``, ``load``, ``query``)."""


def loader_for(warehouse: WarehouseConfig, connection: ConnectionInfo | None = None) -> Warehouse:
    """Return the loader of a warehouse config (PostgreSQL needs its connection)."""
    if warehouse.kind == "postgres":
        if connection is None:
            from podledger.connections import get_connection

            connection = get_connection(warehouse.conn_id)
        return PostgresLoader(postgres_dsn(connection), warehouse.table)
    return DuckDBLoader(warehouse.resolved_path(), warehouse.table)
