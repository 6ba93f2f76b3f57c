"""Retention: delete exported objects older than ``retention_days``, strictly under the prefix and the layout."""

from __future__ import annotations

import datetime as dt
import logging
import re

from podledger.storage import ObjectStore

log = logging.getLogger(__name__)

# Only objects podledger wrote: <prefix>/<cluster>/end=YYYYMMDD/day=D/(metric=NAME|_manifests)/<epoch>_<name>.<ext>
LAYOUT_RE = re.compile(r"^[^/]+/end=\d{8}/day=\d{1,2}/(metric=[^/]+|_manifests)/(?P<epoch>\d{9,11})_[^/]+$")


def expired_keys(keys: list[str], prefix: str, cutoff: dt.datetime) -> list[str]:
    """Return the keys under ``prefix`` that follow the layout and whose window started before ``cutoff``."""
    head = f"{prefix.strip('/')}/" if prefix.strip("/") else ""
    expired = []
    for key in keys:
        if not key.startswith(head):
            continue
        match = LAYOUT_RE.match(key[len(head):])
        if match and int(match.group("epoch")) < cutoff.timestamp():
            expired.append(key)
    # Manifests first: a window being deleted is never seen as complete with missing files.
    return sorted(expired, key=lambda k: ("/_manifests/" not in k, k))


def apply_retention(store: ObjectStore, prefix: str, retention_days: int, now: dt.datetime) -> list[str]:
    """Delete expired exported objects; return the deleted keys."""
    if retention_days < 1:
        raise ValueError("retention_days must be at least 1")
    cutoff = now - dt.timedelta(days=retention_days)
    head = f"{prefix.strip('/')}/" if prefix.strip("/") else ""
    keys = expired_keys(store.list(head), prefix, cutoff)
    for start in range(0, len(keys), 1000):  # S3 DeleteObjects takes at most 1000 keys
        store.delete(keys[start:start + 1000])
    log.info("retention under %s://%s/%s: deleted %d objects of windows before %s", store.scheme, store.bucket, head,
             len(keys), cutoff.isoformat())
    return keys
