"""Benchmark reading a day of exported windows from S3 the way the DAG's task does (the Amazon provider's S3Hook).

    .venv/bin/python bench/s3_fetch.py --delay-ms 0 20 --repeat 3

A day of bench/enrich.py's cluster (500 nodes / 15,000 pods: 24 windows, 24 manifests and 456 metric files,
22 MiB) is uploaded to moto's S3 server on loopback; a proxy in front of it waits ``--delay-ms`` before each
request, standing for S3's time to first byte (AWS: tens of milliseconds). The day is then read through
`S3HookStore` both ways, interleaved and repeated in one run:

- podledger: `enrich._read_day` — the manifests, then every file they list, `FETCH_THREADS` requests in flight;
- the former way (the peer): 4 windows at a time, each window's files one after another (as `fetch_window` did), then the
  same decode.

moto and the proxy are Python servers on this 2-core machine, so at 0 ms the figure is mostly their own time;
S3 serves many connections at once, so the gain at a real round trip is, if anything, larger than printed.
"""

from __future__ import annotations

import argparse
import atexit
import datetime as dt
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins"))

PROXY = Path(__file__).with_name("latency_proxy.py")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


def main() -> None:  # noqa: PLR0915 - a benchmark's whole run, top to bottom
    import enrich as bench

    from podledger.enrich import WINDOW_MARK, _read_day, hours_of
    from podledger.layout import Window, billing_period_end, plan_windows
    from podledger.windows import FetchedWindow, _fetch_file, decode_stacked, read_manifest
    from podledger_lab.demo import ensure_bucket
    from podledger_lab.stack import start_moto

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--delay-ms", type=float, nargs="+", default=[0.0, 20.0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workdir", default=".podledger/bench-enrich")
    args = parser.parse_args()
    root = Path(args.workdir).resolve()
    bench.build(root, 500, 15000, 1)
    moto = start_moto(Path(tempfile.mkdtemp(prefix="podledger-s3-fetch-")))
    atexit.register(os.kill, moto.pid, signal.SIGTERM)
    client = ensure_bucket(moto, "metrics")
    exported = root / "metrics" / bench.PREFIX
    folder = exported / bench.CLUSTER / f"end={billing_period_end(bench.START):%Y%m%d}" / f"day={bench.START.day}"
    files = [p for p in sorted(folder.rglob("*")) if p.is_file()]
    for path in files:
        client.upload_file(str(path), "metrics", str(path.relative_to(exported)))
    size = sum(p.stat().st_size for p in files)
    print(f"one day: {len(files)} objects, {size / 2**20:.1f} MiB on moto S3 (loopback)")
    config = bench._config(root)
    hours = hours_of(bench.START, bench.START + dt.timedelta(days=1))
    windows = [plan_windows(h, h + dt.timedelta(hours=1), config.time_frame_seconds)[0] for h in hours]

    from podledger_airflow.stores import S3HookStore

    def podledger(store: S3HookStore) -> dict:
        return _read_day(store, "", bench.CLUSTER, hours, config.time_frame_seconds)

    def former_window(store: S3HookStore, window: Window) -> FetchedWindow:
        manifest = read_manifest(store, "", bench.CLUSTER, window)
        return FetchedWindow(store, bench.CLUSTER, window, {
            name: _fetch_file(store, "", bench.CLUSTER, window, name, entry) for name, entry in manifest.metrics.items()})

    def former(store: S3HookStore) -> dict:
        with ThreadPoolExecutor(max_workers=4) as pool:
            fetched = list(pool.map(lambda w: former_window(store, w), windows))
        return decode_stacked(list(zip(hours, fetched, strict=True)), drop=WINDOW_MARK)

    for delay in args.delay_ms:
        port = _free_port()
        proxy = subprocess.Popen([sys.executable, str(PROXY), str(port), moto.url, str(delay / 1000)])
        try:
            _wait_for(port)
            os.environ["AIRFLOW_CONN_AWS_BENCH_S3"] = json.dumps({
                "conn_type": "aws", "login": "podledger", "password": "podledger-secret",
                "extra": {"endpoint_url": f"http://127.0.0.1:{port}", "region_name": "us-east-1"}})
            store = S3HookStore("metrics", "aws_bench_s3")
            times: dict[str, list[float]] = {"podledger": [], "former": []}
            rows = {}
            podledger(store)  # warm-up: connections, imports
            for _ in range(args.repeat):
                for name, read in (("podledger", podledger), ("former", former)):
                    started = time.perf_counter()
                    frames = read(store)
                    times[name].append(time.perf_counter() - started)
                    rows[name] = {metric: frame.height for metric, frame in frames.items()}
            assert rows["podledger"] == rows["former"], "the two reads decoded different rows"
            ours, theirs = statistics.median(times["podledger"]), statistics.median(times["former"])
            print(f"+{delay:4.0f} ms a request: podledger {ours:5.2f}s [{min(times['podledger']):.2f}-"
                  f"{max(times['podledger']):.2f}] | window by window, 4 at a time {theirs:5.2f}s "
                  f"[{min(times['former']):.2f}-{max(times['former']):.2f}] | former/podledger {theirs / ours:.2f}x "
                  f"({args.repeat} interleaved runs each, medians; same rows: {sum(rows['podledger'].values()):,})")
        finally:
            proxy.terminate()
            proxy.wait(timeout=10)


if __name__ == "__main__":
    main()
