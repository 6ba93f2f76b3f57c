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


def test_a_manifest_is_read_and_written_in_one_place():
    import json

    import pytest

    from podledger.manifests import Manifest

    document = {"schema_version": 1, "cost_center": "cc", "cluster": "prod", "scrape_interval_seconds": 30,
                "window": {"start": "2026-11-02T00:00:00+00:00", "end": "2026-11-02T01:00:00+00:00"},
                "metrics": {"cpu_usage": {"key": "k1", "rows": 3}, "node_info": {"key": "k2", "rows": 2}},
                "imported": {"warnings": ["w"]}, "written_by_a_newer_podledger": {"kept": True}}
    manifest = Manifest.parse(json.dumps(document).encode())
    assert (manifest.cluster, manifest.cost_center, manifest.rows, manifest.scrape_interval_seconds) == ("prod", "cc", 5, 30)
    assert manifest.window.start.isoformat() == "2026-11-02T00:00:00+00:00" and manifest.window.seconds == 3600
    assert manifest.imported["warnings"] == ["w"] and manifest.probes == {}
    assert json.loads(manifest.to_json()) == document  # nothing dropped, whatever wrote it
    assert manifest["metrics"]["cpu_usage"]["rows"] == 3  # it reads as the JSON document it is
    for data, reason in ((b"{", "not a JSON manifest"), (b"\xff", "not a JSON manifest"),
                         (b"[]", "no metrics"), (b'{"metrics": []}', "no metrics")):
        with pytest.raises(ValueError, match=reason):
            Manifest.parse(data)
