"""podledger DAGs: an export, an enrichment and a billing-watch DAG per configured cost center.

The cost-center file is read from $PODLEDGER_CONFIG
(default: include/cost_centers.yaml). An invalid cost center becomes a failing
``podledger_config_error__*`` DAG naming the file, the field and the reason; the others still load.
"""

from __future__ import annotations

from podledger_airflow.dag_factory import build_all

for _dag in build_all():
    globals()[_dag.dag_id] = _dag
