"""The export range a run covers: params win, the data interval is clipped to the exclusive end_date."""

from __future__ import annotations

import datetime as dt

import pytest

from helpers import make_cost_center
from podledger.exceptions import NothingToDo
from podledger.planning import plan_range

UTC = dt.UTC
DAY = dt.datetime(2026, 11, 2, tzinfo=UTC)
END = dt.datetime(2026, 11, 3, tzinfo=UTC)


@pytest.fixture
def cc():
    return make_cost_center("bucket", end_date="2026-11-03")


@pytest.mark.parametrize(("name", "params", "interval", "expected"), [
    ("data interval", {}, (DAY, DAY + dt.timedelta(hours=6)), (DAY, DAY + dt.timedelta(hours=6))),
    ("straddles end_date: clipped", {}, (END - dt.timedelta(hours=3), END + dt.timedelta(hours=3)),
     (END - dt.timedelta(hours=3), END)),
    ("params win over the interval", {"start": "2026-11-03T00:00Z", "end": "2026-11-03T06:00Z"},
     (DAY, DAY + dt.timedelta(hours=6)), (END, END + dt.timedelta(hours=6))),
    ("only start given", {"start": "2026-11-02T03:00Z"}, (DAY, DAY + dt.timedelta(hours=6)),
     (DAY + dt.timedelta(hours=3), DAY + dt.timedelta(hours=6))),
])
def test_plan_range(cc, name, params, interval, expected):
    assert plan_range(cc, params, *interval) == expected, name


@pytest.mark.parametrize(("params", "interval", "reason"), [
    ({}, (END, END + dt.timedelta(hours=6)), "end_date 2026-11-03 is exclusive"),
    ({}, (END + dt.timedelta(days=20), END + dt.timedelta(days=20, hours=6)), "nothing to export"),
    ({}, (None, None), "no data interval"),
])
def test_nothing_to_do_names_the_reason(cc, params, interval, reason):
    with pytest.raises(NothingToDo, match=reason):
        plan_range(cc, params, *interval)
