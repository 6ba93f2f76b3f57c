"""The metric catalog: every PromQL query podledger runs, with its layout name and columns.

Rollups are computed by Prometheus at the billing grain so the exporter transfers one value per series
and window instead of one per scrape. Conventions (placeholders filled by :func:`render`):

- ``{sel}``: extra matchers (the cluster label in centralized mode), already prefixed with a comma.
- ``{range}``: the window as a range one millisecond shorter than the window. Prometheus 2.x range
  selectors are closed at both ends, so ``[1h]`` would count a sample sitting exactly on the hour in
  two adjacent windows; ``[3599999ms]`` gives (t-1h, t] on 2.x and 3.x alike.
- ``{interval}``: the cluster's scrape interval in seconds: ``sum_over_time`` × interval = value-seconds.
- ``{window}``: the span in seconds (the window, or a part of it when a backend limit forces a split).
- ``{delta}`` (counter columns only): the counter's exact increase per series over the span, one of:

  * fast (every series without a reset): ``last_over_time(x[R]) - last_over_time(x[R] offset R)``, or the
    last value alone for a series born in the span. Adjacent windows telescope: each one ends where the next
    begins (the last sample at or before its start), so the windows of a day add up to the counter's
    increase with no ``increase()`` extrapolation (off by up to half a scrape per series at pod start/end).
    It reads each sample twice: about 40x cheaper than evaluating a subquery at every step.
  * exact with resets (only the pods a ``resets()`` check flags over (start - R, end]): the subquery
    ``sum_over_time(((x - last_over_time(x[R] offset 60s)) >= 0 or x * 1)[R:60s])`` takes the step's
    increase, or the value itself after a reset (Prometheus' ``increase()`` convention: the counter restarted
    from 0) or for a series born in the span. The previous value is the last sample up to R before the step,
    not ``x offset 60s``: after scrapes missed for longer than the 5-minute lookback (or a staleness marker
    from a failed scrape) ``x offset 60s`` is empty and the step would count the whole counter again.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# --- metric names (kube-state-metrics v2, kubelet cAdvisor) ---
KUBE_NODE_INFO = "kube_node_info"
KUBE_NODE_CAPACITY = "kube_node_status_capacity"
KUBE_NODE_ALLOCATABLE = "kube_node_status_allocatable"
KUBE_NODE_LABELS = "kube_node_labels"
KUBE_POD_INFO = "kube_pod_info"
KUBE_POD_PHASE = "kube_pod_status_phase"
KUBE_POD_LABELS = "kube_pod_labels"
KUBE_POD_OWNER = "kube_pod_owner"
KUBE_NAMESPACE_LABELS = "kube_namespace_labels"
KUBE_REPLICASET_OWNER = "kube_replicaset_owner"
KUBE_JOB_OWNER = "kube_job_owner"
KUBE_REQUESTS = "kube_pod_container_resource_requests"
KUBE_INIT_REQUESTS = "kube_pod_init_container_resource_requests"
KUBE_INIT_INFO = "kube_pod_init_container_info"
CADVISOR_CPU = "container_cpu_usage_seconds_total"
CADVISOR_MEMORY = "container_memory_working_set_bytes"
CADVISOR_NET_RX = "container_network_receive_bytes_total"
CADVISOR_NET_TX = "container_network_transmit_bytes_total"

# Real containers only: drop the pod-cgroup aggregate (container="") and the pause/sandbox series
# (container="POD" with dockershim; container="" + pause image with containerd). reference §4.2.
CONTAINER_FILTER = 'container!="",container!="POD",image!=""'
# Network counters exist only on container="" series (pod cgroup and sandbox carry the same bytes).
POD_NETWORK_FILTER = 'container="",pod!=""'

POD_KEYS = ("namespace", "pod", "uid")
CONTAINER_KEYS = ("namespace", "pod", "uid", "container", "node")
# cAdvisor series carry no uid label, but their cgroup path (``id``) holds the pod UID: with the cgroupfs driver
# ``/kubepods/burstable/pod<uid-with-dashes>/<container>``, with systemd
# ``…/kubepods-burstable-pod<uid_with_underscores>.slice/cri-containerd-<id>.scope``. Copied into ``uid`` (the
# underscores are turned into dashes by the reader): a pod recreated under the same name is a new incarnation.
UID_FROM_CGROUP = ".*pod([0-9a-f]+[-_][0-9a-f]+[-_][0-9a-f]+[-_][0-9a-f]+[-_][0-9a-f]+).*"
USAGE_KEYS = ("namespace", "pod", "uid", "container")
# kube-state-metrics names extended resources with / and . turned into _ (nvidia.com/gpu -> nvidia_com_gpu).
NOT_ALLOCATED = "pods|ephemeral_storage|attachable_volumes_.+|hugepages_.+"
DCGM_GPU_UTIL = "DCGM_FI_DEV_GPU_UTIL"


def with_uid(expr: str) -> str:
    """Label ``expr``'s series with the pod UID read from their cgroup path (see UID_FROM_CGROUP)."""
    return f'label_replace({expr}, "uid", "$1", "id", "{UID_FROM_CGROUP}")'


