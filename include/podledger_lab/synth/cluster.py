"""A deterministic synthetic EKS cluster: nodes, workloads, pods and their per-minute usage.

Time is simulated on a minute grid. A sample at time t stands for the minute (t-60, t]: KSM and
cAdvisor gauges have samples at s+60 .. e for a pod running [s, e); CPU and network counters start at
0 at s and have samples s, s+60 .. e. This is exactly what the exporter's windows (t0, t1] measure.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import random
from dataclasses import dataclass, field

GIB = 2**30
MIB = 2**20
REGION = "us-east-1"
ACCOUNT_ID = "123456789012"

# instance type -> (vCPU, memory GiB, GPUs, on-demand $/h in us-east-1)
INSTANCE_TYPES: dict[str, tuple[int, int, int, float]] = {
    "m5.xlarge": (4, 16, 0, 0.192),
    "m5.2xlarge": (8, 32, 0, 0.384),
    "c5.2xlarge": (8, 16, 0, 0.340),
    "r5.xlarge": (4, 32, 0, 0.252),
    "g5.xlarge": (4, 16, 1, 1.006),
    "m5.large": (2, 8, 0, 0.096),
    "g4ad.xlarge": (4, 16, 1, 0.379),   # AMD Radeon Pro V520: amd.com/gpu
    "inf2.xlarge": (4, 16, 1, 0.758),   # AWS Inferentia2: aws.amazon.com/neuron 1 (and neuroncore 2)
}
# Scenarios the generator adds on request (the per-pod truth test uses them all); the default cluster is unchanged.
REALISM = frozenset({"restarts", "accelerators"})
PURCHASE_OPTIONS = ("on_demand", "spot", "savings_plan", "reserved")
PAUSE_IMAGE = "registry.k8s.io/pause:3.9"


def stable_hex(*parts: object, length: int = 16) -> str:
    """Return a deterministic hex id derived from ``parts``."""
    return hashlib.sha256("/".join(map(str, parts)).encode()).hexdigest()[:length]


def stable_uid(*parts: object) -> str:
    h = stable_hex(*parts, length=32)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


@dataclass
class Node:
    name: str
    instance_id: str
    instance_type: str
    zone: str
    purchase: str
    vcpu: int
    memory_gib: int
    gpus: int
    on_demand_rate: float
    internal_ip: str
    labels: dict[str, str]
    accelerator: str = "nvidia_com_gpu"  # kube-state-metrics' resource name of its GPUs/accelerators
    extra_capacity: dict[str, float] = field(default_factory=dict)  # other extended resources it reports

    @property
    def provider_id(self) -> str:
        return f"aws:///{self.zone}/{self.instance_id}"


@dataclass
class Container:
    name: str
    kind: str  # "app", "init" (runs first minute only), "sidecar" (init container with restartPolicy Always)
    image: str
    cpu_request: float
    memory_request: int
    cpu_base: float  # cores used on average
    memory_base: int  # working-set bytes on average
    gpu_request: int = 0
    flat: bool = False  # use exactly the base values every minute (worked examples)


@dataclass
class Pod:
    namespace: str
    name: str
    uid: str
    node: str
    start: int
    end: int
    containers: list[Container]
    owner_kind: str  # ReplicaSet, DaemonSet, StatefulSet, Job or "" (bare pod)
    owner_name: str
    labels: dict[str, str]
    linger: int = 0  # seconds a completed pod stays (phase Succeeded, requests still exported)
    phase_after_end: str = "Succeeded"
    gpu_util: float = 0.0  # fraction of one GPU used on average (DCGM_FI_DEV_GPU_UTIL), with or without a request

    @property
    def app_like(self) -> list[Container]:
        return [c for c in self.containers if c.kind in ("app", "sidecar")]

    def effective_request(self, attr: str) -> float:
        """Kubernetes effective pod request: max(sum(app + sidecars), max(init) + sum(sidecars))."""
        sidecars = sum(getattr(c, attr) for c in self.containers if c.kind == "sidecar")
        apps = sum(getattr(c, attr) for c in self.containers if c.kind == "app")
        inits = [getattr(c, attr) for c in self.containers if c.kind == "init"]
        return max(apps + sidecars, (max(inits) + sidecars) if inits else 0.0)


@dataclass
class Cluster:
    name: str
    start: int
    end: int
    nodes: list[Node]
    pods: list[Pod]
    replicaset_owner: dict[tuple[str, str], str] = field(default_factory=dict)  # (ns, rs) -> deployment
    job_owner: dict[tuple[str, str], str] = field(default_factory=dict)  # (ns, job) -> cronjob
    namespace_labels: dict[str, dict[str, str]] = field(default_factory=dict)
    orphan_instances: list[Node] = field(default_factory=list)  # billed, tagged, never in Prometheus
    seed: int = 0

    @property
    def minutes(self) -> range:
        return range(self.start, self.end + 1, 60)


def cpu_profile(container: Container, pod: Pod, t: int) -> float:
    """Cores used by ``container`` during the minute ending at ``t`` (deterministic)."""
    if container.flat:
        return container.cpu_base
    phase = int(stable_hex(pod.uid, container.name, length=6), 16) % 360
    wave = 1.0 + 0.25 * math.sin(2 * math.pi * t / 86400 + math.radians(phase))
    jitter = 1.0 + 0.08 * math.sin(t / 420.0 + phase)
    return max(container.cpu_base * wave * jitter, 0.0)


def memory_profile(container: Container, pod: Pod, t: int) -> float:
    """Working-set bytes of ``container`` at the sample taken at ``t``."""
    if container.flat:
        return float(container.memory_base)
    phase = int(stable_hex(pod.uid, container.name, "m", length=6), 16) % 360
    return float(int(container.memory_base * (1.0 + 0.05 * math.sin(t / 900.0 + math.radians(phase)))))


def container_active(container: Container, pod: Pod) -> tuple[int, int]:
    """Return [s, e) during which ``container`` runs (regular init containers run the first minute)."""
    if container.kind == "init":
        return pod.start, min(pod.start + 60, pod.end)
    return pod.start, pod.end


def _make_nodes(cluster: str, count: int, rng: random.Random) -> list[Node]:
    types = ["m5.xlarge", "m5.2xlarge", "c5.2xlarge", "r5.xlarge"]
    nodes = []
    for i in range(count):
        gpu = count >= 4 and i == count - 1
        itype = "g5.xlarge" if gpu else types[i % len(types)]
        vcpu, mem, gpus, rate = INSTANCE_TYPES[itype]
        zone = f"{REGION}{'abc'[i % 3]}"
        ip = f"10.0.{i // 250}.{i % 250 + 4}"
        purchase = "on_demand" if gpu else PURCHASE_OPTIONS[i % len(PURCHASE_OPTIONS)]
        name = f"ip-{ip.replace('.', '-')}.ec2.internal"
        labels = {
            "node_kubernetes_io_instance_type": itype,
            "topology_kubernetes_io_zone": zone,
            "eks_amazonaws_com_capacity_type": "SPOT" if purchase == "spot" else "ON_DEMAND",
            "eks_amazonaws_com_nodegroup": "gpu" if gpu else "general",
        }
        nodes.append(Node(name, f"i-{stable_hex(cluster, 'node', i, length=17)}", itype, zone, purchase,
                          vcpu, mem, gpus, rate, ip, labels))
    return nodes


def _accelerator_nodes(cluster: str, offset: int) -> list[Node]:
    """An AMD GPU node (g4ad) and an Inferentia2 node (inf2, which also reports its 2 NeuronCores)."""
    nodes = []
    for i, (itype, resource, group) in enumerate((("g4ad.xlarge", "amd_com_gpu", "renderer"),
                                                  ("inf2.xlarge", "aws_amazon_com_neuron", "inference"))):
        vcpu, mem, gpus, rate = INSTANCE_TYPES[itype]
        index = offset + i
        ip = f"10.0.{index // 250}.{index % 250 + 4}"
        zone = f"{REGION}{'abc'[index % 3]}"
        labels = {"node_kubernetes_io_instance_type": itype, "topology_kubernetes_io_zone": zone,
                  "eks_amazonaws_com_capacity_type": "ON_DEMAND", "eks_amazonaws_com_nodegroup": group}
        extra = {"aws_amazon_com_neuroncore": 2.0} if resource == "aws_amazon_com_neuron" else {}
        nodes.append(Node(f"ip-{ip.replace('.', '-')}.ec2.internal", f"i-{stable_hex(cluster, 'node', index, length=17)}",
                          itype, zone, "on_demand", vcpu, mem, gpus, rate, ip, labels, resource, extra))
    return nodes


def _container(rng: random.Random, name: str, cpu: float, mem_mib: int, use: float, kind: str = "app",
               gpu: int = 0) -> Container:
    return Container(name, kind, f"registry.example.com/{name}:1.{rng.randint(0, 9)}", cpu, mem_mib * MIB,
                     max(cpu * use, 0.002), int(mem_mib * MIB * min(use + 0.2, 1.3)), gpu)


class _Scheduler:
    """Place pods on the least-requested node that fits (first fit), like kube-scheduler's spread."""

    def __init__(self, nodes: list[Node]) -> None:
        self.nodes = nodes
        self.cpu = {n.name: 0.0 for n in nodes}
        self.mem = {n.name: 0.0 for n in nodes}

    def place(self, cpu: float, mem: float, candidates: list[Node] | None = None) -> str:
        pool = [n for n in (candidates or self.nodes) if n.gpus == 0] if candidates is None else candidates
        fits = [n for n in pool if self.cpu[n.name] + cpu <= n.vcpu * 0.95 and self.mem[n.name] + mem <= n.memory_gib * GIB * 0.9]
        node = min(fits or pool, key=lambda n: self.cpu[n.name] / n.vcpu)
        self.cpu[node.name] += cpu
        self.mem[node.name] += mem
        return node.name


