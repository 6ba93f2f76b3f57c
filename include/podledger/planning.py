"""Plan what a run covers: the hours of a trigger's params or data interval, within the cost center's dates."""

from __future__ import annotations

import datetime as dt
from typing import Any

from podledger.config import CostCenterConfig
from podledger.exceptions import NothingToDo
from podledger.layout import to_utc


def end_instant(cost_center: CostCenterConfig) -> dt.datetime | None:
    """The cost center's ``end_date`` as an exclusive instant: 00:00 UTC of that day (None: no end)."""
    day = cost_center.end_date
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC) if day else None


def plan_range(cost_center: CostCenterConfig, params: dict[str, Any], interval_start: dt.datetime | None,
               interval_end: dt.datetime | None) -> tuple[dt.datetime, dt.datetime]:
    """Return the [start, end) an export run covers: the params, else its data interval clipped to ``end_date``.

    Raises :class:`~podledger.exceptions.NothingToDo` naming the reason when nothing is left to export.
    """
    start = to_utc(params["start"]) if params.get("start") else interval_start
    end = to_utc(params["end"]) if params.get("end") else interval_end
    if start is None or end is None:
        raise NothingToDo(f"cost center {cost_center.name}: this run has no data interval; trigger it with start/end")
    last = end_instant(cost_center)
    if last is not None and not (params.get("start") and params.get("end")) and end > last:
        # end_date is exclusive: scheduled (and default-triggered) runs never cover hours at or after it.
        end = max(min(end, last), start)
    if end <= start:
        raise NothingToDo(f"cost center {cost_center.name}: nothing to export in {start:%Y-%m-%dT%H:%MZ} .. "
                          f"{end:%Y-%m-%dT%H:%MZ}" + (f" (end_date {last:%Y-%m-%d} is exclusive)" if last else ""))
    return start, end
