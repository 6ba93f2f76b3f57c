"""nginx in front of Prometheus enforcing each auth method: right credentials pass, wrong ones fail clearly."""

from __future__ import annotations

import datetime as dt

import pytest

from helpers import SYNTH_START, make_cost_center, s3_store
from podledger.connections import ConnectionInfo
from podledger.exceptions import PrometheusQueryError
from podledger.export import export_window
from podledger.layout import plan_windows
from podledger.promclient import check_ready, client_from_connection
from podledger_lab.stack import start_nginx_auth

SECRETS = {"user": "finops", "password": "pw-Zq81", "token": "tok-Kx77", "bearer": "jwt-Ab12", "tenant": "team-a"}
WINDOW = plan_windows(SYNTH_START, SYNTH_START + dt.timedelta(hours=1), 3600)[0]


@pytest.fixture(scope="module")
def nginx(prometheus, tmp_path_factory):
    server = start_nginx_auth(prometheus.url, tmp_path_factory.mktemp("nginx"), **SECRETS)
    yield server
    server.stop()


METHODS = {  # method -> (connection kwargs with the right secret, with a wrong one)
    "basic": ({"login": "finops", "password": "pw-Zq81"}, {"login": "finops", "password": "pw-WRONG"}),
    "token": ({"extra": {"token": "tok-Kx77"}}, {"extra": {"token": "tok-WRONG"}}),
    "bearer": ({"extra": {"bearer_token": "jwt-Ab12"}}, {"extra": {"bearer_token": "jwt-WRONG"}}),
    "tenant": ({"extra": {"x_scope_orgid": "team-a"}}, {"extra": {"x_scope_orgid": "team-b"}}),
}


@pytest.mark.parametrize("method", list(METHODS))
def test_each_auth_method(method, nginx, stack_env, moto):
    good, bad = METHODS[method]
    conn = ConnectionInfo(f"prom_{method}", host="127.0.0.1", port=nginx.port, schema=method, **good)
    client = client_from_connection(conn)
    check_ready(client)
    bucket = f"auth-{method}"
    store = s3_store(moto, bucket)
    cc = make_cost_center(bucket)
    manifest = export_window(client, store, cc, cc.clusters[0], WINDOW)
    assert manifest["metrics"]["cpu_usage"]["rows"] > 0

    wrong = client_from_connection(ConnectionInfo(f"prom_{method}_wrong", host="127.0.0.1", port=nginx.port,
                                                  schema=method, **bad))
    with pytest.raises(PrometheusQueryError) as ready_error:
        check_ready(wrong)
    with pytest.raises(PrometheusQueryError) as query_error:
        export_window(wrong, store, cc, cc.clusters[0], WINDOW)
    for error in (ready_error.value, query_error.value):
        message = str(error)
        assert f"connection 'prom_{method}_wrong'" in message and "rejected the credentials" in message
        assert not any(secret in message for secret in (*SECRETS.values(), "WRONG", "team-b"))
