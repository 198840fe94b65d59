"""Materializing from the UI: on the ``features`` asset page, "Materialize…" opens the launch
dialog; one partition typed in and launched becomes a run that the daemon dequeues and executes,
the run page follows it to success, and the instance records it as that partition's newest
materialization, launched for ``features`` alone."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from mlops_assets_tests.ui import dagster_ui as ui
from mlops_assets_tests.ui.conftest import Servers, Shots

# A day whose features (and their inputs, outcomes included) were materialized by the setup.
PARTITION = "2025-02-03"
# Queued until the daemon (started with the servers) dequeues it, then a fresh process.
RUN_TIMEOUT_MS = 300_000


def test_materializing_a_features_partition_launches_a_run_that_succeeds(
    servers: Servers, page: Page, shots: Shots
) -> None:
    page.goto(f"{servers.writable_url}/assets/features")
    page.get_by_role("button", name=ui.MATERIALIZE).click()

    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("Launch runs to materialize features")
    partitions = dialog.get_by_placeholder("ex: ")
    show_all = dialog.get_by_text("Show all partitions")
    expect(show_all.or_(partitions).first).to_be_visible()
    if show_all.is_visible():
        show_all.click()
    partitions.fill(PARTITION)
    partitions.press("Enter")
    expect(dialog).to_contain_text("1 partition")
    shots.take(page, "launch_dialog")
    dialog.get_by_role("button", name="Launch 1 run").click()

    toast = ui.launched_run_toast(page)
    expect(toast).to_be_visible()
    toast.get_by_role("link", name="View").click()
    expect(page).to_have_url(ui.RUN_PAGE)
    run_id = ui.RUN_PAGE.search(page.url)[1]
    shots.take(page, "run_launched")

    # The run page follows the run by itself; a finished run shows one of these states.
    status = page.get_by_text(ui.RUN_FINISHED)
    expect(status).to_be_visible(timeout=RUN_TIMEOUT_MS)
    run = servers.writable.execute(ui.RUN_QUERY, {"runId": run_id})["runOrError"]
    assert run["status"] == "SUCCESS", servers.daemon.log[-5000:]
    expect(status).to_have_text(ui.RUN_SUCCESS)
    shots.take(page, "run_succeeded")

    tags = {tag["key"]: tag["value"] for tag in run["tags"]}
    assert tags["dagster/partition"] == PARTITION
    assert run["assetSelection"] == [{"path": ["features"]}]
    latest = servers.writable.execute(
        ui.MATERIALIZATION_QUERY, {"key": {"path": ["features"]}, "partition": PARTITION}
    )["assetOrError"]["assetMaterializations"]
    assert latest == [{"runId": run_id, "partition": PARTITION}]
