"""Read Airflow-style connections from the environment, so the CLI uses the same definitions as the DAGs.

Airflow itself resolves ``AIRFLOW_CONN_<ID>`` (JSON or URI form); the library cannot import Airflow, so
this module understands the same two forms for the command line. Secrets stay in the environment.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from podledger.exceptions import ConnectionConfigError

log = logging.getLogger(__name__)


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


def _airflow_connection(conn_id: str) -> ConnectionInfo | None:
    """The connection as Airflow resolves it (environment, secrets backends, metadata DB), or None without Airflow.

    The only place the library reaches into Airflow, and only when it is installed: the CLI must see the same
    Connections as the DAGs, secrets backends included.
    """
    try:
        from airflow.exceptions import AirflowNotFoundException  # type: ignore[attr-defined]
        from airflow.models.connection import Connection
    except ImportError:
        return None
    try:
        conn = Connection.get_connection_from_secrets(conn_id)
    except AirflowNotFoundException:
        return None
    except Exception as exc:  # noqa: BLE001 - no metadata DB here: the environment variables are the source
        log.debug("connection %s: Airflow could not resolve it (%s); using AIRFLOW_CONN_* only", conn_id, exc)
        return None
    return ConnectionInfo(conn_id=conn_id, conn_type=conn.conn_type or "", host=conn.host or "",
                          schema=conn.schema or "", login=conn.login, password=conn.password, port=conn.port,
                          extra=conn.extra_dejson)


def get_connection(conn_id: str) -> ConnectionInfo:
    """Return a connection: through Airflow when it is installed (secrets backends), else ``AIRFLOW_CONN_<ID>``."""
    name = env_var_name(conn_id)
    value = os.environ.get(name)
    if not value:
        resolved = _airflow_connection(conn_id)
        if resolved is not None:
            return resolved
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


def aws_storage_options(aws_conn_id: str) -> dict[str, Any]:
    """s3fs options for an AWS connection, with credentials resolved exactly as the DAGs resolve them.

    With the Amazon provider installed: its ``AwsBaseHook`` (keys, profile, ``role_arn`` with
    ``assume_role_kwargs`` such as ``ExternalId``, web identity…), then its endpoint and region. Without it: the
    connection's keys, and ``role_arn`` (+ ``external_id`` or ``assume_role_kwargs.ExternalId``) assumed through STS.
    """
    try:
        from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook
    except ImportError:
        return _assumed_options(get_connection(aws_conn_id))
    hook = AwsBaseHook(aws_conn_id=aws_conn_id, client_type="s3")
    credentials = hook.get_credentials()
    options: dict[str, Any] = {"key": credentials.access_key, "secret": credentials.secret_key}
    if credentials.token:
        options["token"] = credentials.token
    client_kwargs = {k: v for k, v in (("endpoint_url", hook.conn_config.endpoint_url),
                                       ("region_name", hook.conn_config.region_name)) if v}
    if client_kwargs:
        options["client_kwargs"] = client_kwargs
    return _with_client_config(options, hook.conn_config.extra_config)


def _with_client_config(options: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``options`` with the connection extra's ``config_kwargs`` (retries, timeouts, pool size: botocore's Config,
    as the Amazon provider applies them to the DAGs' clients), so the CLI's s3fs client behaves as the DAGs' do."""
    config = dict(extra.get("config_kwargs") or {})
    if not config:
        return options
    if config.get("signature_version") == "unsigned":  # the provider's spelling of an anonymous client
        from botocore import UNSIGNED

        config["signature_version"] = UNSIGNED
    return {**options, "config_kwargs": config}


def _assumed_options(conn: ConnectionInfo) -> dict[str, Any]:
    options = s3_storage_options(conn)
    role = conn.extra.get("role_arn")
    if not role:
        return options
    import boto3

    external = conn.extra.get("external_id") or (conn.extra.get("assume_role_kwargs") or {}).get("ExternalId")
    sts_endpoint = ((conn.extra.get("service_config") or {}).get("sts") or {}).get("endpoint_url")
    sts = boto3.client("sts", aws_access_key_id=options.get("key"), aws_secret_access_key=options.get("secret"),
                       region_name=conn.extra.get("region_name") or "us-east-1", endpoint_url=sts_endpoint)
    kwargs = {"RoleArn": role, "RoleSessionName": "podledger"}
    if external:
        kwargs["ExternalId"] = external
    credentials = sts.assume_role(**kwargs)["Credentials"]
    return {**options, "key": credentials["AccessKeyId"], "secret": credentials["SecretAccessKey"],
            "token": credentials["SessionToken"]}


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
    return _with_client_config(options, extra)
