"""Every data-quality rule provoked with real series in a real Prometheus, exported, then validated."""

from __future__ import annotations

import datetime as dt
import json

import polars as pl
import pytest

from helpers import SYNTH_START, make_cost_center, prometheus_client, s3_options, s3_store
from podledger.exceptions import ValidationFailed
from podledger.export import export_window
from podledger.layout import plan_windows
from podledger.storage import FsspecStore
from podledger.validate import ERROR, WARNING, check_billing, validate_windows
from podledger_lab.stack import load_blocks, start_prometheus
from podledger_lab.synth import synthesize
from podledger_lab.synth.openmetrics import FAULTS

WINDOWS = plan_windows(SYNTH_START, SYNTH_START + dt.timedelta(hours=4), 3600)


def _prometheus_for(openmetrics, work):
    load_blocks(openmetrics, work / "tsdb")
    return start_prometheus(work / "tsdb", work)


def _export_and_validate(server, moto, bucket, cc, windows, peers=()):
    store = s3_store(moto, bucket)
    for window in windows:
        export_window(prometheus_client(server), store, cc, cc.clusters[0], window)
    error = None
    try:
        validate_windows(store, cc, [(cc.clusters[0].name, w) for w in windows], peers)
    except ValidationFailed as exc:
        error = exc
    reports = [json.loads(store.get(k)) for k in store.list("k8s") if k.endswith("_validation.json")]
    return error, reports


@pytest.fixture(scope="module")
def messy(tmp_path_factory, moto):
    """A cluster with every fault injected, loaded into its own Prometheus, exported and validated."""
    work = tmp_path_factory.mktemp("messy")
    out = synthesize(work / "synth", nodes=6, pods=40, hours=4, start=SYNTH_START, faults=FAULTS)
    server = _prometheus_for(out.openmetrics, work)
    try:
        yield _export_and_validate(server, moto, "messy-cluster", make_cost_center("messy-cluster", name="messy"), WINDOWS)
    finally:
        server.stop()


RULES = [  # rule, severity, fragments the message must contain
    ("duplicate_scrapes", ERROR, ["payments/api-", "counted twice", "drop the standalone cAdvisor job"]),
    ("provider_id_unparsable", ERROR, ["kind://docker", "cannot be matched to the bill"]),
    ("labels_missing", WARNING, ["kube_node_labels", "--metric-labels-allowlist=pods=[*],nodes=[*]"]),
    ("aggregate_only_pods", WARNING, ["monitoring/grafana-", 'container=""']),
    ("counter_resets", WARNING, ["checkout/worker-"]),
    ("pods_without_node", WARNING, ["default/debug-shell"]),
    ("usage_without_requests", WARNING, ["data/report-", "without requesting"]),
    ("requests_without_usage", WARNING, ["data/postgres-0"]),
    ("scrape_gap", WARNING, ["67%", "20 min missing"]),
]


@pytest.mark.parametrize("rule, severity, fragments", RULES, ids=[r[0] for r in RULES])
def test_rule_reported_with_cluster_window_metric_and_fix(messy, rule, severity, fragments):
    _, reports = messy
    hits = [f for r in reports for f in r["findings"] if f["rule"] == rule]
    assert hits, f"{rule} not reported"
    finding = hits[0]
    assert finding["severity"] == severity and finding["cluster"] == "demo-eks" and finding["fix"]
    assert finding["metric"] and "2026-11-02T0" in finding["window"]
    text = finding["message"] + " " + finding["fix"]
    for fragment in fragments:
        assert fragment in text


def test_errors_fail_the_task_with_a_specific_message(messy):
    error, reports = messy
    assert error is not None and len(reports) == len(WINDOWS)
    message = str(error)
    assert "cost center messy:" in message and "cluster demo-eks" in message and "window 2026-11-02T" in message
    assert "Fix:" in message
    assert all(r["errors"] >= 2 for r in reports)


def test_clean_cluster_has_no_errors(stack_env, prometheus, moto):
    error, reports = _export_and_validate(prometheus, moto, "clean-cluster", make_cost_center("clean-cluster"), WINDOWS[:2])
    assert error is None
    assert {f["rule"] for r in reports for f in r["findings"]} <= {"pods_without_node", "requests_without_usage"}


