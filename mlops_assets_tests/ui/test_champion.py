"""The champion's asset page as a product manager reads it: the model card of the latest training
date (its leaderboard names every candidate, baselines included, and the decision), and the
checks tab with each check's latest result, the failed ``champion_beats_baselines`` with the
evidence it carries (the margin it was held to)."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from mlops_assets.defs.model_deployment.checks import (
    BASELINE_NEVER_CHAMPION,
    CHAMPION_BEATS_BASELINES,
    CHAMPION_SERVES,
)
from mlops_assets_tests.ui import dagster_ui as ui
from mlops_assets_tests.ui.conftest import P2, TIGHT_BASELINE_MARGIN, Environment, Servers, Shots


def test_champion_page_shows_the_leaderboard(
    environment: Environment, servers: Servers, page: Page, shots: Shots
) -> None:
    page.goto(f"{servers.readonly_url}/assets/champion")

    expect(ui.metadata_row(page, "action")).to_contain_text("keep")
    ui.metadata_row(page, "model_card").get_by_text("[Show Markdown]").click()
    card = page.get_by_role("dialog")
    expect(card).to_contain_text(f"training date {P2}")
    board = card.get_by_role("table")
    expect(board).to_be_visible()
    for candidate in environment.candidates:
        expect(board.get_by_role("cell", name=candidate, exact=True)).to_be_visible()
    expect(card).to_contain_text("Decision: keep")
    shots.take(page, "model_card")


def test_champion_page_shows_check_results_with_the_failed_one(
    servers: Servers, page: Page, shots: Shots
) -> None:
    page.goto(f"{servers.readonly_url}/assets/champion")
    page.get_by_role("tab", name="Checks").click()

    expect(ui.check_row(page, CHAMPION_BEATS_BASELINES)).to_contain_text("Failed")
    for passed in (BASELINE_NEVER_CHAMPION, CHAMPION_SERVES):
        expect(ui.check_row(page, passed)).to_contain_text("Succeeded")
    shots.take(page, "checks")

    ui.check_row(page, CHAMPION_BEATS_BASELINES).click()
    expect(page).to_have_url(re.compile(f"checkDetail={CHAMPION_BEATS_BASELINES}"))
    result = page.get_by_text("Evaluation result").locator("xpath=..")
    expect(result).to_contain_text("Failed")
    expect(ui.evidence_row(page, "margin")).to_contain_text(str(TIGHT_BASELINE_MARGIN))
    for evidence in ("observed", "threshold", "best_baseline"):
        expect(ui.evidence_row(page, evidence)).to_be_visible()
    shots.take(page, "failed_check")
