"""Write a synthetic cluster as OpenMetrics (kube-state-metrics v2 + kubelet cAdvisor label sets) and its truth.

The file is what ``promtool tsdb create-blocks-from openmetrics`` loads: every sample has a timestamp in
seconds, each series is written in time order, and the file ends with ``# EOF``.
"""

from __future__ import annotations

import bisect
import logging
import math
from array import array
from collections import defaultdict
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

from podledger_lab.synth.cluster import (
    GIB,
    MIB,
    PAUSE_IMAGE,
    Cluster,
    Node,
    Pod,
    container_active,
    cpu_profile,
    memory_profile,
    stable_hex,
)

KSM = {"job": "kube-state-metrics", "instance": "10.0.200.10:8080"}
# Data-quality faults the generator can inject (validation tests provoke each rule with real series).
FAULTS = frozenset({"duplicate_scrape", "pod_without_node", "bad_provider_id", "no_node_labels", "aggregate_only",
                    "besteffort_usage", "requests_without_usage", "counter_reset", "scrape_gap"})
PHASES = ("Pending", "Running", "Succeeded", "Failed", "Unknown")
log = logging.getLogger(__name__)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(labels: dict[str, str]) -> str:
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items()) + "}"


def _fmt(value: float) -> str:
    return repr(float(value)) if value != int(value) else str(int(value))


