"""The exported metric files: Parquet, or ``json.gz`` in the seed's format (a Prometheus HTTP API answer).

``json.gz`` is what the seed exporter's readers expect: one gzipped Prometheus API answer per metric and window,
``{"status": "success", "data": {"resultType": "vector", "result": [{"metric": {...}, "value": [t, "v"]}]}}``, read
by a plain ``json.load``. A podledger rollup has several value columns (``usage_byte_seconds``, ``peak_bytes``…):
each becomes its own series, told apart by the ``podledger_column`` label. A top-level ``podledger`` member (ignored
by API readers) says how to read the answer back and marks the file as podledger's. Raw series are a ``matrix``.

Parquet files carry the same mark in their schema metadata: files podledger did not write are never overwritten.
"""

from __future__ import annotations

import datetime as dt
import gzip
import io
import json
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from podledger import __version__

COLUMN_LABEL = "podledger_column"
MARK = b"podledger"
_FIXED = ("cluster", "window_start", "window_end", "labels")


def serialise(table: pa.Table, fmt: str, *, metric: str, keys: tuple[str, ...], window: Any = None,
              labels_map: bool = False) -> bytes:
    """Serialise one metric's table for a window: Parquet (zstd, marked) or the seed's json.gz API answer."""
    mark: dict[str, Any] = {"exporter": "podledger", "version": __version__, "metric": metric, "keys": list(keys),
                            "labels_map": labels_map}
    if window is not None:
        mark["window"] = {"start": window.start.isoformat(), "end": window.end.isoformat()}
    window_end = window.end if window is not None else None
    if fmt == "parquet":
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), MARK: json.dumps(mark).encode()})
        buffer = io.BytesIO()
        pq.write_table(table, buffer, compression="zstd")
        return buffer.getvalue()
    rows = table.to_pylist()
    if "timestamp" in table.column_names:  # raw series: a matrix, one series per label set
        series: dict[tuple[tuple[str, str], ...], list[list[Any]]] = {}
        for row in rows:
            labels = tuple(sorted(dict(row.get("labels") or []).items()))
            series.setdefault(labels, []).append([row["timestamp"].timestamp(), repr(float(row["value"]))])
        result: list[dict[str, Any]] = [{"metric": dict(labels), "values": values} for labels, values in series.items()]
        answer_type = "matrix"
    else:
        at = window_end.timestamp() if window_end else 0.0
        values = [c for c in table.column_names if c not in keys and c not in _FIXED]
        result = []
        for row in rows:
            metric_labels = {k: row[k] for k in keys if row.get(k) not in (None, "")}
            metric_labels.update(dict(row.get("labels") or []))
            for column in values:
                if row[column] is not None:
                    result.append({"metric": {**metric_labels, COLUMN_LABEL: column},
                                   "value": [at, repr(float(row[column]))]})
        answer_type = "vector"
    cluster = rows[0]["cluster"] if rows and "cluster" in rows[0] else None
    mark.update(resultType=answer_type, column_label=COLUMN_LABEL, cluster=cluster,
                value_columns=[c for c in table.column_names if c not in keys and c not in _FIXED])
    answer = {"status": "success", "data": {"resultType": answer_type, "result": result}, "podledger": mark}
    return gzip.compress(json.dumps(answer, separators=(",", ":")).encode(), mtime=0)


def written_by_podledger(key: str, data: bytes) -> bool:
    """Whether a file at one of podledger's keys is podledger's own (marked), or foreign (e.g. the seed's)."""
    try:
        if key.endswith(".parquet"):
            metadata = pq.read_schema(io.BytesIO(data)).metadata or {}
            return MARK in metadata
        text = gzip.decompress(data).decode()
        first = text.split("\n", 1)[0]
        document = json.loads(text) if first.strip() == text.strip() else json.loads(first)
    except Exception:  # noqa: BLE001 - unreadable: not ours to overwrite silently
        return False
    if isinstance(document, dict) and isinstance(document.get("podledger"), dict):
        return True
    # podledger 0.x wrote JSON lines of its rows: each a record with its window.
    return isinstance(document, dict) and "window_start" in document and "cluster" in document


def read_json_answer(data: bytes, keys: tuple[str, ...] | None = None) -> pl.DataFrame:
    """Read a json.gz metric file: a Prometheus API answer (podledger's or anyone's) or podledger 0.x JSON lines."""
    text = gzip.decompress(data).decode()
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) != 1:  # podledger 0.x: JSON lines of rows
        records = [json.loads(line) for line in lines]
        for record in records:
            if isinstance(record.get("labels"), dict):
                record["labels"] = [{"key": k, "value": v} for k, v in record["labels"].items()]
        return pl.DataFrame(records, infer_schema_length=None)
    answer = json.loads(text)
    if not isinstance(answer, dict) or "podledger" not in answer:
        first = json.loads(lines[0])
        if isinstance(first, dict) and "window_start" in first:
            return pl.DataFrame([first], infer_schema_length=None)
    mark = answer.get("podledger") or {}
    keys = tuple(mark.get("keys") or keys or ())
    column_label = mark.get("column_label", COLUMN_LABEL)
    by_key: dict[tuple[str, ...], dict[str, Any]] = {}
    if answer["data"]["resultType"] == "matrix":
        samples: list[dict[str, Any]] = []
        for item in answer["data"]["result"]:
            entries = [{"key": k, "value": v} for k, v in sorted(item["metric"].items())]
            for ts, value in item["values"]:
                samples.append({"cluster": mark.get("cluster"), "timestamp": dt.datetime.fromtimestamp(float(ts), dt.UTC),
                                "value": float(value), "labels": entries})
        return pl.DataFrame(samples, infer_schema_length=None)
    for item in answer["data"]["result"]:
        labels: dict[str, str] = dict(item["metric"])
        column = labels.pop(column_label, "value")
        key = tuple(labels.get(k, "") for k in keys)
        row = by_key.setdefault(key, {**dict(zip(keys, key, strict=True)), "cluster": mark.get("cluster"),
                                      "labels": [{"key": k, "value": v} for k, v in sorted(labels.items())
                                                 if k not in keys]})
        row[column] = float(item["value"][1])
    columns = mark.get("value_columns") or sorted({c for r in by_key.values() for c in r} - set(keys) - set(_FIXED))
    window = mark.get("window") or {}
    for row in by_key.values():
        row["window_start"] = dt.datetime.fromisoformat(window["start"]) if window else None
        row["window_end"] = dt.datetime.fromisoformat(window["end"]) if window else None
    utc = pl.Datetime("us", "UTC")
    schema: dict[str, pl.DataType | type[pl.DataType]] = {
        "cluster": pl.String, "window_start": utc, "window_end": utc, **{k: pl.String for k in keys},
        **{c: pl.Float64 for c in columns}}
    if mark.get("labels_map", True):
        schema["labels"] = pl.List(pl.Struct({"key": pl.String, "value": pl.String}))
    return pl.DataFrame([{name: r.get(name) for name in schema} for r in by_key.values()], schema=schema)
