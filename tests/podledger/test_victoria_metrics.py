"""The same synthetic cluster in Prometheus and in VictoriaMetrics gives the same exported rollups."""

from __future__ import annotations

import datetime as dt
import io

import polars as pl

from helpers import SYNTH_START, make_cost_center, prometheus_client, s3_store
from podledger.export import export_window
from podledger.layout import plan_windows
from podledger_lab.stack import import_openmetrics, start_victoria_metrics

WINDOWS = plan_windows(SYNTH_START + dt.timedelta(hours=1), SYNTH_START + dt.timedelta(hours=3), 3600)


def test_prometheus_and_victoria_metrics_export_the_same_rollups(stack_env, synth, prometheus, moto, tmp_path):
    vm = start_victoria_metrics(tmp_path)
    try:
        import_openmetrics(vm, synth.openmetrics)
        exports = {}
        for name, server in (("prometheus", prometheus), ("victoria", vm)):
            bucket = f"equiv-{name}"
            store = s3_store(moto, bucket)
            cc = make_cost_center(bucket)
            client = prometheus_client(server)
            manifests = [export_window(client, store, cc, cc.clusters[0], w) for w in WINDOWS]
            exports[name] = (store, manifests)
    finally:
        vm.stop()
    (p_store, p_manifests), (v_store, v_manifests) = exports["prometheus"], exports["victoria"]
    compared = 0
    for pm, vmm in zip(p_manifests, v_manifests, strict=True):
        for metric, entry in pm["metrics"].items():
            a = pl.read_parquet(io.BytesIO(p_store.get(entry["key"])))
            b = pl.read_parquet(io.BytesIO(v_store.get(vmm["metrics"][metric]["key"])))
            keys = [c for c in a.columns if a.schema[c] == pl.String]
            joined = a.join(b, on=keys, how="full", coalesce=True, suffix="_vm")
            assert joined.height == a.height == b.height, f"{metric}: series differ ({a.height} vs {b.height})"
            for column in a.columns:
                if a.schema[column] == pl.Float64:
                    rel = joined.select(((pl.col(column) - pl.col(f"{column}_vm")).abs()
                                         / pl.col(column).abs().clip(1e-12)).max()).item() or 0.0
                    assert rel <= 1e-6, f"{metric}.{column}: max relative difference {rel}"
                    compared += 1
    assert compared > 20