def window_start(t: int) -> int:
    """Return the start of the export window (t0, t0+3600] that contains sample time ``t``."""
    return ((t - 1) // 3600) * 3600


class _Writer:
    def __init__(self, out: IO[str], extra: dict[str, str], faults: frozenset[str] = frozenset(),
                 gap: tuple[int, int] | None = None) -> None:
        self.out = out
        self.extra = extra
        self.faults = faults
        self.gap = gap  # (start, end]: no sample of any series in it (a Prometheus outage)
        self.series = 0
        self.samples = 0

    def series_of(self, name: str, labels: dict[str, str], points: Iterable[tuple[int, float]]) -> None:
        head = name + _labels({**labels, **self.extra})
        if self.gap:
            points = [(t, v) for t, v in points if not self.gap[0] < t <= self.gap[1]]
        lines = [f"{head} {_fmt(v)} {t}\n" for t, v in points]
        if lines:
            self.out.writelines(lines)
            self.series += 1
            self.samples += len(lines)

    def constant(self, name: str, labels: dict[str, str], start: int, end: int, value: float = 1.0) -> None:
        self.series_of(name, labels, ((t, value) for t in range(start + 60, end + 1, 60)))


def _node_series(w: _Writer, cluster: Cluster, node: Node) -> None:
    s, e = cluster.start, cluster.end
    provider_id = node.provider_id
    if "bad_provider_id" in w.faults and node is cluster.nodes[0]:
        provider_id = "kind://docker/kind/kind-worker"
    w.constant("kube_node_info", {**KSM, "node": node.name, "kernel_version": "5.10.225-213.878.amzn2.x86_64",
                                  "os_image": "Amazon Linux 2", "container_runtime_version": "containerd://1.7.22",
                                  "kubelet_version": "v1.30.4-eks-a737599", "kubeproxy_version": "deprecated",
                                  "provider_id": provider_id, "pod_cidr": "", "system_uuid": stable_hex(node.name),
                                  "internal_ip": node.internal_ip}, s, e)
    capacity = {"cpu": (node.vcpu, "core"), "memory": (node.memory_gib * GIB, "byte"), "pods": (58, "integer")}
    if node.gpus:
        capacity[node.accelerator] = (node.gpus, "integer")
    for resource, value in node.extra_capacity.items():
        capacity[resource] = (value, "integer")
    for resource, (value, unit) in capacity.items():
        labels = {**KSM, "node": node.name, "resource": resource, "unit": unit}
        w.constant("kube_node_status_capacity", labels, s, e, value)
        allocatable = {"cpu": value - 0.07, "memory": value - 0.6 * GIB}.get(resource, value)
        w.constant("kube_node_status_allocatable", labels, s, e, allocatable)
    if "no_node_labels" not in w.faults:
        w.constant("kube_node_labels", {**KSM, "node": node.name, **{f"label_{k}": v for k, v in node.labels.items()}}, s, e)


def _pod_faults(w: _Writer, pod: Pod, targets: dict[str, str]) -> set[str]:
    return {fault for fault, uid in targets.items() if fault in w.faults and uid == pod.uid}


def fault_targets(cluster: Cluster) -> dict[str, str]:
    """Return the uid of the pod each pod-level fault is injected into (deterministic)."""
    def first(prefix: str) -> str:
        return next(p.uid for p in cluster.pods if p.name.startswith(prefix))

    return {"duplicate_scrape": first("api-"), "pod_without_node": first("debug-shell"),
            "aggregate_only": first("grafana-"), "besteffort_usage": first("report-"),
            "requests_without_usage": first("postgres-0"), "counter_reset": first("worker-")}


def _pod_series(w: _Writer, pod: Pod, node_ip: str, truth: dict, faults: set[str] = frozenset(),
                accelerator: str = "nvidia_com_gpu") -> None:
    s, e, gone = pod.start, pod.end, pod.end + pod.linger
    ident = {"namespace": pod.namespace, "pod": pod.name, "uid": pod.uid}
    node_label = "" if "pod_without_node" in faults else pod.node
    pod_ip = f"10.1.{int(stable_hex(pod.uid, length=2), 16)}.{int(stable_hex(pod.uid, 'ip', length=2), 16)}"
    w.constant("kube_pod_info", {**KSM, **ident, "host_ip": node_ip, "pod_ip": pod_ip,
                                 "node": node_label, "created_by_kind": pod.owner_kind, "created_by_name": pod.owner_name,
                                 "priority_class": "", "host_network": "false"}, s, gone)
    for phase in PHASES:
        points = [(t, 1.0 if (phase == "Running" and t <= e) or (phase == pod.phase_after_end and t > e) else 0.0)
                  for t in range(s + 60, gone + 1, 60)]
        w.series_of("kube_pod_status_phase", {**KSM, **ident, "phase": phase}, points)
    if pod.owner_kind:
        w.constant("kube_pod_owner", {**KSM, **ident, "owner_kind": pod.owner_kind, "owner_name": pod.owner_name,
                                      "owner_is_controller": "true"}, s, gone)
    w.constant("kube_pod_labels", {**KSM, **ident, **{f"label_{k}": v for k, v in pod.labels.items()}}, s, gone)
    for c in pod.containers:
        if "besteffort_usage" in faults:
            break
        metric = ("kube_pod_init_container_resource_requests" if c.kind in ("init", "sidecar")
                  else "kube_pod_container_resource_requests")
        base = {**KSM, **ident, "container": c.name, "node": node_label}
        w.constant(metric, {**base, "resource": "cpu", "unit": "core"}, s, gone, c.cpu_request)
        w.constant(metric, {**base, "resource": "memory", "unit": "byte"}, s, gone, c.memory_request)
        if c.gpu_request:
            w.constant(metric, {**base, "resource": accelerator, "unit": "integer"}, s, gone, c.gpu_request)
        if c.kind in ("init", "sidecar"):
            w.constant("kube_pod_init_container_info", {**KSM, **ident, "container": c.name, "image": c.image,
                                                        "image_id": "",
                                                        "container_id": f"containerd://{stable_hex(pod.uid, c.name, length=64)}",
                                                        "restart_policy": "Always" if c.kind == "sidecar" else ""}, s, gone)

    # cAdvisor: per container, the pod cgroup aggregate (container="") and the pause sandbox.
    qos = "burstable"
    pod_cgroup = f"/kubepods.slice/kubepods-{qos}.slice/kubepods-{qos}-pod{pod.uid.replace('-', '_')}.slice"
    kubelet = {"job": "kubelet", "metrics_path": "/metrics/cadvisor", "instance": node_ip + ":10250"}
    agg_cpu: dict[int, float] = defaultdict(float)
    agg_mem: dict[int, float] = defaultdict(float)
    if "requests_without_usage" in faults:
        return _running_truth(pod, truth)
    for c in pod.containers:
        cs, ce = container_active(c, pod)
        cid = stable_hex(pod.uid, c.name, length=64)
        labels = {**kubelet, "container": c.name, "id": f"{pod_cgroup}/cri-containerd-{cid}.scope", "image": c.image,
                  "name": cid, "namespace": pod.namespace, "pod": pod.name}
        total, points, mem_points = 0.0, [(cs, 0.0)], []
        reset_at = (cs + ce) // 2 // 60 * 60 if "counter_reset" in faults else None
        for t in range(cs + 60, ce + 1, 60):
            used = cpu_profile(c, pod, t) * 60
            total = used if t == reset_at else total + used  # a reset: the counter restarts from 0
            points.append((t, total))
            mem = memory_profile(c, pod, t)
            mem_points.append((t, mem))
            agg_cpu[t] += used
            agg_mem[t] += mem
            row = truth[(window_start(t), pod.uid)]
            row["cpu_usage_core_seconds"] += used
            row["memory_usage_byte_seconds"] += mem * 60
        if "aggregate_only" in faults:
            continue
        w.series_of("container_cpu_usage_seconds_total", {**labels, "cpu": "total"}, points)
        w.series_of("container_memory_working_set_bytes", labels, mem_points)
        if "duplicate_scrape" in faults:  # a standalone cAdvisor DaemonSet scraping the same container
            twin = {**labels, "job": "cadvisor", "metrics_path": "/metrics", "instance": node_ip + ":8080"}
            w.series_of("container_cpu_usage_seconds_total", {**twin, "cpu": "total"}, points)
    if pod.gpu_util:
        # NVIDIA's DCGM exporter with its Kubernetes pod mapping: one series per GPU, utilisation in percent
        # (at most 100 each): a pod using 1.5 GPUs shows two GPUs at 75 %.
        gpus = max(1, math.ceil(pod.gpu_util - 1e-9))
        util = [(t, round(100 * pod.gpu_util / gpus, 3)) for t in range(s + 60, e + 1, 60)]
        for gpu in range(gpus):
            w.series_of("DCGM_FI_DEV_GPU_UTIL", {"job": "dcgm-exporter", "instance": node_ip + ":9400", "gpu": str(gpu),
                                                 "UUID": f"GPU-{stable_hex(pod.node, 'gpu', gpu, length=8)}",
                                                 "Hostname": pod.node, "modelName": "NVIDIA A10G",
                                                 "container": pod.containers[0].name, "namespace": pod.namespace,
                                                 "pod": pod.name}, util)
            for t, value in util:
                truth[(window_start(t), pod.uid)]["gpu_usage_hours"] += value / 100 * 60 / 3600
    sandbox = stable_hex(pod.uid, "sandbox", length=64)
    pause = {**kubelet, "container": "", "id": f"{pod_cgroup}/cri-containerd-{sandbox}.scope", "image": PAUSE_IMAGE,
             "name": sandbox, "namespace": pod.namespace, "pod": pod.name}
    aggregate = {**kubelet, "container": "", "id": pod_cgroup, "image": "", "name": "", "namespace": pod.namespace,
                 "pod": pod.name}
    minutes = range(s + 60, e + 1, 60)
    pause_cpu = [(s, 0.0)] + [(t, 0.0005 * (t - s)) for t in minutes]
    w.series_of("container_cpu_usage_seconds_total", {**pause, "cpu": "total"}, pause_cpu)
    w.series_of("container_memory_working_set_bytes", pause, ((t, float(MIB)) for t in minutes))
    running = 0.0
    agg_points = [(s, 0.0)]
    for t in minutes:
        running += agg_cpu[t] + 0.03
        agg_points.append((t, running))
    w.series_of("container_cpu_usage_seconds_total", {**aggregate, "cpu": "total"}, agg_points)
    w.series_of("container_memory_working_set_bytes", aggregate, ((t, agg_mem[t] + MIB) for t in minutes))
    rate = 2000 + int(stable_hex(pod.uid, "net", length=4), 16)  # bytes per second
    for metric, factor, key in (("container_network_transmit_bytes_total", 1.0, "network_transmit_bytes"),
                                ("container_network_receive_bytes_total", 1.7, "network_receive_bytes")):
        counter = [(s, 0.0)] + [(t, (t - s) * rate * factor) for t in minutes]
        for labels in (pause, aggregate):  # both carry the pod's eth0 counters: a trap for naive sums
            w.series_of(metric, {**labels, "interface": "eth0"}, counter)
        for t in minutes:
            truth[(window_start(t), pod.uid)][key] += 60 * rate * factor
    _running_truth(pod, truth)


def _running_truth(pod: Pod, truth: dict) -> None:
    for t in range(pod.start + 60, pod.end + 1, 60):
        truth[(window_start(t), pod.uid)]["running_seconds"] += 60


class _HourlyWriter(_Writer):
    """Keep every series in memory as arrays (16 bytes a sample) and write them out one hour at a time.

    A day of a 6,000-pod cluster is ~200 M samples: ~68 GB as one OpenMetrics file, ~3 GB in memory here, and
    ~3 GB per hour file, each loaded by promtool and deleted before the next is written.
    """

    def __init__(self, extra: dict[str, str], faults: frozenset[str], gap: tuple[int, int] | None) -> None:
        super().__init__(None, extra, faults, gap)  # type: ignore[arg-type]
        self.stored: list[tuple[str, array, array]] = []

    def series_of(self, name: str, labels: dict[str, str], points: Iterable[tuple[int, float]]) -> None:
        if self.gap:
            points = [(t, v) for t, v in points if not self.gap[0] < t <= self.gap[1]]
        pairs = list(points)
        if pairs:
            self.stored.append((name + _labels({**labels, **self.extra}), array("q", (t for t, _ in pairs)),
                                array("d", (v for _, v in pairs))))
            self.series += 1
            self.samples += len(pairs)

    def write_hour(self, start: int, out: IO[str]) -> None:
        """Write the samples in (start, start + 3600] of every series, in time order, then ``# EOF``."""
        for head, times, values in self.stored:
            lo, hi = bisect.bisect_right(times, start), bisect.bisect_right(times, start + 3600)
            if hi > lo:
                out.writelines([f"{head} {_fmt(v)} {t}\n" for t, v in zip(times[lo:hi], values[lo:hi], strict=True)])
        out.write("# EOF\n")


def write_openmetrics_hours(cluster: Cluster, out_dir: Path, cluster_label: str | None = None) -> Iterator[Path]:
    """Yield one OpenMetrics file per hour of the cluster (its samples in (h, h + 1 h]); delete each after use.

    For clusters too large for one file (the caller loads each hour with promtool, then deletes it).
    """
    w = _HourlyWriter({cluster_label: cluster.name} if cluster_label else {}, frozenset(), None)
    _write_series(cluster, w, frozenset())
    heads = [head for head, _, _ in w.stored]
    if len(set(heads)) != len(heads):
        duplicate = next(h for h in heads if heads.count(h) > 1)
        raise ValueError(f"cluster {cluster.name}: series {duplicate} is generated twice (out of order for promtool)")
    out_dir.mkdir(parents=True, exist_ok=True)
    first = window_start(min(times[0] for _, times, _ in w.stored))
    last = max(times[-1] for _, times, _ in w.stored)
    for start in range(first, last, 3600):
        path = out_dir / f"{cluster.name}-{start}.om"
        with path.open("w") as out:
            w.write_hour(start, out)
        yield path
    log.info("cluster %s: %d series, %d samples", cluster.name, w.series, w.samples)


def write_openmetrics(cluster: Cluster, out: IO[str], cluster_label: str | None = None,
                      faults: frozenset[str] = frozenset()) -> tuple[list[dict], dict]:
    """Write the cluster's series to ``out``; return (pod-window truth rows, counts).

    ``faults`` injects data-quality problems (see FAULTS); the truth then describes the cluster, not the data.
    """
    unknown = set(faults) - FAULTS
    if unknown:
        raise ValueError(f"unknown faults {sorted(unknown)}; choose from {sorted(FAULTS)}")
    gap = (cluster.start + 2 * 3600 + 1200, cluster.start + 2 * 3600 + 2400) if "scrape_gap" in faults else None
    w = _Writer(out, {cluster_label: cluster.name} if cluster_label else {}, frozenset(faults), gap)
    rows = _write_series(cluster, w, frozenset(faults))
    out.write("# EOF\n")
    return rows, {"series": w.series, "samples": w.samples}


def _write_series(cluster: Cluster, w: _Writer, faults: frozenset[str]) -> list[dict]:
    """Write every series of the cluster through ``w``; return the pod-window truth rows."""
    targets = fault_targets(cluster) if faults else {}
    node_ips = {n.name: n.internal_ip for n in cluster.nodes}
    accelerators = {n.name: n.accelerator for n in cluster.nodes}
    for node in cluster.nodes:
        _node_series(w, cluster, node)
    for ns, labels in cluster.namespace_labels.items():
        w.constant("kube_namespace_labels", {**KSM, "namespace": ns, **{f"label_{k}": v for k, v in labels.items()}},
                   cluster.start, cluster.end)
    for (ns, rs), dep in cluster.replicaset_owner.items():
        w.constant("kube_replicaset_owner", {**KSM, "namespace": ns, "replicaset": rs, "owner_kind": "Deployment",
                                             "owner_name": dep, "owner_is_controller": "true"}, cluster.start, cluster.end)
    for (ns, job), cron in cluster.job_owner.items():
        w.constant("kube_job_owner", {**KSM, "namespace": ns, "job_name": job, "owner_kind": "CronJob",
                                      "owner_name": cron, "owner_is_controller": "true"}, cluster.start, cluster.end)
    fields = ("running_seconds", "cpu_usage_core_seconds", "memory_usage_byte_seconds", "network_transmit_bytes",
              "network_receive_bytes", "gpu_usage_hours")
    truth: dict = defaultdict(lambda: dict.fromkeys(fields, 0.0))
    for pod in cluster.pods:
        _pod_series(w, pod, node_ips[pod.node], truth, _pod_faults(w, pod, targets), accelerators[pod.node])
    by_uid = {p.uid: p for p in cluster.pods}
    rows = []
    for (start, uid), values in sorted(truth.items()):
        pod = by_uid[uid]
        hours = values["running_seconds"] / 3600
        rows.append({
            "cluster": cluster.name, "window_start": start, "namespace": pod.namespace, "pod": pod.name, "uid": uid,
            "node": pod.node, **values,
            "cpu_request_core_hours": pod.effective_request("cpu_request") * hours,
            "memory_request_gib_hours": pod.effective_request("memory_request") / GIB * hours,
            "gpu_request_hours": pod.effective_request("gpu_request") * hours,
            "cpu_usage_core_hours": values["cpu_usage_core_seconds"] / 3600,
            "memory_usage_gib_hours": values["memory_usage_byte_seconds"] / 3600 / GIB,
        })
    return rows
