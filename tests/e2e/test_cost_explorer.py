"""The cost explorer in a real browser: `airflow standalone` on PostgreSQL, the plugin page in headless Chromium.

Four hours of the synthetic cluster are exported, enriched and loaded into a DuckDB warehouse; Airflow serves the
explorer. Anonymous API calls get 401. A logged-in browser (the session cookie the UI's login sets) opens the page
the navigation entry points at, switches the aggregation to a pod label and the step to a week, and the numbers on
the page must equal a SQL query on the warehouse; the CSV download must equal the table. Screenshots are saved.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import shutil
import sys
import time
import uuid
from pathlib import Path

import polars as pl
import pytest
import requests
from test_standalone import ROOT, Standalone

from helpers import SYNTH_HOURS, SYNTH_START, make_cost_center, prometheus_client, s3_store
from podledger_lab.stack import free_port

END = SYNTH_START + dt.timedelta(hours=SYNTH_HOURS)


@pytest.fixture
def warehouse(prometheus, moto, billing_bucket, tmp_path):
    """The synthetic cluster's hours in a DuckDB warehouse, loaded as enrichment loads them; the config file."""
    from podledger.enrich import enrich_cluster
    from podledger.export import export_window
    from podledger.layout import plan_windows
    from podledger.warehouse import DuckDBLoader, reconciliation_rows

    store = s3_store(moto, f"explorer-{uuid.uuid4().hex[:6]}")
    cc = make_cost_center(store.bucket, name="explore", warehouse={"path": str(tmp_path / "warehouse.duckdb")})
    for window in plan_windows(SYNTH_START, END, 3600):
        export_window(prometheus_client(prometheus), store, cc, cc.clusters[0], window)
    result = enrich_cluster(cc, cc.clusters[0], SYNTH_START, END, metrics_store=store,
                            billing_store=s3_store(moto, billing_bucket))
    DuckDBLoader(tmp_path / "warehouse.duckdb").load(
        result.rows, cost_center="explore", cluster="demo-eks", start=SYNTH_START, end=END,
        split_items=result.split_line_items, reconciliation=reconciliation_rows(result.reconciliation, "explore"))
    config = tmp_path / "cost_centers.yaml"
    config.write_text(json.dumps({"cost_centers": [json.loads(cc.model_dump_json())]}))
    return config, tmp_path / "warehouse.duckdb"


def _browser(download_dir: Path):  # noqa: ANN202 - a selenium WebDriver
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1400,1000", f"--user-data-dir={download_dir / 'profile'}"):
        options.add_argument(flag)
    service = webdriver.ChromeService(executable_path=shutil.which("chromedriver"), port=free_port())
    return webdriver.Chrome(options=options, service=service)


