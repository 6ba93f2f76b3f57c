"""The whole slice against a real Prometheus and the S3 endpoint: export, validate, allocate, load."""

from __future__ import annotations

import datetime as dt
import json
import re

import polars as pl
import pytest

from helpers import SYNTH_HOURS, SYNTH_START, make_cost_center
from podledger.cli import main as cli
from podledger.connections import ConnectionInfo
from podledger.enrich import enrich_cluster
from podledger.exceptions import PrometheusQueryError
from podledger.export import export_window
from podledger.layout import manifest_key, plan_windows
from podledger.promclient import check_ready, client_from_connection
from podledger.warehouse import DuckDBLoader

END = SYNTH_START + dt.timedelta(hours=SYNTH_HOURS)
KEY_RE = re.compile(r"^k8s/prometheus/demo-eks/end=(\d{8})/day=(\d{1,2})/metric=([a-z_]+)/(\d{10})_\3\.(parquet|json\.gz)$")
MANIFEST_RE = re.compile(r"^k8s/prometheus/demo-eks/end=\d{8}/day=\d{1,2}/_manifests/\d{10}_"
                         r"(manifest\.json|validation\.json|export_log\.jsonl)$")


def _span() -> list[str]:
    return ["--cost-center", "test", "--start", SYNTH_START.isoformat(), "--end", END.isoformat()]


@pytest.fixture
def config_file(tmp_path, fresh_bucket):
    def write(**overrides) -> str:
        cc = make_cost_center(fresh_bucket, **overrides)
        path = tmp_path / "cost_centers.yaml"
        path.write_text(json.dumps({"cost_centers": [json.loads(cc.model_dump_json())]}))
        return str(path)

    return write


def test_slice_end_to_end(stack_env, config_file, fresh_bucket, store_factory, synth, tmp_path):
    config = config_file()
    rows_path = tmp_path / "rows.parquet"
    assert cli(["export", *_span(), "--config", config]) == 0
    assert cli(["validate", *_span(), "--config", config]) == 0
    assert cli(["allocate", *_span(), "--config", config, "--out", str(rows_path)]) == 0
    assert cli(["load", *_span(), "--config", config, "--rows", str(rows_path)]) == 0

    # (a) every object key follows the seed layout exactly.
    keys = store_factory(fresh_bucket).list("k8s/prometheus")
    data_keys = [k for k in keys if "/metric=" in k]
    assert data_keys and all(KEY_RE.match(k) for k in data_keys), [k for k in data_keys if not KEY_RE.match(k)][:3]
    assert all(MANIFEST_RE.match(k) for k in keys if "/metric=" not in k)
    for key in data_keys:
        end, day, _, epoch, _ = KEY_RE.match(key).groups()
        start = dt.datetime.fromtimestamp(int(epoch), dt.UTC)
        assert int(day) == start.day and end == "20261201"
    assert len(data_keys) == SYNTH_HOURS * len({KEY_RE.match(k).group(3) for k in data_keys})

    # (b) exported requests and usage per pod-hour match the generator's truth within 1%.
    rows = pl.read_parquet(rows_path)
    pods = rows.filter(~pl.col("namespace").str.starts_with("__"))
    truth = pl.read_parquet(synth.truth_pods).filter(pl.col("running_seconds") > 0)
    joined = truth.join(pods, left_on=["window_start", "uid"], right_on=["hour_start", "uid"], how="full", suffix="_got")
    assert joined.filter(pl.col("pod").is_null() | pl.col("pod_got").is_null()).height == 0
    for column in ("cpu_request_core_hours", "cpu_usage_core_hours", "memory_request_gib_hours", "memory_usage_gib_hours",
                   "network_transmit_bytes"):
        rel = joined.select(((pl.col(f"{column}_got") - pl.col(column)).abs() / pl.col(column).abs().clip(1e-12)).max()).item()
        assert rel < 0.01, f"{column}: max relative error {rel}"

    # Labels of the pod, its namespace and its node travel with every pod row.
    sample = pods.filter(pl.col("namespace") == "payments").row(0, named=True)
    assert json.loads(sample["pod_labels"])["team"] == "payments"
    assert json.loads(sample["namespace_labels"]) == {"team": "payments"}
    assert "node_kubernetes_io_instance_type" in json.loads(sample["node_labels"])

    # (c) the loaded rows reconcile with the CUR cost of the cluster's resources for every hour.
    instances = pl.read_parquet(synth.truth_instances)
    billed = instances.group_by("hour_start").agg(pl.col("amortized_cost").sum().alias("billed"))
    loader = DuckDBLoader(tmp_path / "warehouse.duckdb")
    loaded = loader.query("SELECT hour_start, sum(total_cost) AS allocated, count(*) AS n FROM k8s_cost_allocation GROUP BY 1")
    check = loaded.join(billed.with_columns(pl.col("hour_start").cast(pl.Datetime("us", "UTC"))), on="hour_start")
    assert check.height == SYNTH_HOURS
    assert ((check["allocated"] - check["billed"]).abs() <= 1e-9 * check["billed"]).all(), check
    sentinels = set(rows["namespace"].unique()) & {"__unallocated__", "__cluster_overhead__"}
    assert sentinels == {"__unallocated__", "__cluster_overhead__"}

    # The split line items (AWS SCAD shape) are loaded beside the rows and carry the same money for pods.
    items = loader.query("SELECT sum(split_line_item_split_cost + split_line_item_unused_cost) AS c, count(*) AS n "
                         "FROM k8s_cost_allocation_split_line_items")
    pod_money = pods.select((pl.col("cpu_cost") + pl.col("memory_cost") + pl.col("cpu_unused_cost")
                             + pl.col("memory_unused_cost")).sum()).item()
    assert items["n"].item() == 2 * pods.height and items["c"].item() == pytest.approx(pod_money, rel=1e-12)

    # Loading the same hours again replaces them: exactly one copy of every row.
    assert cli(["load", *_span(), "--config", config, "--rows", str(rows_path)]) == 0
    again = loader.query("SELECT count(*) AS n FROM k8s_cost_allocation").item()
    assert again == rows.height


