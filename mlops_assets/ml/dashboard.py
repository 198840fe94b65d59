"""The business dashboard: one Evidently project per environment, holding the daily drift runs
and one business run per day, with panels over time that code declares.

A business run is an Evidently report over a single row: one column per (metric, segment) of
the day's ``business_metrics`` (``"wape | ALL"``, ``"wape | network_a"``, ...), each measured by
``MeanValue``, so every figure of the table becomes a point of a series. The panels read those
series and the drift runs' share of drifted columns. The dashboard is written whole, with panel
ids derived from their titles, so writing it again changes nothing.

Evidently is imported inside the functions that use it (about 3 s); loading the definitions
never needs it.
"""

from __future__ import annotations

import fcntl
import json
import math
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops_assets.atomic import write_atomic, write_text_atomic
from mlops_assets.dataset import DatasetSpec
from mlops_assets.ml.business import TOTAL

if TYPE_CHECKING:
    import polars as pl

    from mlops_assets.ml.drift import DriftResult

BUSINESS_TAG = "business"
BUSINESS_TAB = "Business"
DRIFT_TAB = "Drift"
_LOCK = ".mlops_assets.lock"
# Run id of each named run, per project: lets a re-run of a day replace that day's run.
_RUN_INDEX = ".mlops_assets_runs.json"
_PANEL_IDS = uuid.UUID("6d1f4f3e-93a4-4b57-a8a3-1c1f0c2d7e55")


def series(metric: str, segment: str) -> str:
    """The column of a business run holding ``metric`` for ``segment``."""
    return f"{metric} | {segment}"


def business_values(spec: DatasetSpec, rows: pl.DataFrame) -> dict[str, float]:
    """Every figure of one day's ``business_metrics`` rows, keyed by :func:`series` (empty
    figures, such as cost without a cost column, are left out)."""
    values: dict[str, float] = {}
    for row in rows.iter_rows(named=True):
        segment = str(row[spec.segment_column])
        for metric in _metrics(spec):
            value = row.get(metric)
            if value is not None and math.isfinite(float(value)):
                values[series(metric, segment)] = float(value)
    return values


def _metrics(spec: DatasetSpec) -> tuple[str, ...]:
    money = ("cost", "cost_per_outcome_actual", "cost_per_outcome_predicted")
    return ("events", "actual", "predicted", "wape", "bias", *(money if spec.cost_column else ()))


def business_snapshot(spec: DatasetSpec, day: date, rows: pl.DataFrame) -> Any:
    """The Evidently run of one day's business figures, stamped with the day."""
    import pandas as pd
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import MeanValue

    values = business_values(spec, rows)
    if not values:
        raise ValueError(f"no business figures for {day}: nothing to put on the dashboard")
    columns = list(values)
    data = Dataset.from_pandas(
        pd.DataFrame([values]), data_definition=DataDefinition(numerical_columns=columns)
    )
    return Report([MeanValue(column=c) for c in columns]).run(
        data,
        None,
        timestamp=datetime.combine(day, time()),
        tags=[BUSINESS_TAG],
        name=f"business {day}",
    )


