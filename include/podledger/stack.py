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


def load_blocks(openmetrics: Path, tsdb_dir: Path) -> None:
    """Turn an OpenMetrics file into TSDB blocks with ``promtool tsdb create-blocks-from openmetrics``."""
    promtool = shutil.which("promtool")
    if not promtool:
        raise PodledgerError("promtool not found: install Debian's prometheus package (apt-get install prometheus)")
    tsdb_dir.mkdir(parents=True, exist_ok=True)
    result = subprocess.run([promtool, "tsdb", "create-blocks-from", "openmetrics", "--quiet", str(openmetrics),
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


def start_moto(work_dir: Path, *, port: int | None = None, timeout: float = 60.0) -> Server:
    """Start moto's S3-compatible server on 127.0.0.1 (the one stand-in: no S3 server ships in the registries)."""
    port = port or free_port()
    cmd = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    return _spawn("moto", cmd, work_dir / "moto.log", port, f"http://127.0.0.1:{port}", "/moto-api/", timeout)


def write_state(path: Path, servers: list[Server]) -> None:
    """Record started servers so ``podledger stack stop`` can stop them by PID later."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([asdict(s) for s in servers], indent=1))


def stop_from_state(path: Path) -> list[str]:
    """Stop every server recorded in ``path``; return their names."""
    if not path.exists():
        return []
    names = []
    for item in json.loads(path.read_text()):
        stop_pid(int(item["pid"]))
        names.append(item["name"])
    path.unlink()
    return names