KSM_V1 = """kube_node_info{{node="n1",provider_id="aws:///us-east-1a/i-0abc"}} 1 {t}
kube_node_status_capacity_cpu_cores{{node="n1"}} 4 {t}
kube_node_status_capacity_memory_bytes{{node="n1"}} 17179869184 {t}
kube_pod_container_resource_requests_cpu_cores{{namespace="a",pod="p",container="c",node="n1"}} 0.5 {t}
kube_pod_status_phase{{namespace="a",pod="p",uid="u",phase="Running"}} 1 {t}
"""


def test_kube_state_metrics_v1_is_detected_and_explained(tmp_path, moto):
    start = int(SYNTH_START.timestamp())
    text = "".join(KSM_V1.format(t=t) for t in range(start + 60, start + 3601, 60))
    # promtool wants each series in time order: regroup the lines per series.
    lines = sorted(text.splitlines(), key=lambda line: (line.rsplit(" ", 2)[0], int(line.rsplit(" ", 1)[1])))
    (tmp_path / "v1.om").write_text("\n".join(lines) + "\n# EOF\n")
    server = _prometheus_for(tmp_path / "v1.om", tmp_path)
    try:
        error, reports = _export_and_validate(server, moto, "ksm-v1", make_cost_center("ksm-v1"), WINDOWS[:1])
    finally:
        server.stop()
    v1 = [f for f in reports[0]["findings"] if f["rule"] == "ksm_v1_metrics"]
    assert v1 and v1[0]["severity"] == ERROR and "kube_pod_container_resource_requests_cpu_cores" in v1[0]["message"]
    assert "upgrade kube-state-metrics to v2" in v1[0]["fix"]
    assert error is not None


def test_centralized_mode_selects_by_cluster_label_and_reports_a_wrong_value(tmp_path, moto):
    out = synthesize(tmp_path / "synth", nodes=4, pods=20, hours=1, start=SYNTH_START, cluster_label="cluster")
    server = _prometheus_for(out.openmetrics, tmp_path)
    try:
        good = make_cost_center("central-ok", clusters=[{"name": "demo-eks", "prometheus_conn_id": "x",
                                                        "cluster_label_value": "demo-eks"}])
        error, reports = _export_and_validate(server, moto, "central-ok", good, WINDOWS[:1])
        assert error is None
        wrong = make_cost_center("central-bad", clusters=[{"name": "demo-eks", "prometheus_conn_id": "x",
                                                         "cluster_label_value": "prod-eu"}])
        error, reports = _export_and_validate(server, moto, "central-bad", wrong, WINDOWS[:1])
    finally:
        server.stop()
    missing = [f for f in reports[0]["findings"] if f["rule"] == "cluster_label_missing"]
    assert error is not None and missing and "['demo-eks']" in missing[0]["message"]


def test_node_in_two_cost_centers_is_an_error_naming_both(stack_env, prometheus, moto):
    first, second = make_cost_center("team-a-metrics", name="team-a"), make_cost_center("team-b-metrics", name="team-b")
    store_b = s3_store(moto, "team-b-metrics")
    export_window(prometheus_client(prometheus), store_b, second, second.clusters[0], WINDOWS[0])
    error, reports = _export_and_validate(prometheus, moto, "team-a-metrics", first, WINDOWS[:1], peers=[(second, store_b)])
    overlap = [f for f in reports[0]["findings"] if f["rule"] == "node_in_two_cost_centers"]
    assert error is not None and overlap
    assert "cost center team-a" in overlap[0]["message"] and "cost center team-b" in overlap[0]["message"]


