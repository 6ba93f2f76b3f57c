"""A day's exported windows decoded in one scan per metric: the same frames as hour by hour, and a file that is not
what its manifest says is named, even when another hour's file makes the day's total come out right."""

from __future__ import annotations

import datetime as dt
import io

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from polars.testing import assert_frame_equal

from podledger.exceptions import ExportIncompleteError
from podledger.hours import stack_hours
from podledger.layout import Window
from podledger.windows import FetchedFile, FetchedWindow, decode_stacked, decode_window

HOURS = [dt.datetime(2026, 11, 2, h, tzinfo=dt.UTC) for h in range(3)]


class _Bucket:
    scheme, bucket = "s3", "metrics"


def _parquet(frame: pl.DataFrame | pa.Table) -> bytes:
    buffer = io.BytesIO()
    if isinstance(frame, pa.Table):
        pq.write_table(frame, buffer)
    else:
        frame.write_parquet(buffer)
    return buffer.getvalue()


def _pods(hour: int, n: int) -> pl.DataFrame:
    return pl.DataFrame({"namespace": ["shop"] * n, "pod": [f"web-{i}" for i in range(n)],
                         "uid": [f"u{hour}-{i}" for i in range(n)], "running_seconds": [3600.0 - hour] * n,
                         "cluster": ["demo"] * n})


def _labels(n: int) -> pa.Table:
    """Labels as the exporter writes them: a Parquet map."""
    return pa.table({"namespace": [f"ns{i}" for i in range(n)], "cluster": ["demo"] * n,
                     "labels": pa.array([[("label_app", f"web-{i}")] for i in range(n)], pa.map_(pa.string(), pa.string()))})


def _window(i: int, frames: dict[str, pl.DataFrame | pa.Table], rows: dict[str, int] | None = None) -> FetchedWindow:
    files = {name: FetchedFile(f"k8s/demo/metric={name}/{i}.parquet", _parquet(frame),
                               (rows or {}).get(name, len(frame))) for name, frame in frames.items()}
    return FetchedWindow(_Bucket(), "demo", Window(HOURS[i], HOURS[i] + dt.timedelta(hours=1)), files)


def _hour_by_hour(hours: list[tuple[dt.datetime, FetchedWindow]]) -> dict[str, pl.DataFrame]:
    return stack_hours([(hour, {name: frame.drop("cluster", strict=False) for name, frame in decode_window(w).items()})
                        for hour, w in hours])


def test_one_scan_per_metric_gives_the_hour_by_hour_frames():
    # three hours of pods (the middle one empty: a file of no rows), a metric only some hours have, and one whose
    # schema changed between hours (an extra column: decoded file by file)
    hours = [(HOURS[0], _window(0, {"pod_running": _pods(0, 3), "namespace_labels": _labels(1),
                                    "pod_owner": _pods(0, 2)})),
             (HOURS[1], _window(1, {"pod_running": _pods(1, 0), "pod_owner": _pods(1, 2).with_columns(
                 pl.lit("x").alias("owner_kind"))})),
             (HOURS[2], _window(2, {"pod_running": _pods(2, 4), "namespace_labels": _labels(2),
                                    "pod_owner": _pods(2, 1)}))]
    ours = decode_stacked(hours, drop=("cluster",))
    theirs = _hour_by_hour(hours)
    assert set(ours) == set(theirs) == {"pod_running", "namespace_labels", "pod_owner"}
    for name in ours:
        assert_frame_equal(ours[name], theirs[name], check_exact=True)
    assert ours["pod_running"]["hour_start"].to_list() == [HOURS[0]] * 3 + [HOURS[2]] * 4
    assert ours["pod_running"]["running_seconds"].to_list() == [3600.0] * 3 + [3598.0] * 4
    assert "cluster" not in ours["pod_running"].columns
    assert ours["pod_owner"]["owner_kind"].to_list() == [None, None, "x", "x", None]
    assert ours["namespace_labels"]["labels"].to_list()[2] == [{"key": "label_app", "value": "web-1"}]


def test_a_file_that_is_not_what_its_manifest_says_is_named_even_if_the_day_adds_up():
    # hour 0's file has a row more than its manifest says, hour 2's a row fewer: the day's total is right, the hours
    # would be shifted by one row; the footer of each file is checked against its own manifest entry
    hours = [(HOURS[0], _window(0, {"pod_running": _pods(0, 3)}, rows={"pod_running": 2})),
             (HOURS[2], _window(2, {"pod_running": _pods(2, 4)}, rows={"pod_running": 5}))]
    with pytest.raises(ExportIncompleteError) as error:
        decode_stacked(hours)
    message = str(error.value)
    assert "s3://metrics/k8s/demo/metric=pod_running/0.parquet" in message, message
    assert "holds 3 rows where the manifest says 2" in message and "force" in message, message


def test_a_damaged_file_among_good_ones_is_named():
    hours = [(HOURS[0], _window(0, {"pod_running": _pods(0, 3)})), (HOURS[1], _window(1, {"pod_running": _pods(1, 2)}))]
    hours[1][1].files["pod_running"].data = hours[1][1].files["pod_running"].data[:-40]  # the footer cut off
    with pytest.raises(ExportIncompleteError) as error:
        decode_stacked(hours)
    assert "s3://metrics/k8s/demo/metric=pod_running/1.parquet" in str(error.value)
    assert "cannot be read" in str(error.value)

