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


NOW = dt.datetime(2026, 11, 20, 14, 37, tzinfo=UTC)


@pytest.mark.parametrize(("name", "params", "events", "expected"), [
    ("params win", {"start": "2026-11-02T00:00Z", "end": "2026-11-02T05:30Z", "clusters": ["b"]},
     [{"start": "2026-11-05T00:00Z", "end": "2026-11-06T00:00Z", "clusters": ["a"]}],
     (DAY, DAY + dt.timedelta(hours=6), ["b"])),
    ("exported ranges of the events, their clusters", {},
     [{"start": "2026-11-02T01:00Z", "end": "2026-11-02T02:00Z", "clusters": ["a"]},
      {"start": "2026-11-02T00:00Z", "end": "2026-11-02T01:00Z", "clusters": ["c"]}],
     (DAY, DAY + dt.timedelta(hours=2), ["a", "c"])),
    ("a restated billing period: from the start date to the current hour", {}, [{"billing_periods": ["2026-11"]}],
     (dt.datetime(2026, 11, 1, tzinfo=UTC), dt.datetime(2026, 11, 20, 14, tzinfo=UTC), ["demo-eks"])),
    ("the data interval, rounded out to whole hours", {}, [], (DAY, DAY + dt.timedelta(hours=3), ["demo-eks"])),
])
def test_plan_enrichment(name, params, events, expected):
    from podledger.planning import plan_enrichment

    cc = make_cost_center("bucket", initial_backfill_date="2026-10-15")
    got = plan_enrichment(cc, params, events, DAY + dt.timedelta(minutes=10), DAY + dt.timedelta(hours=2, minutes=5),
                          NOW)
    assert got == expected, name


def test_enrichment_maps_over_cluster_days():
    from podledger.planning import enrichment_items

    items = enrichment_items(DAY + dt.timedelta(hours=20), DAY + dt.timedelta(days=2, hours=3), ["a", "b"])
    assert [(i["cluster"], i["start"][:13], i["end"][:13]) for i in items] == [
        ("a", "2026-11-02T20", "2026-11-03T00"), ("a", "2026-11-03T00", "2026-11-04T00"),
        ("a", "2026-11-04T00", "2026-11-04T03"), ("b", "2026-11-02T20", "2026-11-03T00"),
        ("b", "2026-11-03T00", "2026-11-04T00"), ("b", "2026-11-04T00", "2026-11-04T03")]


def test_nothing_to_enrich_is_named():
    from podledger.planning import plan_enrichment

    with pytest.raises(NothingToDo, match="no hours to enrich"):
        plan_enrichment(make_cost_center("bucket"), {}, [], None, None, NOW)


def test_export_items_carry_pool_and_discovered_label_through_xcom_json():
    """The export plan's items are plain JSON (XCom) and give back the cluster, its label value and the window."""
    import json

    from podledger.config import ClusterConfig
    from podledger.planning import export_items, item_cluster

    cc = make_cost_center("bucket", clusters=[{"name": "demo-eks", "prometheus_conn_id": "prometheus_test",
                                               "pool": "prom_a"}],
                          discovery={"prometheus_conn_id": "mimir", "pool": "mimir_pool"}, time_frame_seconds=3600)
    found = ClusterConfig(name="prod-1", prometheus_conn_id="mimir", cluster_label_value="prod/1")
    items = json.loads(json.dumps(export_items(cc, [*cc.clusters, found], DAY, DAY + dt.timedelta(hours=2))))
    assert [(i["cluster"], i["pool"], i["window"]["start"][11:16]) for i in items] == [
        ("demo-eks", "prom_a", "00:00"), ("demo-eks", "prom_a", "01:00"),
        ("prod-1", "mimir_pool", "00:00"), ("prod-1", "mimir_pool", "01:00")]
    cluster, window = item_cluster(cc, items[3])
    assert (cluster.name, cluster.cluster_label_value, cluster.prometheus_conn_id) == ("prod-1", "prod/1", "mimir")
    assert (window.start, window.end) == (DAY + dt.timedelta(hours=1), DAY + dt.timedelta(hours=2))
    configured, _ = item_cluster(cc, items[0])
    assert configured == cc.clusters[0]
    assert [i["cluster"] for i in export_items(cc, [*cc.clusters, found], DAY, DAY + dt.timedelta(hours=1),
                                               wanted=["prod-1"])] == ["prod-1"]
