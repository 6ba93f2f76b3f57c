"""podledger's "Prometheus" connection type: registered with Airflow, its form fields read by the hook."""

from __future__ import annotations

import json

from podledger_airflow.hooks import PrometheusHook, form_extras


def test_airflow_lists_the_prometheus_connection_type_and_its_fields():
    from airflow.providers_manager import ProvidersManager

    manager = ProvidersManager()
    assert "podledger" in manager.providers
    hook = manager.hooks["prometheus"]
    assert hook.hook_class_name == "podledger_airflow.hooks.PrometheusHook" and hook.hook_name.startswith("Prometheus")
    fields = {k.removeprefix("extra__prometheus__") for k in manager.connection_form_widgets
              if k.startswith("extra__prometheus__")}
    assert {"token", "bearer_token", "x_scope_orgid", "sigv4_region", "sigv4_aws_conn_id", "readiness_path",
            "verify"} <= fields
    assert manager.connection_form_widgets["extra__prometheus__bearer_token"].is_sensitive
    assert PrometheusHook.conn_type == "prometheus"


def test_the_forms_fields_become_the_extras_podledger_reads(monkeypatch):
    assert form_extras({"extra__prometheus__sigv4_region": "eu-west-1", "extra__prometheus__readiness_path": "/ready",
                        "extra__prometheus__token": "", "bearer_token": "b"}) == {
        "sigv4": {"region": "eu-west-1", "aws_conn_id": "aws_default"}, "readiness_path": "/ready", "bearer_token": "b"}
    monkeypatch.setenv("AIRFLOW_CONN_PROM_FORM", json.dumps({
        "conn_type": "prometheus", "host": "prometheus.example", "port": 9090, "schema": "prometheus",
        "extra": {"extra__prometheus__bearer_token": "s3cr3t", "extra__prometheus__x_scope_orgid": "acme"}}))
    client = PrometheusHook("prom_form").get_conn()
    assert client.url == "http://prometheus.example:9090/prometheus"
    assert client.headers["Authorization"] == "Bearer s3cr3t" and client.headers["X-Scope-OrgID"] == "acme"
