"""Retention: delete exported objects older than ``retention_days``, strictly under the prefix and the layout."""

from __future__ import annotations

import datetime as dt
import logging
import re

from podledger.storage import ObjectStore

log = logging.getLogger(__name__)

# Only objects podledger wrote: <prefix>/<cluster>/end=YYYYMMDD/day=D/(metric=NAME|_manifests)/<epoch>_<name>.<ext>
LAYOUT_RE = re.compile(r"^[^/]+/end=\d{8}/day=\d{1,2}/(metric=[^/]+|_manifests)/(?P<epoch>\d{9,11})_[^/]+$")


def expired_keys(keys: list[str], prefix: str, cutoff: dt.datetime, clusters: set[str] | None = None) -> list[str]:
    """Return the keys under ``prefix`` that follow the layout and whose window started before ``cutoff``.

    With ``clusters``, only the folders of those clusters (a cost center's own) are considered.
    """
    head = f"{prefix.strip('/')}/" if prefix.strip("/") else ""
    expired = []
    for key in keys:
        if not key.startswith(head):
            continue
        rest = key[len(head):]
        if clusters is not None and rest.split("/", 1)[0] not in clusters:
            continue
        match = LAYOUT_RE.match(rest)
        if match and int(match.group("epoch")) < cutoff.timestamp():
            expired.append(key)
    # Manifests first: a window being deleted is never seen as complete with missing files.
    return sorted(expired, key=lambda k: ("/_manifests/" not in k, k))


def apply_retention(store: ObjectStore, prefix: str, retention_days: int, now: dt.datetime,
                    clusters: set[str] | None = None) -> list[str]:
    """Delete expired exported objects (of ``clusters`` only, when given: a cost center's own); return their keys."""
    if retention_days < 1:
        raise ValueError("retention_days must be at least 1")
    cutoff = now - dt.timedelta(days=retention_days)
    head = f"{prefix.strip('/')}/" if prefix.strip("/") else ""
    keys = expired_keys(store.list(head), prefix, cutoff, clusters)
    for start in range(0, len(keys), 1000):  # S3 DeleteObjects takes at most 1000 keys
        store.delete(keys[start:start + 1000])
    log.info("retention under %s://%s/%s: deleted %d objects of windows before %s", store.scheme, store.bucket, head,
             len(keys), cutoff.isoformat())
    return keys
