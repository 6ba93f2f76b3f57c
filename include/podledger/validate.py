"""Data-quality rules on exported cluster-windows; a JSON report is written next to each manifest."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass

from podledger.catalog import CATALOG_BY_NAME
from podledger.config import CostCenterConfig
from podledger.exceptions import ValidationFailed
from podledger.layout import Window, manifest_key
from podledger.storage import ObjectStore, split_uri

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Finding:
    """One rule outcome for one cluster-window (and metric, when it is about one)."""

    severity: str  # "error" or "warning"
    rule: str
    cluster: str
    window: str
    metric: str | None
    message: str
    fix: str

    def __str__(self) -> str:
        where = f"cluster {self.cluster}, window {self.window}" + (f", metric {self.metric}" if self.metric else "")
        return f"[{self.severity}] {self.rule}: {where}: {self.message}. Fix: {self.fix}"


def report_key(manifest: str) -> str:
    """Return the key of the validation report beside a manifest."""
    return manifest.replace("_manifest.json", "_validation.json")


def check_manifest(manifest: dict) -> list[Finding]:
    """Apply the window-level rules to a manifest: required metrics present and non-empty."""
    cluster, window = manifest["cluster"], f"{manifest['window']['start']}/{manifest['window']['end']}"
    findings = []
    metrics = manifest.get("metrics", {})
    for name, spec in CATALOG_BY_NAME.items():
        entry = metrics.get(name)
        if spec.required and (entry is None or entry["rows"] == 0):
            findings.append(Finding(
                "error", "required_metric_empty", cluster, window, name,
                f"{spec.source} returned no series for the window",
                f"check that Prometheus scrapes {'kube-state-metrics' if spec.source.startswith('kube_') else 'the kubelet cAdvisor endpoint'} "
                "for this cluster and that the cluster label/value in the config is right"))
        elif spec.group == "labels" and entry is not None and entry["rows"] == 0:
            findings.append(Finding(
                "warning", "labels_missing", cluster, window, name, f"{spec.source} is empty: no labels will be carried",
                "start kube-state-metrics with --metric-labels-allowlist=pods=[*],nodes=[*],namespaces=[*]"))
    return findings


def validate_windows(store: ObjectStore, cost_center: CostCenterConfig, items: list[tuple[str, Window]]) -> list[Finding]:
    """Validate each (cluster, window); write a report beside each manifest; raise when any error is found."""
    _, _, prefix = split_uri(cost_center.storage.uri)
    findings: list[Finding] = []
    for cluster, window in items:
        key = manifest_key(prefix, cluster, window)
        if not store.exists(key):
            window_findings = [Finding("error", "manifest_missing", cluster, str(window), None,
                                       f"no manifest at {store.scheme}://{store.bucket}/{key}",
                                       "run (or re-run) the export for this window")]
        else:
            window_findings = check_manifest(json.loads(store.get(key)))
            report = {"cluster": cluster, "window": window.to_dict(), "findings": [asdict(f) for f in window_findings],
                      "errors": sum(f.severity == "error" for f in window_findings)}
            store.put(report_key(key), json.dumps(report, indent=1).encode())
        for finding in window_findings:
            (log.error if finding.severity == "error" else log.warning)("%s", finding)
        findings += window_findings
    errors = [f for f in findings if f.severity == "error"]
    log.info("validated %d cluster-windows: %d errors, %d warnings", len(items), len(errors), len(findings) - len(errors))
    if errors:
        raise ValidationFailed(f"{len(errors)} validation error(s); first: {errors[0]}")
    return findings
