"""The podledger command: stages listed, bad input reported with a clear message and a non-zero exit."""

from __future__ import annotations

import subprocess
import sys

from podledger.cli import main


def test_help_lists_every_stage():
    out = subprocess.run([sys.executable, "-m", "podledger.cli", "--help"], capture_output=True, text=True, check=True).stdout
    for stage in ("export", "import", "validate", "allocate", "load", "report", "rightsize", "from-cronjob"):
        assert stage in out
    lab = subprocess.run([sys.executable, "-m", "podledger_lab.cli", "--help"], capture_output=True, text=True,
                         check=True).stdout
    assert "demo" in lab and "synth" in lab


def test_the_product_never_imports_the_lab():
    """podledger (the product) runs without podledger_lab: the demo and synthetic cluster are lab tooling."""
    import ast
    from pathlib import Path

    import podledger

    for path in Path(podledger.__file__).parent.rglob("*.py"):
        tree = ast.parse(path.read_text())
        names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        names += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
        assert not [n for n in names if n.startswith("podledger_lab")], path


def test_bad_config_and_range_are_reported(tmp_path, capsys):
    bad = tmp_path / "cc.yaml"
    bad.write_text("cost_centers:\n  - name: x\n    clusters: [{name: 'a/b'}]\n")
    assert main(["check-config", "--config", str(bad)]) == 1
    err = capsys.readouterr().err
    assert str(bad) in err and "clusters.0.name" in err
    assert main(["export", "--cost-center", "x", "--config", str(bad), "--start", "2026-11-02", "--end", "2026-11-01"]) == 2
    assert "must be after" in capsys.readouterr().err


def test_missing_connection_names_the_variable(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_PROM_NOWHERE", raising=False)
    cfg = tmp_path / "cc.yaml"
    cfg.write_text("cost_centers:\n  - name: x\n    clusters: [{name: a, prometheus_conn_id: prom_nowhere}]\n"
                   "    storage: {uri: 'file:///tmp/podledger-cli-test'}\n")
    assert main(["export", "--cost-center", "x", "--config", str(cfg), "--start", "2026-11-02", "--end", "2026-11-02T01:00"]) == 1
    assert "AIRFLOW_CONN_PROM_NOWHERE" in capsys.readouterr().err
