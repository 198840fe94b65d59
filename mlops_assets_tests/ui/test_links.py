"""Every link the pipeline writes opens its target, clicked in Chromium from the read-only UI:

- a candidate's ``mlflow_run`` link opens its run in the environment's MLflow UI (the run's own
  name on the page);
- the proposing training date's model card shows its plots as images that the MLflow UI serves;
- the ``drift_report`` page's ``report`` link opens the saved Evidently report through the
  reports server (its headline and the monitored columns);
- the alert the daemon's run-failure sensor sends (to ``alerts.jsonl``) for a run that fails links
  to that run's page in the Dagster UI, which loads.

The MLflow UI and the reports server run as `make dev` starts them (``services``); the links were
written while the environment was filled, from the URLs that settings resolve."""

from __future__ import annotations

import json
import re

import httpx
from playwright.sync_api import Page, expect

from mlops_assets_tests.deploy.harness import LOCATION, REPOSITORY, wait_until
from mlops_assets_tests.ui import dagster_ui as ui
from mlops_assets_tests.ui.conftest import DAYS, P1, Environment, Servers, Shots

ALERT_TIMEOUT = 180


def _follow(page: Page, link) -> Page:
    """Click ``link`` (the UI opens metadata links in a new tab) and return the page it opens."""
    with page.context.expect_page() as opened:
        link.click()
    target = opened.value
    target.wait_for_load_state()
    return target


def test_mlflow_link_opens_the_candidates_run(servers: Servers, page: Page, shots: Shots) -> None:
    page.goto(f"{servers.readonly_url}/assets/candidate_lgbm_small")
    link = ui.metadata_row(page, "mlflow_run").get_by_role("link").first
    expect(link).to_have_attribute("href", re.compile(re.escape(servers.mlflow_url) + "/#/"))
    shots.take(page, "candidate_page")

    run = _follow(page, link)
    # The run's own name, as the registry logged it (candidate and training date).
    expect(run.get_by_text(re.compile(r"^lgbm_small \d{4}-\d{2}-\d{2}$")).first).to_be_visible()
    expect(run.get_by_text("Parameters", exact=False).first).to_be_visible()
    shots.take(run, "mlflow_run")


def test_model_card_shows_the_proposals_plots(
    environment: Environment, servers: Servers, page: Page, shots: Shots
) -> None:
    from mlops_assets.ml import run_artifacts

    card = _model_card(environment, P1)
    images = re.findall(r"!\[([^\]]+)\]\(([^)]+)\)", card)
    assert [name for name, _ in images] == list(run_artifacts.plot_urls("x", "http://h")), card
    for _, url in images:
        assert url.startswith(f"{servers.mlflow_url}/get-artifact?"), url
        answer = httpx.get(url, timeout=30)
        assert answer.status_code == 200 and answer.headers["content-type"] == "image/png"
        assert answer.content[:8] == b"\x89PNG\r\n\x1a\n"

    # The same markdown, rendered by the UI: each plot is an image that loaded.
    page.goto(f"{servers.readonly_url}/assets/champion?view=partitions&partition={P1}")
    expect(page.get_by_text("model_card", exact=True).first).to_be_visible()
    shots.take(page, "partition_page")
    page.get_by_text("[Show Markdown]").first.click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text(f"training date {P1}")
    for name, url in images:
        image = dialog.get_by_role("img", name=name)
        expect(image).to_have_attribute("src", url)
        expect(image).to_have_js_property("complete", True)
        assert image.evaluate("img => img.naturalWidth") > 100
    shots.take(page, "model_card_plots")


def _model_card(environment: Environment, partition: str) -> str:
    import dagster as dg

    instance = dg.DagsterInstance.from_config(str(environment.dagster_home))
    try:
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey("champion"), asset_partitions=[partition]),
            limit=1,
        ).records
        assert records, f"champion {partition} was never materialized"
        return records[0].asset_materialization.metadata["model_card"].value
    finally:
        instance.dispose()


def test_drift_report_link_opens_through_the_reports_server(
    servers: Servers, page: Page, shots: Shots
) -> None:
    page.goto(f"{servers.readonly_url}/assets/drift_report")
    link = ui.metadata_row(page, "report").get_by_role("link").first
    expected = f"{servers.reports_url}/drift_{DAYS[-1]}.html"
    expect(link).to_have_attribute("href", expected)
    drifted = int(ui.metadata_text(page, "drifted_columns"))
    tested = int(ui.metadata_text(page, "tested_columns"))

    report = _follow(page, link)
    assert report.url == expected
    expect(report.get_by_text("Dataset Drift", exact=True)).to_be_visible()
    headline = report.get_by_text(re.compile(r"^Drift is detected for [\d.]+% of columns"))
    expect(headline).to_contain_text(f"({drifted} out of {tested})")
    shots.take(report, "report_from_link")


LAUNCH_RUN = """
mutation Launch($executionParams: ExecutionParams!) {
  launchRun(executionParams: $executionParams) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on Error { message }
  }
}
"""


def test_alert_link_opens_the_dagster_ui(
    environment: Environment, servers: Servers, page: Page, shots: Shots
) -> None:
    alerts_path = environment.data_dir / "dev" / "alerts" / "alerts.jsonl"
    # A run that fails before storing anything: business metrics of the last day, whose actuals
    # have not landed. The daemon's run-failure sensor alerts with a link to the run.
    launched = servers.writable.execute(
        LAUNCH_RUN,
        {
            "executionParams": {
                "selector": {
                    "repositoryLocationName": LOCATION,
                    "repositoryName": REPOSITORY,
                    "jobName": "__ASSET_JOB",
                    "assetSelection": [{"path": ["business_metrics"]}],
                },
                "runConfigData": {},
                "executionMetadata": {
                    "tags": [{"key": "dagster/partition", "value": DAYS[-1].isoformat()}]
                },
            }
        },
    )["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched

    def linked_alert() -> dict | None:
        if not alerts_path.exists():
            return None
        lines = [json.loads(x) for x in alerts_path.read_text().splitlines() if x.strip()]
        return next((a for a in lines if a.get("run_id") == launched["run"]["runId"]), None)

    run_id = launched["run"]["runId"]
    alert = wait_until(linked_alert, ALERT_TIMEOUT, f"the daemon's alert on run {run_id}")
    assert alert["kind"] == "run_failure" and alert["run_id"] == run_id, alert
    assert alert["run_url"] == f"{servers.readonly_url}/runs/{run_id}", alert
    page.goto(alert["run_url"])
    expect(page).to_have_url(alert["run_url"])
    expect(page.get_by_text(ui.RUN_FINISHED)).to_have_text("Failure")
    expect(page.get_by_text("business_metrics").first).to_be_visible()
    shots.take(page, "alert_target")
