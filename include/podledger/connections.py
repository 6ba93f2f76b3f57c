"""Read Airflow-style connections from the environment, so the CLI uses the same definitions as the DAGs.

Airflow itself resolves ``AIRFLOW_CONN_<ID>`` (JSON or URI form); the library cannot import Airflow, so
this module understands the same two forms for the command line. Secrets stay in the environment.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from podledger.exceptions import ConnectionConfigError


@dataclass(frozen=True)
class ConnectionInfo:
    """The fields of an Airflow connection that podledger uses."""

    conn_id: str
    conn_type: str = ""
    host: str = ""
    schema: str = ""
    login: str | None = None
    password: str | None = field(default=None, repr=False)
    port: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def base_url(self, default_scheme: str = "http") -> str:
        """Return scheme://host[:port][/path] (host may already carry a scheme)."""
        host = self.host
        if "://" in host:
            scheme, host = host.split("://", 1)
        else:
            scheme = self.extra.get("scheme") or default_scheme
        netloc = f"{host}:{self.port}" if self.port else host
        path = self.schema.strip("/")
        return f"{scheme}://{netloc}" + (f"/{path}" if path else "")


def env_var_name(conn_id: str) -> str:
    """Return the environment variable Airflow reads for ``conn_id``."""
    return f"AIRFLOW_CONN_{conn_id.upper()}"


def _from_uri(conn_id: str, uri: str) -> ConnectionInfo:
    parts = urlsplit(uri)
    extra = dict(parse_qsl(parts.query))
    if "__extra__" in extra:
        extra = json.loads(extra["__extra__"])
    return ConnectionInfo(
        conn_id=conn_id,
        conn_type=parts.scheme.replace("-", "_"),
        host=unquote(parts.hostname or ""),
        schema=unquote(parts.path.lstrip("/")),
        login=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        port=parts.port,
        extra=extra,
    )


def get_connection(conn_id: str) -> ConnectionInfo:
    """Return the connection defined in ``AIRFLOW_CONN_<ID>`` or raise naming the variable to set."""
    name = env_var_name(conn_id)
    value = os.environ.get(name)
    if not value:
        raise ConnectionConfigError(
            f"connection {conn_id!r} is not defined: set {name} (JSON or URI, as for Airflow) "
            "or run inside Airflow where Connections are resolved"
        )
    if value.lstrip().startswith("{"):
        try:
            data = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ConnectionConfigError(f"connection {conn_id!r}: {name} is not valid JSON ({exc.msg})") from None
        extra = data.get("extra") or {}
        if isinstance(extra, str):
            extra = json.loads(extra)
        return ConnectionInfo(
            conn_id=conn_id,
            conn_type=data.get("conn_type", ""),
            host=data.get("host", "") or "",
            schema=data.get("schema", "") or "",
            login=data.get("login"),
            password=data.get("password"),
            port=data.get("port"),
            extra=extra,
        )
    return _from_uri(conn_id, value)


def s3_storage_options(conn: ConnectionInfo | None) -> dict[str, Any]:
    """Translate an AWS connection into s3fs storage options (endpoint, region, keys)."""
    if conn is None:
        return {}
    extra = conn.extra
    key = extra.get("aws_access_key_id") or conn.login
    secret = extra.get("aws_secret_access_key") or conn.password
    options: dict[str, Any] = {}
    if key and secret:
        options.update(key=key, secret=secret)
    client_kwargs: dict[str, Any] = {}
    if extra.get("endpoint_url"):
        client_kwargs["endpoint_url"] = extra["endpoint_url"]
    if extra.get("region_name"):
        client_kwargs["region_name"] = extra["region_name"]
    if client_kwargs:
        options["client_kwargs"] = client_kwargs
    return options
