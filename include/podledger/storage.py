"""Object storage behind one small interface: fsspec (s3fs, local files) here, S3Hook in the Airflow adapter."""

from __future__ import annotations

import builtins
import datetime as dt
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, BinaryIO, NamedTuple, Protocol, cast
from urllib.parse import urlsplit

from podledger.exceptions import PodledgerError

if TYPE_CHECKING:
    import polars as pl

log = logging.getLogger(__name__)
# Buckets already warned about being read whole (once per process, not once per file).
_WHOLE_OBJECT_WARNED: set[str] = set()


class ObjectStore(Protocol):
    """The operations podledger needs from a bucket; keys are relative to the bucket."""

    bucket: str
    scheme: str

    def put(self, key: str, data: bytes) -> None: ...

    def get(self, key: str) -> bytes: ...

    def open(self, key: str) -> BinaryIO:
        """The object as a seekable file read by byte ranges: a Parquet reader fetches the footer and the column
        chunks it needs, not the whole object."""
        ...

    def scan_parquet(self, key: str) -> pl.LazyFrame:
        """A Parquet object as a polars scan: what a query keeps is fetched by ranged GETs (its columns, the row
        groups its filter may match) and decoded late (the filter column first)."""
        ...

    def exists(self, key: str) -> bool: ...

    def list(self, prefix: str) -> list[str]: ...

    def modified(self, prefix: str) -> dict[str, dt.datetime]:
        """The keys under ``prefix`` with the time each was last written (UTC), from the same listings as ``list``."""
        ...

    def delete(self, keys: builtins.list[str]) -> None: ...


# What one ranged read fetches at least: a Parquet column chunk is usually smaller, so neighbours come along.
RANGE_BLOCK = 2**20
# Requests in flight when many small objects are read (a day's exported windows: ~500 GETs, each mostly S3's
# round trip); object stores' connection pools are sized to match.
FETCH_THREADS = 16


def polars_s3_options(options: Mapping[str, Any]) -> dict[str, str] | None:
    """s3fs options (key, secret, token, client_kwargs) as polars' S3 storage options; None without a region
    (polars does not look a bucket's region up, s3fs does)."""
    client = options.get("client_kwargs") or {}
    if not client.get("region_name"):
        return None
    out = {"aws_region": str(client["region_name"])}
    for name, option in (("key", "aws_access_key_id"), ("secret", "aws_secret_access_key"),
                         ("token", "aws_session_token")):
        if options.get(name):
            out[option] = str(options[name])
    endpoint = client.get("endpoint_url")
    if endpoint:
        out["aws_endpoint_url"] = str(endpoint)
        if str(endpoint).startswith("http://"):
            out["aws_allow_http"] = "true"
    return out


def scan_s3_parquet(store: ObjectStore, key: str, options: Mapping[str, Any]) -> pl.LazyFrame:
    """Scan ``key`` of an S3 store natively with the store's credentials; the whole object when that cannot be."""
    import io

    import polars as pl

    polars_options = polars_s3_options(options)
    if polars_options is None:
        data = store.get(key)
        if store.bucket not in _WHOLE_OBJECT_WARNED:
            _WHOLE_OBJECT_WARNED.add(store.bucket)
            log.warning("s3://%s/%s read whole (%.1f MiB) instead of only the hours' row groups: the connection names "
                        "no region, and polars' ranged reads need one; set region_name in the AWS connection's extra "
                        "(said once per bucket)", store.bucket, key, len(data) / 2**20)
        return pl.scan_parquet(io.BytesIO(data))
    return pl.scan_parquet(f"s3://{store.bucket}/{key}", storage_options=polars_options)


def parent_folder(key: str) -> str:
    """The folder holding ``key`` (``a/b/c.json`` -> ``a/b/``), as a ListObjects prefix."""
    return key.rsplit("/", 1)[0] + "/" if "/" in key else ""


class Location(NamedTuple):
    """Where objects live: ``s3://bucket/prefix`` as (scheme, bucket, prefix); a file:// bucket is the directory."""

    scheme: str
    bucket: str
    prefix: str


def split_uri(uri: str) -> Location:
    """Split ``s3://bucket/prefix`` or ``file:///dir/prefix`` into (scheme, bucket, prefix)."""
    parts = urlsplit(uri)
    if parts.scheme == "s3":
        return Location("s3", parts.netloc, parts.path.strip("/"))
    if parts.scheme == "file":
        # file:///root/dir -> bucket "/root/dir", prefix "" : local runs keep the whole path as the bucket.
        return Location("file", parts.path.rstrip("/") or "/", "")
    raise PodledgerError(f"unsupported storage uri {uri!r}: use s3://bucket/prefix or file:///path")


