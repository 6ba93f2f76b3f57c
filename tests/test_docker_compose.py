"""The Docker stack file is valid compose and holds the whole stack (checked offline with docker-compose v1)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

COMPOSE = Path(__file__).resolve().parents[1] / "docker-compose.yaml"


def test_compose_file_validates_offline():
    result = subprocess.run(["docker-compose", "-f", str(COMPOSE), "config", "-q"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    services = subprocess.run(["docker-compose", "-f", str(COMPOSE), "config", "--services"], capture_output=True,
                              text=True, check=True).stdout.split()
    assert {"postgres", "redis", "minio", "minio-buckets", "prometheus", "airflow-apiserver", "airflow-scheduler",
            "airflow-dag-processor", "airflow-triggerer", "airflow-worker"} <= set(services)


def test_celery_executor_remote_logs_and_buckets():
    spec = yaml.safe_load(COMPOSE.read_text())
    env = spec["x-airflow-common"]["environment"]
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW__LOGGING__REMOTE_LOGGING"] == "True" and env["AIRFLOW__LOGGING__REMOTE_BASE_LOG_FOLDER"].startswith("s3://")
    assert "airflow-logs" in spec["services"]["minio-buckets"]["entrypoint"]
    ports = [p for s in spec["services"].values() for p in s.get("ports", [])]
    assert ports and all(p.startswith("127.0.0.1:") for p in ports), "published ports stay on loopback"


def test_demo_prometheus_is_loaded_with_the_demo_day_and_its_bill():
    spec = yaml.safe_load(COMPOSE.read_text())
    services = spec["services"]
    assert "synth" in services["demo-data"]["entrypoint"]
    assert "promtool tsdb create-blocks-from openmetrics" in services["prometheus-load"]["entrypoint"]
    assert services["prometheus"]["depends_on"]["prometheus-load"]["condition"] == "service_completed_successfully"
    assert "prometheus-data:/prometheus" in services["prometheus"]["volumes"]
    assert "local/podledger-billing/cur/" in services["minio-buckets"]["entrypoint"]
    assert spec["x-airflow-common"]["depends_on"]["prometheus"]["condition"] == "service_healthy"
    # The pool named by the sample cost center exists before the scheduler starts.
    assert "airflow pools set prometheus_demo" in " ".join(services["airflow-init"]["command"])
