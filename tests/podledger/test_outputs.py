"""An enrichment's outputs as files: written side by side, all three or an error."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

HOURS = [dt.datetime(2026, 11, 2, tzinfo=dt.UTC)]


def test_a_days_outputs_are_written_side_by_side_and_a_failed_write_fails():
    """put_outputs writes the rows, split line items and reconciliation concurrently: all three land, readable; a
    write that fails fails the call (a task never reports a day whose split line items were not written)."""
    from podledger.allocation import OUTPUT_SCHEMA
    from podledger.enrich import EnrichResult
    from podledger.outputs import OUTPUTS, get_outputs, put_outputs

    rows = pl.DataFrame({"hour_start": [HOURS[0]], "cluster": ["demo"], "total_cost": [1.25]}).with_columns(
        pl.lit(None, dtype).alias(name) for name, dtype in OUTPUT_SCHEMA.items() if name not in {"hour_start", "cluster",
                                                                                                  "total_cost"})
    reconciliation = pl.DataFrame({"hour_start": [HOURS[0]], "cluster": ["demo"], "allocated_cost": [1.25],
                                   "billed_cost": [1.25], "difference": [0.0], "ok": [True]})
    result = EnrichResult(rows, reconciliation, [], pl.DataFrame({"line_item_resource_id": ["arn:pod"]}))

    class Store:
        scheme, bucket = "memory", "out"

        def __init__(self, failing: str | None = None) -> None:
            self.objects: dict[str, bytes] = {}
            self.failing = failing

        def put(self, key: str, data: bytes) -> None:
            if self.failing and self.failing in key:
                raise PermissionError(f"AccessDenied writing {key}")
            self.objects[key] = data

        def get(self, key: str) -> bytes:
            return self.objects[key]

    store = Store()
    put_outputs(store, "demo/day.parquet", result, "cc")
    assert sorted(store.objects) == ["demo/day.parquet", "demo/day.reconciliation.parquet",
                                     "demo/day.split_line_items.parquet"]
    back = get_outputs(store, "demo/day.parquet")
    assert set(back) == set(OUTPUTS)
    assert back["rows"]["total_cost"].to_list() == [1.25]
    assert back["split_line_items"]["line_item_resource_id"].to_list() == ["arn:pod"]
    with pytest.raises(PermissionError, match="split_line_items"):
        put_outputs(Store(failing="split_line_items"), "demo/day.parquet", result, "cc")
