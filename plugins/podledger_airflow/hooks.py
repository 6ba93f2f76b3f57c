"""PrometheusHook: an Airflow connection -> podledger's Prometheus client (a prometheus-api-client ``PrometheusConnect``)."""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseHook

from podledger.connections import ConnectionInfo
from podledger.promclient import PrometheusClient, check_ready, client_from_connection


def form_extras(extra: dict[str, Any]) -> dict[str, Any]:
    """The "Prometheus" form's fields (``extra__prometheus__…`` or plain names) in the extras podledger reads."""
    extra = {k.removeprefix("extra__prometheus__"): v for k, v in extra.items() if v not in (None, "")}
    region, aws = extra.pop("sigv4_region", None), extra.pop("sigv4_aws_conn_id", None)
    if region and not extra.get("sigv4"):
        extra["sigv4"] = {"region": region, "aws_conn_id": aws or "aws_default"}
    return extra


def connection_info(conn_id: str) -> ConnectionInfo:
    """Return an Airflow connection's fields in podledger's (Airflow-free) shape."""
    conn = BaseHook.get_connection(conn_id)
    return ConnectionInfo(conn_id=conn_id, conn_type=conn.conn_type or "", host=conn.host or "", schema=conn.schema or "",
                          login=conn.login, password=conn.password, port=conn.port, extra=form_extras(conn.extra_dejson))


class PrometheusHook(BaseHook):
    """Interact with a Prometheus-compatible HTTP API (Prometheus, Thanos, Mimir, VictoriaMetrics).

    Connection fields: host (may include the scheme), port, schema (path prefix such as ``prometheus``),
    login/password (basic auth). Extras: ``token`` (sent as a ``token`` header), ``bearer_token``,
    ``x_scope_orgid`` (tenant), ``headers`` (dict), ``verify`` (false or a CA bundle path), ``scheme``,
    ``readiness_path`` (default ``/-/ready``; e.g. ``/ready`` for Mimir, empty to skip the check).
    """

    conn_name_attr = "prometheus_conn_id"
    default_conn_name = "prometheus_default"
    conn_type = "prometheus"  # the connection type podledger registers (its form: podledger/provider.py); http works too
    hook_name = "Prometheus (podledger)"

    def __init__(self, prometheus_conn_id: str = default_conn_name, timeout: float = 120.0) -> None:
        super().__init__()
        self.prometheus_conn_id = prometheus_conn_id
        self.timeout = timeout

    def connection_info(self) -> ConnectionInfo:
        """Return the connection's fields in podledger's own (Airflow-free) shape."""
        return connection_info(self.prometheus_conn_id)

    def get_conn(self) -> PrometheusClient:
        """Return podledger's client (a ``PrometheusConnect`` and its session) configured from the connection.

        With a ``sigv4`` extra (Amazon Managed Prometheus), requests are signed with the credentials of the
        AWS connection named by ``sigv4.aws_conn_id`` (default ``aws_default``), role assumption included.
        """
        info = self.connection_info()
        credentials = None
        if info.extra.get("sigv4"):
            from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

            aws = AwsBaseHook(aws_conn_id=info.extra["sigv4"].get("aws_conn_id", "aws_default"), client_type="sts")
            credentials = aws.get_credentials()
        return client_from_connection(info, self.timeout, credentials=credentials)

    def check_ready(self, path: str | None = None) -> None:
        """Raise unless the endpoint's readiness path answers 200 (the connection's ``readiness_path`` extra)."""
        info = self.connection_info()
        path = path if path is not None else info.extra.get("readiness_path", "/-/ready")
        if path:
            check_ready(self.get_conn(), path)
