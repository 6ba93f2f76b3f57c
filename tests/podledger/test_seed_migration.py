"""From the seed exporter: its CronJob becomes a cost center that passes check-config, secrets as placeholders."""

from __future__ import annotations

import json
from pathlib import Path

from podledger.cli import main as cli
from podledger.config import load_config

CRONJOB = Path(__file__).with_name("data") / "seed-cronjob.yaml"


def test_the_seed_cronjob_becomes_a_valid_cost_center_and_its_connections(tmp_path, capsys):
    out = tmp_path / "cost_centers.yaml"
    assert cli(["from-cronjob", str(CRONJOB), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert cli(["check-config", "--config", str(out)]) == 0
    (center,) = load_config(out).cost_centers
    assert center.name == "prometheus-exporter" and center.schedule == "*/30 * * * *"
    assert center.storage.uri == "s3://acme-k8s-metrics/k8s/prometheus" and center.storage.format == "json.gz"
    assert center.backfill_days == 3 and center.time_frame_seconds == 3600 and center.queries_batch_size == 5
    assert str(center.initial_backfill_date) == "2026-10-01"
    (cluster,) = center.clusters
    assert cluster.name == "prod-eks-1" and center.cluster_label == "cluster" and cluster.cluster_label_value == "prod-eks-1"
    connections = {line.split("=", 1)[0].removeprefix("export "): json.loads(line.split("=", 1)[1].strip("'"))
                   for line in printed.splitlines() if line.startswith("export ")}
    prometheus = connections["AIRFLOW_CONN_PROMETHEUS_PROD_EKS_1"]
    assert prometheus["host"] == "prometheus-server.monitoring.svc.cluster.local" and prometheus["port"] == 9090
    assert prometheus["extra"]["bearer_token"] == "<PROMETHEUS_BEARER_AUTH_TOKEN>"
    assert prometheus["extra"]["readiness_path"] == "/-/ready" and prometheus["extra"]["x_scope_orgid"] == "acme"
    assert prometheus["login"] == "exporter" and prometheus["password"] == "<PROMETHEUS_PASSWORD>"
    aws = connections["AIRFLOW_CONN_AWS_PODLEDGER_EXPORTER"]
    assert aws["extra"]["role_arn"].endswith("role/prometheus-exporter")
    assert aws["extra"]["assume_role_kwargs"] == {"ExternalId": "acme-external-id"}
