"""The bill as delivered: which files make up a billing period's current delivery, read once each.

AWS Data Exports (CUR 2.0, and FOCUS exported by AWS) write, per billing period,
``<export>/data/BILLING_PERIOD=YYYY-MM/<files>`` and ``<export>/metadata/BILLING_PERIOD=YYYY-MM/<export>-Manifest.json``.
The manifest's ``dataFiles`` are the current delivery; anything else in ``data/`` (an older delivery left in
place, a copy) is *not* part of the bill and is ignored with a named warning. Legacy CUR keeps older assemblies
beside the current one and names the current one's files in ``reportKeys``. A FOCUS export without a manifest is
read file by file, every file once.

Every file is read with its own error: a damaged file names itself (and the fix), never a bare traceback.
"""

from __future__ import annotations

import datetime as dt
import gzip
import io
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import polars as pl

from podledger.exceptions import BillingDataError
from podledger.storage import ObjectStore

if TYPE_CHECKING:
    import pyarrow as pa

log = logging.getLogger(__name__)

DATA_SUFFIXES = (".parquet", ".csv", ".csv.gz", ".csv.zip")
SOURCE_FILE = "__bill_file"
# FOCUS CSV as providers export it: NULL is the literal text, timestamps "YYYY-MM-DD HH:MM:SS" in UTC.
FOCUS_NULLS = ["NULL", ""]


@dataclass
class Delivery:
    """The files of one billing period's current delivery (object keys), and what was left out."""

    period: str
    keys: list[str]
    manifest_key: str | None = None
    execution_id: str | None = None
    ignored: list[str] = field(default_factory=list)

    def warnings(self, store: ObjectStore) -> list[str]:
        """Named warnings for the files found beside the delivery and not read."""
        return [f"{store.scheme}://{store.bucket}/{key}: not in the billing period {self.period}'s manifest "
                f"({store.scheme}://{store.bucket}/{self.manifest_key}), so not part of the current delivery: ignored "
                "(an older delivery or a copy; delete it to silence this)" for key in self.ignored]


def url(store: ObjectStore, key: str) -> str:
    return f"{store.scheme}://{store.bucket}/{key}"


def _data_key(export_prefix: str, period: str, entry: str) -> str:
    """Map a manifest ``dataFiles`` entry (full s3:// URL or relative key) to a key under this export's data folder.

    Exports are often copied or mirrored (another bucket, a MinIO demo): the part from ``data/BILLING_PERIOD=``
    on identifies the file within the export wherever the export now lives.
    """
    marker = f"data/BILLING_PERIOD={period}/"
    if marker in entry:
        return f"{export_prefix.strip('/')}/{marker}{entry.split(marker, 1)[1]}".lstrip("/")
    path = entry.split("://", 1)[1].split("/", 1)[1] if "://" in entry else entry
    return path.lstrip("/")


def data_exports_delivery(store: ObjectStore, export_prefix: str, period: str, *, kind: str,
                          manifest_required: bool) -> Delivery:
    """Return the current delivery of a Data Exports billing period (CUR 2.0 or FOCUS)."""
    head = export_prefix.strip("/")
    data_prefix = f"{head}/data/BILLING_PERIOD={period}/".lstrip("/")
    present = sorted(k for k in store.list(data_prefix) if k.endswith(DATA_SUFFIXES))
    manifests = sorted(k for k in store.list(f"{head}/metadata/BILLING_PERIOD={period}/".lstrip("/"))
                       if k.endswith("Manifest.json"))
    if not manifests:
        if manifest_required and present:
            raise BillingDataError(
                f"{url(store, data_prefix)}: {len(present)} {kind} data file(s) but no manifest under "
                f"{url(store, f'{head}/metadata/BILLING_PERIOD={period}/')}: without it podledger cannot tell the "
                "current delivery from older copies; deliver the export's metadata/ folder with its data/")
        if not present:
            raise BillingDataError(
                f"no {kind} data under {url(store, data_prefix)} for billing period {period}: check billing.uri points "
                "at the export (the folder holding data/ and metadata/) and that the export has been delivered")
        return Delivery(period, present)
    if len(manifests) > 1:
        raise BillingDataError(f"billing period {period}: {len(manifests)} manifests {[url(store, m) for m in manifests]}; "
                               "expected one per period (two exports in one folder?)")
    manifest = _read_manifest(store, manifests[0])
    entries = manifest.get("dataFiles")
    if not isinstance(entries, list):
        raise BillingDataError(f"{url(store, manifests[0])}: no dataFiles list; is this a Data Exports manifest?")
    keys = [_data_key(head, period, str(e)) for e in entries]
    missing = [k for k in keys if k not in set(present)]
    if missing:
        raise BillingDataError(f"{url(store, manifests[0])} lists {len(missing)} file(s) that are not there, first "
                               f"{url(store, missing[0])}: the delivery is incomplete or was moved; wait for AWS to "
                               "finish delivering, or copy the whole export")
    execution = str(manifest.get("executionId") or manifest.get("assemblyId") or "") or None
    delivery = Delivery(period, keys, manifests[0], execution, [k for k in present if k not in set(keys)])
    for warning in delivery.warnings(store):
        log.warning("%s", warning)
    return delivery


