"""Counter increases per window against a real Prometheus: births, resets, and windows that add up exactly."""

from __future__ import annotations

import datetime as dt

import pytest

from podledger.catalog import CATALOG_BY_NAME, counter_delta, pod_matcher, render
from podledger.config import ClusterConfig
from podledger.connections import ConnectionInfo
from podledger.export import query_metric
from podledger.layout import plan_windows
from podledger.promclient import client_from_connection
from podledger_lab.stack import load_blocks, start_prometheus

T0 = int(dt.datetime(2026, 11, 2, tzinfo=dt.UTC).timestamp())
WINDOWS = plan_windows(dt.datetime.fromtimestamp(T0, dt.UTC), dt.datetime.fromtimestamp(T0 + 3 * 3600, dt.UTC), 3600)

# pod -> samples (seconds after T0, counter value). Expected increase per window: the sum of the positive steps,
# a reset's step counted as the value itself (the counter restarted from 0), the first sample counted in full.
COUNTERS = {
    "steady": [(t, 0.5 * t) for t in range(0, 3 * 3600 + 1, 60)],
    "born-late": [(t, 2.0 + 0.25 * (t - 1830)) for t in range(1830, 3 * 3600 + 1, 60)],  # first sample is 2.0
    "reset-mid": [(t, 0.1 * t if t <= 5400 else 0.1 * (t - 5400)) for t in range(60, 3 * 3600 + 1, 60)],
    # the counter restarts between the last sample of window 1 (3600) and the first of window 2 (3660)
    "reset-edge": [(t, 0.2 * t if t <= 3600 else 0.3 * (t - 3600)) for t in range(60, 3 * 3600 + 1, 60)],
    "two.dots": [(t, float(t)) for t in range(60, 2 * 3600 + 1, 60)],  # ends with window 2; regex-special name
    # Scrapes missed for longer than the 5-minute lookback (a kubelet that did not answer): across the gap the
    # counter kept counting, so the increase is the difference, not the value after the gap.
    "gap-edge": [(t, 0.4 * t) for t in range(60, 3 * 3600 + 1, 60) if not 3300 < t < 3960],
    "reset-gap": [(t, 0.1 * t if t <= 5400 else 0.1 * (t - 5400)) for t in range(60, 3 * 3600 + 1, 60)
                  if not 6000 < t < 6660],
}


def _expected(samples: list[tuple[int, float]]) -> dict[int, float]:
    per_window: dict[int, float] = {}
    previous = 0.0
    for t, value in samples:
        step = value - previous if value >= previous else value
        start = T0 + ((t - 1) // 3600) * 3600
        per_window[start] = per_window.get(start, 0.0) + step
        previous = value
    return per_window


@pytest.fixture(scope="module")
def counters(tmp_path_factory):
    work = tmp_path_factory.mktemp("counters")
    lines = ["# TYPE container_cpu_usage_seconds_total counter\n"]
    for pod, samples in COUNTERS.items():
        labels = (f'container="app",cpu="total",id="/kubepods/{pod}",image="app:1",job="kubelet",'
                  f'name="{pod}",namespace="ns",pod="{pod}"')
        lines += [f"container_cpu_usage_seconds_total{{{labels}}} {v} {T0 + t}\n" for t, v in samples]
    lines.append("# EOF\n")
    source = work / "counters.om"
    source.write_text("".join(lines))
    load_blocks(source, work / "tsdb")
    server = start_prometheus(work / "tsdb", work)
    yield client_from_connection(ConnectionInfo("counters", host="127.0.0.1", port=server.port))
    server.stop()


def test_exported_increases_are_exact_per_window_and_add_up(counters, caplog):
    spec = CATALOG_BY_NAME["cpu_usage"]
    got: dict[tuple[str, int], float] = {}
    with caplog.at_level("INFO", logger="podledger.export"):
        for window in WINDOWS:
            table = query_metric(counters, spec, ClusterConfig(name="c"), window, cluster_label=None, timeout=30).table
            for pod, value in zip(table["pod"].to_pylist(), table["usage_core_seconds"].to_pylist(), strict=True):
                got[(pod, int(window.start.timestamp()))] = value
    starts = {int(w.start.timestamp()) for w in WINDOWS}
    expected = {(pod, start): value for pod, samples in COUNTERS.items()
                for start, value in _expected(samples).items() if start in starts}
    assert set(got) == set(expected)
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-12, abs=1e-9), key
    # Only the windows that see a reset (in them or in the window before) paid for the exact subquery.
    flagged = [r.getMessage() for r in caplog.records if "counter resets" in r.getMessage()]
    assert ["3 pod(s)" in flagged[0], "2 pod(s)" in flagged[1], len(flagged)] == [True, True, 2], flagged


def test_the_fast_form_is_a_plain_difference_of_last_values():
    fast = render(counter_delta("x{{a=\"1\"{sel}}}", resets=False), window_seconds=3600, interval_seconds=60,
                  matchers=(pod_matcher(["web-1.x", "db"], negate=True),))
    assert fast == ('(last_over_time(x{a="1",pod!~"^(?:db|web-1\\\\.x)$"}[3599999ms]) - last_over_time('
                    'x{a="1",pod!~"^(?:db|web-1\\\\.x)$"}[3599999ms] offset 3600s) or '
                    'last_over_time(x{a="1",pod!~"^(?:db|web-1\\\\.x)$"}[3599999ms]))')
    exact = render(counter_delta("x{{{sel}}}", resets=True), window_seconds=1800, interval_seconds=60)
    assert exact == "sum_over_time(((x{} - last_over_time(x{}[1799999ms] offset 60s)) >= 0 or x{} * 1)[1799999ms:60s])"