def build_cluster(name: str = "demo-eks", nodes: int = 8, pods: int = 80, start: dt.datetime | None = None,
                  hours: int = 6, seed: int = 7, realism: frozenset[str] | set[str] = frozenset()) -> Cluster:
    """Simulate a cluster of ``nodes`` nodes and about ``pods`` pods over ``hours`` hours from ``start``.

    ``realism`` adds scenarios (see REALISM): ``restarts`` (a StatefulSet pod restarted on its node every day, another
    rescheduled to another node, a pod evicted and recreated under its name), ``accelerators`` (GPU usage from DCGM
    on the NVIDIA node, a pod using a GPU it did not request, an AMD node and an Inferentia node with their pods).
    """
    unknown = set(realism) - REALISM
    if unknown:
        raise ValueError(f"unknown realism {sorted(unknown)}; choose from {sorted(REALISM)}")
    rng = random.Random(seed)
    start = start or dt.datetime(2026, 11, 2, tzinfo=dt.UTC)
    t0 = int(start.timestamp())
    t0 -= t0 % 3600
    t_end = t0 + hours * 3600
    node_list = _make_nodes(name, nodes, rng)
    if "accelerators" in realism:
        node_list += _accelerator_nodes(name, len(node_list))
    sched = _Scheduler(node_list)
    out: list[Pod] = []
    rs_owner: dict[tuple[str, str], str] = {}
    job_owner: dict[tuple[str, str], str] = {}
    taken: set[tuple[str, str]] = set()

    def add(ns: str, pod_name: str, node: str, s: int, e: int, containers: list[Container], kind: str,
            owner: str, labels: dict[str, str], linger: int = 0, *, incarnation: bool = False, gpu_util: float = 0.0,
            phase_after_end: str = "Succeeded") -> None:
        # Five hex characters collide among thousands of replicas (a real ReplicaSet would retry the name too).
        # A new incarnation of a pod keeps its name (StatefulSet restart, eviction): a new uid, same name.
        base, n = pod_name, 0
        while (ns, pod_name) in taken and not incarnation:
            n += 1
            pod_name = f"{base.rsplit('-', 1)[0]}-{stable_hex(base, n, length=5)}"
        taken.add((ns, pod_name))
        out.append(Pod(ns, pod_name, stable_uid(name, ns, pod_name, s), node, s, e, containers, kind, owner,
                       labels, linger, phase_after_end, gpu_util))

    # DaemonSets: one pod per node; aws-node has a regular init container.
    for node in node_list:
        suffix = stable_hex(node.name, length=5)
        add("kube-system", f"aws-node-{suffix}", node.name, t0, t_end,
            [_container(rng, "aws-vpc-cni-init", 0.025, 32, 0.5, "init"),
             _container(rng, "aws-node", 0.025, 128, 0.8)], "DaemonSet", "aws-node", {"k8s_app": "aws-node"})
        add("kube-system", f"kube-proxy-{suffix}", node.name, t0, t_end,
            [_container(rng, "kube-proxy", 0.1, 64, 0.1)], "DaemonSet", "kube-proxy", {"k8s_app": "kube-proxy"})
        sched.cpu[node.name] += 0.125
        sched.mem[node.name] += 192 * MIB

    fixed = 2 * len(node_list)
    # Deployments (via ReplicaSets): (namespace, name, team, [(container, cpu, mem MiB, use ratio)], weight)
    deployments = [
        ("payments", "api", "payments", [("api", 0.5, 512, 0.6)], 3),
        ("checkout", "web", "checkout", [("web", 0.25, 256, 0.9), ("envoy", 0.1, 64, 0.5)], 3),
        ("checkout", "worker", "checkout", [("worker", 1.0, 1024, 0.35)], 2),
        ("monitoring", "grafana", "platform", [("grafana", 0.2, 256, 0.3)], 1),
        ("data", "etl-scheduler", "data", [("scheduler", 0.5, 768, 0.5)], 1),
    ]
    budget = max(pods - fixed - 12, len(deployments))
    total_weight = sum(d[4] for d in deployments)
    for ns, dep, team, spec, weight in deployments:
        replicas = max(1, round(budget * weight / total_weight))
        rs = f"{dep}-{stable_hex(ns, dep, length=10)}"
        rs_owner[(ns, rs)] = dep
        for r in range(replicas):
            containers = [_container(rng, c, cpu, mem, use * rng.uniform(0.7, 1.3)) for c, cpu, mem, use in spec]
            if dep == "etl-scheduler":
                containers.append(_container(rng, "log-shipper", 0.05, 64, 0.6, "sidecar"))
                containers.append(_container(rng, "migrate", 1.0, 256, 0.9, "init"))
            cpu = sum(c.cpu_request for c in containers if c.kind != "init")
            mem = sum(c.memory_request for c in containers if c.kind != "init")
            node = sched.place(cpu, mem)
            pod_name = f"{rs}-{stable_hex(rs, r, length=5)}"
            s, e = t0, t_end
            if dep == "web" and r == 0 and hours >= 3:
                # A rolling update: the old pod ends mid-hour and its replacement starts 5 minutes earlier.
                e = t0 + 2 * 3600 + 30 * 60
                new = [_container(rng, c, cpu_, mem_, use) for c, cpu_, mem_, use in spec]
                add(ns, f"{rs}-{stable_hex(rs, r, 'new', length=5)}", sched.place(cpu, mem), e - 300, t_end, new,
                    "ReplicaSet", rs, {"app": dep, "team": team})
            add(ns, pod_name, node, s, e, containers, "ReplicaSet", rs, {"app": dep, "team": team})

    # An over-subscribed node: two CPU-hungry pods with small requests on the first node.
    first = node_list[0]
    rs = f"cruncher-{stable_hex('payments', 'cruncher', length=10)}"
    rs_owner[("payments", rs)] = "cruncher"
    for r in range(2):
        c = _container(rng, "cruncher", 0.5, 512, 1.0)
        c.cpu_base = first.vcpu * 0.55
        add("payments", f"{rs}-{stable_hex(rs, r, length=5)}", first.name, t0, t_end, [c], "ReplicaSet", rs,
            {"app": "cruncher", "team": "payments"})

    # StatefulSet.
    for r in range(2):
        c = _container(rng, "postgres", 0.5, 2048, 0.4)
        node = sched.place(0.5, 2048 * MIB)
        labels = {"app": "postgres", "team": "data"}
        if "restarts" not in realism:
            add("data", f"postgres-{r}", node, t0, t_end, [c], "StatefulSet", "postgres", labels)
            continue
        # postgres-0 restarts on its node at hh:50 of hour 1 of every day (back at hh:52, a new uid); postgres-1 is
        # rescheduled to another node at 01:40 on the first day (back at 01:43 there).
        bounds = [t0] + [b for d in range(0, hours, 24) if (b := t0 + (d + 1) * 3600 + 50 * 60) < t_end - 300] + [t_end]
        if r == 1:
            bounds = [t0, t0 + 3600 + 40 * 60, t_end] if hours >= 3 else [t0, t_end]
        other = next(n.name for n in node_list if n.name != node and n.gpus == 0)
        for i, (s_, e_) in enumerate(zip(bounds, bounds[1:], strict=False)):
            begin = s_ if i == 0 else s_ + (120 if r == 0 else 180)
            where = node if r == 0 or i == 0 else other
            add("data", f"postgres-{r}", where, begin, e_, [_container(rng, "postgres", 0.5, 2048, 0.4)] if i else [c],
                "StatefulSet", "postgres", labels, incarnation=True)
    if "restarts" in realism and hours >= 4:
        # A bare batch pod evicted at 02:15 (Failed, lingers 2 minutes) and recreated under its name elsewhere.
        evicted_at = t0 + 2 * 3600 + 15 * 60
        first_node, second_node = [n.name for n in node_list if n.gpus == 0][:2]
        add("data", "batch-runner", first_node, t0, evicted_at, [_container(rng, "runner", 0.3, 256, 0.7)], "", "",
            {"app": "batch-runner", "team": "data"}, linger=120, incarnation=True, phase_after_end="Failed")
        add("data", "batch-runner", second_node, evicted_at + 60, t_end, [_container(rng, "runner", 0.3, 256, 0.7)],
            "", "", {"app": "batch-runner", "team": "data"}, incarnation=True)

    # CronJob -> Job -> pod: every hour at :10 for 20 minutes; completed pods linger 40 minutes.
    for h in range(hours):
        s = t0 + h * 3600 + 600
        job = f"report-{(s // 60)}"
        job_owner[("data", job)] = "report"
        c = _container(rng, "report", 0.5, 512, 1.2)
        add("data", f"{job}-{stable_hex(job, length=5)}", sched.place(0.5, 512 * MIB), s, s + 1200, [c], "Job", job,
            {"app": "report", "team": "data"}, linger=2400)

    # GPU workload pinned to the GPU node, and a bare debug pod.
    gpu_nodes = [n for n in node_list if n.gpus]
    if gpu_nodes:
        rs = f"trainer-{stable_hex('ml', 'trainer', length=10)}"
        rs_owner[("ml", rs)] = "trainer"
        c = _container(rng, "trainer", 2.0, 8192, 0.8, gpu=1)
        util = 0.6 if "accelerators" in realism else 0.0
        add("ml", f"{rs}-{stable_hex(rs, length=5)}", gpu_nodes[0].name, t0, t_end, [c], "ReplicaSet", rs,
            {"app": "trainer", "team": "ml"}, gpu_util=util)
    if "accelerators" in realism:
        nvidia = next(n for n in node_list if n.accelerator == "nvidia_com_gpu" and n.gpus)
        # A notebook sharing the GPU without requesting it (time-slicing): 30 % of a GPU, from DCGM only.
        add("ml", "notebook-0", nvidia.name, t0, t_end, [_container(rng, "notebook", 0.25, 512, 0.5)], "StatefulSet",
            "notebook", {"app": "notebook", "team": "ml"}, gpu_util=0.3, incarnation=True)
        for node, app in ((n, n.labels["eks_amazonaws_com_nodegroup"]) for n in node_list
                          if n.accelerator in ("amd_com_gpu", "aws_amazon_com_neuron")):
            add("ml", f"{app}-0", node.name, t0, t_end, [_container(rng, app, 1.0, 4096, 0.6, gpu=1)], "StatefulSet",
                app, {"app": app, "team": "ml"}, incarnation=True)
    add("default", "debug-shell", sched.place(0.1, 64 * MIB), t0 + 1800, t0 + 1800 + 45 * 60,
        [_container(rng, "shell", 0.1, 64, 0.2)], "", "", {"run": "debug-shell"})

    orphan = _make_nodes(name + "-orphan", 1, rng)[0]
    orphan.instance_type, orphan.vcpu, orphan.memory_gib, orphan.on_demand_rate = "m5.large", 2, 8, 0.096
    orphan.purchase = "on_demand"
    ns_labels = {ns: {"team": ns} for ns in sorted({p.namespace for p in out})}
    return Cluster(name, t0, t_end, node_list, out, rs_owner, job_owner, ns_labels, [orphan], seed)
