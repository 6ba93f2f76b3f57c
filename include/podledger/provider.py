"""podledger as an Airflow provider: the "Prometheus" connection type with its own form fields (no JSON extras).

Registered through the ``apache_airflow_provider`` entry point (pyproject.toml); the hook class lives with the
Airflow adapters (plugins/podledger_airflow/hooks.py). Plain data: importing this module imports no Airflow.
"""

from __future__ import annotations

from typing import Any

from podledger import __version__

PROMETHEUS_FIELDS: dict[str, dict[str, Any]] = {
    "token": {"label": "Token header", "description": "Sent as a `token` header (PROMETHEUS_AUTH_TOKEN)",
              "schema": {"type": ["string", "null"], "format": "password"}},
    "bearer_token": {"label": "Bearer token", "description": "Sent as `Authorization: Bearer …`",
                     "schema": {"type": ["string", "null"], "format": "password"}},
    "x_scope_orgid": {"label": "Tenant (X-Scope-OrgID)", "description": "Mimir/Cortex/Loki tenant",
                      "schema": {"type": ["string", "null"]}},
    "sigv4_region": {"label": "SigV4 region", "description": "Amazon Managed Prometheus: sign requests for this region",
                     "schema": {"type": ["string", "null"]}},
    "sigv4_aws_conn_id": {"label": "SigV4 AWS connection", "description": "AWS connection whose credentials sign "
                          "(default aws_default)", "schema": {"type": ["string", "null"]}},
    "readiness_path": {"label": "Readiness path", "description": "Checked before exporting (default /-/ready; "
                       "/ready for Mimir; empty to skip)", "schema": {"type": ["string", "null"]}},
    "verify": {"label": "TLS verify", "description": "true, false, or the path of a CA bundle",
               "schema": {"type": ["string", "null"]}},
    "scheme": {"label": "Scheme", "description": "http or https (SCHEME)", "schema": {"type": ["string", "null"]}},
}


def get_provider_info() -> dict[str, Any]:
    """Provider info read by Airflow's ProvidersManager."""
    return {
        "package-name": "podledger",
        "name": "podledger",
        "description": "Kubernetes cost allocation from Prometheus and the cloud bill",
        "versions": [__version__],
        "connection-types": [{
            "connection-type": "prometheus",
            "hook-class-name": "podledger_airflow.hooks.PrometheusHook",
            "hook-name": "Prometheus (podledger)",
            "conn-fields": PROMETHEUS_FIELDS,
            "ui-field-behaviour": {
                "hidden-fields": [],
                "relabeling": {"host": "Host (or URL)", "schema": "Path prefix", "login": "Username"},
                "placeholders": {"host": "prometheus-server.monitoring.svc", "port": "9090", "schema": "prometheus"},
            },
        }],
    }