def _sum_seconds(selector: str, by: tuple[str, ...]) -> str:
    return f"sum by ({', '.join(by)}) (sum_over_time({selector}[{{range}}])) * {{interval}}"


def _count_seconds(selector: str, by: tuple[str, ...]) -> str:
    return f"sum by ({', '.join(by)}) (count_over_time({selector}[{{range}}])) * {{interval}}"


def counter_delta(selector: str, *, resets: bool) -> str:
    """Return the template of a counter's exact increase per series over the span (see the module doc)."""
    if resets:
        previous = f"last_over_time({selector}[{{range}}] offset {{step}}s)"
        return f"sum_over_time((({selector} - {previous}) >= 0 or {selector} * 1)[{{range}}:{{step}}s])"
    last = f"last_over_time({selector}[{{range}}])"
    return f"({last} - last_over_time({selector}[{{range}}] offset {{window}}s) or {last})"


# Pods with a counter reset in (start - R, end]: the fast form would subtract across the reset.
COUNTER_RESETS = "count by (pod) (resets({selector}[{{range2}}]) > 0)"


def _last(selector: str, by: tuple[str, ...]) -> str:
    return f"max by ({', '.join(by)}) (last_over_time({selector}[{{range}}]))"


@dataclass(frozen=True)
class MetricSpec:
    """One exported metric: its layout name, the PromQL of each value column, and its key labels."""

    name: str
    source: str
    keys: tuple[str, ...]
    columns: dict[str, str]
    required: bool = True
    labels_map: bool = False
    doc: str = ""
    group: str = field(default="core")
    raw: str = ""  # the underlying selector, for raw mode (a range query at a configurable step)
    counter: str = ""  # a counter's selector: the columns' ``{delta}`` is its increase (see the module doc)


def _requests(name: str, metric: str, resource: str, unit: str, required: bool = True) -> MetricSpec:
    # Value-seconds only: the average request is this over the pod's seconds present (pod_running), so a
    # container whose ``node`` label changed in the window (Pending, then scheduled) adds up to one request.
    if resource == "extended":  # every extended resource (accelerators): the config picks which ones count
        sel = f'{metric}{{{{resource!~"cpu|memory|{NOT_ALLOCATED}"{{sel}}}}}}'
        keys: tuple[str, ...] = (*CONTAINER_KEYS, "resource")
    else:
        sel = f'{metric}{{{{resource="{resource}"{{sel}}}}}}'
        keys = CONTAINER_KEYS
    return MetricSpec(
        name=name,
        source=metric,
        keys=keys,
        columns={f"request_{unit}_seconds": _sum_seconds(sel, keys)},
        required=required,
        doc=f"{resource} requests per container: {unit}-seconds (divide by pod_running.present_seconds)",
        group="gpu" if resource == "extended" else "core",
    )