def legacy_delivery(store: ObjectStore, partition_prefix: str, period: str) -> Delivery:
    """Return a legacy CUR (Athena) partition's files: the manifest's ``reportKeys`` when one lies there, else all."""
    head = partition_prefix.strip("/")
    found = store.list(f"{head}/")
    present = sorted(k for k in found if k.endswith(DATA_SUFFIXES))
    manifests = sorted(k for k in found if k.endswith("Manifest.json"))
    if not present:
        raise BillingDataError(f"no legacy CUR data under {url(store, head + '/')}: check billing.uri points at the "
                               "report's Athena folder")
    if not manifests:
        return Delivery(period, present)
    manifest = _read_manifest(store, manifests[-1])
    names = {str(k).rsplit("/", 1)[-1] for k in manifest.get("reportKeys", [])}
    keys = [k for k in present if k.rsplit("/", 1)[-1] in names] if names else present
    delivery = Delivery(period, keys, manifests[-1], str(manifest.get("assemblyId") or "") or None,
                        [k for k in present if k not in set(keys)])
    for warning in delivery.warnings(store):
        log.warning("%s", warning)
    return delivery


def _read_manifest(store: ObjectStore, key: str) -> dict[str, Any]:
    try:
        manifest = json.loads(store.get(key))
    except (ValueError, UnicodeDecodeError) as exc:
        raise BillingDataError(f"{url(store, key)}: the manifest is not JSON ({exc}); the delivery is damaged: "
                               "wait for the next delivery or ask AWS to re-deliver the period") from None
    if not isinstance(manifest, dict):
        raise BillingDataError(f"{url(store, key)}: the manifest is not a JSON object")
    return manifest


def read_parquet_part(store: ObjectStore, key: str, columns: list[str] | Callable[[str], bool] | None = None,
                      between: tuple[str, dt.datetime, dt.datetime] | None = None) -> pa.Table:
    """Read ``columns`` (those the file has, or those it has that the predicate keeps; None: all) of a Parquet bill
    file by ranged reads: the footer, then only those column chunks. ``between`` (column, start, end), when that
    column is a timestamp: only the rows in [start, end), skipping the row groups whose statistics lie outside it."""
    import pyarrow as pa
    import pyarrow.dataset as pa_ds
    import pyarrow.parquet as pq

    with store.open(key) as source:
        schema = pq.read_schema(source)
        if callable(columns):
            columns = [c for c in schema.names if columns(c)]
        elif columns is not None:  # the ones this file has (CUR and FOCUS name the same thing differently)
            columns = [c for c in columns if c in schema.names]
        filters = None
        kind = schema.field(between[0]).type if between is not None and between[0] in schema.names else None
        if between is not None and kind is not None and pa.types.is_timestamp(kind):
            column, start, end = between
            low, high = ((start, end) if kind.tz else (start.astimezone(dt.UTC).replace(tzinfo=None),
                                                       end.astimezone(dt.UTC).replace(tzinfo=None)))
            field = pa_ds.field(column)
            filters = (field >= pa.scalar(low, kind)) & (field < pa.scalar(high, kind))
        source.seek(0)
        return pq.read_table(source, columns=columns, filters=filters)


