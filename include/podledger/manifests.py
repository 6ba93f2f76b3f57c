"""A window's manifest and who may write the window: the manifest's common head (export and import alike), the
cost center owning a window, and files at podledger's keys that podledger did not write."""

from __future__ import annotations

import json
import time
from typing import Any

from podledger import __version__
from podledger.config import ClusterConfig, CostCenterConfig
from podledger.exceptions import ExportIncompleteError
from podledger.layout import EXTENSIONS, Window, day_prefix, metric_key
from podledger.metric_files import written_by_podledger
from podledger.storage import ObjectStore

MANIFEST_SCHEMA_VERSION = 1


def manifest_head(cost_center: CostCenterConfig, cluster: ClusterConfig, window: Window, *, exporter: str,
                  started: float) -> dict[str, Any]:
    """The fields every window manifest starts with (export and import alike), versioned by ``schema_version``."""
    return {
        "schema_version": MANIFEST_SCHEMA_VERSION,
        "cost_center": cost_center.name,
        "cluster": cluster.name,
        "window": window.to_dict(),
        "format": cost_center.storage.format,
        "scrape_interval_seconds": cluster.scrape_interval_seconds,
        "exporter": {"name": exporter, "version": __version__},
        "export_seconds": round(time.perf_counter() - started, 3),
    }


def check_owner(store: ObjectStore, key: str, cost_center: str) -> None:
    """Refuse to overwrite a window another cost center exported (two cost centers sharing a folder)."""
    try:
        owner = json.loads(store.get(key)).get("cost_center")
    except (ValueError, AttributeError):
        return  # an unreadable manifest marks nothing complete: the window is re-exported
    if owner and owner != cost_center:
        raise ExportIncompleteError(
            f"{store.scheme}://{store.bucket}/{key} belongs to cost center {owner!r}, not {cost_center!r}: two cost "
            "centers write the same cluster folder; give each its own storage.uri prefix")


def refuse_foreign_files(store: ObjectStore, prefix: str, cluster: str, window: Window, names: list[str]) -> None:
    """Refuse to overwrite files podledger did not write (the seed exporter's, at identical keys) in a new window."""
    targets = {metric_key(prefix, cluster, window, name, fmt) for name in names for fmt in EXTENSIONS}
    present = [k for k in store.list(day_prefix(prefix, cluster, window.start) + "/") if k in targets]
    foreign = [k for k in present if not written_by_podledger(k, store.get(k))]
    if foreign:
        raise ExportIncompleteError(
            f"cluster {cluster}, window {window}: {len(foreign)} file(s) at podledger's keys were not written by podledger "
            f"(e.g. the seed exporter's), first {store.scheme}://{store.bucket}/{foreign[0]}: refusing to overwrite them. "
            "Move them elsewhere to keep them, or pass adopt (podledger export --adopt) to replace them with "
            "podledger's export")