def _capacity(name: str, metric: str, required: bool) -> MetricSpec:
    sel = f'{metric}{{{{resource!~"{NOT_ALLOCATED}"{{sel}}}}}}'
    keys = ("node", "resource")
    return MetricSpec(
        name=name,
        source=metric,
        keys=keys,
        columns={"unit_seconds": _sum_seconds(sel, keys), "present_seconds": _count_seconds(sel, keys)},
        required=required,
        doc="node cpu (cores), memory (bytes) and extended resources (accelerators): unit-seconds and seconds present",
    )


def _labels(name: str, metric: str, keys: tuple[str, ...]) -> MetricSpec:
    return MetricSpec(
        name=name,
        source=metric,
        keys=keys,
        columns={"value": f"last_over_time({metric}{{{{{{sel_bare}}}}}}[{{range}}])"},
        required=False,
        labels_map=True,
        doc="label_* of the object as a map column (needs --metric-labels-allowlist)",
        group="labels",
    )


def _network(name: str, metric: str, verb: str) -> MetricSpec:
    # Each interface appears on the pod cgroup and the sandbox: max per interface, then sum.
    return MetricSpec(name=name, source=metric, keys=("namespace", "pod", "uid"),
                      columns={"bytes": "sum by (namespace, pod, uid) (max by (namespace, pod, uid, interface) ("
                                        f"{with_uid('{delta}')}))"},
                      counter=f"{metric}{{{{{POD_NETWORK_FILTER}{{sel}}}}}}",
                      doc=f"bytes {verb} per pod (max over the pod-cgroup and sandbox copies of each interface)")


def _info(name: str, metric: str, keys: tuple[str, ...]) -> MetricSpec:
    return MetricSpec(name=name, source=metric, keys=keys, columns={"value": _last(f"{metric}{{{{{{sel_bare}}}}}}", keys)},
                      required=False, group="owners", doc=f"{metric}: identity and owner labels")


NODE_INFO_KEYS = ("node", "provider_id", "internal_ip", "kubelet_version")
POD_INFO_KEYS = ("namespace", "pod", "uid", "node", "created_by_kind", "created_by_name")
_MEMORY_SUM = f"sum_over_time({CADVISOR_MEMORY}{{{{{CONTAINER_FILTER}{{sel}}}}}}[{{range}}])"
_MEMORY_MAX = f"max_over_time({CADVISOR_MEMORY}{{{{{CONTAINER_FILTER}{{sel}}}}}}[{{range}}])"

