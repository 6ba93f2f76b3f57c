"""Cost-center configuration: typed, validated once, errors name the file, the field and the reason."""

from __future__ import annotations

import re

import pytest

from podledger.config import SAMPLE_CONFIG, load_config, load_cost_center
from podledger.exceptions import ConfigError

GOOD = """
  - name: good
    clusters: [{name: prod-eks, prometheus_conn_id: prom_prod}]
"""


def write(tmp_path, body: str):
    path = tmp_path / "cost_centers.yaml"
    path.write_text("cost_centers:\n" + body)
    return path


def test_sample_config_is_valid():
    loaded = load_config(SAMPLE_CONFIG)
    assert loaded.errors == () and [c.name for c in loaded.cost_centers] == ["demo"]


@pytest.mark.parametrize("body, field, reason", [
    ("  - name: bad\n    clusters: []\n", "(root)", "at least 1 cluster in 'clusters' or configure 'discovery'"),
    ("  - name: bad\n    clusters: [{name: ok}]\n    time_frame_seconds: 1000\n", "time_frame_seconds", "divide an hour"),
    ("  - name: bad\n    clusters: [{name: '../escape'}]\n", "clusters.0.name", "must match"),
    ("  - name: bad\n    clusters: [{name: 'a/b'}]\n", "clusters.0.name", "must match"),
    ("  - name: bad\n    clusters: [{name: ok}]\n    storage: {uri: 'http://x'}\n", "storage.uri", "s3://"),
    ("  - name: bad\n    clusters: [{name: ok}]\n    billing: {cost_basis: blended}\n", "billing.cost_basis", "amortized"),
    ("  - name: bad\n    clusters: [{name: ok}]\n    shedule: '@daily'\n", "shedule", "Extra inputs are not permitted"),
])
def test_bad_cost_center_names_file_field_reason(tmp_path, body, field, reason):
    path = write(tmp_path, GOOD + body)
    loaded = load_config(path)
    assert [c.name for c in loaded.cost_centers] == ["good"], "a bad cost center must not take the others down"
    (label, message), = loaded.errors
    assert str(path) in message and f"field '{field}'" in message and reason in message and "bad" in label
    with pytest.raises(ConfigError, match=re.escape(field)):
        load_cost_center("bad", path)


def test_unreadable_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    (tmp_path / "x.yaml").write_text("cost_centers: {not: a list}")
    with pytest.raises(ConfigError, match="must be a list"):
        load_config(tmp_path / "x.yaml")
