"""The exported-metrics key layout (the seed exporter's), windows, and manifests' keys.

``<prefix>/<cluster>/end=<YYYYMMDD>/day=<D>/metric=<name>/<window_start_epoch>_<name>.<ext>``
where ``end`` is the first day of the month after the window (the billing period's end) and ``D`` the
day of month without padding. A window's manifest lives beside its metrics under ``_manifests/``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TypedDict

UTC = dt.UTC
MANIFEST_DIR = "_manifests"
EXTENSIONS = {"parquet": "parquet", "json.gz": "json.gz"}


class WindowDict(TypedDict):
    """A window as JSON (manifests, XCom items): ISO 8601 instants."""

    start: str
    end: str


@dataclass(frozen=True, order=True)
class Window:
    """A half-open export window [start, end) in UTC."""

    start: dt.datetime
    end: dt.datetime

    @property
    def seconds(self) -> int:
        return int((self.end - self.start).total_seconds())

    @property
    def start_epoch(self) -> int:
        return int(self.start.timestamp())

    def __str__(self) -> str:
        return f"{self.start:%Y-%m-%dT%H:%M}Z/{self.end:%Y-%m-%dT%H:%M}Z"

    def to_dict(self) -> WindowDict:
        return {"start": self.start.isoformat(), "end": self.end.isoformat()}

    @classmethod
    def from_dict(cls, value: WindowDict) -> Window:
        return cls(to_utc(value["start"]), to_utc(value["end"]))


def to_utc(value: str | dt.datetime | dt.date) -> dt.datetime:
    """Parse an ISO date/datetime (naive means UTC) into an aware UTC datetime."""
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    elif isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        value = dt.datetime(value.year, value.month, value.day)
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def plan_windows(start: dt.datetime, end: dt.datetime, time_frame_seconds: int) -> list[Window]:
    """Return the aligned windows whose end falls in (start, end]: each interval exports exactly its windows."""
    start, end = to_utc(start), to_utc(end)
    step = dt.timedelta(seconds=time_frame_seconds)
    epoch = int(start.timestamp())
    first_end = dt.datetime.fromtimestamp(epoch - epoch % time_frame_seconds, UTC) + step
    windows = []
    window_end = first_end
    while window_end <= end:
        if window_end > start:
            windows.append(Window(window_end - step, window_end))
        window_end += step
    return windows


def billing_period_end(moment: dt.datetime) -> dt.date:
    """Return the first day of the month after ``moment`` (the CUR billing period's exclusive end)."""
    if moment.month == 12:
        return dt.date(moment.year + 1, 1, 1)
    return dt.date(moment.year, moment.month + 1, 1)


def day_prefix(prefix: str, cluster: str, start: dt.datetime) -> str:
    """Return ``<prefix>/<cluster>/end=YYYYMMDD/day=D`` for the window starting at ``start``."""
    start = to_utc(start)
    head = f"{prefix.strip('/')}/" if prefix.strip("/") else ""
    return f"{head}{cluster}/end={billing_period_end(start):%Y%m%d}/day={start.day}"


def metric_key(prefix: str, cluster: str, window: Window, metric: str, fmt: str = "parquet") -> str:
    """Return the object key of one metric's file for one cluster-window."""
    ext = EXTENSIONS[fmt]
    return f"{day_prefix(prefix, cluster, window.start)}/metric={metric}/{window.start_epoch}_{metric}.{ext}"


def manifest_key(prefix: str, cluster: str, window: Window) -> str:
    """Return the object key of a cluster-window's manifest (written last: the window's completion mark)."""
    return f"{day_prefix(prefix, cluster, window.start)}/{MANIFEST_DIR}/{window.start_epoch}_manifest.json"
