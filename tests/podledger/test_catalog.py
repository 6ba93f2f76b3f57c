"""PromQL rendering: windows, escaping, and the catalog's required metrics."""

from __future__ import annotations

from podledger.catalog import CATALOG_BY_NAME, REQUIRED_METRICS, render


def test_render_uses_half_open_window_and_escapes_cluster_value():
    query = render(CATALOG_BY_NAME["cpu_requests"].columns["request_core_seconds"], window_seconds=3600,
                   interval_seconds=30, cluster_label="cluster", cluster_value='we"ird\\name\n')
    assert '[3599999ms]' in query and query.endswith("* 30")
    assert 'cluster="we\\"ird\\\\name\\n"' in query


def test_counter_columns_take_the_delta_of_their_counter_selector():
    spec = CATALOG_BY_NAME["cpu_usage"]
    assert "{delta}" in spec.columns["usage_core_seconds"] and 'container!="POD"' in spec.counter
    assert all(("{delta}" in t) == bool(s.counter) for s in CATALOG_BY_NAME.values() for t in s.columns.values())


def test_required_metrics_are_what_the_money_needs_and_the_seed_exports():
    # Pod presence (kube_pod_status_phase, else kube_pod_info) and init-container requests may be absent: the
    # first is checked by its own rule (pod_presence_missing), the second is empty in clusters without init containers.
    assert set(REQUIRED_METRICS) == {"node_info", "node_capacity", "cpu_requests", "memory_requests", "cpu_usage",
                                     "memory_usage", "network_transmit", "network_receive"}


def test_cadvisor_usage_is_keyed_by_pod_incarnation():
    for name in ("cpu_usage", "memory_usage", "network_transmit", "network_receive"):
        spec = CATALOG_BY_NAME[name]
        assert "uid" in spec.keys, name
        assert all('label_replace(' in t and '"id"' in t for t in spec.columns.values()), name
