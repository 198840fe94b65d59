"""The business dashboard in the Evidently UI, reached from the ``business_metrics`` asset page:
the latest day's totals on its counters equal the warehouse's, every series panel holds a point
per reported day for each of its series (overall and per network), and the drift panel a point
per drift report. A day's data profile opens from the ``data_profile`` asset page: the link leads
through the reports server to Evidently's data summary of that day."""

from __future__ import annotations

from datetime import timedelta

import polars as pl
import pytest
from playwright.sync_api import Page, expect

from mlops_assets.environments import load_settings
from mlops_assets.ml.business import TOTAL
from mlops_assets.storage.warehouse import Warehouse
from mlops_assets_tests.ui import dagster_ui as ui
from mlops_assets_tests.ui.conftest import DAYS, Environment, Servers, Shots

COUNTERS = {
    "Latest day: web visits (actual)": "actual",
    "Latest day: web visits (predicted)": "predicted",
    "Latest day: error (WAPE)": "wape",
    "Latest day: bias": "bias",
    "Latest day: cost per web visits": "cost_per_outcome_actual",
}


def _business(environment: Environment) -> pl.DataFrame:
    settings = load_settings(data_dir=environment.data_dir, dataset=environment.dataset)
    return Warehouse.for_settings(settings).read("business_metrics")


def _card(page: Page, title: str):
    heading = page.get_by_role("heading", name=title, exact=True)
    return page.locator(".MuiCardContent-root").filter(has=heading)


def test_the_dashboard_shows_every_reported_day_with_the_warehouses_figures(
    environment: Environment, servers: Servers, page: Page, shots: Shots
) -> None:
    page.goto(f"{servers.readonly_url}/assets/business_metrics")
    expect(ui.metadata_row(page, "dashboard")).to_contain_text(servers.dashboard_url)
    link = ui.metadata_text(page, "dashboard")
    shots.take(page, "asset_page")

    business = _business(environment)
    days = sorted(business["air_date"].unique().to_list())
    networks = sorted(set(business["network"].to_list()) - {TOTAL})
    assert len(days) >= 5 and len(networks) >= 5
    latest = business.filter((pl.col("air_date") == days[-1]) & (pl.col("network") == TOTAL))

    page.goto(link)
    for title, column in COUNTERS.items():
        value = _card(page, title).locator("h2")
        expect(value).to_have_count(1)
        shown = float(value.inner_text().replace(",", ""))
        assert shown == pytest.approx(float(latest[column][0]), abs=0.006, rel=1e-4), title

    def points(column: str, segments: list[str]) -> int:
        """Days with a figure, summed over the segments (a network may have no day)."""
        rows = business.filter(pl.col("network").is_in(segments) & pl.col(column).is_not_null())
        return rows.filter(pl.col(column).is_finite()).height

    total = points("actual", [TOTAL])
    assert total == len(days)
    series = {
        "Actual vs predicted web visits": (["actual", "predicted"], 2 * total),
        "Cost per web visits: actual vs predicted": (["actual", "predicted"], 2 * total),
        "Error (WAPE) per network": ([TOTAL, *networks], points("wape", [TOTAL, *networks])),
        "Bias per network": ([TOTAL, *networks], points("bias", [TOTAL, *networks])),
        "Web visits per network": (networks, points("actual", networks)),
    }
    for title, (legends, count) in series.items():
        card = _card(page, title)
        expect(card.locator(".MuiChartsLegend-series")).to_have_count(len(legends))
        shown = card.locator(".MuiChartsLegend-series").all_inner_texts()
        assert sorted(shown) == sorted(legends), title
        expect(card.locator(".MuiMarkElement-root")).to_have_count(count)
    # The setup ran one drift report (the last day's).
    drift = _card(page, "Share of drifted columns")
    expect(drift.locator(".MuiMarkElement-root")).to_have_count(1)
    shots.take(page, "dashboard", full_page=True)


def test_a_days_data_profile_opens_from_its_asset_page(
    environment: Environment, servers: Servers, page: Page, shots: Shots
) -> None:
    day = DAYS[-1]  # the setup profiles the day it reports drift on
    settings = load_settings(data_dir=environment.data_dir, dataset=environment.dataset)
    events = Warehouse.for_settings(settings).read(
        "raw_events", "air_date", day, day + timedelta(days=1)
    )
    assert events.height > 0

    page.goto(f"{servers.readonly_url}/assets/data_profile")
    assert int(ui.metadata_text(page, "rows").replace(",", "")) == events.height
    link = ui.metadata_row(page, "report").get_by_role("link").first
    expected = f"{servers.reports_url}/profile_{day}.html"
    expect(link).to_have_attribute("href", expected)
    shots.take(page, "profile_asset_page")

    with page.context.expect_page() as opened:
        link.click()
    report = opened.value
    report.wait_for_load_state()
    assert report.url == expected
    expect(report.get_by_text("Dataset Summary", exact=True)).to_be_visible()
    expect(report.get_by_text("network", exact=True).first).to_be_visible()
    shots.take(report, "profile_report", full_page=True)
