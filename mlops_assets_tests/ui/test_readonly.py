"""The read-only webserver (``--read-only``, as ``make ui-readonly`` starts it) in the browser:
the same asset pages and graph load, with their materializations, but the materialize actions
are disabled and say why; on the writable webserver the very same buttons are enabled."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from mlops_assets_tests.ui import dagster_ui as ui
from mlops_assets_tests.ui.conftest import Servers, Shots


def test_readonly_asset_page_offers_no_materialize(
    servers: Servers, page: Page, shots: Shots
) -> None:
    page.goto(f"{servers.readonly_url}/assets/features")

    expect(ui.metadata_row(page, "history_through")).to_be_visible()
    button = page.get_by_role("button", name=ui.MATERIALIZE)
    expect(button).to_be_disabled()
    button.hover()
    expect(page.get_by_role("tooltip")).to_contain_text(ui.NO_PERMISSION)
    shots.take(page, "asset_page")

    page.goto(f"{servers.writable_url}/assets/features")
    expect(page.get_by_role("button", name=ui.MATERIALIZE)).to_be_enabled()


def test_readonly_graph_offers_no_materialize_all(
    servers: Servers, page: Page, shots: Shots
) -> None:
    page.goto(f"{servers.readonly_url}/asset-groups")

    expect(ui.group_node(page, "sources")).to_be_visible()
    expect(page.get_by_role("button", name=ui.MATERIALIZE_ALL)).to_be_disabled()
    shots.take(page, "graph")

    page.goto(f"{servers.writable_url}/asset-groups")
    expect(page.get_by_role("button", name=ui.MATERIALIZE_ALL)).to_be_enabled()
