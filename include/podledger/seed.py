"""Coming from the seed exporter: turn its CronJob's environment into a cost center and Airflow Connections.

The seed is a CronJob whose container is configured by environment variables (S3_BUCKET, CLUSTER_NAME,
HOSTNAME, …). :func:`cost_center_from_cronjob` maps each to podledger's config field or connection field
(docs/seed-exporter.md has the table). Secrets are never copied: they become ``<placeholders>`` to fill in.
"""

from __future__ import annotations

import json
import re
from typing import Any

import yaml

from podledger.connections import env_var_name
from podledger.exceptions import ConfigError

SECRET_VARIABLES = ("PROMETHEUS_AUTH_TOKEN", "PROMETHEUS_BEARER_AUTH_TOKEN", "PROMETHEUS_PASSWORD")


def _env(manifest: dict[str, Any]) -> dict[str, str]:
    """The first container's environment: plain values, and ``<from secret NAME/KEY>`` for references."""
    spec = manifest.get("spec", {})
    pod = spec.get("jobTemplate", {}).get("spec", {}).get("template", {}).get("spec", {}) or spec.get("template", {}).get(
        "spec", {})
    containers = pod.get("containers") or []
    if not containers:
        raise ConfigError("the manifest has no container (expected a CronJob: spec.jobTemplate.spec.template.spec)")
    env = {}
    for item in containers[0].get("env") or []:
        ref = (item.get("valueFrom") or {}).get("secretKeyRef")
        env[item["name"]] = f"<from secret {ref['name']}/{ref['key']}>" if ref else str(item.get("value", ""))
    return env


def _name(value: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", value).strip("-._")[:63] or "seed"


def cost_center_from_cronjob(text: str) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Return (cost center, connections by id) for the seed CronJob(s) in ``text``; secrets as placeholders."""
    manifests = [m for m in yaml.safe_load_all(text) if isinstance(m, dict) and m.get("kind") in ("CronJob", "Job")]
    if not manifests:
        raise ConfigError("no CronJob in the file: give the seed exporter's CronJob manifest")
    manifest = manifests[0]
    env = _env(manifest)
    cluster = _name(env.get("CLUSTER_NAME") or "cluster")
    prom_id, aws_id = f"prometheus_{cluster.replace('-', '_').replace('.', '_')}", "aws_podledger_exporter"
    bucket, prefix = env.get("S3_BUCKET", "<S3_BUCKET>"), env.get("S3_PREFIX", "k8s/prometheus").strip("/")
    cluster_config: dict[str, Any] = {"name": cluster, "prometheus_conn_id": prom_id}
    center: dict[str, Any] = {
        "name": _name(manifest.get("metadata", {}).get("name") or cluster),
        "clusters": [cluster_config],
        "storage": {"uri": f"s3://{bucket}/{prefix}", "aws_conn_id": aws_id, "format": "json.gz"},
        # The seed has no bill: point this at your CUR 2.0 export (the folder holding data/ and metadata/).
        "billing": {"uri": f"s3://{bucket}/cur/cost-and-usage-export", "aws_conn_id": aws_id},
    }
    schedule = manifest.get("spec", {}).get("schedule")
    if schedule:
        center["schedule"] = schedule
    if env.get("TIME_FRAME"):
        center["time_frame_seconds"] = int(env["TIME_FRAME"])
    if env.get("BACKFILL_DAYS"):
        center["backfill_days"] = env["BACKFILL_DAYS"]  # "3d" is accepted as is
    if env.get("INITIAL_BACKFILL_DATE"):
        center["initial_backfill_date"] = env["INITIAL_BACKFILL_DATE"][:10]
    if env.get("QUERIES_BATCH_SIZE"):
        center["queries_batch_size"] = int(env["QUERIES_BATCH_SIZE"])
    if env.get("CLUSTER_LABEL_NAME"):  # one central Prometheus: select this cluster's series by the label
        center["cluster_label"] = env["CLUSTER_LABEL_NAME"]
        cluster_config["cluster_label_value"] = env.get("CLUSTER_NAME") or cluster
    extra: dict[str, Any] = {"scheme": env.get("SCHEME", "http")}
    if env.get("METRICS_READINESS_PATH"):
        extra["readiness_path"] = env["METRICS_READINESS_PATH"]
    if "PROMETHEUS_AUTH_TOKEN" in env:
        extra["token"] = "<PROMETHEUS_AUTH_TOKEN>"
    if "PROMETHEUS_BEARER_AUTH_TOKEN" in env:
        extra["bearer_token"] = "<PROMETHEUS_BEARER_AUTH_TOKEN>"
    if env.get("PROMETHEUS_X_SCOPE_ORGID"):
        extra["x_scope_orgid"] = env["PROMETHEUS_X_SCOPE_ORGID"]
    prometheus: dict[str, Any] = {"conn_type": "http", "host": env.get("HOSTNAME", "<HOSTNAME>"),
                                  "port": int(env["PORT"]) if env.get("PORT", "").isdigit() else None,
                                  "schema": env.get("PATH_PREFIX", "").strip("/"), "extra": extra}
    if env.get("PROMETHEUS_USERNAME"):
        prometheus.update(login=env["PROMETHEUS_USERNAME"], password="<PROMETHEUS_PASSWORD>")
    aws_extra: dict[str, Any] = {"region_name": "<AWS_REGION>"}
    if env.get("ROLE_ARN"):
        aws_extra["role_arn"] = env["ROLE_ARN"]
    if env.get("ROLE_EXTERNAL_ID"):
        aws_extra["assume_role_kwargs"] = {"ExternalId": env["ROLE_EXTERNAL_ID"]}
    connections = {prom_id: prometheus, aws_id: {"conn_type": "aws", "extra": aws_extra}}
    return center, connections


def render(center: dict[str, Any], connections: dict[str, dict[str, Any]]) -> tuple[str, str]:
    """The cost-center YAML file and the shell lines defining the Connections (placeholders to replace)."""
    config = ("# Generated by `podledger from-cronjob` from the seed exporter's CronJob. Fill in the <placeholders>:\n"
              "# billing.uri must name your CUR 2.0 export (the seed has none: the value below is a guess), and the\n"
              "# connections need the secrets and the AWS region.\n"
              + yaml.safe_dump({"cost_centers": [center]}, sort_keys=False))
    lines = ["# Airflow Connections for the cost center (or create them in the UI / your secrets backend)."]
    lines += [f"export {env_var_name(conn_id)}='{json.dumps(value)}'" for conn_id, value in connections.items()]
    return config, "\n".join(lines) + "\n"