def test_reexport_replaces_objects_with_same_content(stack_env, fresh_bucket, store_factory, prometheus):
    cc = make_cost_center(fresh_bucket)
    store = store_factory(fresh_bucket)
    client = client_from_connection(ConnectionInfo("p", host="127.0.0.1", port=prometheus.port))
    window = plan_windows(SYNTH_START, SYNTH_START + dt.timedelta(hours=1), 3600)[0]
    first = export_window(client, store, cc, cc.clusters[0], window)
    before = {k: store.get(k) for k in store.list("k8s/prometheus") if "/metric=" in k}
    second = export_window(client, store, cc, cc.clusters[0], window)
    after = {k: store.get(k) for k in store.list("k8s/prometheus") if "/metric=" in k}
    assert before == after
    assert {k: v["rows"] for k, v in first["metrics"].items()} == {k: v["rows"] for k, v in second["metrics"].items()}


def test_json_gz_format_allocates_like_parquet(stack_env, fresh_bucket, store_factory, prometheus, moto):
    client = client_from_connection(ConnectionInfo("p", host="127.0.0.1", port=prometheus.port))
    results = {}
    for fmt in ("parquet", "json.gz"):
        cc = make_cost_center(fresh_bucket, storage={"uri": f"s3://{fresh_bucket}/{fmt.replace('.', '')}", "format": fmt})
        store = store_factory(fresh_bucket)
        for window in plan_windows(SYNTH_START, SYNTH_START + dt.timedelta(hours=2), 3600):
            export_window(client, store, cc, cc.clusters[0], window)
        result = enrich_cluster(cc, cc.clusters[0], SYNTH_START, SYNTH_START + dt.timedelta(hours=2),
                                metrics_store=store, billing_store=store_factory("billing"))
        results[fmt] = result.rows.sort("hour_start", "node", "namespace", "pod").select(
            "namespace", "pod", "total_cost", "cpu_usage_core_hours")
    assert any(k.endswith(".json.gz") for k in store_factory(fresh_bucket).list("jsongz"))
    assert results["parquet"].equals(results["json.gz"])


