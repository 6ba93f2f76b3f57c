"""Watching the bill's deliveries: which hours a delivered billing period covers, and which periods were delivered
for the first time or restated (their manifest's execution id changed)."""

from __future__ import annotations

import datetime as dt
import json
import logging

import polars as pl

from podledger.billing import USAGE_START
from podledger.deliveries import data_exports_delivery, read_bill_file
from podledger.exceptions import BillingDataError
from podledger.storage import ObjectStore

log = logging.getLogger(__name__)


def manifest_fingerprint(store: ObjectStore, export_prefix: str, period: str) -> str | None:
    """Return the execution id of a billing period's manifest (changes when AWS restates the period)."""
    prefix = f"{export_prefix.strip('/')}/metadata/BILLING_PERIOD={period}/"
    keys = [k for k in store.list(prefix) if k.endswith("Manifest.json")]
    if not keys:
        return None
    manifest = json.loads(store.get(keys[0]))
    return str(manifest.get("executionId") or manifest.get("assemblyId") or "")


def coverage_end(store: ObjectStore, export_prefix: str, period: str) -> dt.datetime | None:
    """Return the end of the last hour the current delivery of ``period`` covers (None when not delivered yet)."""
    try:
        delivery = data_exports_delivery(store, export_prefix, period, kind="billing", manifest_required=False)
    except BillingDataError as exc:
        log.info("billing period %s not (completely) delivered yet: %s", period, exc)
        return None
    latest: dt.datetime | None = None
    for key in delivery.keys:
        # Only the usage-start column is read: the check stays cheap on multi-GB monthly files.
        frame = read_bill_file(store, key, columns=[USAGE_START, "ChargePeriodStart"])
        column_name = USAGE_START if USAGE_START in frame.columns else "ChargePeriodStart"
        if column_name not in frame.columns:
            continue
        column = frame[column_name]
        if column.dtype == pl.String:
            column = column.str.replace(" ", "T").str.to_datetime(time_zone="UTC", strict=False)
        value = column.max()
        if isinstance(value, dt.datetime):
            value = value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)
            latest = max(latest, value) if latest else value
    return latest + dt.timedelta(hours=1) if latest else None


def detect_updates(store: ObjectStore, export_prefix: str, periods: list[str], state_store: ObjectStore,
                   state_prefix: str) -> list[dict[str, object]]:
    """Compare each period's manifest execution id with the last one seen; record and return what changed.

    A changed id for a period already seen is a restatement (AWS re-delivers past months when credits,
    refunds or finalisation land): every hour of that period must be enriched again.
    """
    updates = []
    for period in periods:
        execution_id = manifest_fingerprint(store, export_prefix, period)
        if execution_id is None:
            continue
        key = f"{state_prefix.strip('/')}/_billing_state/BILLING_PERIOD={period}.json".lstrip("/")
        previous = json.loads(state_store.get(key))["execution_id"] if state_store.exists(key) else None
        if previous == execution_id:
            continue
        state_store.put(key, json.dumps({"billing_period": period, "execution_id": execution_id}).encode())
        updates.append({"billing_period": period, "execution_id": execution_id, "previous_execution_id": previous,
                        "restated": previous is not None})
        log.info("billing period %s: %s (execution %s, was %s)", period, "restated" if previous else "delivered",
                 execution_id, previous)
    return updates