CATALOG: tuple[MetricSpec, ...] = (
    MetricSpec(
        name="node_info",
        source=KUBE_NODE_INFO,
        keys=NODE_INFO_KEYS,
        columns={"present_seconds": _count_seconds(f"{KUBE_NODE_INFO}{{{{{{sel_bare}}}}}}", NODE_INFO_KEYS)},
        doc="nodes with their provider_id (joins to the bill) and seconds present",
    ),
    _capacity("node_capacity", KUBE_NODE_CAPACITY, required=True),
    _capacity("node_allocatable", KUBE_NODE_ALLOCATABLE, required=False),
    _requests("cpu_requests", KUBE_REQUESTS, "cpu", "core"),
    _requests("memory_requests", KUBE_REQUESTS, "memory", "byte"),
    _requests("gpu_requests", KUBE_REQUESTS, "extended", "gpu", required=False),
    # A cluster without init containers answers these with nothing: normal, not an error.
    _requests("init_cpu_requests", KUBE_INIT_REQUESTS, "cpu", "core", required=False),
    _requests("init_memory_requests", KUBE_INIT_REQUESTS, "memory", "byte", required=False),
    MetricSpec(
        name="init_container_info",
        source=KUBE_INIT_INFO,
        keys=("namespace", "pod", "uid", "container", "restart_policy"),
        columns={"value": _last(f"{KUBE_INIT_INFO}{{{{{{sel_bare}}}}}}",
                                ("namespace", "pod", "uid", "container", "restart_policy"))},
        required=False,
        doc="init containers; restart_policy=Always marks a sidecar (KSM >= 2.11)",
    ),
    MetricSpec(
        name="pod_running",
        source=KUBE_POD_PHASE,
        keys=POD_KEYS,
        # kube-state-metrics writes every phase at every scrape (1 for the current one, else 0): the sum is the
        # time Running, the count the time the pod object existed (while its requests series exist too).
        columns={"running_seconds": _sum_seconds(f'{KUBE_POD_PHASE}{{{{phase="Running"{{sel}}}}}}', POD_KEYS),
                 "present_seconds": _count_seconds(f'{KUBE_POD_PHASE}{{{{phase="Running"{{sel}}}}}}', POD_KEYS)},
        doc="seconds each pod was Running, and seconds its object existed (requests of Completed pods keep "
            "being exported until deletion); absent (not in the seed's 16 metrics): presence from kube_pod_info",
        required=False,
    ),
    MetricSpec(
        name="cpu_usage",
        source=CADVISOR_CPU,
        keys=USAGE_KEYS,
        columns={"usage_core_seconds": f"sum by (namespace, pod, uid, container) ({with_uid('{delta}')})"},
        counter=f"{CADVISOR_CPU}{{{{{CONTAINER_FILTER}{{sel}}}}}}",
        doc="CPU core-seconds used per container (exact counter increase inside the window)",
    ),
    MetricSpec(
        name="memory_usage",
        source=CADVISOR_MEMORY,
        keys=USAGE_KEYS,
        columns={
            "usage_byte_seconds": f"sum by (namespace, pod, uid, container) ({with_uid(_MEMORY_SUM)}) * {{interval}}",
            "peak_bytes": f"max by (namespace, pod, uid, container) ({with_uid(_MEMORY_MAX)})",
        },
        doc="working-set byte-seconds and peak bytes per container",
    ),
    _network("network_transmit", CADVISOR_NET_TX, "sent"),
    _network("network_receive", CADVISOR_NET_RX, "received"),
    MetricSpec(
        name="pod_info", source=KUBE_POD_INFO, keys=POD_INFO_KEYS, required=False, group="owners",
        columns={"value": _last(f"{KUBE_POD_INFO}{{{{{{sel_bare}}}}}}", POD_INFO_KEYS),
                 "present_seconds": _count_seconds(f"{KUBE_POD_INFO}{{{{{{sel_bare}}}}}}", POD_INFO_KEYS)},
        doc="pods with their uid and node, and seconds present on each node (a uid seen on two nodes in an hour is "
            "split by time; without kube_pod_status_phase, presence is the pod's running time)"),
    MetricSpec(
        name="gpu_usage", source=DCGM_GPU_UTIL, keys=("namespace", "pod"), required=False, group="gpu",
        columns={"usage_gpu_seconds": f'sum by (namespace, pod) (sum_over_time({DCGM_GPU_UTIL}{{{{pod!=""{{sel}}}}}}'
                                      "[{range}])) * {interval} / 100"},
        doc="GPU-seconds used per pod from NVIDIA's DCGM exporter (utilisation % of each GPU x time / 100); "
            "allocated GPU = max(request, usage), as in AWS's accelerated example"),
    _info("pod_owner", KUBE_POD_OWNER, ("namespace", "pod", "uid", "owner_kind", "owner_name")),
    _info("replicaset_owner", KUBE_REPLICASET_OWNER, ("namespace", "replicaset", "owner_kind", "owner_name")),
    _info("job_owner", KUBE_JOB_OWNER, ("namespace", "job_name", "owner_kind", "owner_name")),
    _labels("pod_labels", KUBE_POD_LABELS, POD_KEYS),
    _labels("node_labels", KUBE_NODE_LABELS, ("node",)),
    _labels("namespace_labels", KUBE_NAMESPACE_LABELS, ("namespace",)),
)