def test_billing_rules_types_currency_and_missing_node_hours():
    hour = dt.datetime(2026, 11, 2, tzinfo=dt.UTC)
    cur = pl.DataFrame({"bill_billing_period_start_date": [hour, hour], "line_item_currency_code": ["USD", "EUR"],
                        "line_item_unblended_cost": ["1.0", "2.0"], "line_item_usage_start_date": [hour, hour]})
    costs = pl.DataFrame({"hour_start": [hour], "instance_id": ["i-1"]})
    nodes = pl.DataFrame({"hour_start": [hour, hour], "instance_id": ["i-1", "i-2"]})
    findings = {f.rule: f for f in check_billing(cur, costs, nodes, cluster="c", source="s3://b/cur")}
    assert findings["cur_column_type"].severity == ERROR and "line_item_unblended_cost" in findings["cur_column_type"].message
    assert "EUR" in findings["cur_mixed_currency"].message
    assert findings["cur_missing_node_hours"].severity == WARNING and "i-2@2026-11-02T00Z" in findings["cur_missing_node_hours"].message


def test_bill_in_two_currencies_fails_enrichment_naming_the_period(stack_env, moto, synth, prometheus, tmp_path):
    """A real CUR 2.0 delivery with a second currency in the period: enrichment refuses to mix them."""
    import io

    from podledger.enrich import enrich_cluster
    from podledger.exceptions import BillingDataError
    from podledger_lab.demo import ensure_bucket, upload_tree

    ensure_bucket(moto, "eur-billing")
    upload_tree(moto, "eur-billing", "cur", synth.cur_root)
    billing = FsspecStore("s3", "eur-billing", s3_options(moto.url))
    key = next(k for k in billing.list("cur/podledger-cur/data") if k.endswith(".parquet"))
    frame = pl.read_parquet(io.BytesIO(billing.get(key)))
    frame = frame.with_columns(pl.when(pl.int_range(pl.len()) == 0).then(pl.lit("EUR")).otherwise(pl.col("line_item_currency_code"))
                               .alias("line_item_currency_code"))
    buffer = io.BytesIO()
    frame.write_parquet(buffer)
    billing.put(key, buffer.getvalue())
    cc = make_cost_center("eur-metrics", billing={"uri": "s3://eur-billing/cur/podledger-cur"})
    store = s3_store(moto, "eur-metrics")
    export_window(prometheus_client(prometheus), store, cc, cc.clusters[0], WINDOWS[0])
    with pytest.raises(BillingDataError, match=r"cur_mixed_currency.*2026-11.*EUR"):
        enrich_cluster(cc, cc.clusters[0], WINDOWS[0].start, WINDOWS[0].end, metrics_store=store, billing_store=billing)


def test_wrong_scrape_interval_is_caught(stack_env, prometheus, moto):
    """Configured 120 s on 60 s scrapes: value-seconds would double; validation says so and fails."""
    cc = make_cost_center("interval-wrong", clusters=[{"name": "demo-eks", "prometheus_conn_id": "x",
                                                       "scrape_interval_seconds": 120}])
    error, reports = _export_and_validate(prometheus, moto, "interval-wrong", cc, WINDOWS[:1])
    mismatch = [f for f in reports[0]["findings"] if f["rule"] == "scrape_interval_mismatch"]
    assert error is not None and mismatch and "about 60s" in mismatch[0]["fix"]


def test_cadvisor_series_without_the_pod_uid_are_named_with_their_effect():
    import polars as pl

    from podledger.manifests import Manifest
    from podledger.validate import check_window_data

    key = {"namespace": ["shop", "shop"], "pod": ["web-0", "db-0"], "uid": ["u1", "u2"]}
    frames = {
        "pod_running": pl.DataFrame({**key, "running_seconds": [3600.0, 3600.0]}),
        "cpu_requests": pl.DataFrame({**key, "container": ["app"] * 2, "node": ["n1"] * 2,
                                      "request_core_seconds": [3600.0] * 2}),
        "cpu_usage": pl.DataFrame({**key, "container": ["app"] * 2, "usage_core_seconds": [10.0, 20.0]}).with_columns(
            pl.Series("uid", ["u1", ""])),
    }
    manifest = Manifest({"cluster": "c", "metrics": {},
                         "window": {"start": "2026-11-02T00:00:00+00:00", "end": "2026-11-02T01:00:00+00:00"}})
    found = [f for f in check_window_data(manifest, frames) if f.rule == "usage_without_pod_uid"]
    assert len(found) == 1 and found[0].severity == "warning" and "shop/db-0" in found[0].message
    assert "shared among its incarnations by running time" in found[0].message
