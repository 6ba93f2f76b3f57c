"""The docs stay inside the repository and true to the code: links resolve, the documented queries run."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import polars as pl

from podledger.allocation import OUTPUT_SCHEMA
from podledger.warehouse import DuckDBLoader

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_docs_exist_and_point_only_inside_the_repository():
    assert {p.name for p in DOCS} >= {"README.md", "architecture.md", "warehouse.md"}
    for doc in DOCS:
        text = doc.read_text()
        assert "../shared" not in text and "ARCHITECTURE.md" not in text, f"{doc.name} points outside the repository"
        for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text):
            if target.startswith(("http://", "https://")):
                continue
            resolved = (doc.parent / target).resolve()
            assert resolved.is_relative_to(ROOT) and resolved.exists(), f"{doc.name} links to missing {target}"


def test_every_output_column_and_view_is_documented():
    architecture = (ROOT / "docs" / "architecture.md").read_text()
    missing = [c for c in OUTPUT_SCHEMA if f"`{c}`" not in architecture]
    assert not missing, f"output columns not in docs/architecture.md: {missing}"
    views = re.findall(r"VIEW \{table\}(_\w+)", (ROOT / "include" / "sql" / "views.sql").read_text())
    warehouse = (ROOT / "docs" / "warehouse.md").read_text()
    assert views and all(f"k8s_cost_allocation{v}" in warehouse for v in views)


def _load_three_hours(loader: DuckDBLoader, start: dt.datetime) -> None:
    records = [{name: None for name in OUTPUT_SCHEMA} | {
        "hour_start": start + dt.timedelta(hours=h), "cost_center": "cc", "cluster": "c", "namespace": ns,
        "pod": f"{ns}-0", "controller_kind": "Deployment", "controller_name": ns, "pod_labels": '{"team": "a"}',
        "total_cost": 1.0, "cpu_cost": 0.9, "memory_cost": 0.1, "gpu_cost": 0.0, "unused_cost": 0.2, "network_cost": 0.0,
        "cpu_request_core_hours": 1.0, "cpu_usage_core_hours": 0.3, "memory_request_gib_hours": 1.0,
        "memory_usage_gib_hours": 0.4, "efficiency": 0.3, "currency": "USD"}
        for h in range(3) for ns in ("shop", "__idle__")]
    loader.load(pl.DataFrame(records, schema=OUTPUT_SCHEMA), cost_center="cc", cluster="c", start=start,
                end=start + dt.timedelta(hours=3))


def test_the_documented_queries_run_on_a_loaded_warehouse(tmp_path):
    # Hours of the demo day (the examples name it) and of yesterday (the "last 7 days" examples).
    loader = DuckDBLoader(tmp_path / "w.duckdb", "k8s_cost_allocation")
    for start in (dt.datetime(2026, 11, 2, tzinfo=dt.UTC),
                  dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0) - dt.timedelta(days=1)):
        _load_three_hours(loader, start)
    text = (ROOT / "docs" / "warehouse.md").read_text()
    blocks = re.findall(r"```sql\n(.*?)```", text, flags=re.S)
    code = ["\n".join(line for line in b.splitlines() if not line.lstrip().startswith("--")) for b in blocks]
    statements = [s.strip() for b in code for s in b.split(";") if s.strip()]
    assert len(statements) >= 6
    con = loader.connect()
    for sql in statements:
        result = con.sql(sql).fetchall()
        assert result, f"documented query returned nothing:\n{sql}"
