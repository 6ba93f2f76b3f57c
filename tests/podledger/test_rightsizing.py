"""Rightsizing from usage percentiles with headroom, priced per workload."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from podledger.rightsizing import recommendations

START = dt.datetime(2026, 11, 2, tzinfo=dt.UTC)


def test_overprovisioned_workload_gets_smaller_requests_and_a_saving():
    hours = 20
    rows = pl.DataFrame({
        "hour_start": [START + dt.timedelta(hours=h) for h in range(hours) for _ in range(2)],
        "cost_center": "cc", "cluster": "c", "namespace": "payments", "controller_kind": "Deployment",
        "controller_name": "api", "running_hours": 1.0,
        "cpu_request_core_hours": 2.0, "cpu_usage_core_hours": [0.5 + 0.01 * h for h in range(hours) for _ in range(2)],
        "memory_request_gib_hours": 4.0, "memory_usage_gib_hours": 1.0,
        "cpu_allocated_core_hours": 2.0, "memory_allocated_gib_hours": 4.0,
        "cpu_cost": 2 * 0.04, "memory_cost": 4 * 0.005,
    })
    rec = recommendations(rows).row(0, named=True)
    assert rec["cpu_request_cores"] == 2.0 and rec["avg_pods"] == 2.0
    p95 = pl.Series([0.5 + 0.01 * h for h in range(hours)]).quantile(0.95)
    assert rec["cpu_recommended_cores"] == pytest.approx(p95 * 1.2)
    assert rec["memory_recommended_gib"] == pytest.approx(1.3)
    expected = ((2.0 - p95 * 1.2) * 0.04 + (4.0 - 1.3) * 0.005) * 2 * 730
    assert rec["monthly_saving"] == pytest.approx(expected)
