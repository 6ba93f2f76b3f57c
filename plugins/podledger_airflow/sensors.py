"""Sensors: exported windows complete (manifests) and billing data delivered (CUR 2.0 coverage)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from airflow.providers.amazon.aws.triggers.s3 import S3KeyTrigger
from airflow.sdk import BaseSensorOperator
from airflow.sdk.exceptions import AirflowSensorTimeout

from podledger.planning import ExportItem
from podledger_airflow.stores import S3HookStore


def _describe(items: Sequence[ExportItem]) -> str:
    shown = [f"{i['cluster']}@{i['window']['start'][:16]}Z" for i in items[:10]]
    return ", ".join(shown) + (f" and {len(items) - 10} more" if len(items) > 10 else "")


class ExportManifestSensor(BaseSensorOperator):
    """Wait until every expected cluster-window has its manifest; on timeout, name the missing ones.

    Reschedule mode (the default) frees the worker slot between pokes; ``deferrable=True`` hands the
    wait to the Amazon provider's ``S3KeyTrigger`` in the triggerer.
    """

    template_fields: Sequence[str] = ("items",)

    def __init__(self, *, bucket_name: str, prefix: str, items: Any, aws_conn_id: str = "aws_default",
                 deferrable: bool = False, **kwargs: Any) -> None:
        kwargs.setdefault("mode", "reschedule")
        super().__init__(**kwargs)
        self.bucket_name = bucket_name
        self.prefix = prefix
        self.items = items
        self.aws_conn_id = aws_conn_id
        self.deferrable = deferrable

    def _missing(self) -> list[ExportItem]:
        from podledger.layout import Window, manifest_key

        store = S3HookStore(self.bucket_name, self.aws_conn_id)
        return [i for i in self.items
                if not store.exists(manifest_key(self.prefix, i["cluster"], Window.from_dict(i["window"])))]

    def _keys(self, items: Sequence[ExportItem]) -> list[str]:
        from podledger.layout import Window, manifest_key

        return [manifest_key(self.prefix, i["cluster"], Window.from_dict(i["window"])) for i in items]

    def poke(self, context: Any) -> bool:
        missing = self._missing()
        self.log.info("s3://%s/%s: %d of %d cluster-windows complete; waiting for %s", self.bucket_name, self.prefix,
                      len(self.items) - len(missing), len(self.items), _describe(missing) or "none")
        return not missing

    def _timeout(self, error: Exception) -> AirflowSensorTimeout:
        missing = self._missing()
        return AirflowSensorTimeout(
            f"timed out after {self.timeout:.0f}s waiting for {len(missing)} of {len(self.items)} cluster-windows "
            f"under s3://{self.bucket_name}/{self.prefix}: {_describe(missing)}. Fix: check the export tasks of these "
            "windows (a manifest is written only when every metric of the window was exported) and re-run them")

    def execute(self, context: Any) -> Any:
        if self.deferrable and not self.poke(context):
            self.defer(trigger=S3KeyTrigger(bucket_name=self.bucket_name, bucket_key=self._keys(self._missing()),
                                            aws_conn_id=self.aws_conn_id, poke_interval=self.poke_interval),
                       method_name="execute_complete", timeout=dt.timedelta(seconds=self.timeout))
        try:
            return super().execute(context) if not self.deferrable else None
        except AirflowSensorTimeout as error:
            raise self._timeout(error) from error

    def execute_complete(self, context: Any, event: dict[str, Any] | None = None) -> None:
        """Resume after the trigger fired: every manifest must be there now."""
        missing = self._missing()
        if missing:
            raise AirflowSensorTimeout(f"trigger finished but cluster-windows are still missing: {_describe(missing)}")

    def resume_execution(self, next_method: str, next_kwargs: dict[str, Any] | None, context: Any) -> Any:
        try:
            return super().resume_execution(next_method, next_kwargs, context)
        except AirflowSensorTimeout as error:
            raise self._timeout(error) from error


class CurCoverageSensor(BaseSensorOperator):
    """Wait until the CUR 2.0 delivery covers every hour of a range (billing data lags a day or more).

    Deferrable by default: the Amazon provider's ``S3KeyTrigger`` waits for the billing period's manifest,
    then the standard ``TimeDeltaTrigger`` spaces the coverage re-checks, so no worker slot is held.
    """

    template_fields: Sequence[str] = ("hour_range",)

    def __init__(self, *, billing_uri: str, hour_range: Any, aws_conn_id: str = "aws_default",
                 deferrable: bool = True, **kwargs: Any) -> None:
        kwargs.setdefault("mode", "reschedule")
        super().__init__(**kwargs)
        self.billing_uri = billing_uri
        self.hour_range = hour_range
        self.aws_conn_id = aws_conn_id
        self.deferrable = deferrable

    def _status(self) -> tuple[bool, str, str | None]:
        """Return (covered, explanation, manifest key still missing)."""
        from podledger.billing import billing_periods
        from podledger.billing_watch import coverage_end
        from podledger.layout import to_utc
        from podledger.storage import split_uri

        _, bucket, prefix = split_uri(self.billing_uri)
        store = S3HookStore(bucket, self.aws_conn_id)
        start, end = to_utc(self.hour_range["start"]), to_utc(self.hour_range["end"])
        for period in billing_periods(start, end):
            manifests = [k for k in store.list(f"{prefix}/metadata/BILLING_PERIOD={period}/") if k.endswith("Manifest.json")]
            if not manifests:
                return False, f"no CUR delivery yet for billing period {period} under {self.billing_uri}", \
                    f"{prefix}/metadata/BILLING_PERIOD={period}/"
            covered_to = coverage_end(store, prefix, period)
            period_end = (to_utc(f"{period}-01") + dt.timedelta(days=32)).replace(day=1)
            needed = min(end, period_end)
            if covered_to is None or covered_to < needed:
                return False, (f"billing period {period} is covered up to {covered_to:%Y-%m-%dT%H:%M}Z, "
                               f"enrichment needs {needed:%Y-%m-%dT%H:%M}Z") if covered_to else \
                    f"billing period {period} has a manifest but no data yet", None
        return True, f"CUR covers {start:%Y-%m-%dT%H}Z..{end:%Y-%m-%dT%H}Z", None

    def poke(self, context: Any) -> bool:
        covered, why, _ = self._status()
        self.log.info("%s", why)
        return covered

    def execute(self, context: Any) -> Any:
        if not self.deferrable:
            return super().execute(context)
        self._defer_if_needed()
        return None

    def _defer_if_needed(self) -> None:
        from airflow.providers.standard.triggers.temporal import TimeDeltaTrigger

        from podledger.storage import split_uri

        covered, why, missing_prefix = self._status()
        self.log.info("%s", why)
        if covered:
            return
        trigger: S3KeyTrigger | TimeDeltaTrigger
        if missing_prefix:
            _, bucket, _ = split_uri(self.billing_uri)
            trigger = S3KeyTrigger(bucket_name=bucket, bucket_key=f"{missing_prefix}*Manifest.json", wildcard_match=True,
                                   aws_conn_id=self.aws_conn_id, poke_interval=self.poke_interval)
        else:
            trigger = TimeDeltaTrigger(dt.timedelta(seconds=self.poke_interval))
        self.defer(trigger=trigger, method_name="execute_complete", timeout=dt.timedelta(seconds=self.timeout))

    def execute_complete(self, context: Any, event: Any = None) -> None:
        """Re-check after a trigger fired; defer again until every hour is covered."""
        self._defer_if_needed()