def test_cost_explorer_in_a_browser(warehouse, metadata_db, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    config, duckdb_path = warehouse
    home = tmp_path / "airflow-home"
    home.mkdir()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "PYTEST"))}
    env.update({
        "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata_db,
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__API__HOST": "127.0.0.1", "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
        "PODLEDGER_CONFIG": str(config), "AWS_DEFAULT_REGION": "us-east-1",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    })
    airflow = Standalone(home, env)
    shots = tmp_path / "screenshots"
    shots.mkdir()
    driver = None
    try:
        airflow.wait_ready()
        api = f"{airflow.url}/podledger/api/allocation"
        query = {"cost_center": "explore", "start": SYNTH_START.isoformat(), "end": END.isoformat()}
        # Every endpoint sits behind Airflow's auth.
        for path in ("/podledger/", "/podledger/api/allocation", "/podledger/api/reconciliation"):
            assert requests.get(airflow.url + path, params=query, timeout=30).status_code == 401, path
        auth = {"Authorization": f"Bearer {airflow.token}"}
        assert requests.get(api, params=query, headers=auth, timeout=60).status_code == 200
        # The navigation entry the UI renders.
        plugins = airflow.api("GET", "/plugins").json()["plugins"]
        views = [v for p in plugins for v in p.get("external_views", [])]
        assert {"name": "Cost explorer", "destination": "nav", "url_route": "podledger-costs"}.items() <= next(
            v for v in views if v["name"] == "Cost explorer").items()

        driver = _browser(tmp_path)
        driver.get(airflow.url + "/api/v2/version")
        driver.add_cookie({"name": "_token", "value": airflow.token, "path": "/"})  # what the UI's login sets
        driver.get(f"{airflow.url}/plugin/podledger-costs")  # the nav entry's page: the explorer in Airflow's shell
        WebDriverWait(driver, 60).until(lambda d: d.find_elements(By.CSS_SELECTOR, "iframe[src*='/podledger/']"))
        driver.save_screenshot(str(shots / "airflow-shell.png"))
        driver.get(f"{airflow.url}/podledger/?cost_center=explore&start={SYNTH_START:%Y-%m-%dT%H:%M}"
                   f"&end={END:%Y-%m-%dT%H:%M}")
        WebDriverWait(driver, 60).until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-loaded"))
        assert driver.find_element(By.ID, "error").text == ""
        driver.save_screenshot(str(shots / "by-namespace.png"))
        WebDriverWait(driver, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#by option[value='label:team']"))
        Select(driver.find_element(By.ID, "by")).select_by_value("label:team")
        Select(driver.find_element(By.ID, "step")).select_by_value("week")
        before = driver.find_element(By.TAG_NAME, "body").get_attribute("data-loaded")
        driver.find_element(By.ID, "apply").click()
        WebDriverWait(driver, 60).until(
            lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-loaded") != before)
        driver.save_screenshot(str(shots / "by-label-team-weekly.png"))
        cells = driver.find_elements(By.CSS_SELECTOR, "#allocation tr")[1:]
        on_page = {}
        for row in cells:
            values = row.find_elements(By.TAG_NAME, "td")
            on_page[values[0].text] = float(values[1].text.replace(",", ""))
        assert len(driver.find_elements(By.CSS_SELECTOR, "#chart-svg rect")) >= len(on_page)

        import duckdb

        sql = duckdb.connect(str(duckdb_path), read_only=True).sql(
            "SELECT CASE WHEN namespace LIKE '\\_\\_%' ESCAPE '\\' THEN namespace "
            "ELSE coalesce(json_extract_string(pod_labels, '$.team'), json_extract_string(namespace_labels, '$.team'), "
            "'__unlabelled__') END AS team, round(sum(total_cost), 2) FROM k8s_cost_allocation GROUP BY 1").fetchall()
        assert on_page == pytest.approx(dict(sql), abs=0.006), (on_page, sql)

        # The CSV the page links to holds the same numbers, unrounded.
        href = driver.find_element(By.ID, "csv-allocation").get_attribute("href")
        download = requests.get(href, headers=auth, timeout=60)
        assert download.status_code == 200 and "attachment" in download.headers["Content-Disposition"]
        csv = pl.read_csv(io.StringIO(download.text))
        assert dict(csv.select("label:team", "total_cost").iter_rows()) == pytest.approx(
            {k: v for k, v in on_page.items()}, abs=0.006)
        # Reconciliation tab: every hour allocated = billed (from the bill's files).
        driver.find_element(By.CSS_SELECTOR, "nav.tabs button[data-tab='reconciliation']").click()
        time.sleep(0.5)
        driver.save_screenshot(str(shots / "reconciliation.png"))
        assert not driver.find_elements(By.CSS_SELECTOR, "#reconciliation td.bad")
        assert len(driver.find_elements(By.CSS_SELECTOR, "#reconciliation tr")) == SYNTH_HOURS + 1
        driver.find_element(By.ID, "theme").click()
        driver.find_element(By.CSS_SELECTOR, "nav.tabs button[data-tab='allocation']").click()
        time.sleep(0.3)
        driver.save_screenshot(str(shots / "dark.png"))
        if os.environ.get("PODLEDGER_SCREENSHOTS"):
            target = Path(os.environ["PODLEDGER_SCREENSHOTS"])
            target.mkdir(parents=True, exist_ok=True)
            for shot in shots.iterdir():
                shutil.copy(shot, target / shot.name)
    finally:
        if driver is not None:
            driver.quit()
        airflow.stop()
    assert all(s.stat().st_size > 10_000 for s in shots.iterdir())
