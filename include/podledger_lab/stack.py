"""The local stack for the demo and the tests: Prometheus (Debian package) and a moto S3 server.

Every server binds 127.0.0.1 on a free port, runs in its own process group, and is stopped by PID.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import requests

from podledger.exceptions import PodledgerError


def free_port() -> int:
    """Return a TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    """A server process started by podledger."""

    name: str
    pid: int
    port: int
    url: str
    log: str

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the process group by PID: SIGTERM, then SIGKILL after ``timeout``."""
        stop_pid(self.pid, timeout)


def stop_pid(pid: int, timeout: float = 15.0) -> None:
    """Terminate the process group led by ``pid`` and wait for it to exit."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
            if done:
                return
        except ChildProcessError:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
        time.sleep(0.1)
    try:
        os.killpg(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass


def _spawn(name: str, cmd: list[str], log_path: Path, port: int, url: str, ready_path: str, timeout: float) -> Server:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    server = Server(name, proc.pid, port, url, str(log_path))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise PodledgerError(f"{name} exited with code {proc.returncode} while starting; see {log_path}")
        try:
            if requests.get(url + ready_path, timeout=1).status_code == 200:
                return server
        except requests.RequestException:
            pass
        time.sleep(0.2)
    server.stop()
    raise PodledgerError(f"{name} did not become ready at {url}{ready_path} within {timeout:.0f}s; see {log_path}")


def load_blocks(openmetrics: Path, tsdb_dir: Path, max_block_duration: str | None = None) -> None:
    """Turn an OpenMetrics file into TSDB blocks with ``promtool tsdb create-blocks-from openmetrics``.

    promtool re-reads the whole file once per block window (2 h by default): for many days of data pass a
    larger ``max_block_duration`` (e.g. ``"744h"``) so the file is read a few times, not hundreds.
    """
    promtool = shutil.which("promtool")
    if not promtool:
        raise PodledgerError("promtool not found: install Debian's prometheus package (apt-get install prometheus)")
    tsdb_dir.mkdir(parents=True, exist_ok=True)
    extra = [f"--max-block-duration={max_block_duration}"] if max_block_duration else []
    result = subprocess.run([promtool, "tsdb", "create-blocks-from", "openmetrics", "--quiet", *extra, str(openmetrics),
                             str(tsdb_dir)], capture_output=True, text=True)
    if result.returncode:
        raise PodledgerError(f"promtool could not load {openmetrics}: {result.stderr.strip() or result.stdout.strip()}")


def start_prometheus(tsdb_dir: Path, work_dir: Path, *, extra_args: list[str] | None = None, port: int | None = None,
                     timeout: float = 60.0) -> Server:
    """Start Prometheus on 127.0.0.1 over ``tsdb_dir`` (no scrapes; data from loaded blocks)."""
    binary = shutil.which("prometheus")
    if not binary:
        raise PodledgerError("prometheus not found: install Debian's prometheus package (apt-get install prometheus)")
    port = port or free_port()
    work_dir.mkdir(parents=True, exist_ok=True)
    config = work_dir / "prometheus.yml"
    config.write_text("global:\n  scrape_interval: 60s\nscrape_configs: []\n")
    cmd = [binary, f"--config.file={config}", f"--storage.tsdb.path={tsdb_dir}", f"--web.listen-address=127.0.0.1:{port}",
           "--storage.tsdb.retention.time=100y", "--web.enable-lifecycle", *(extra_args or [])]
    return _spawn("prometheus", cmd, work_dir / "prometheus.log", port, f"http://127.0.0.1:{port}", "/-/ready", timeout)


def start_victoria_metrics(work_dir: Path, *, port: int | None = None, timeout: float = 60.0) -> Server:
    """Start VictoriaMetrics single-node (Debian ``victoria-metrics``) on 127.0.0.1 with its own storage."""
    binary = shutil.which("victoria-metrics")
    if not binary:
        raise PodledgerError("victoria-metrics not found: apt-get install victoria-metrics")
    port = port or free_port()
    work_dir.mkdir(parents=True, exist_ok=True)
    cmd = [binary, f"-httpListenAddr=127.0.0.1:{port}", f"-storageDataPath={work_dir / 'vmdata'}", "-retentionPeriod=100y",
           "-search.disableCache", "-search.latencyOffset=0s"]
    return _spawn("victoria-metrics", cmd, work_dir / "victoria-metrics.log", port, f"http://127.0.0.1:{port}", "/health",
                  timeout)


def import_openmetrics(server: Server, openmetrics: Path, batch_lines: int = 200_000) -> int:
    """Import an OpenMetrics file (timestamps in seconds) into VictoriaMetrics; return the samples sent."""
    url = f"{server.url}/api/v1/import/prometheus"
    sent = 0
    batch: list[str] = []

    def flush() -> None:
        if batch:
            response = requests.post(url, data="".join(batch).encode(), timeout=300)
            if response.status_code not in (200, 204):
                raise PodledgerError(f"VictoriaMetrics import failed: HTTP {response.status_code} {response.text[:200]}")
            batch.clear()

    with openmetrics.open() as lines:
        for line in lines:
            if line.startswith("#"):
                continue
            head, ts = line.rsplit(" ", 1)
            batch.append(f"{head} {int(ts) * 1000}\n")  # the Prometheus text format takes milliseconds
            sent += 1
            if len(batch) >= batch_lines:
                flush()
    flush()
    requests.get(f"{server.url}/internal/force_flush", timeout=60)
    return sent


NGINX_AUTH_CONF = """
user root;
worker_processes 1;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log;
events {{ worker_connections 64; }}
http {{
  access_log {work}/nginx-access.log;
  client_body_temp_path {work}/tmp; proxy_temp_path {work}/tmp; fastcgi_temp_path {work}/tmp;
  uwsgi_temp_path {work}/tmp; scgi_temp_path {work}/tmp;
  # /limited/: a rate-limited endpoint (as Mimir / AMP / an API gateway answer 429 Too Many Requests).
  limit_req_zone $server_port zone=prometheus:1m rate={rate};
  limit_req_status 429;
  server {{
    listen 127.0.0.1:{port};
    location /open/   {{ proxy_pass {upstream}/; }}
    location /basic/  {{ auth_basic "prometheus"; auth_basic_user_file {work}/htpasswd; proxy_pass {upstream}/; }}
    location /token/  {{ if ($http_token != "{token}") {{ return 401; }} proxy_pass {upstream}/; }}
    location /bearer/ {{ if ($http_authorization != "Bearer {bearer}") {{ return 401; }} proxy_pass {upstream}/; }}
    location /limited/ {{ limit_req zone=prometheus; proxy_pass {upstream}/; }}
    location /tenant/ {{ if ($http_x_scope_orgid != "{tenant}") {{ return 401; }} proxy_pass {upstream}/; }}
  }}
}}
"""


def start_nginx_auth(upstream: str, work_dir: Path, *, user: str, password: str, token: str, bearer: str, tenant: str,
                     rate: str = "2r/s", port: int | None = None, timeout: float = 30.0) -> Server:
    """Start nginx (Debian package) on 127.0.0.1 in front of ``upstream``, one path prefix per auth method.

    ``/limited/`` passes ``rate`` requests (no burst) and answers 429 above it.
    """
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(binary).exists():
        raise PodledgerError("nginx not found: apt-get install nginx-light")
    port = port or free_port()
    work_dir.mkdir(parents=True, exist_ok=True)
    (work_dir / "tmp").mkdir(exist_ok=True)
    (work_dir / "htpasswd").write_text(f"{user}:{{PLAIN}}{password}\n")
    conf = work_dir / "nginx.conf"
    conf.write_text(NGINX_AUTH_CONF.format(work=work_dir, port=port, upstream=upstream, token=token, bearer=bearer,
                                           tenant=tenant, rate=rate))
    cmd = [binary, "-c", str(conf), "-p", str(work_dir), "-g", "daemon off;"]
    return _spawn("nginx", cmd, work_dir / "nginx.log", port, f"http://127.0.0.1:{port}", "/open/-/ready", timeout)


def start_moto(work_dir: Path, *, port: int | None = None, timeout: float = 60.0) -> Server:
    """Start moto's S3-compatible server on 127.0.0.1 (the one stand-in: no S3 server ships in the registries)."""
    port = port or free_port()
    cmd = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    return _spawn("moto", cmd, work_dir / "moto.log", port, f"http://127.0.0.1:{port}", "/moto-api/", timeout)


def write_state(path: Path, servers: list[Server]) -> None:
    """Record started servers so ``podledger stack stop`` can stop them by PID later."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([asdict(s) for s in servers], indent=1))