def read_bill_file(store: ObjectStore, key: str, *, columns: list[str] | None = None,
                   between: tuple[str, dt.datetime, dt.datetime] | None = None) -> pl.DataFrame:
    """Read one bill file (Parquet, CSV, gzipped CSV); a damaged file is an error naming it.

    ``between`` (column, start, end): of a Parquet file whose column is a timestamp, decode only the rows in
    [start, end) (row groups outside it are skipped by their statistics); other files are read whole. With
    ``columns``, a Parquet file is read by ranged GETs (:func:`read_parquet_part`).
    """
    try:
        if key.endswith(".parquet") and columns is not None:
            frame = pl.DataFrame(read_parquet_part(store, key, columns, between))
        elif key.endswith(".parquet"):
            # Every column: polars fetches the row groups the filter may match by ranged GETs and decodes the time
            # column first, then only the rows of the hours asked (an Arrow scan decodes every column whole).
            scan = store.scan_parquet(key)
            kind = scan.collect_schema().get(between[0]) if between is not None else None
            if between is not None and isinstance(kind, pl.Datetime):
                column, start, end = between
                low, high = ((start, end) if kind.time_zone else
                             (start.astimezone(dt.UTC).replace(tzinfo=None), end.astimezone(dt.UTC).replace(tzinfo=None)))
                scan = scan.filter((pl.col(column) >= low) & (pl.col(column) < high))
            frame = scan.collect()
        else:
            data = store.get(key)
            if key.endswith(".gz"):
                data = gzip.decompress(data)
            # Every column as text first: FOCUS CSV writes NULL as a word and numbers and dates as text.
            frame = pl.read_csv(io.BytesIO(data), infer_schema=False, null_values=FOCUS_NULLS)
            if columns is not None:
                frame = frame.select([c for c in columns if c in frame.columns])
    except BillingDataError:
        raise
    except Exception as exc:  # noqa: BLE001 - any reader failure becomes an error naming the file
        raise BillingDataError(f"{url(store, key)}: cannot read this bill file ({type(exc).__name__}: "
                               f"{str(exc)[:200]}); the file is damaged or not a bill: ask for a re-delivery "
                               "or remove it from the export") from None
    return frame.with_columns(pl.lit(url(store, key)).alias(SOURCE_FILE))


def check_unique_line_items(frame: pl.DataFrame, keys: tuple[str, ...], kind: str) -> None:
    """Fail when one line item (``keys``) appears in two files, or twice: its money would be counted twice."""
    if not all(k in frame.columns for k in keys) or not frame.height:
        return
    doubled = (frame.group_by(list(keys)).agg(pl.len().alias("n"), pl.col(SOURCE_FILE).unique().sort())
               .filter(pl.col("n") > 1))
    if doubled.height:
        first = doubled.row(0, named=True)
        files = first[SOURCE_FILE]
        where = f"in {files[0]} and {files[1]}" if len(files) > 1 else f"twice in {files[0]}"
        raise BillingDataError(
            f"{kind}: {doubled.height} line item(s) appear more than once, first "
            f"{', '.join(f'{k}={first[k]}' for k in keys)} {where}: reading both would count the money twice; "
            "remove the stale copy (only the files of the current delivery belong to the bill)")


def check_no_repeated_rows(frame: pl.DataFrame, kind: str) -> None:
    """FOCUS has no line id: an identical full row in two files is the same charge delivered twice."""
    if not frame.height:
        return
    values = [c for c in frame.columns if c != SOURCE_FILE]
    hashed = frame.select(pl.struct(values).hash().alias("row_hash"), SOURCE_FILE)
    repeated = (hashed.group_by("row_hash").agg(pl.col(SOURCE_FILE).unique().sort())
                .filter(pl.col(SOURCE_FILE).list.len() > 1))
    if repeated.height:
        files = repeated.row(0, named=True)[SOURCE_FILE]
        raise BillingDataError(f"{kind}: {repeated.height} identical row(s) appear in both {files[0]} and {files[1]}: "
                               "the same charges delivered twice; keep one copy of the export")


def check_one_currency(frame: pl.DataFrame, currency: str, period: pl.Expr, kind: str) -> None:
    """Fail when a billing period mixes currencies (amounts of different currencies cannot be added)."""
    if currency not in frame.columns or not frame.height:
        return
    mixed = (frame.group_by(period.alias("period")).agg(pl.col(currency).drop_nulls().unique().sort().alias("currencies"),
                                                        pl.col(SOURCE_FILE).unique().sort().alias("files"))
             .filter(pl.col("currencies").list.len() > 1))
    if mixed.height:
        first = mixed.row(0, named=True)
        raise BillingDataError(f"{kind}: billing period {first['period']} mixes currencies {first['currencies']} "
                               f"({', '.join(first['files'])}): amounts in different currencies cannot be added; "
                               "export one currency per cost center or convert before podledger reads it")
