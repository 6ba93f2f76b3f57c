"""The Docker stack file is valid compose and holds the whole stack (checked offline with docker-compose v1)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yaml"


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


def _config() -> dict:
    """The compose file as docker-compose resolves it (anchors merged, variables at their defaults)."""
    out = subprocess.run(["docker-compose", "-f", str(COMPOSE), "config"], capture_output=True, text=True, check=True,
                         env={"PATH": "/usr/bin:/bin"})
    return yaml.safe_load(out.stdout)


def test_shaped_like_airflows_own_compose_file():
    spec = _config()
    services = spec["services"]
    airflow = [name for name in services if name.startswith("airflow-")]
    assert len(airflow) == 6
    for name, service in services.items():
        assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
    for name in ("postgres", "redis", "minio", "prometheus", *[a for a in airflow if a != "airflow-init"]):
        assert services[name].get("restart") == "always", f"{name} does not restart"
    for name in airflow:
        assert services[name]["build"]["context"] == str(ROOT), f"{name} does not build the repository's image"
        assert not any("_PIP_ADDITIONAL_REQUIREMENTS" in str(v) for v in services[name]["environment"])
        if name != "airflow-init":
            assert services[name]["user"] == "50000:0", "${AIRFLOW_UID:-50000}"
    init = services["airflow-init"]
    assert init["user"] == "0:0" and init["environment"]["_AIRFLOW_DB_MIGRATE"] == "true"
    assert "chown" in " ".join(init["command"]) and "passwords.json" in " ".join(init["command"])
    raw = yaml.safe_load(COMPOSE.read_text())
    assert raw["x-airflow-common"]["user"] == "${AIRFLOW_UID:-50000}:0"


def test_nothing_is_written_into_the_bind_mounted_repository():
    for name, service in _config()["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0] if isinstance(volume, str) else volume.get("source", "")
            if source.startswith(("/", ".")):
                assert volume.endswith(":ro") or (isinstance(volume, dict) and volume.get("read_only")), \
                    f"{name} mounts {volume} writable"


def test_login_in_the_readme_is_the_one_the_stack_sets():
    spec = yaml.safe_load(COMPOSE.read_text())
    env = spec["x-airflow-common"]["environment"]
    assert env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"] == "admin:admin"  # user admin, role admin
    readme = (ROOT / "README.md").read_text()
    assert "admin/admin" not in readme
    assert "PODLEDGER_ADMIN_PASSWORD" in readme and "passwords.json" in readme


def _requirement_files(text: str) -> set[str]:
    return set(re.findall(r"requirements[\w-]*\.txt", text))


def test_dockerfile_installs_the_runtime_requirements_the_bootstrap_installs():
    dockerfile = (ROOT / "Dockerfile").read_text()
    installed = set(re.findall(r"pip install [^\n]*-r\s+\S*?(requirements[\w-]*\.txt)", dockerfile))
    bootstrap = (ROOT / "scripts" / "bootstrap.sh").read_text()
    runtime = re.search(r'""\) REQ=(\S+) ;;', bootstrap).group(1)
    assert installed == {runtime} == {"requirements.txt"}
    # The demo and test sets are built on that same file, not beside it.
    assert "-r requirements.txt" in (ROOT / "requirements-demo.txt").read_text()
    assert "-r requirements-demo.txt" in (ROOT / "requirements-dev.txt").read_text()
    assert "pip install --no-cache-dir --no-deps -e /opt/podledger" in dockerfile
