"""Retention: delete exported windows older than ``retention_days``, strictly under the prefix and the layout.

A window is old when it started before the cutoff **and** none of its objects was written after the cutoff:
history exported today (a backfill, or a run triggered with an old start) is kept ``retention_days`` from its
export, like an S3 lifecycle rule, so the enrichment that follows still finds it.
"""

from __future__ import annotations

import datetime as dt
import logging
import re

from podledger.storage import ObjectStore

log = logging.getLogger(__name__)

# Only objects podledger wrote: <prefix>/<cluster>/end=YYYYMMDD/day=D/(metric=NAME|_manifests)/<epoch>_<name>.<ext>
LAYOUT_RE = re.compile(r"^[^/]+/end=\d{8}/day=\d{1,2}/(metric=[^/]+|_manifests)/(?P<epoch>\d{9,11})_[^/]+$")


def expired_keys(keys: list[str] | dict[str, dt.datetime], prefix: str, cutoff: dt.datetime,
                 clusters: set[str] | None = None) -> list[str]:
    """Return the keys under ``prefix`` that follow the layout and whose window started before ``cutoff``.

    ``keys`` with their last-write times (a dict): a window any of whose objects was written at or after ``cutoff``
    is kept whole. With ``clusters``, only the folders of those clusters (a cost center's own) are considered.
    """
    written = keys if isinstance(keys, dict) else {}
    head = f"{prefix.strip('/')}/" if prefix.strip("/") else ""
    windows: dict[tuple[str, str], list[str]] = {}
    for key in keys:
        if not key.startswith(head):
            continue
        rest = key[len(head):]
        if clusters is not None and rest.split("/", 1)[0] not in clusters:
            continue
        match = LAYOUT_RE.match(rest)
        if match and int(match.group("epoch")) < cutoff.timestamp():
            windows.setdefault((rest.split("/", 1)[0], match.group("epoch")), []).append(key)
    expired = [key for members in windows.values()
               if all(written[k] < cutoff for k in members if k in written) for key in members]
    # Manifests first: a window being deleted is never seen as complete with missing files.
    return sorted(expired, key=lambda k: ("/_manifests/" not in k, k))


def apply_retention(store: ObjectStore, prefix: str, retention_days: int, now: dt.datetime,
                    clusters: set[str] | None = None) -> list[str]:
    """Delete expired exported windows (of ``clusters`` only, when given: a cost center's own); return their keys."""
    if retention_days < 1:
        raise ValueError("retention_days must be at least 1")
    cutoff = now - dt.timedelta(days=retention_days)
    head = f"{prefix.strip('/')}/" if prefix.strip("/") else ""
    listed = store.modified(head)
    keys = expired_keys(listed, prefix, cutoff, clusters)
    kept = len({k for k in expired_keys(list(listed), prefix, cutoff, clusters)} - set(keys))
    for start in range(0, len(keys), 1000):  # S3 DeleteObjects takes at most 1000 keys
        store.delete(keys[start:start + 1000])
    log.info("retention under %s://%s/%s: deleted %d objects of windows before %s%s", store.scheme, store.bucket, head,
             len(keys), cutoff.isoformat(),
             f" ({kept} objects of older windows kept: exported again since {cutoff:%Y-%m-%d})" if kept else "")
    return keys
