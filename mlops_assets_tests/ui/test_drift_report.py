"""The drift report behind the ``drift_report`` asset page: the page names the saved Evidently
HTML file (its ``report_file`` metadata, a path under the environment's reports folder), and
that file opens in the browser as Evidently's rendered report, whose headline agrees with the
counts on the asset page (drifted columns out of the tested ones) and whose table lists the
monitored columns."""

from __future__ import annotations

import re
from pathlib import Path

from playwright.sync_api import Page, expect

from mlops_assets_tests.ui import dagster_ui as ui
from mlops_assets_tests.ui.conftest import DAYS, Environment, Servers, Shots

MONITORED = ("hour", "duration_s", "spend", "audience_k", "network", "daypart")


def test_drift_report_link_opens_the_evidently_report(
    environment: Environment, servers: Servers, page: Page, shots: Shots
) -> None:
    page.goto(f"{servers.readonly_url}/assets/drift_report")

    expect(ui.metadata_row(page, "report_file")).to_contain_text(".html")
    report = Path(ui.metadata_text(page, "report_file"))
    drifted = int(ui.metadata_text(page, "drifted_columns"))
    tested = int(ui.metadata_text(page, "tested_columns"))
    shots.take(page, "asset_page")
    # The setup reported on the last day only.
    assert report == environment.reports_dir / f"drift_{DAYS[-1]}.html"
    assert report.is_file()
    assert tested == len(MONITORED)

    page.goto(report.as_uri())
    expect(page.get_by_text("Dataset Drift", exact=True)).to_be_visible()
    headline = page.get_by_text(re.compile(r"^Drift is detected for [\d.]+% of columns"))
    expect(headline).to_contain_text(f"({drifted} out of {tested})")
    for column in MONITORED:
        expect(page.get_by_role("cell", name=column, exact=True)).to_be_visible()
    shots.take(page, "evidently_report")