# Raw mode: the series behind each rollup, fetched at a step (for consumers of the seed's raw files).
RAW_SELECTORS = {
    "node_info": f"{KUBE_NODE_INFO}{{{{{{sel_bare}}}}}}",
    "node_capacity": f'{KUBE_NODE_CAPACITY}{{{{resource!~"{NOT_ALLOCATED}"{{sel}}}}}}',
    "node_allocatable": f'{KUBE_NODE_ALLOCATABLE}{{{{resource!~"{NOT_ALLOCATED}"{{sel}}}}}}',
    "cpu_requests": f'{KUBE_REQUESTS}{{{{resource="cpu"{{sel}}}}}}',
    "memory_requests": f'{KUBE_REQUESTS}{{{{resource="memory"{{sel}}}}}}',
    "gpu_requests": f'{KUBE_REQUESTS}{{{{resource!~"cpu|memory|{NOT_ALLOCATED}"{{sel}}}}}}',
    "gpu_usage": f'{DCGM_GPU_UTIL}{{{{pod!=""{{sel}}}}}}',
    "init_cpu_requests": f'{KUBE_INIT_REQUESTS}{{{{resource="cpu"{{sel}}}}}}',
    "init_memory_requests": f'{KUBE_INIT_REQUESTS}{{{{resource="memory"{{sel}}}}}}',
    "init_container_info": f"{KUBE_INIT_INFO}{{{{{{sel_bare}}}}}}",
    "pod_running": f'{KUBE_POD_PHASE}{{{{phase="Running"{{sel}}}}}}',
    "cpu_usage": f"{CADVISOR_CPU}{{{{{CONTAINER_FILTER}{{sel}}}}}}",
    "memory_usage": f"{CADVISOR_MEMORY}{{{{{CONTAINER_FILTER}{{sel}}}}}}",
    "network_transmit": f"{CADVISOR_NET_TX}{{{{{POD_NETWORK_FILTER}{{sel}}}}}}",
    "network_receive": f"{CADVISOR_NET_RX}{{{{{POD_NETWORK_FILTER}{{sel}}}}}}",
    "pod_info": f"{KUBE_POD_INFO}{{{{{{sel_bare}}}}}}",
    "pod_owner": f"{KUBE_POD_OWNER}{{{{{{sel_bare}}}}}}",
    "replicaset_owner": f"{KUBE_REPLICASET_OWNER}{{{{{{sel_bare}}}}}}",
    "job_owner": f"{KUBE_JOB_OWNER}{{{{{{sel_bare}}}}}}",
    "pod_labels": f"{KUBE_POD_LABELS}{{{{{{sel_bare}}}}}}",
    "node_labels": f"{KUBE_NODE_LABELS}{{{{{{sel_bare}}}}}}",
    "namespace_labels": f"{KUBE_NAMESPACE_LABELS}{{{{{{sel_bare}}}}}}",
}
CATALOG = tuple(MetricSpec(**{**spec.__dict__, "raw": RAW_SELECTORS[spec.name]}) for spec in CATALOG)
CATALOG_BY_NAME = {spec.name: spec for spec in CATALOG}
MAX_POINTS_PER_SERIES = 11_000  # Prometheus refuses range queries beyond this resolution
# Columns combined with max (not sum) when a window is split or windows are merged into an hour.
MAX_COLUMNS = frozenset({"value", "peak_bytes"})
# The finest split of a window: one subquery step.
MIN_SPLIT_SECONDS = 60
REQUIRED_METRICS = tuple(spec.name for spec in CATALOG if spec.required)
# Scrape-added and identity labels never copied into a labels map.
NON_LABEL_KEYS = frozenset({"__name__", "job", "instance", "endpoint", "service", "prometheus", "metrics_path"})


_PROMQL_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}
# RE2's metacharacters: only these are escaped. Any other character, non-ASCII included, is written literally
# (a backslash before a letter or a non-ASCII character is an invalid escape in RE2).
_RE2_META = frozenset("\\.+*?()|[]{}^$")


