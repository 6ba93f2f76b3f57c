"""Read an exported cluster-window back: its manifest and every metric file it lists (Parquet or json.gz).

Used by validation, enrichment and rightsizing. A missing or damaged object is an error naming it and the fix.
"""

from __future__ import annotations

import datetime as dt
import io
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import IO

import polars as pl
import pyarrow.parquet as pq

from podledger.billing import entries_of_maps
from podledger.exceptions import ExportIncompleteError
from podledger.hours import HOUR, stack_hours
from podledger.layout import Window, manifest_key
from podledger.manifests import Manifest
from podledger.metric_files import read_json_answer
from podledger.storage import FETCH_THREADS, ObjectStore


def _damaged(store: ObjectStore, key: str, cluster: str, window: Window, what: str) -> ExportIncompleteError:
    return ExportIncompleteError(
        f"cluster {cluster}, window {window}: {store.scheme}://{store.bucket}/{key} {what}; the exported window is "
        "damaged: re-export it with force (podledger export --force, or trigger the export DAG with force=true)")


def read_manifest(store: ObjectStore, prefix: str, cluster: str, window: Window) -> Manifest:
    """Read a cluster-window's manifest; a missing or damaged one is an error naming it and the fix."""
    key = manifest_key(prefix, cluster, window)
    try:
        data = store.get(key)  # one request; whether it is missing is asked only when the read fails
    except Exception as exc:  # noqa: BLE001 - missing (404, or 403 without s3:ListBucket) or unreadable
        if not store.exists(key):
            raise ExportIncompleteError(
                f"cluster {cluster}, window {window}: no manifest at {store.scheme}://{store.bucket}/{key}; "
                "the window was not exported (or is being re-exported): run the export for it first") from None
        raise _damaged(store, key, cluster, window,
                       f"cannot be read ({type(exc).__name__}: {str(exc)[:160]})") from None
    try:
        return Manifest.parse(data)
    except ValueError as exc:
        raise _damaged(store, key, cluster, window, f"is {exc}") from None


def read_window_frames(store: ObjectStore, prefix: str, cluster: str, window: Window,
                       manifest: Manifest | None = None) -> dict[str, pl.DataFrame]:
    """Read every metric file of a completed cluster-window, as listed by its manifest (read here if not given).

    A file the manifest lists that is missing or unreadable is an error naming the object and the fix.
    """
    return decode_window(fetch_window(store, prefix, cluster, window, manifest))


@dataclass
class FetchedFile:
    """One metric file of a window as fetched: its key, its bytes and the row count its manifest gives."""

    key: str
    data: bytes
    rows: int | None


@dataclass
class FetchedWindow:
    """A cluster-window's manifest-listed metric files, fetched but not decoded (so many can be decoded at once)."""

    store: ObjectStore
    cluster: str
    window: Window
    files: dict[str, FetchedFile]

    def damaged(self, key: str, what: str) -> ExportIncompleteError:
        return _damaged(self.store, key, self.cluster, self.window, what)


def fetch_window(store: ObjectStore, prefix: str, cluster: str, window: Window,
                 manifest: Manifest | None = None) -> FetchedWindow:
    """Fetch every metric file a cluster-window's manifest lists; a missing one is an error naming it and the fix."""
    return fetch_windows(store, prefix, cluster, [window], manifests=None if manifest is None else [manifest])[0]


def fetch_windows(store: ObjectStore, prefix: str, cluster: str, windows: list[Window],
                  threads: int = FETCH_THREADS, manifests: list[Manifest] | None = None) -> list[FetchedWindow]:
    """Fetch several cluster-windows (a day's 24): their manifests (read here unless given), then every file they
    list, ``threads`` requests at a time. An object store answers each request after a round trip (S3: tens of
    milliseconds to the first byte), so a day's ~500 requests are latency, not bandwidth: they are spread over many
    connections, file by file, not window by window. A missing or unreadable object is an error naming it (the
    first in window order)."""
    with ThreadPoolExecutor(max_workers=threads) as pool:
        if manifests is None:
            manifests = list(pool.map(lambda window: read_manifest(store, prefix, cluster, window), windows))
        wanted = [(index, name, entry) for index, manifest in enumerate(manifests)
                  for name, entry in manifest.metrics.items()]
        files = list(pool.map(lambda item: _fetch_file(store, prefix, cluster, windows[item[0]], *item[1:]), wanted))
    fetched = [FetchedWindow(store, cluster, window, {}) for window in windows]
    for (index, name, _), file in zip(wanted, files, strict=True):
        fetched[index].files[name] = file
    return fetched


