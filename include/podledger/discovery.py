"""Centralized mode: discover the clusters of a shared endpoint from the values of the cluster label."""

from __future__ import annotations

import datetime as dt
import fnmatch
import hashlib
import logging
import re

import requests

from podledger.config import ClusterConfig, CostCenterConfig
from podledger.exceptions import ConfigError, PrometheusQueryError
from podledger.promclient import PrometheusClient

log = logging.getLogger(__name__)

_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


def folder_name(value: str) -> str:
    """Return a folder name for a cluster label value: itself when safe, else sanitised plus a hash.

    Values such as ``a/b``, ``..``, quotes or newlines would escape the prefix or break a key.
    """
    if _SAFE.match(value) and ".." not in value:
        return value
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "_", value).replace("..", "_").strip("._-")[:40] or "cluster"
    return f"{cleaned}-{hashlib.sha256(value.encode()).hexdigest()[:8]}"


def label_values(client: PrometheusClient, label: str, start: dt.datetime, end: dt.datetime, timeout: float = 60.0) -> list[str]:
    """Return the values ``label`` takes on kube_node_info between ``start`` and ``end``."""
    url = f"{client.url}/api/v1/label/{label}/values"
    params = {"match[]": "kube_node_info", "start": f"{start.timestamp():.0f}", "end": f"{end.timestamp():.0f}"}
    try:
        response = client.request("GET", url, params=params, timeout=timeout)
    except requests.RequestException as exc:
        raise PrometheusQueryError(f"cluster discovery at {client.url}: {type(exc).__name__}") from None
    if response.status_code != 200:
        raise PrometheusQueryError(f"cluster discovery at {client.url}: HTTP {response.status_code} listing label '{label}'")
    return sorted(response.json().get("data") or [])


def discover_clusters(client: PrometheusClient, cost_center: CostCenterConfig, start: dt.datetime,
                      end: dt.datetime) -> list[ClusterConfig]:
    """Return one ClusterConfig per allowed value of the cluster label seen in [start, end]."""
    discovery = cost_center.discovery
    if discovery is None:
        raise ConfigError(f"cost center {cost_center.name} has no 'discovery' section")
    values = label_values(client, cost_center.cluster_label, start, end, cost_center.query_timeout_seconds)
    chosen = [v for v in values
              if (not discovery.allow or any(fnmatch.fnmatchcase(v, p) for p in discovery.allow))
              and not any(fnmatch.fnmatchcase(v, p) for p in discovery.deny)]
    clusters = [ClusterConfig(name=folder_name(v), prometheus_conn_id=discovery.prometheus_conn_id, cluster_label_value=v,
                              scrape_interval_seconds=discovery.scrape_interval_seconds) for v in chosen]
    names = [c.name for c in clusters]
    if len(set(names)) != len(names):
        raise ConfigError(f"cost center {cost_center.name}: cluster label values map to the same folder: {names}")
    log.info("cost center %s: discovered %d clusters by '%s' (%d seen, %d filtered out): %s", cost_center.name,
             len(clusters), cost_center.cluster_label, len(values), len(values) - len(chosen), names)
    return clusters
