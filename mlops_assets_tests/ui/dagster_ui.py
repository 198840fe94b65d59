"""What the browser tests rely on in Dagster's UI (dagster-webserver 1.13.27), in one place: the
Chromium to drive, the texts, roles and attributes the tests find elements by, and the GraphQL
queries they confirm results with. When a Dagster upgrade breaks the UI tests, look here first.

Selectors, and where they were seen:
- every page: the "Join the Dagster community" dialog shows on localhost until the browser's
  local storage holds ``communityNux`` (set before each page loads);
- asset graphs: one ``<svg>``, a ``<foreignObject>`` per node; a group node has its name in a
  ``data-tooltip`` attribute; an asset node holds an element whose CSS-module class contains
  ``assetNodeContainer``, and its name in a ``data-tooltip`` too when drawn in detail, but a
  zoomed-out graph draws small nodes showing only the name, long ones middle-truncated
  ("candidate_gl…_mean");
  the graph-settings button (icon ``settings``, the last one on the page) opens a menu with the
  item "Expand all groups";
- asset pages: the button "Materialize…" (disabled with the tooltip "You do not have permission
  to materialize assets" on a read-only webserver), the tab "Checks", the metadata table (its
  header row reads Key, Timestamp, Value; the column table beside it may hold a column of the
  same name as a key), "[Show Markdown]" on a markdown value (opens a dialog), a path value as
  its text;
- checks tab: one row per check, the check's name in a ``title`` attribute next to its status
  ("Succeeded", "Failed");
- check detail pane: "Evaluation result" above the result, the result's metadata as rows;
- launch dialog: "Show all partitions" (only the last 90 days are offered otherwise), a text input
  with the placeholder "ex: ...", the button "Launch 1 run"; then a toast "Launched run <id>" with
  the link "View" to the run page, whose status reads "Success".
"""

from __future__ import annotations

import re

from playwright.sync_api import Locator, Page

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DISMISS_COMMUNITY_NUX = "window.localStorage.setItem('communityNux', '\"1\"');"

MATERIALIZE = "Materialize…"
MATERIALIZE_ALL = "Materialize all…"
NO_PERMISSION = "You do not have permission to materialize assets"
EXPAND_ALL_GROUPS = "Expand all groups"
RUN_SUCCESS = "Success"
RUN_FINISHED = re.compile(r"^(Success|Failure|Canceled)$")
LAUNCHED_RUN = re.compile(r"Launched run [0-9a-f]{8}")
RUN_PAGE = re.compile(r"/runs/([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})")


def graph(page: Page) -> Locator:
    """The asset graph of the page."""
    return page.locator("svg").filter(has=page.locator("foreignObject"))


def group_node(page: Page, group: str) -> Locator:
    """A group's box in the graph (collapsed or expanded), by the group's name."""
    return graph(page).locator(f'foreignObject [data-tooltip="{group}"]')


def asset_nodes(page: Page) -> Locator:
    """Every asset node the graph draws."""
    container = page.locator('[class*="assetNodeContainer"]')
    return graph(page).locator("foreignObject").filter(has=container)


def asset_labels(page: Page) -> list[str]:
    """The name each asset node shows: whole on a detailed node (in its first ``data-tooltip``),
    perhaps middle-truncated ("candidate_gl…_mean") on the small nodes of a zoomed-out graph."""
    nodes, labels = asset_nodes(page), []
    for i in range(nodes.count()):
        named = nodes.nth(i).locator("[data-tooltip]")
        if named.count():
            labels.append(named.first.get_attribute("data-tooltip"))
        else:
            labels.append((nodes.nth(i).text_content() or "").strip())
    return labels


def shows(label: str, name: str) -> bool:
    """Whether a node labelled ``label`` is the asset ``name``."""
    if "…" not in label:
        return label == name
    head, tail = label.split("…", 1)
    return name.startswith(head) and name.endswith(tail) and len(name) > len(head) + len(tail)


def labelled(labels: list[str], names: set[str]) -> dict[str, list[str]]:
    """For each asset name, the labels that show it (exactly one each when all are drawn)."""
    return {name: [label for label in labels if shows(label, name)] for name in names}


def expand_all_groups(page: Page) -> None:
    icon = page.get_by_role("img", name="settings", exact=True)
    page.locator("button").filter(has=icon).last.click()
    page.get_by_role("menuitem", name=EXPAND_ALL_GROUPS).click()
    page.keyboard.press("Escape")


def graph_canvas(page: Page) -> Locator:
    """The area the graph is drawn in (the zoom controls' container)."""
    return page.locator("#zoom-slider-container").locator("xpath=..")


def metadata_row(page: Page, key: str) -> Locator:
    """The row of ``key`` in the asset's metadata table (the one headed Key, Timestamp, Value; the
    column table beside it may list a column of the same name)."""
    table = page.locator("table").filter(has=page.locator("thead").filter(has_text="Key"))
    return table.locator("tr").filter(has=page.get_by_text(key, exact=True))


def metadata_text(page: Page, key: str) -> str:
    """The value of an asset metadata entry as shown (the row's last cell)."""
    return metadata_row(page, key).locator("td").last.inner_text().strip()


def evidence_row(page: Page, key: str) -> Locator:
    """The row of ``key`` in a check result's metadata (the check detail pane)."""
    return page.locator("tr").filter(has=page.get_by_text(key, exact=True))


def check_row(page: Page, check: str) -> Locator:
    """A check's row in the asset's checks tab (its name and latest status)."""
    return page.get_by_title(check, exact=True).locator("xpath=..")


def launched_run_toast(page: Page) -> Locator:
    return page.get_by_role("listitem").filter(has_text=LAUNCHED_RUN)


RUN_QUERY = """
query Run($runId: ID!) {
  runOrError(runId: $runId) {
    __typename
    ... on Run {
      status
      tags { key value }
      assetSelection { path }
    }
  }
}
"""

MATERIALIZATION_QUERY = """
query Materialization($key: AssetKeyInput!, $partition: String!) {
  assetOrError(assetKey: $key) {
    __typename
    ... on Asset { assetMaterializations(partitions: [$partition], limit: 1) { runId partition } }
  }
}
"""

SENSOR_QUERY = """
query Sensor($selector: SensorSelector!) {
  sensorOrError(sensorSelector: $selector) {
    __typename
    ... on Sensor { sensorState { id status } }
  }
}
"""

STOP_SENSOR = """
mutation StopSensor($id: String!) {
  stopSensor(id: $id) {
    __typename
    ... on StopSensorMutationResult { instigationState { status } }
    ... on Error { message }
  }
}
"""
