"""An enrichment's outputs as files: the allocation rows, the AWS-shaped split line items and the per-hour
reconciliation side by side (``<name>.parquet``, ``<name>.split_line_items.parquet``,
``<name>.reconciliation.parquet``). The DAG's tasks and the CLI write and read them through here."""

from __future__ import annotations

import datetime as dt
import io
from concurrent.futures import ThreadPoolExecutor
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Literal

import polars as pl

from podledger.allocation import OUTPUT_SCHEMA
from podledger.warehouse import reconciliation_rows

if TYPE_CHECKING:
    from podledger.enrich import EnrichResult
    from podledger.storage import ObjectStore

Output = Literal["rows", "split_line_items", "reconciliation"]
OUTPUTS: tuple[Output, ...] = ("rows", "split_line_items", "reconciliation")


def companion(path: str, output: Output) -> str:
    """Where ``output`` of the allocation file ``path`` (a local path or an object key) lives."""
    if output == "rows":
        return path
    return f"{PurePosixPath(path).with_suffix('')}.{output}.parquet"


def allocation_key(prefix: str, cluster: str, start: dt.datetime, end: dt.datetime) -> str:
    """The object key of a cluster's allocation rows for [start, end), beside its exported metrics."""
    return f"{prefix}/{cluster}/_allocations/{start:%Y%m%dT%H}_{end:%Y%m%dT%H}.parquet".lstrip("/")


def output_frames(result: EnrichResult, cost_center: str) -> dict[Output, pl.DataFrame]:
    """An enrichment's three outputs in the shapes the warehouse loads."""
    return {"rows": result.rows.select(list(OUTPUT_SCHEMA)), "split_line_items": result.split_line_items,
            "reconciliation": reconciliation_rows(result.reconciliation, cost_center)}


def put_outputs(store: ObjectStore, key: str, result: EnrichResult, cost_center: str) -> None:
    """Write an enrichment's outputs under ``key`` and its companions, side by side (Parquet encoding releases
    the GIL and a put waits on the network: the three take about as long as the largest)."""

    def put(output: Output, frame: pl.DataFrame) -> None:
        buffer = io.BytesIO()
        frame.write_parquet(buffer)
        store.put(companion(key, output), buffer.getvalue())

    with ThreadPoolExecutor(max_workers=len(OUTPUTS)) as pool:
        for done in [pool.submit(put, output, frame) for output, frame in output_frames(result, cost_center).items()]:
            done.result()  # a failed write fails the task, naming its error


def get_outputs(store: ObjectStore, key: str) -> dict[Output, pl.DataFrame]:
    """Read back what :func:`put_outputs` wrote under ``key``."""
    return {output: pl.read_parquet(io.BytesIO(store.get(companion(key, output)))) for output in OUTPUTS}
