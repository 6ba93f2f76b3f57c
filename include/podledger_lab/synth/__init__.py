"""Synthetic cluster generator: OpenMetrics for Prometheus, a CUR 2.0 delivery, and the truth."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from podledger_lab.synth.cluster import Cluster, build_cluster
from podledger_lab.synth.cur import EXPORT_NAME, build_cur, write_cur_export
from podledger_lab.synth.openmetrics import write_openmetrics

__all__ = ["SynthOutput", "synthesize", "build_cluster"]


@dataclass(frozen=True)
class SynthOutput:
    """Paths written by :func:`synthesize`."""

    root: Path
    openmetrics: Path
    cur_root: Path
    truth_pods: Path
    truth_instances: Path
    cluster: Cluster

    @property
    def start(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.cluster.start, dt.UTC)

    @property
    def end(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.cluster.end, dt.UTC)


def synthesize(out_dir: str | Path, *, cluster_name: str = "demo-eks", nodes: int = 8, pods: int = 80,
               hours: int = 6, start: dt.datetime | None = None, seed: int = 7,
               cluster_label: str | None = None, faults: frozenset[str] | set[str] = frozenset(),
               realism: frozenset[str] | set[str] = frozenset()) -> SynthOutput:
    """Generate a cluster deterministically and write its metrics, bill and truth under ``out_dir``."""
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    cluster = build_cluster(cluster_name, nodes=nodes, pods=pods, start=start, hours=hours, seed=seed, realism=realism)
    om_path = root / f"{cluster_name}.om"
    with om_path.open("w") as out:
        pod_truth, counts = write_openmetrics(cluster, out, cluster_label=cluster_label, faults=frozenset(faults))
    truth_pods = root / f"{cluster_name}-truth-pods.parquet"
    frame = pl.DataFrame(pod_truth).with_columns(
        pl.from_epoch("window_start", time_unit="s").dt.replace_time_zone("UTC"))
    frame.write_parquet(truth_pods)
    table, instance_truth = build_cur(cluster)
    cur_root = root / "cur"
    write_cur_export(table, cur_root, EXPORT_NAME)
    truth_instances = root / f"{cluster_name}-truth-instances.parquet"
    pl.DataFrame(instance_truth).write_parquet(truth_instances)
    summary = {"cluster": cluster_name, "nodes": len(cluster.nodes), "pods": len(cluster.pods), "hours": hours,
               "start": cluster.start, "end": cluster.end, "seed": seed, **counts, "cur_rows": table.num_rows}
    (root / f"{cluster_name}-summary.json").write_text(json.dumps(summary, indent=1))
    return SynthOutput(root, om_path, cur_root, truth_pods, truth_instances, cluster)