@contextmanager
def _workspace(workspace_dir: str | Path, project_name: str) -> Iterator[tuple[Any, Any]]:
    """The workspace and its project (both created on first use), under a file lock that
    serializes every writer of the workspace."""
    root = Path(workspace_dir)
    root.mkdir(parents=True, exist_ok=True)
    with open(root / _LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        workspace = _files_workspace(str(root))
        found = workspace.search_project(project_name)
        yield workspace, found[0] if found else _create_project(workspace, project_name)


def _files_workspace(path: str) -> Any:
    """Evidently's local workspace on its files alone. ``Workspace(path)`` also builds its
    dataset manager, which parses every run of every project on each open (4.7 s with 120 runs
    here, and growing with every day); projects, runs and dashboards are read and written
    through its ``LocalState`` only, and no run is added with its data, so the writer skips
    that manager. ``evidently ui`` opens the same files as ever."""
    from evidently.ui.storage.local.base import LocalState
    from evidently.ui.workspace import Workspace

    workspace = Workspace.__new__(Workspace)
    workspace.path = path
    workspace.state = LocalState(path)
    return workspace


def _create_project(workspace: Any, name: str) -> Any:
    """A project whose id follows from its name, so links to it are the same in every
    replay of the environment."""
    from evidently.sdk.models import ProjectModel

    return workspace.add_project(ProjectModel(id=uuid.uuid5(_PANEL_IDS, name), name=name))


def add_snapshot(snapshot: Any, workspace_dir: str | Path, project_name: str) -> str:
    """Add an Evidently run to the project and return its id. A named run replaces the
    project's earlier run of that name (a re-materialized day leaves one run): the new run is
    written before the old one is removed."""
    with _workspace(workspace_dir, project_name) as (workspace, project):
        run_id = str(workspace.add_run(project.id, snapshot, include_data=False).id)
        name = snapshot.get_name()
        if name:
            index_path = Path(workspace_dir) / _RUN_INDEX
            index = json.loads(index_path.read_text()) if index_path.exists() else {}
            runs = index.setdefault(str(project.id), {})
            previous = runs.get(name)
            runs[name] = run_id
            write_text_atomic(index_path, json.dumps(index, indent=1, sort_keys=True))
            if previous and previous in {str(r) for r in workspace.list_runs(project.id)}:
                workspace.delete_run(project.id, previous)
    return run_id


@dataclass(frozen=True)
class Panel:
    """A panel of the dashboard: its tab, kind (``line`` or ``counter``) and series, each a
    (legend, Evidently metric, labels, tags)."""

    tab: str
    title: str
    kind: str
    values: tuple[tuple[str, str, tuple[tuple[str, str], ...], tuple[str, ...]], ...]
    subtitle: str = ""


def _business(legend: str, metric: str, segment: str) -> tuple:
    return (legend, "MeanValue", (("column", series(metric, segment)),), (BUSINESS_TAG,))


def panels(spec: DatasetSpec, segments: Iterable[str]) -> list[Panel]:
    """The dashboard's panels: the latest day's totals as counters, then series over days,
    overall and per segment, and the drift share."""
    outcome = spec.outcome_noun
    segs = sorted(set(segments) - {TOTAL})
    latest = [("actual", f"{outcome} (actual)"), ("predicted", f"{outcome} (predicted)")]
    latest += [("wape", "error (WAPE)"), ("bias", "bias")]
    if spec.cost_column:
        latest.append(("cost_per_outcome_actual", f"cost per {outcome}"))
    found = [
        Panel(BUSINESS_TAB, f"Latest day: {label}", "counter", (_business(label, m, TOTAL),))
        for m, label in latest
    ]
    found.append(
        Panel(
            BUSINESS_TAB,
            f"Actual vs predicted {outcome}",
            "line",
            (
                _business("actual", "actual", TOTAL),
                _business("predicted", "predicted", TOTAL),
            ),
        )
    )
    if spec.cost_column:
        found.append(
            Panel(
                BUSINESS_TAB,
                f"Cost per {outcome}: actual vs predicted",
                "line",
                (
                    _business("actual", "cost_per_outcome_actual", TOTAL),
                    _business("predicted", "cost_per_outcome_predicted", TOTAL),
                ),
            )
        )
    # Error and bias compare each segment with the total; volume is per segment alone.
    per_segment = (
        ("wape", "Error (WAPE)", [TOTAL, *segs]),
        ("bias", "Bias", [TOTAL, *segs]),
        ("actual", outcome[:1].upper() + outcome[1:], segs),
    )
    for metric, label, shown in per_segment:
        found.append(
            Panel(
                BUSINESS_TAB,
                f"{label} per {spec.segment_column}",
                "line",
                tuple(_business(s, metric, s) for s in shown),
            )
        )
    drift = ("share drifted", "DriftedColumnsCount", (("value_type", "share"),), ())
    found.append(
        Panel(DRIFT_TAB, "Share of drifted columns", "line", (drift,), "daily drift reports")
    )
    return found


def _model(found: list[Panel]) -> Any:
    from evidently.sdk.models import (
        DashboardModel,
        DashboardPanelPlot,
        DashboardTabModel,
        PanelMetric,
    )

    plots: list[Any] = []
    tabs: dict[str, list[Any]] = {}
    for panel in found:
        plot = DashboardPanelPlot(
            id=uuid.uuid5(_PANEL_IDS, panel.title),
            title=panel.title,
            subtitle=panel.subtitle or None,
            size="half" if panel.kind == "counter" else "full",
            values=[
                PanelMetric(legend=legend, metric=metric, metric_labels=dict(labels), tags=list(t))
                for legend, metric, labels, t in panel.values
            ],
            plot_params={"plot_type": panel.kind}
            | ({"aggregation": "last"} if panel.kind == "counter" else {}),
        )
        plots.append(plot)
        tabs.setdefault(panel.tab, []).append(plot.id)
    return DashboardModel(
        tabs=[
            DashboardTabModel(id=uuid.uuid5(_PANEL_IDS, f"tab {t}"), title=t, panels=ids)
            for t, ids in tabs.items()
        ],
        panels=plots,
    )


def publish_dashboard(
    spec: DatasetSpec, segments: Iterable[str], workspace_dir: str | Path, project_name: str
) -> str:
    """Write the dashboard of the project (created if needed) and return the project's id."""
    model = _model(panels(spec, segments))
    with _workspace(workspace_dir, project_name) as (workspace, project):
        workspace.save_dashboard(project.id, model)
        return str(project.id)


def dashboard_url(ui_base: str, project_id: str) -> str:
    return f"{ui_base.rstrip('/')}/projects/{project_id}"


# A day's drift report: its HTML file and its run in the workspace -------------------------


def _require_snapshot(result: DriftResult) -> Any:
    if result.snapshot is None:
        raise ValueError(
            "this drift result has no Evidently run: no column had values on both sides "
            f"(empty: {', '.join(result.empty_columns) or 'none'})"
        )
    return result.snapshot


def save_report(result: DriftResult, html_path: str | Path) -> Path:
    """Write the Evidently HTML report (megabytes: link it, never inline it) and return its path.

    The file is written aside and renamed, so a crash leaves the previous report intact.
    """
    snapshot = _require_snapshot(result)
    return write_atomic(html_path, lambda tmp: snapshot.save_html(str(tmp)))


def add_to_workspace(result: DriftResult, workspace_dir: str | Path, project_name: str) -> str:
    """Add the run to the local Evidently workspace at ``workspace_dir`` (created if needed),
    in the project named ``project_name`` (created on first use); return the run's id.

    ``evidently ui --workspace <workspace_dir>`` then lists every run of the project. A run named
    by :func:`drift_report` (``name=``, e.g. the partition's day) replaces the project's earlier
    run of that name, so re-materializing a day leaves one run for it. The new run is written
    before the old one is removed, and a file lock serializes writers (so two processes never
    each create the project).
    """
    return add_snapshot(_require_snapshot(result), workspace_dir, project_name)
