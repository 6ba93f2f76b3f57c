"""The seed exporter's key layout and window planning."""

from __future__ import annotations

import datetime as dt

from podledger.layout import Window, billing_period_end, manifest_key, metric_key, plan_windows

UTC = dt.UTC


def test_metric_key_layout():
    window = Window(dt.datetime(2026, 12, 31, 23, tzinfo=UTC), dt.datetime(2027, 1, 1, tzinfo=UTC))
    assert metric_key("k8s/prometheus", "prod", window, "cpu_usage") == \
        f"k8s/prometheus/prod/end=20270101/day=31/metric=cpu_usage/{int(window.start.timestamp())}_cpu_usage.parquet"
    assert metric_key("", "prod", window, "cpu_usage", "json.gz").startswith("prod/end=20270101/day=31/")
    assert manifest_key("p", "prod", window).endswith(f"/day=31/_manifests/{int(window.start.timestamp())}_manifest.json")


def test_billing_period_end_rolls_over_the_year():
    assert billing_period_end(dt.datetime(2026, 12, 5, tzinfo=UTC)) == dt.date(2027, 1, 1)
    assert billing_period_end(dt.datetime(2026, 2, 28, 23, tzinfo=UTC)) == dt.date(2026, 3, 1)


def test_plan_windows_exports_windows_ending_in_the_interval():
    start = dt.datetime(2026, 11, 2, 0, 30, tzinfo=UTC)
    assert plan_windows(start, start + dt.timedelta(minutes=30), 3600) == [
        Window(dt.datetime(2026, 11, 2, 0, tzinfo=UTC), dt.datetime(2026, 11, 2, 1, tzinfo=UTC))]
    assert plan_windows(dt.datetime(2026, 11, 2, 0, tzinfo=UTC), dt.datetime(2026, 11, 2, 0, 30, tzinfo=UTC), 3600) == []
    day = plan_windows(dt.datetime(2026, 11, 2, tzinfo=UTC), dt.datetime(2026, 11, 3, tzinfo=UTC), 3600)
    assert len(day) == 24 and day[0].start.hour == 0 and day[-1].end == dt.datetime(2026, 11, 3, tzinfo=UTC)
