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