def test_unreachable_prometheus_fails_clearly_and_leaves_window_incomplete(stack_env, fresh_bucket, store_factory, prometheus):
    from podledger_lab.stack import free_port

    cc = make_cost_center(fresh_bucket)
    store = store_factory(fresh_bucket)
    window = plan_windows(SYNTH_START, SYNTH_START + dt.timedelta(hours=1), 3600)[0]
    good = client_from_connection(ConnectionInfo("p", host="127.0.0.1", port=prometheus.port))
    export_window(good, store, cc, cc.clusters[0], window)
    key = manifest_key("k8s/prometheus", "demo-eks", window)
    assert store.exists(key)
    dead = client_from_connection(ConnectionInfo("p", host="127.0.0.1", port=free_port(), password="s3cret-token"))
    with pytest.raises(PrometheusQueryError, match="not reachable"):
        check_ready(dead)
    with pytest.raises(PrometheusQueryError) as failure:
        export_window(dead, store, cc, cc.clusters[0], window)
    message = str(failure.value)
    assert "cluster demo-eks" in message and "window 2026-11-02T00:00Z" in message and "metric " in message
    assert "s3cret" not in message
    assert not store.exists(key), "a failed re-export must not leave the old manifest claiming the window is complete"
    # The retry (Prometheus reachable again) completes the window.
    export_window(good, store, cc, cc.clusters[0], window)
    assert store.exists(key)


def test_optional_metrics_can_be_switched_off_required_ones_cannot(stack_env, fresh_bucket, store_factory, prometheus):
    from pydantic import ValidationError

    cc = make_cost_center(fresh_bucket, metrics={"disable": ["pod_labels", "node_allocatable"]})
    client = client_from_connection(ConnectionInfo("p", host="127.0.0.1", port=prometheus.port))
    window = plan_windows(SYNTH_START, SYNTH_START + dt.timedelta(hours=1), 3600)[0]
    manifest = export_window(client, store_factory(fresh_bucket), cc, cc.clusters[0], window)
    assert "pod_labels" not in manifest["metrics"] and "node_allocatable" not in manifest["metrics"]
    assert "cpu_usage" in manifest["metrics"]
    with pytest.raises(ValidationError, match="required for allocation"):
        make_cost_center(fresh_bucket, metrics={"disable": ["cpu_usage"]})


def test_raw_mode_writes_the_underlying_series_at_the_step(stack_env, fresh_bucket, store_factory, prometheus):
    import io

    cc = make_cost_center(fresh_bucket, metrics={"raw": {"cpu_requests": 60, "cpu_usage": 300}})
    store = store_factory(fresh_bucket)
    client = client_from_connection(ConnectionInfo("p", host="127.0.0.1", port=prometheus.port))
    window = plan_windows(SYNTH_START, SYNTH_START + dt.timedelta(hours=1), 3600)[0]
    manifest = export_window(client, store, cc, cc.clusters[0], window)
    raw = pl.read_parquet(io.BytesIO(store.get(manifest["raw"]["cpu_requests"]["key"])))
    rollup = pl.read_parquet(io.BytesIO(store.get(manifest["metrics"]["cpu_requests"]["key"])))
    assert manifest["raw"]["cpu_requests"]["key"].endswith("/metric=cpu_requests_raw/1793577600_cpu_requests_raw.parquet")
    assert raw["timestamp"].min() > window.start and raw["timestamp"].max() <= window.end
    # 60 s steps over an hour of 60 s scrapes: the raw points add up to the rollup's value-seconds.
    assert raw["value"].sum() * 60 == pytest.approx(rollup["request_core_seconds"].sum(), rel=1e-9)
    usage = pl.read_parquet(io.BytesIO(store.get(manifest["raw"]["cpu_usage"]["key"])))
    assert usage["timestamp"].dt.minute().unique().sort().to_list() == [0, 5, 10, 15, 20, 25, 30, 35, 40, 45, 50, 55]