def escape_label_value(value: str) -> str:
    """Escape a label value for a PromQL double-quoted string (Go rules; other Unicode written as it is)."""
    return "".join(_PROMQL_ESCAPES.get(c, c if c.isprintable() or ord(c) > 127 else f"\\x{ord(c):02x}")
                   for c in value)


def escape_regex(value: str) -> str:
    """Escape a literal for an RE2 regular expression (a PromQL ``=~`` matcher)."""
    return "".join("\\" + c if c in _RE2_META else c for c in value)


def pod_matcher(pods: list[str], *, negate: bool) -> str:
    """Return a ``pod=~"^(?:a|b)$"`` (or ``!~``) matcher selecting exactly ``pods``."""
    alternatives = "|".join(escape_regex(p) for p in sorted(pods))
    return f'pod{"!~" if negate else "=~"}"{escape_label_value(f"^(?:{alternatives})$")}"'


def render(template: str, *, window_seconds: int, interval_seconds: int, cluster_label: str | None = None,
           cluster_value: str | None = None, step_seconds: int = 60, matchers: tuple[str, ...] = ()) -> str:
    """Fill a catalog template for one span and cluster; ``matchers`` (series subsets) join the selectors."""
    selected = list(matchers)
    if cluster_label and cluster_value is not None:
        selected.insert(0, f'{cluster_label}="{escape_label_value(cluster_value)}"')
    return template.format(
        sel="".join(f",{m}" for m in selected),
        sel_bare=",".join(selected),
        range=f"{window_seconds * 1000 - 1}ms",
        range2=f"{2 * window_seconds * 1000 - 1}ms",
        window=window_seconds,
        interval=interval_seconds,
        step=step_seconds,
    )


# --- probes: small diagnostic queries whose answers go into the manifest for the validation rules ---
KSM_V1_METRICS = ("kube_pod_container_resource_requests_cpu_cores", "kube_pod_container_resource_requests_memory_bytes",
                  "kube_node_status_capacity_cpu_cores", "kube_node_status_capacity_memory_bytes",
                  "kube_node_status_allocatable_cpu_cores", "kube_node_status_allocatable_memory_bytes")
_CPU_CONTAINERS = f"{CADVISOR_CPU}{{{{{CONTAINER_FILTER}{{sel}}}}}}"
PROBES: dict[str, str] = {
    # kube-state-metrics v1 names (removed in v2.0): present means an old KSM (reference data-sources §4.1).
    # last_over_time drops __name__, so copy it into a label first (in a subquery: label_replace needs an instant vector).
    "ksm_v1_metrics": f'count by (metric_name) (last_over_time(label_replace('
                      f'{{{{__name__=~"{"|".join(KSM_V1_METRICS)}"{{sel}}}}}}, '
                      f'"metric_name", "$1", "__name__", "(.+)")[{{range}}:{{step}}s]))',
    # The same container scraped by two jobs/instances (kubelet cAdvisor + a standalone cAdvisor).
    "duplicate_scrapes": f"count by (namespace, pod, container) (count by (namespace, pod, container, job, instance) "
                         f"(last_over_time({_CPU_CONTAINERS}[{{range}}]))) > 1",
    # Pods whose CPU is only reported by the pod-level cgroup (container="") and never per container.
    "aggregate_only_pods": f"count by (namespace, pod) "
                           f'(last_over_time({CADVISOR_CPU}{{{{container="",image="",pod!=""{{sel}}}}}}[{{range}}])) '
                           f"unless on (namespace, pod) count by (namespace, pod) (last_over_time({_CPU_CONTAINERS}[{{range}}]))",
    "counter_resets": f"sum by (namespace, pod, container) (resets({_CPU_CONTAINERS}[{{range}}])) > 0",
}
# Centralized mode only: which values the cluster label takes (is this cluster there at all?).
CLUSTER_VALUES_PROBE = "count by ({label}) (last_over_time(kube_node_info[{range}]))"
