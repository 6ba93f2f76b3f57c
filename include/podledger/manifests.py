"""A window's manifest and who may write the window: the :class:`Manifest` type (the one place a manifest is
parsed and serialised), its common head (export and import alike), the cost center owning a window, and files at
podledger's keys that podledger did not write."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, NotRequired, TypedDict

from podledger import __version__
from podledger.config import ClusterConfig, CostCenterConfig
from podledger.exceptions import ExportIncompleteError
from podledger.layout import EXTENSIONS, Window, day_prefix, metric_key
from podledger.metric_files import written_by_podledger
from podledger.storage import ObjectStore

MANIFEST_SCHEMA_VERSION = 1


class MetricEntry(TypedDict):
    """One metric file of a window, as its manifest lists it (export and import write the same shape)."""

    key: str
    rows: int
    series: NotRequired[int]
    required: NotRequired[bool]
    query_seconds: NotRequired[float]
    bytes_received: NotRequired[int]
    wire_bytes: NotRequired[int]
    prometheus_samples: NotRequired[int]
    prometheus_exec_seconds: NotRequired[float]
    splits: NotRequired[int]
    imported_from: NotRequired[list[str]]


@dataclass(frozen=True)
class Manifest(Mapping[str, Any]):
    """A cluster-window's manifest: written last by export and import (the window is complete only with it), read by
    validation, enrichment and the CLI.

    The fields podledger reads are attributes; the document stays whole (it reads as the JSON mapping it is), so
    fields written by a newer or older podledger survive a read and a report.
    """

    document: dict[str, Any]

    @classmethod
    def build(cls, head: dict[str, Any], *, metrics: dict[str, MetricEntry], **rest: Any) -> Manifest:
        """A new manifest: :func:`manifest_head`'s fields, the metric files, and the rest (raw, probes, imported…)."""
        return cls({**head, "metrics": metrics, **rest})

    @classmethod
    def parse(cls, data: bytes) -> Manifest:
        """Read a manifest's bytes; ``ValueError`` names what is wrong when they are not a podledger manifest."""
        try:
            document = json.loads(data)
        except UnicodeDecodeError as exc:
            raise ValueError(f"not a JSON manifest ({exc})") from None
        except ValueError as exc:
            raise ValueError(f"not a JSON manifest ({exc})") from None
        if not isinstance(document, dict) or not isinstance(document.get("metrics"), dict):
            raise ValueError("not a podledger manifest (no metrics)")  # noqa: TRY004 - bad content, like the above
        return cls(document)

    def to_json(self) -> bytes:
        return json.dumps(self.document, indent=1, sort_keys=True).encode()

    def __getitem__(self, name: str) -> Any:
        return self.document[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.document)

    def __len__(self) -> int:
        return len(self.document)

    @property
    def cluster(self) -> str:
        return str(self.document["cluster"])

    @property
    def cost_center(self) -> str | None:
        return self.document.get("cost_center")

    @property
    def window(self) -> Window:
        return Window.from_dict(self.document["window"])

    @property
    def metrics(self) -> dict[str, MetricEntry]:
        metrics: dict[str, MetricEntry] = self.document["metrics"]
        return metrics

    @property
    def probes(self) -> dict[str, Any]:
        return self.document.get("probes") or {}

    @property
    def imported(self) -> dict[str, Any]:
        """What an import from raw history recorded (``sources``, ``warnings``); empty for an export."""
        return self.document.get("imported") or {}

    @property
    def scrape_interval_seconds(self) -> int | None:
        return self.document.get("scrape_interval_seconds")

    def rows_of(self, name: str) -> int:
        """The rows of metric ``name``'s file (0 when the window has none)."""
        entry = self.metrics.get(name)
        return int(entry.get("rows", 0)) if entry else 0

    @property
    def rows(self) -> int:
        """The rows of every metric file."""
        return sum(int(entry.get("rows", 0)) for entry in self.metrics.values())


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
        owner = Manifest.parse(store.get(key)).cost_center
    except ValueError:
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
