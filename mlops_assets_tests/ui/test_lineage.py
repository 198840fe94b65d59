"""The asset graph in the browser: the global lineage shows every pipeline stage as a group and,
once the groups are expanded, one node for each asset of the definitions; the upstream lineage of
``business_metrics`` one step deep draws exactly the assets it reads, the two sources among them,
and nothing further up.

The expanded global graph is also saved as ``lineage.png`` (at twice the pixel density) in the
screenshot folder: that is the picture docs/lineage.png was taken from.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import Page, expect

from mlops_assets_tests.ui import dagster_ui as ui
from mlops_assets_tests.ui.conftest import Environment, Servers, Shots

GROUPS = (
    "sources",
    "feature_refresh",
    "model_training",
    "model_deployment",
    "inference",
    "model_monitoring",
    "metric_refresh",
)
SOURCES = {"raw_events", "raw_outcomes"}


def test_global_graph_shows_every_group_and_asset(
    environment: Environment,
    servers: Servers,
    open_page: Callable[..., Page],
    shots: Shots,
    screenshot_dir: Path,
) -> None:
    assert set(environment.groups) == set(GROUPS)
    assets = set().union(*environment.groups.values())
    page = open_page(scale=2)
    page.goto(f"{servers.writable_url}/asset-groups")

    for group in GROUPS:
        expect(ui.group_node(page, group)).to_be_visible()
    expect(ui.asset_nodes(page)).to_have_count(0)
    shots.take(page, "groups")

    ui.expand_all_groups(page)
    expect(ui.asset_nodes(page)).to_have_count(len(assets))
    for group in GROUPS:
        expect(ui.group_node(page, group)).to_be_visible()
    shown = ui.labelled(ui.asset_labels(page), assets)
    assert {name: len(labels) for name, labels in shown.items()} == dict.fromkeys(assets, 1), shown

    # The expanded groups are in the address: reloading it draws the whole graph to fit.
    page.reload()
    expect(ui.asset_nodes(page)).to_have_count(len(assets))
    shots.take(page, "expanded")
    ui.graph_canvas(page).screenshot(path=screenshot_dir / "lineage.png")


def test_business_metrics_reads_the_sources(
    environment: Environment, servers: Servers, page: Page, shots: Shots
) -> None:
    parents = environment.parents["business_metrics"]
    assert SOURCES <= parents
    page.goto(
        f"{servers.writable_url}/assets/business_metrics"
        "?view=lineage&lineageScope=upstream&lineageDepth=1"
    )

    drawn = {"business_metrics", *parents}
    expect(ui.asset_nodes(page)).to_have_count(len(drawn))
    shots.take(page, "upstream_depth_1")
    labels = ui.asset_labels(page)
    shown = ui.labelled(labels, drawn)
    assert all(len(found) == 1 for found in shown.values()), (labels, drawn)
    # One step deep only: features, two steps up (through predictions), is not drawn.
    assert not any(ui.shows(label, "features") for label in labels), labels
