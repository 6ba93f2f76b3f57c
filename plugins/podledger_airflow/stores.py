"""S3HookStore: podledger's ObjectStore interface implemented with the Amazon provider's S3Hook."""

from __future__ import annotations

import builtins
import datetime as dt
import io
from typing import TYPE_CHECKING, Any, BinaryIO

from airflow.providers.amazon.aws.hooks.s3 import S3Hook
from botocore.config import Config

from podledger.storage import FETCH_THREADS, RANGE_BLOCK, parent_folder, scan_s3_parquet

if TYPE_CHECKING:
    import polars as pl


class _RangeReader(io.RawIOBase):
    """An S3 object read by ranged GETs (s3:GetObject; its size from a HEAD, which the same permission allows)."""

    def __init__(self, client: Any, bucket: str, key: str) -> None:
        self._client, self._bucket, self._key = client, bucket, key
        self._size = int(client.head_object(Bucket=bucket, Key=key)["ContentLength"])
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        self._position = max(base + offset, 0)
        return self._position

    def readinto(self, buffer: Any) -> int:
        if self._position >= self._size or not len(buffer):
            return 0
        last = min(self._position + len(buffer), self._size) - 1
        body = self._client.get_object(Bucket=self._bucket, Key=self._key,
                                       Range=f"bytes={self._position}-{last}")["Body"].read()
        buffer[:len(body)] = body
        self._position += len(body)
        return len(body)


class S3HookStore:
    """Keys relative to ``bucket``; credentials, endpoint and role come from the AWS connection."""

    scheme = "s3"

    def __init__(self, bucket: str, aws_conn_id: str = "aws_default") -> None:
        self.bucket = bucket
        self.hook = S3Hook(aws_conn_id=aws_conn_id)
        # A day's windows are fetched FETCH_THREADS requests at a time: boto3 keeps 10 connections by default and
        # drops (then re-opens, with a TLS handshake) the rest. The connection's own settings (its extra
        # "config_kwargs": retries, timeouts, a larger pool) are kept; only a smaller pool is raised.
        config = self.hook.conn_config.botocore_config
        if config is None or (config.max_pool_connections or 10) < FETCH_THREADS:
            config = (config or Config()).merge(Config(max_pool_connections=FETCH_THREADS))
            self.hook = S3Hook(aws_conn_id=aws_conn_id, config=config)

    def put(self, key: str, data: bytes) -> None:
        self.hook.load_bytes(data, key=key, bucket_name=self.bucket, replace=True)

    def get(self, key: str) -> bytes:
        # One GET through the hook's client (boto3 clients may be shared by threads; its resource may not: windows
        # and bill files are fetched from several threads at once).
        return bytes(self.hook.get_conn().get_object(Bucket=self.bucket, Key=key)["Body"].read())

    def scan_parquet(self, key: str) -> pl.LazyFrame:
        credentials = self.hook.get_credentials()
        options = {"key": credentials.access_key, "secret": credentials.secret_key, "token": credentials.token,
                   "client_kwargs": {"endpoint_url": self.hook.conn_config.endpoint_url,
                                     "region_name": self.hook.conn_region_name}}
        return scan_s3_parquet(self, key, options)

    def open(self, key: str) -> BinaryIO:
        return io.BufferedReader(_RangeReader(self.hook.get_conn(), self.bucket, key), buffer_size=RANGE_BLOCK)

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            return bool(self.hook.check_for_key(key, bucket_name=self.bucket))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in ("403", "AccessDenied", "Forbidden"):
                raise
            # AWS answers a HEAD of a missing key with 403 when the caller has no unconditional s3:ListBucket
            # (the seed's policy): ask the key's folder instead, by a delimited listing the policy allows.
            return key in self._walk(parent_folder(key), recursive=False)

    def _walk(self, prefix: str, *, recursive: bool = True) -> list[str]:
        """Keys under ``prefix`` by ListObjectsV2 with delimiter "/" only (what least-privilege policies allow)."""
        return list(self._walk_detail(prefix, recursive=recursive))

    def _walk_detail(self, prefix: str, *, recursive: bool = True) -> dict[str, dt.datetime]:
        paginator = self.hook.get_conn().get_paginator("list_objects_v2")
        folders = [prefix.rstrip("/") + "/" if prefix else ""]
        keys: dict[str, dt.datetime] = {}
        while folders:
            folder = folders.pop()
            for page in paginator.paginate(Bucket=self.bucket, Prefix=folder, Delimiter="/"):
                keys.update((item["Key"], item["LastModified"]) for item in page.get("Contents", []))
                if recursive:
                    folders += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
        return {k: v for k, v in keys.items() if k.startswith(prefix)}

    def list(self, prefix: str) -> list[str]:
        return sorted(self._walk(prefix))

    def modified(self, prefix: str) -> dict[str, dt.datetime]:
        return {key: when.astimezone(dt.UTC) for key, when in self._walk_detail(prefix).items()}

    def delete(self, keys: builtins.list[str]) -> None:
        if keys:
            self.hook.delete_objects(bucket=self.bucket, keys=keys)
