"""Object storage behind one small interface: fsspec (s3fs, local files) here, S3Hook in the Airflow adapter."""

from __future__ import annotations

from typing import Any, Protocol
from urllib.parse import urlsplit

from podledger.exceptions import PodledgerError


class ObjectStore(Protocol):
    """The operations podledger needs from a bucket; keys are relative to the bucket."""

    bucket: str
    scheme: str

    def put(self, key: str, data: bytes) -> None: ...

    def get(self, key: str) -> bytes: ...

    def exists(self, key: str) -> bool: ...

    def list(self, prefix: str) -> list[str]: ...

    def delete(self, keys: list[str]) -> None: ...


def split_uri(uri: str) -> tuple[str, str, str]:
    """Split ``s3://bucket/prefix`` or ``file:///dir/prefix`` into (scheme, bucket, prefix)."""
    parts = urlsplit(uri)
    if parts.scheme == "s3":
        return "s3", parts.netloc, parts.path.strip("/")
    if parts.scheme == "file":
        # file:///root/dir -> bucket "/root/dir", prefix "" : local runs keep the whole path as the bucket.
        return "file", parts.path.rstrip("/") or "/", ""
    raise PodledgerError(f"unsupported storage uri {uri!r}: use s3://bucket/prefix or file:///path")


class FsspecStore:
    """An ObjectStore over fsspec: s3fs for s3:// (endpoint/credentials from options), local files for file://."""

    def __init__(self, scheme: str, bucket: str, storage_options: dict[str, Any] | None = None) -> None:
        import fsspec

        self.scheme = scheme
        self.bucket = bucket
        self._fs = fsspec.filesystem("s3" if scheme == "s3" else "file", **(storage_options or {}))

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
        return self._fs.cat_file(self._path(key))

    def exists(self, key: str) -> bool:
        return bool(self._fs.exists(self._path(key)))

    def list(self, prefix: str) -> list[str]:
        base = self._path(prefix)
        root = self.bucket.rstrip("/") + "/"
        try:
            found = self._fs.find(base)
        except FileNotFoundError:
            return []
        strip = root.lstrip("/") if self.scheme == "s3" else root
        keys = []
        for path in found:
            path = path if self.scheme == "s3" else path
            keys.append(path[len(strip):] if path.startswith(strip) else path.split(root, 1)[-1])
        return sorted(keys)

    def delete(self, keys: list[str]) -> None:
        if keys:
            self._fs.rm([self._path(k) for k in keys])
        self._fs.invalidate_cache()
