"""The checks behind the configuration's fields: names, connection ids, object URIs, cron expressions, SQL words."""

from __future__ import annotations

import re

# Cluster names become S3 path segments and Airflow ids: keep them to what both accept (\Z: no trailing newline).
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}\Z")
# Airflow connection ids and pools.
CONN_ID = r"^[A-Za-z0-9_.-]{1,200}$"  # pydantic (Rust regex): $ is the end of the text
# S3 keys: AWS's "safe characters" only (a prefix becomes part of every object key podledger writes or reads).
_SAFE_KEY_RE = re.compile(r"^[A-Za-z0-9!_.*'()/=-]*\Z")
# S3 bucket names (AWS rules, lower case, 3-63 characters).
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]\Z")
IDENTIFIER_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}\Z")


def check_cron(value: str) -> str:
    """Refuse a cron expression Airflow's timetable would reject (naming it), before any DAG is built."""
    from croniter import croniter

    if not isinstance(value, str) or "\n" in value or not croniter.is_valid(value):
        raise ValueError(f"{value!r} is not a valid cron expression (e.g. '*/30 * * * *' or '@daily')")
    return value


def check_object_uri(value: str, what: str) -> str:
    """Refuse an ``s3://`` URI without a bucket or with unsafe key characters, a relative ``file://`` path."""
    from urllib.parse import urlsplit

    if not isinstance(value, str) or not value.startswith(("s3://", "file://")):
        raise ValueError(f"{what} {value!r} must start with s3:// or file://")
    parts = urlsplit(value)
    if parts.scheme == "s3":
        if not _BUCKET_RE.match(parts.netloc or ""):
            raise ValueError(f"{what} {value!r} names no valid bucket (s3://<bucket>/<prefix>, bucket in lower case)")
        if not _SAFE_KEY_RE.match(parts.path) or "//" in parts.path or len(parts.path) > 512:
            raise ValueError(f"{what} {value!r}: the prefix may hold only letters, digits and !_.*'()/=- "
                             "(no spaces or empty path segments), at most 512 characters")
    elif not parts.path.startswith("/") or "\n" in parts.path:
        raise ValueError(f"{what} {value!r}: file:// needs an absolute path (file:///var/podledger)")
    return value.rstrip("/")


_RESERVED: frozenset[str] | None = None


def sql_reserved_words() -> frozenset[str]:
    """SQL reserved words (DuckDB's parser is PostgreSQL's: its reserved list covers both warehouses)."""
    global _RESERVED
    if _RESERVED is None:
        import duckdb

        rows = duckdb.execute("SELECT keyword_name FROM duckdb_keywords() WHERE keyword_category = 'reserved'").fetchall()
        _RESERVED = frozenset(r[0].lower() for r in rows)
    return _RESERVED
