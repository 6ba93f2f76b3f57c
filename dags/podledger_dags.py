"""podledger DAGs: an export, an enrichment and a billing-watch DAG per configured cost center.

The cost-center file is read from $PODLEDGER_CONFIG
(default: include/cost_centers.yaml). An invalid cost center becomes a failing
``podledger_config_error__*`` DAG naming the file, the field and the reason; the others still load.
"""

from __future__ import annotations

from podledger.config import load_config
from podledger_airflow.dag_factory import build_billing_dag, build_config_error_dag, build_enrich_dag, build_export_dag

_loaded = load_config()
for _cost_center in _loaded.cost_centers:
    globals()[f"export_{_cost_center.name}"] = build_export_dag(_cost_center)
    globals()[f"enrich_{_cost_center.name}"] = build_enrich_dag(_cost_center)
    globals()[f"billing_{_cost_center.name}"] = build_billing_dag(_cost_center)
for _label, _message in _loaded.errors:
    globals()[f"config_error_{_label}"] = build_config_error_dag(_label, _message)
