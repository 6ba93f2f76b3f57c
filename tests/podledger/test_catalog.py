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


def test_required_metrics_cover_the_architecture_list():
    assert {"node_info", "node_capacity", "cpu_requests", "memory_requests", "init_cpu_requests", "init_memory_requests",
            "cpu_usage", "memory_usage", "network_transmit", "network_receive", "pod_running"} <= set(REQUIRED_METRICS)
