"""The cost explorer inside the Airflow UI: a FastAPI app (page + JSON/CSV API) and a nav entry.

Every endpoint requires an Airflow user (the UI's session cookie or a Bearer token): an anonymous request gets
401. The data comes from each cost center's warehouse (DuckDB read-only, PostgreSQL through its connection).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING, Any

# Airflow's own access check (internal module, pinned with apache-airflow 3.3.2; tested by the explorer's tests).
from airflow.api_fastapi.auth.managers.models.resource_details import AccessView
from airflow.api_fastapi.core_api.security import requires_access_view
from airflow.plugins_manager import AirflowPlugin
from fastapi import Depends, FastAPI, HTTPException, Query
from fastapi.responses import HTMLResponse, JSONResponse, Response

if TYPE_CHECKING:
    import polars as pl

    from podledger.config import CostCenterConfig
    from podledger.warehouse import Warehouse

PAGE = Path(__file__).with_name("static") / "explorer.html"
PREFIX = "/podledger"
authenticated = [Depends(requires_access_view(AccessView.PLUGINS))]
app = FastAPI(title="podledger cost explorer", dependencies=authenticated)


def _cost_center(name: str | None) -> CostCenterConfig:
    from podledger.config import load_config

    centers = load_config().cost_centers
    if not centers:
        raise HTTPException(404, "no valid cost center is configured")
    for center in centers:
        if name in (None, "", center.name):
            return center
    raise HTTPException(404, f"no cost center {name!r}; known: {[c.name for c in centers]}")


def _loader(center: CostCenterConfig) -> Warehouse:
    from podledger.warehouse import loader_for

    if center.warehouse.kind == "postgres":
        from podledger_airflow.hooks import connection_info

        return loader_for(center.warehouse, connection_info(center.warehouse.conn_id))
    return loader_for(center.warehouse)


def _range(start: str | None, end: str | None) -> tuple[dt.datetime, dt.datetime]:
    from podledger.layout import to_utc

    try:
        end_at = to_utc(end) if end else dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)
        start_at = to_utc(start) if start else end_at - dt.timedelta(days=7)
    except ValueError as exc:
        raise HTTPException(422, f"start/end: {exc}") from None
    if end_at <= start_at:
        raise HTTPException(422, "end must be after start")
    return start_at, end_at


def _frame(frame: pl.DataFrame, fmt: str, name: str) -> Response:
    if fmt == "csv":
        return Response(frame.write_csv(), media_type="text/csv",
                        headers={"Content-Disposition": f'attachment; filename="{name}.csv"'})
    return JSONResponse({"columns": frame.columns, "rows": frame.to_dicts()}, media_type="application/json")


def _json_safe(frame: pl.DataFrame) -> pl.DataFrame:
    """Timestamps as ISO strings, NaN as null."""
    import polars as pl

    return frame.with_columns(
        *(pl.col(c).dt.strftime("%Y-%m-%dT%H:%MZ") for c, t in frame.schema.items() if isinstance(t, pl.Datetime)),
        *(pl.col(c).fill_nan(None) for c, t in frame.schema.items() if t == pl.Float64))


@app.get("/", response_class=HTMLResponse)
def page() -> str:
    """The cost explorer page (no external resources: the chart is drawn by the page itself)."""
    return PAGE.read_text()


@app.get("/api/cost-centers")
def cost_centers() -> dict[str, Any]:
    from podledger.config import load_config

    return {"cost_centers": [{"name": c.name, "clusters": [k.name for k in c.clusters],
                              "warehouse": c.warehouse.kind, "currency_basis": c.billing.cost_basis}
                             for c in load_config().cost_centers]}


@app.get("/api/allocation")
def allocation_api(cost_center: str | None = None, cluster: str | None = None, start: str | None = None,
                   end: str | None = None, by: str = "namespace", step: str = Query("day", pattern="^(hour|day|week|month)$"),
                   idle: str = Query("separate", pattern="^(separate|shared)$"), format: str = "json") -> Response:  # noqa: A002
    from podledger.exceptions import PodledgerError
    from podledger.explorer import allocation_from_warehouse, label_keys_sql

    center = _cost_center(cost_center)
    start_at, end_at = _range(start, end)
    loader = _loader(center)
    try:  # aggregated by the warehouse: months of rows never leave it
        result = allocation_from_warehouse(loader, center, start_at, end_at, by=by, step=step, idle=idle,
                                           cluster=cluster)
    except PodledgerError as exc:
        raise HTTPException(422, str(exc)) from None
    table = result["table"]
    if format == "csv":
        return _frame(table, "csv", f"podledger-{center.name}-by-{by.replace(':', '-')}")
    currencies = sorted({c for text in table["currency"].drop_nulls().to_list() for c in text.split(",")})
    return JSONResponse({
        "cost_center": center.name, "start": start_at.isoformat(), "end": end_at.isoformat(), "by": by, "step": step,
        "idle": idle, "currency": currencies, "table": _json_safe(table).to_dicts(),
        "series": _json_safe(result["series"]).to_dicts(), "groups": result["groups"],
        "label_keys": label_keys_sql(loader, center, start_at, end_at) if table.height else []})


@app.get("/api/reconciliation")
def reconciliation_api(cost_center: str | None = None, cluster: str | None = None, start: str | None = None,
                       end: str | None = None, format: str = "json") -> Response:  # noqa: A002
    from podledger.explorer import reconciliation

    center = _cost_center(cost_center)
    start_at, end_at = _range(start, end)
    report = reconciliation(_loader(center), center, start_at, end_at, cluster)
    return _frame(_json_safe(report) if format != "csv" else report, format, f"podledger-{center.name}-reconciliation")


@app.get("/api/freshness")
def freshness_api(cost_center: str | None = None, format: str = "json") -> Response:  # noqa: A002
    from podledger.explorer import freshness

    center = _cost_center(cost_center)
    report = freshness(_loader(center), center)
    return _frame(_json_safe(report) if format != "csv" else report, format, f"podledger-{center.name}-freshness")


RIGHTSIZING_DAYS = 7


@app.get("/api/rightsizing")
def rightsizing_api(cost_center: str | None = None, cluster: str | None = None, start: str | None = None,
                    end: str | None = None, format: str = "json") -> Response:  # noqa: A002
    from podledger.rightsizing import recommendations_sql

    center = _cost_center(cost_center)
    start_at, end_at = _range(start, end)
    # Usage of the range's last RIGHTSIZING_DAYS days: recent behaviour, and a bounded scan on months of rows.
    start_at = max(start_at, end_at - dt.timedelta(days=RIGHTSIZING_DAYS))
    loader = _loader(center)
    report = recommendations_sql(loader, loader.table, center.name, start_at, end_at,
                                 postgres=center.warehouse.kind == "postgres", cluster=cluster)
    return _frame(_json_safe(report) if format != "csv" else report, format, f"podledger-{center.name}-rightsizing")


class PodledgerExplorerPlugin(AirflowPlugin):
    """Adds "Cost explorer" to the Airflow UI's navigation, served by the app above."""

    name = "podledger_cost_explorer"
    fastapi_apps = [{"app": app, "url_prefix": PREFIX, "name": "podledger cost explorer"}]
    external_views = [{"name": "Cost explorer", "href": f"{PREFIX}/", "destination": "nav", "category": "browse",
                       "url_route": "podledger-costs"}]
