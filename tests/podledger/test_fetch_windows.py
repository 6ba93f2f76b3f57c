"""A day's exported windows are fetched file by file, many requests in flight (object stores answer after a round
trip, so a day's ~500 small GETs are latency): the same bytes as window by window, and a missing manifest or file
is still named, the first in the day's order."""

from __future__ import annotations

import datetime as dt
import io
import json
import threading
from collections.abc import Callable

import polars as pl
import pytest

from podledger.exceptions import ExportIncompleteError
from podledger.layout import Window, manifest_key, metric_key
from podledger.storage import FETCH_THREADS, FsspecStore
from podledger.windows import fetch_window, fetch_windows

DAY = dt.datetime(2026, 11, 2, tzinfo=dt.UTC)
WINDOWS = [Window(DAY + dt.timedelta(hours=h), DAY + dt.timedelta(hours=h + 1)) for h in range(24)]
METRICS = ("pod_running", "cpu_usage", "memory_usage")


def _export(store: FsspecStore) -> None:
    for h, window in enumerate(WINDOWS):
        entries = {}
        for m, name in enumerate(METRICS):
            key = metric_key("", "demo", window, name)
            frame = pl.DataFrame({"pod": [f"web-{i}" for i in range(h + m + 1)], "value": [float(h)] * (h + m + 1)})
            buffer = io.BytesIO()
            frame.write_parquet(buffer)
            store.put(key, buffer.getvalue())
            entries[name] = {"key": key, "rows": frame.height, "required": True}
        store.put(manifest_key("", "demo", window), json.dumps({
            "schema_version": 1, "cost_center": "t", "cluster": "demo", "window": window.to_dict(),
            "format": "parquet", "metrics": entries}).encode())


@pytest.fixture
def store(tmp_path) -> FsspecStore:
    store = FsspecStore("file", str(tmp_path))
    _export(store)
    return store


def test_the_day_fetched_file_by_file_is_what_window_by_window_gives(store):
    together = fetch_windows(store, "", "demo", WINDOWS)
    assert [w.window for w in together] == WINDOWS
    for fetched, window in zip(together, WINDOWS, strict=True):
        alone = fetch_window(store, "", "demo", window)
        assert list(fetched.files) == list(alone.files) == list(METRICS)
        assert {n: (f.key, f.data, f.rows) for n, f in fetched.files.items()} == \
               {n: (f.key, f.data, f.rows) for n, f in alone.files.items()}


class _Gate:
    """Holds every GET until ``want`` are in flight at once (or a second passes): the most seen tells how many
    requests the reader keeps in flight, without timing anything."""

    def __init__(self, get: Callable[[str], bytes], want: int) -> None:
        self.real_get, self.want, self.in_flight, self.most = get, want, 0, 0
        self.lock = threading.Condition()

    def get(self, key: str) -> bytes:
        with self.lock:
            self.in_flight += 1
            self.most = max(self.most, self.in_flight)
            self.lock.notify_all()
            self.lock.wait_for(lambda: self.in_flight >= self.want, timeout=1.0)
        try:
            return self.real_get(key)
        finally:
            with self.lock:
                self.in_flight -= 1


def test_many_requests_are_in_flight_not_one_window_at_a_time(store, monkeypatch):
    gate = _Gate(store.get, FETCH_THREADS)
    monkeypatch.setattr(store, "get", gate.get)
    fetched = fetch_windows(store, "", "demo", WINDOWS)
    assert sum(len(w.files) for w in fetched) == 24 * len(METRICS)
    assert gate.most == FETCH_THREADS  # (window by window, 4 at a time, it was 4)


def test_a_missing_file_is_named_the_first_in_the_days_order(store):
    store.delete([metric_key("", "demo", WINDOWS[9], "memory_usage"), metric_key("", "demo", WINDOWS[5], "cpu_usage")])
    with pytest.raises(ExportIncompleteError) as error:
        fetch_windows(store, "", "demo", WINDOWS)
    assert metric_key("", "demo", WINDOWS[5], "cpu_usage") in str(error.value)
    assert "(metric cpu_usage, listed by the manifest) is missing" in str(error.value)


def test_a_missing_manifest_is_named_as_not_exported(store):
    store.delete([manifest_key("", "demo", WINDOWS[3])])
    with pytest.raises(ExportIncompleteError, match="no manifest at .*the window was not exported") as error:
        fetch_windows(store, "", "demo", WINDOWS)
    assert manifest_key("", "demo", WINDOWS[3]) in str(error.value)


def test_an_unreadable_manifest_is_named_as_damaged(store, monkeypatch):
    key = manifest_key("", "demo", WINDOWS[2])
    real_get = store.get

    def get(wanted: str) -> bytes:
        if wanted == key:
            raise PermissionError("AccessDenied")  # there, but this caller may not read it
        return real_get(wanted)

    monkeypatch.setattr(store, "get", get)
    with pytest.raises(ExportIncompleteError, match=r"cannot be read \(PermissionError: AccessDenied\)") as error:
        fetch_windows(store, "", "demo", WINDOWS)
    assert key in str(error.value) and "damaged" in str(error.value)


def test_one_windows_files_are_fetched_side_by_side_too(store, monkeypatch):
    # validation reads one window at a time: its files are requested together, not one after another
    gate = _Gate(store.get, len(METRICS))
    monkeypatch.setattr(store, "get", gate.get)
    fetched = fetch_window(store, "", "demo", WINDOWS[7])
    assert list(fetched.files) == list(METRICS) and gate.most == len(METRICS)


def test_a_day_of_half_hour_windows_is_fetched_in_one_call_and_each_hours_halves_add_up(tmp_path, monkeypatch):
    from podledger import enrich

    store = FsspecStore("file", str(tmp_path))
    hours = [DAY, DAY + dt.timedelta(hours=1)]
    halves = [Window(h + dt.timedelta(minutes=m), h + dt.timedelta(minutes=m + 30)) for h in hours for m in (0, 30)]
    for i, window in enumerate(halves):
        frame = pl.DataFrame({"namespace": ["shop", "shop"], "pod": ["a", "b"], "uid": ["ua", "ub"],
                              "running_seconds": [1800.0, 60.0 * (i + 1)], "present_seconds": [1800.0, 1800.0]})
        buffer = io.BytesIO()
        frame.write_parquet(buffer)
        key = metric_key("", "demo", window, "pod_running")
        store.put(key, buffer.getvalue())
        store.put(manifest_key("", "demo", window), json.dumps({
            "schema_version": 1, "cost_center": "t", "cluster": "demo", "window": window.to_dict(),
            "format": "parquet", "metrics": {"pod_running": {"key": key, "rows": 2, "required": True}}}).encode())
    calls = []
    real = enrich.fetch_windows
    monkeypatch.setattr(enrich, "fetch_windows", lambda *a, **k: calls.append(len(a[3])) or real(*a, **k))
    frames = enrich._read_day(store, "", "demo", hours, 1800)
    assert calls == [4]  # the day's four windows in one call (one pool, its requests in flight together)
    got = frames["pod_running"].sort("hour_start", "pod")
    assert got["running_seconds"].to_list() == [3600.0, 60.0 + 120.0, 3600.0, 180.0 + 240.0]
    assert got["hour_start"].to_list() == [hours[0], hours[0], hours[1], hours[1]]