def test_restated_cur_replaces_the_hours_once(stack_env, fresh_bucket, store_factory, prometheus, moto, synth, tmp_path):
    """A bill restated after the first enrichment: re-enriching replaces the hours, one copy, new totals."""
    import io

    from podledger.enrich import enrich_cluster
    from podledger.warehouse import DuckDBLoader
    from podledger_lab.demo import ensure_bucket, upload_tree

    ensure_bucket(moto, "restated-cur")
    upload_tree(moto, "restated-cur", "cur", synth.cur_root)
    billing = store_factory("restated-cur")
    cc = make_cost_center(fresh_bucket, billing={"uri": "s3://restated-cur/cur/podledger-cur"})
    store = store_factory(fresh_bucket)
    client = client_from_connection(ConnectionInfo("p", host="127.0.0.1", port=prometheus.port))
    windows = plan_windows(SYNTH_START, SYNTH_START + dt.timedelta(hours=2), 3600)
    for window in windows:
        export_window(client, store, cc, cc.clusters[0], window)
    loader = DuckDBLoader(tmp_path / "restated.duckdb")
    start, end = windows[0].start, windows[-1].end

    def enrich_and_load() -> float:
        result = enrich_cluster(cc, cc.clusters[0], start, end, metrics_store=store, billing_store=billing)
        assert result.reconciliation["ok"].all()
        loader.load(result.rows, cost_center=cc.name, cluster="demo-eks", start=start, end=end)
        return result.reconciliation["billed_cost"].sum()

    first = enrich_and_load()
    key = next(k for k in billing.list("cur/podledger-cur/data") if k.endswith(".parquet"))
    frame = pl.read_parquet(io.BytesIO(billing.get(key)))
    # AWS restates: a credit lowers every instance's effective cost by 10% (re-delivered file, new execution id).
    frame = frame.with_columns(*(pl.col(c) * 0.9 for c in ("line_item_unblended_cost", "savings_plan_savings_plan_effective_cost",
                                                            "reservation_effective_cost")))
    buffer = io.BytesIO()
    frame.write_parquet(buffer)
    billing.put(key, buffer.getvalue())
    second = enrich_and_load()
    assert second < first
    totals = loader.query("SELECT count(*) AS n, sum(total_cost) AS c, count(DISTINCT hour_start) AS h FROM k8s_cost_allocation")
    n, c, h = totals.row(0)
    assert h == 2 and c == pytest.approx(second, rel=1e-12), "only the restated bill's money, once"


def test_legacy_cur_athena_layout_allocates_like_cur2(stack_env, fresh_bucket, store_factory, prometheus, moto, synth):
    """The same bill delivered as a legacy CUR for Athena (tag columns, year=/month= partitions)."""
    import io

    from podledger.enrich import enrich_cluster
    from podledger_lab.demo import ensure_bucket

    cur2 = pl.read_parquet(next(synth.cur_root.rglob("*.parquet")))
    tags = cur2["resource_tags"].to_list()
    keys = sorted({k for entries in tags for k, _ in (entries or [])}) if tags and isinstance(tags[0], list) else sorted(
        {k for entries in tags for k in (entries or {})})
    as_dict = [dict(entries) if isinstance(entries, list) else (entries or {}) for entries in tags]
    legacy = cur2.drop("resource_tags", "product").rename({"product_region_code": "product_region"}).with_columns(
        *(pl.Series(f"resource_tags_{k}", [d.get(k) for d in as_dict], pl.String) for k in keys))
    ensure_bucket(moto, "legacy-cur")
    billing = store_factory("legacy-cur")
    buffer = io.BytesIO()
    legacy.write_parquet(buffer)
    billing.put("cur/podledger-cur/podledger-cur/year=2026/month=11/podledger-cur-00001.snappy.parquet", buffer.getvalue())

    client = client_from_connection(ConnectionInfo("p", host="127.0.0.1", port=prometheus.port))
    windows = plan_windows(SYNTH_START, SYNTH_START + dt.timedelta(hours=2), 3600)
    results = {}
    for fmt, uri, store_name in (("cur_legacy", "s3://legacy-cur/cur/podledger-cur/podledger-cur", "legacy-cur"),
                                 ("cur2", "s3://billing/cur/podledger-cur", "billing")):
        cc = make_cost_center(fresh_bucket, billing={"format": fmt, "uri": uri})
        store = store_factory(fresh_bucket)
        for window in windows:
            export_window(client, store, cc, cc.clusters[0], window)
        result = enrich_cluster(cc, cc.clusters[0], windows[0].start, windows[-1].end, metrics_store=store,
                                billing_store=store_factory(store_name))
        assert result.reconciliation["ok"].all()
        results[fmt] = result.rows.sort("hour_start", "namespace", "pod", "node").select("pod", "total_cost")
    assert "__unallocated__" in results["cur_legacy"]["pod"].to_list(), "tag columns identify the cluster's instances"
    assert results["cur_legacy"].equals(results["cur2"])
