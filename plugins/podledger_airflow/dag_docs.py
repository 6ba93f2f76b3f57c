"""The ``doc_md`` of each podledger DAG: what it does for its cost center and how to backfill or trigger it."""

from __future__ import annotations

from podledger.config import CostCenterConfig

EXPORT_DOC = """
### podledger export — cost center `{name}`

Every interval (`{schedule}`), for each cluster ({clusters}) and each `{frame}` s window that ends inside
the data interval, runs the metric catalog's PromQL rollups against the cluster's Prometheus connection and
writes one file per metric to `{uri}/<cluster>/end=YYYYMMDD/day=D/metric=NAME/<epoch>_NAME.{ext}`, then the
window's manifest (last). A sensor waits for every manifest, validation checks the windows, and the
`{asset}` Asset event triggers enrichment.

**Schedule.** {catchup} {end}

**Pools.** {pools} A pool's slots bound the windows exported against that Prometheus at once, across
every DAG; each export runs up to {batch} queries at a time. Create a missing pool with
`airflow pools set <name> 4 "podledger"`, or the export tasks wait for it forever.

**Backfill and triggers.** Re-running a window replaces its objects and manifest; windows already complete
are skipped. Backfill history with
`airflow backfill create --dag-id {dag_id} --from-date 2026-11-01 --to-date 2026-11-03`. The trigger form's
params (all optional): `start`/`end` (UTC) export that range instead of the data interval, `clusters` limits
the run to some clusters, `force` re-exports complete windows. Costs: Browse → Cost explorer, or `podledger report`.

**Retention.** The last task deletes windows older than `retention_days` ({retention} days) that were also
exported longer ago than that: history exported today (a backfill, a run with an old `start`) is kept
{retention} days from its export, so its enrichment still finds it.
"""

ENRICH_DOC = """
### podledger enrich — cost center `{name}`

Runs when the export DAG marks metrics complete (`{asset}` Asset) or when triggered with `start`/`end`.
`allocate` is mapped over (cluster, UTC day): each piece reads that day's exported metrics and bill rows
(`{billing}`), prices every node-hour (`{basis}` cost), splits it onto pods (AWS Split Cost Allocation Data
rules) and fails if any cluster-hour does not reconcile with the bill's files to 1e-9; a retry repeats one
day. `load` replaces each cluster-day in `{table}`, one transaction each.
Backfill: trigger with `start`/`end` covering the hours to re-enrich (e.g. after a CUR restatement).
"""

BILLING_DOC = """
### podledger billing watch — cost center `{name}`

Every `{schedule}` looks at the CUR 2.0 export `{billing}`: when a billing period is delivered for the first
time or restated (its manifest's execution id changed: AWS re-delivers past months when credits, refunds
or finalisation land), it emits a `{asset}` Asset event naming the periods, and the enrichment DAG
re-allocates their hours. Backfill is not needed: trigger it to re-check now.
"""


def export_doc(cost_center: CostCenterConfig, dag_id: str, asset: str, pools: list[str | None]) -> str:
    """Return the export DAG's ``doc_md``, stating this cost center's schedule, catchup, end date and pools."""
    since = (f"since {cost_center.initial_backfill_date}" if cost_center.initial_backfill_date
             else f"over the last {cost_center.backfill_days} days")
    catchup = (f"Catchup is on: every interval {since} is scheduled." if cost_center.catchup
               else "Catchup is off: only the latest interval is scheduled; backfill older ones.")
    end = (f"Scheduling stops at {cost_center.end_date} 00:00 UTC (`end_date`, exclusive): no scheduled run covers "
           "an hour at or after it (a straddling interval is clipped, an empty run skipped with the reason); a manual "
           "run dated at or after it runs no task." if cost_center.end_date else "No `end_date`: it runs until paused.")
    named = [f"`{p}`" for p in pools if p]
    pool_text = (f"Exports run in the pool(s) {', '.join(named)}" + (" and `default_pool`." if None in pools else ".")
                 if named else "Exports run in `default_pool` (set `pool` per cluster to bound each Prometheus).")
    return EXPORT_DOC.format(
        name=cost_center.name, schedule=cost_center.schedule, frame=cost_center.time_frame_seconds,
        clusters=", ".join(c.name for c in cost_center.clusters) or "discovered by cluster label",
        uri=cost_center.storage.uri, ext=cost_center.storage.format, asset=asset, dag_id=dag_id,
        catchup=catchup, end=end, pools=pool_text, batch=cost_center.queries_batch_size,
        retention=cost_center.storage.retention_days)