def _fetch_file(store: ObjectStore, prefix: str, cluster: str, window: Window, name: str,
                entry: object) -> FetchedFile:
    """One file a manifest lists, with the row count it gives; a missing or unreadable one names the object."""
    key = entry.get("key") if isinstance(entry, dict) else None
    if not key:
        raise _damaged(store, manifest_key(prefix, cluster, window), cluster, window,
                       f"lists metric {name} without its file")
    try:
        data = store.get(key)
    except FileNotFoundError:
        raise _damaged(store, key, cluster, window, f"(metric {name}, listed by the manifest) is missing") from None
    except Exception as exc:  # noqa: BLE001 - any store failure names the object
        raise _damaged(store, key, cluster, window,
                       f"(metric {name}) cannot be read ({type(exc).__name__}: {str(exc)[:160]})") from None
    rows = entry.get("rows") if isinstance(entry, dict) else None
    return FetchedFile(key, data, rows if isinstance(rows, int) else None)


def decode_file(fetched: FetchedWindow, name: str) -> pl.DataFrame:
    """Decode one fetched metric file, checked against its manifest's row count (errors name the object)."""
    file = fetched.files[name]
    try:
        if file.key.endswith(".parquet"):
            frame = entries_of_maps(pl.read_parquet(io.BytesIO(file.data)))
        else:
            frame = read_json_answer(file.data)
    except Exception as exc:  # noqa: BLE001 - any reader failure names the object
        raise fetched.damaged(file.key, f"(metric {name}) cannot be read ({type(exc).__name__}: {str(exc)[:160]})"
                              ) from None
    if file.rows is not None and file.rows != frame.height:
        raise fetched.damaged(file.key, f"(metric {name}) holds {frame.height} rows where the manifest says {file.rows}")
    return frame


def decode_window(fetched: FetchedWindow) -> dict[str, pl.DataFrame]:
    """Decode every fetched metric file of a window."""
    return {name: decode_file(fetched, name) for name in fetched.files}


def decode_stacked(hours: list[tuple[dt.datetime, FetchedWindow]], drop: tuple[str, ...] = ()
                   ) -> dict[str, pl.DataFrame]:
    """Several hours' windows (one window an hour) decoded into one frame per metric with an ``hour_start`` column,
    without the columns ``drop`` names: what :func:`podledger.hours.stack_hours` gives from the hours' frames.

    The Parquet files of a metric are decoded by one multi-file scan (in polars' threads; the dropped columns are
    never decoded; the metrics' scans collected together), after each file's row count in its footer is checked
    against its manifest. A metric whose files
    do not scan together (json.gz, a schema that changed between hours, a count that differs, a damaged file) is
    decoded file by file, which names the object at fault.
    """
    utc = pl.Datetime("us", "UTC")
    names = dict.fromkeys(name for _, fetched in hours for name in fetched.files)
    parts = {name: [(hour, fetched) for hour, fetched in hours if name in fetched.files] for name in names}
    counts = {name: _parquet_rows([fetched.files[name] for _, fetched in parts[name]]) for name in names}
    scans = {name: pl.scan_parquet(_sources([fetched.files[name] for _, fetched in parts[name]]))
             .drop(*drop, strict=False) for name in names if sum(counts[name] or [0]) > 0}
    scanned = _collect_each(scans)
    stacked: dict[str, pl.DataFrame] = {}
    for name in names:
        frame, rows = scanned.get(name), counts[name]
        if frame is not None and rows is not None and frame.height == sum(rows):
            hour_column = pl.Series(HOUR, [hour for (hour, _), n in zip(parts[name], rows, strict=True) if n],
                                    dtype=utc).repeat_by(pl.Series([n for n in rows if n], dtype=pl.UInt32))
            stacked[name] = entries_of_maps(frame).with_columns(hour_column.explode())
            continue
        decoded = [(hour, {name: decode_file(fetched, name).drop(*drop, strict=False)}) for hour, fetched in parts[name]]
        stacked[name] = stack_hours(decoded)[name]
    return stacked


def _sources(files: list[FetchedFile]) -> list[IO[bytes]]:
    return [io.BytesIO(f.data) for f in files]


def _collect_each(scans: dict[str, pl.LazyFrame]) -> dict[str, pl.DataFrame]:
    """Every scan collected, all at once (polars runs them side by side: a metric's files alone leave cores idle);
    when that fails, one by one, leaving out those that fail (decoded file by file by the caller, naming the
    object at fault)."""
    try:
        return dict(zip(scans, pl.collect_all(scans.values()), strict=True))
    except Exception:  # noqa: BLE001 - one of them failed: find which, below
        pass
    collected = {}
    for name, scan in scans.items():
        try:
            collected[name] = scan.collect()
        except Exception:  # noqa: BLE001 - decoded file by file by the caller, which names the object at fault
            continue
    return collected


def _parquet_rows(files: list[FetchedFile]) -> list[int] | None:
    """Each Parquet file's row count from its footer when every one agrees with its manifest; None otherwise."""
    if not all(f.key.endswith(".parquet") and f.rows is not None for f in files):
        return None
    try:
        counts = [pq.read_metadata(io.BytesIO(f.data)).num_rows for f in files]
    except Exception:  # noqa: BLE001 - a damaged footer: the file-by-file decode names it
        return None
    return counts if counts == [f.rows for f in files] else None
