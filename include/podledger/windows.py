"""Read an exported cluster-window back: its manifest and every metric file it lists (Parquet or json.gz).

Used by validation, enrichment and rightsizing. A missing or damaged object is an error naming it and the fix.
"""

from __future__ import annotations

import io

import polars as pl

from podledger.billing import entries_of_maps
from podledger.exceptions import ExportIncompleteError
from podledger.layout import Window, manifest_key
from podledger.manifests import Manifest
from podledger.metric_files import read_json_answer
from podledger.storage import ObjectStore


def read_metric_file(store: ObjectStore, key: str) -> pl.DataFrame:
    """Read one exported metric file (Parquet or json.gz)."""
    data = store.get(key)
    if key.endswith(".parquet"):
        return entries_of_maps(pl.read_parquet(io.BytesIO(data)))
    return read_json_answer(data)


def _damaged(store: ObjectStore, key: str, cluster: str, window: Window, what: str) -> ExportIncompleteError:
    return ExportIncompleteError(
        f"cluster {cluster}, window {window}: {store.scheme}://{store.bucket}/{key} {what}; the exported window is "
        "damaged: re-export it with force (podledger export --force, or trigger the export DAG with force=true)")


def read_manifest(store: ObjectStore, prefix: str, cluster: str, window: Window) -> Manifest:
    """Read a cluster-window's manifest; a missing or damaged one is an error naming it and the fix."""
    key = manifest_key(prefix, cluster, window)
    if not store.exists(key):
        raise ExportIncompleteError(
            f"cluster {cluster}, window {window}: no manifest at {store.scheme}://{store.bucket}/{key}; "
            "the window was not exported (or is being re-exported): run the export for it first")
    try:
        return Manifest.parse(store.get(key))
    except ValueError as exc:
        raise _damaged(store, key, cluster, window, f"is {exc}") from None


def read_window_frames(store: ObjectStore, prefix: str, cluster: str, window: Window,
                       manifest: Manifest | None = None) -> dict[str, pl.DataFrame]:
    """Read every metric file of a completed cluster-window, as listed by its manifest (read here if not given).

    A file the manifest lists that is missing or unreadable is an error naming the object and the fix.
    """
    if manifest is None:
        manifest = read_manifest(store, prefix, cluster, window)
    frames = {}
    for name, entry in manifest.metrics.items():
        key = entry.get("key") if isinstance(entry, dict) else None
        if not key:
            raise _damaged(store, manifest_key(prefix, cluster, window), cluster, window,
                           f"lists metric {name} without its file")
        try:
            frames[name] = read_metric_file(store, key)
        except FileNotFoundError:
            raise _damaged(store, key, cluster, window, f"(metric {name}, listed by the manifest) is missing") from None
        except Exception as exc:  # noqa: BLE001 - any reader failure names the object
            raise _damaged(store, key, cluster, window,
                           f"(metric {name}) cannot be read ({type(exc).__name__}: {str(exc)[:160]})") from None
        rows = entry.get("rows")
        if isinstance(rows, int) and rows != frames[name].height:
            raise _damaged(store, key, cluster, window,
                           f"(metric {name}) holds {frames[name].height} rows where the manifest says {rows}")
    return frames
