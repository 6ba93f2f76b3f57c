"""Average requests from exported request-seconds: one request per container, whatever its node label did."""

from __future__ import annotations

import polars as pl
import pytest

from podledger.usage import container_requests, pod_effective_requests

KEY = {"namespace": "shop", "pod": "web-0", "uid": "u1"}


def _requests(rows: list[dict]) -> pl.DataFrame:
    return pl.DataFrame([{**KEY, "container": "app", **row} for row in rows])


@pytest.mark.parametrize(("name", "frames", "expected_cores"), [
    # Pending for 2 minutes (node=""), then scheduled: two series of the same container, one request.
    ("node label changed", {
        "cpu_requests": _requests([{"node": "", "request_core_seconds": 0.5 * 120},
                                   {"node": "n1", "request_core_seconds": 0.5 * 3480}]),
        "pod_running": pl.DataFrame([{**KEY, "running_seconds": 3480.0, "present_seconds": 3600.0}])}, 0.5),
    # Present 20 minutes of the hour (created at :40): the request is not diluted by the absent time.
    ("created mid-hour", {
        "cpu_requests": _requests([{"node": "n1", "request_core_seconds": 2.0 * 1200}]),
        "pod_running": pl.DataFrame([{**KEY, "running_seconds": 1200.0, "present_seconds": 1200.0}])}, 2.0),
    # podledger 0.1 files: present_seconds on every requests row.
    ("0.1 layout", {
        "cpu_requests": _requests([{"node": "", "request_core_seconds": 0.25 * 60, "present_seconds": 60.0},
                                   {"node": "n1", "request_core_seconds": 0.25 * 3540, "present_seconds": 3540.0}]),
        "pod_running": pl.DataFrame([{**KEY, "running_seconds": 3540.0}])}, 0.25),
])
def test_one_request_per_container(name, frames, expected_cores):
    requests = container_requests(frames)
    assert requests.height == 1, name
    assert requests["node"][0] == "n1"
    pods = pod_effective_requests(requests)
    assert pods["cpu_request_cores"][0] == pytest.approx(expected_cores, rel=1e-12), name
