"""What a candidate's MLflow run shows in the UI: its two plots (feature importance, predicted
vs actual on the holdout) drawn off-screen, the artifact paths
:func:`~mlops_assets.ml.registry.log_candidate` logs them under, and the links to a run and its
plots.

matplotlib is imported inside the figure functions, only when a run is logged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast
from urllib.parse import urlencode

from mlops_assets.ml.model import TabularModel
from mlops_assets.ml.training import PREDICTION, TrainResult

if TYPE_CHECKING:
    import numpy as np
    from matplotlib.figure import Figure

IMPORTANCE_PLOT = "plots/feature_importance.png"
PREDICTED_PLOT = "plots/predicted_vs_actual.png"
DEFAULT_UI = "http://127.0.0.1:5000"


def run_url(experiment_id: str, run_id: str, ui_base: str = DEFAULT_UI) -> str:
    """The run's page in the MLflow UI served at ``ui_base``."""
    return f"{ui_base.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"


def artifact_url(run_id: str, path: str, ui_base: str = DEFAULT_UI) -> str:
    """One artifact of a run (e.g. a plot) as the MLflow UI at ``ui_base`` serves it."""
    query = urlencode({"path": path, "run_uuid": run_id}, safe="/")
    return f"{ui_base.rstrip('/')}/get-artifact?{query}"


def plot_urls(run_id: str, ui_base: str = DEFAULT_UI) -> dict[str, str]:
    """The plots :func:`log_candidate` logs for a run, by title, as image URLs."""
    return {
        "Feature importance": artifact_url(run_id, IMPORTANCE_PLOT, ui_base),
        "Predicted vs actual": artifact_url(run_id, PREDICTED_PLOT, ui_base),
    }


def _agg_figure(width: float = 7.0, height: float = 4.5) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(figure)
    return figure


def _lookup_table(model: TabularModel) -> np.ndarray:
    """A baseline's lookup table (``TabularModel`` requires one for every baseline)."""
    return cast("np.ndarray", model.table)


def importance_figure(model: TabularModel, top: int = 20) -> Figure:
    """Gain per feature (LightGBM), mean per segment (segment baseline) or a note (global)."""
    figure = _agg_figure()
    ax = figure.add_subplot()
    if model.kind == "lightgbm":
        gains = list(model.feature_importance().items())[:top]
        total = sum(g for _, g in gains) or 1.0
        names = [n for n, _ in gains][::-1]
        ax.barh(names, [g / total for _, g in gains][::-1], color="#4c72b0")
        ax.set_xlabel("share of total gain")
        ax.set_title(f"{model.candidate}: feature importance")
    elif model.kind == "segment_mean":
        col = model.segment_columns[0]
        # The last index of every deeper axis holds the first column's own mean.
        own_mean: tuple[slice | int, ...] = (slice(None), *[-1] * (len(model.segment_columns) - 1))
        means = _lookup_table(model)[own_mean]
        labels = [*model.categories[col], "unseen"]
        ax.barh(labels[::-1], means[::-1], color="#55a868")
        ax.set_xlabel(f"mean {model.target}")
        ax.set_title(
            f"{model.candidate}: mean {model.target} per {col} "
            f"(lookup by {' x '.join(model.segment_columns)})"
        )
    else:
        ax.axis("off")
        ax.text(
            0.5,
            0.5,
            f"{model.candidate}: predicts {float(_lookup_table(model)):.2f} {model.target}\n"
            "for every event; no features, so no importance",
            ha="center",
            va="center",
            fontsize=12,
        )
    figure.tight_layout()
    return figure


def predicted_figure(result: TrainResult, target: str, max_points: int = 5000) -> Figure:
    """Predicted vs actual on the holdout, with the identity line and the scores."""
    rows = result.holdout_predictions
    if rows.height > max_points:
        rows = rows.sample(n=max_points, seed=0)
    actual = rows[target].to_numpy()
    predicted = rows[PREDICTION].to_numpy()
    figure = _agg_figure(5.5, 5.0)
    ax = figure.add_subplot()
    ax.scatter(actual, predicted, s=6, alpha=0.35, color="#4c72b0", linewidths=0)
    top = float(max(actual.max(initial=1.0), predicted.max(initial=1.0)))
    ax.plot([0, top], [0, top], color="#c44e52", linewidth=1)
    ax.set_xscale("symlog", linthresh=1.0)
    ax.set_yscale("symlog", linthresh=1.0)
    ax.set_xlabel(f"actual {target}")
    ax.set_ylabel(f"predicted {target}")
    m = result.metrics
    ax.set_title(
        f"{result.model.candidate}: holdout ({result.holdout_rows} rows)\n"
        f"WAPE {m['wape']:.3f}  MAE {m['mae']:.2f}  bias {m['bias']:+.1%}"
    )
    figure.tight_layout()
    return figure