class FsspecStore:
    """An ObjectStore over fsspec: s3fs for s3:// (endpoint/credentials from options), local files for file://."""

    def __init__(self, scheme: str, bucket: str, storage_options: dict[str, Any] | None = None) -> None:
        import fsspec

        self.scheme = scheme
        self.bucket = bucket
        self._options = dict(storage_options or {})
        if scheme == "s3":
            # A day's windows are fetched FETCH_THREADS requests at a time; aiobotocore keeps 10 connections by
            # default (the rest wait). The options' own config_kwargs are kept; only a smaller pool is raised.
            config = dict(self._options.get("config_kwargs") or {})
            if (config.get("max_pool_connections") or 10) < FETCH_THREADS:
                self._options["config_kwargs"] = {**config, "max_pool_connections": FETCH_THREADS}
        self._fs = fsspec.filesystem("s3" if scheme == "s3" else "file", **self._options)

    def _path(self, key: str) -> str:
        return f"{self.bucket.rstrip('/')}/{key.lstrip('/')}"

    def url(self, key: str) -> str:
        """Return the full URL of ``key`` for messages."""
        return f"{self.scheme}://{self._path(key)}" if self.scheme == "s3" else f"file://{self._path(key)}"

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        if self.scheme == "file":
            self._fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        self._fs.pipe_file(path, data)

    def get(self, key: str) -> bytes:
        return bytes(self._fs.cat_file(self._path(key)))

    def scan_parquet(self, key: str) -> pl.LazyFrame:
        if self.scheme == "s3":
            return scan_s3_parquet(self, key, self._options)
        import polars as pl

        return pl.scan_parquet(self._path(key))

    def open(self, key: str) -> BinaryIO:
        if self.scheme == "s3":
            return cast(BinaryIO, self._fs.open(self._path(key), "rb", block_size=RANGE_BLOCK, cache_type="readahead"))
        return cast(BinaryIO, self._fs.open(self._path(key), "rb"))

    def exists(self, key: str) -> bool:
        if self.scheme != "s3":
            return bool(self._fs.exists(self._path(key)))
        try:
            self._fs.info(self._path(key), refresh=True)
        except FileNotFoundError:
            return False
        except PermissionError:
            # AWS answers a HEAD of a missing key with 403 when the caller has no unconditional s3:ListBucket
            # (the seed's policy): ask the key's folder instead, by a delimited listing the policy allows.
            return key in self._walk(parent_folder(key), recursive=False)
        return True

    def _walk(self, prefix: str, *, recursive: bool = True) -> list[str]:
        """Keys under ``prefix`` by listings with delimiter "/" only (what least-privilege policies allow)."""
        return list(self._walk_detail(prefix, recursive=recursive))

    def _walk_detail(self, prefix: str, *, recursive: bool = True) -> dict[str, dict[str, Any]]:
        root = self.bucket.rstrip("/") + "/"
        folders, keys = [prefix.rstrip("/") + "/" if prefix else ""], {}
        while folders:
            folder = folders.pop()
            try:
                entries = self._fs.ls(self._path(folder).rstrip("/"), detail=True, refresh=True)
            except FileNotFoundError:
                continue
            for entry in entries:
                name = entry["name"][len(root):] if entry["name"].startswith(root) else entry["name"]
                if entry["type"] == "directory":
                    if recursive:
                        folders.append(name.rstrip("/") + "/")
                elif name.startswith(prefix):
                    keys[name] = entry
        return keys

    def _find(self, prefix: str) -> dict[str, dict[str, Any]]:
        root = self.bucket.rstrip("/") + "/"
        try:
            found = self._fs.find(self._path(prefix), detail=True)
        except FileNotFoundError:
            return {}
        return {(path[len(root):] if path.startswith(root) else path.split(root, 1)[-1]): info
                for path, info in found.items()}

    def list(self, prefix: str) -> list[str]:
        return sorted(self._walk(prefix) if self.scheme == "s3" else self._find(prefix))

    def modified(self, prefix: str) -> dict[str, dt.datetime]:
        if self.scheme == "s3":
            return {key: info["LastModified"].astimezone(dt.UTC) for key, info in self._walk_detail(prefix).items()}
        return {key: dt.datetime.fromtimestamp(info["mtime"], dt.UTC) for key, info in self._find(prefix).items()}

    def delete(self, keys: builtins.list[str]) -> None:
        if keys:
            self._fs.rm([self._path(k) for k in keys])
        self._fs.invalidate_cache()
