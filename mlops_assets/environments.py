"""One resolver from MLOPS_ENV, MLOPS_DATA_DIR and MLOPS_DATASET to one Settings object.

Every path, threshold and alias the pipeline uses comes from here. Nothing is read at import time:
call :func:`load_settings` when definitions load or a command starts.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

ENVIRONMENTS = ("dev", "staging", "prod")
STAGE_ALIASES = {"dev": "larva", "staging": "chrysalis", "prod": "butterfly"}
REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATASET = REPO_ROOT / "data" / "datasets" / "tv_ad_response.yaml"
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
DEFAULT_DAGSTER_URL = "http://127.0.0.1:3000"
# Where `make dev` serves the environment's MLflow UI and its saved reports (see services.py).
DEFAULT_MLFLOW_URL = "http://127.0.0.1:5000"
DEFAULT_REPORTS_URL = "http://127.0.0.1:5001"
DEFAULT_DASHBOARD_URL = "http://127.0.0.1:5003"


class SettingsError(ValueError):
    """A setting is missing, unknown or unsafe."""


def validate_identifier(value: str, what: str) -> str:
    """Return ``value`` if it is a plain SQL identifier, else refuse it by name."""
    if not isinstance(value, str) or not _IDENTIFIER.match(value):
        raise SettingsError(
            f"{what} {value!r} is not a plain identifier (letters, digits, underscore; "
            "must not start with a digit)"
        )
    return value


@dataclass(frozen=True)
class Thresholds:
    """Quality gates that tighten from dev to prod."""

    null_share_max: float
    drift_share_max: float
    promotion_margin: float
    # In prod, rules that only warn in dev stop downstream steps.
    strict: bool
    # Drift alerts when it persists: drifted on at least n of the last m days.
    drift_persist_n: int = 3
    drift_persist_m: int = 5
    # Training may evaluate and propose, but only an approved release (`mlops-assets promote
    # --approved-by`) changes the champion.
    approval_gated: bool = False
    # The promotion gates of this environment (``mlops_assets.ml.gates``), overridable per
    # dataset in the spec's ``gates:`` mapping.
    gates: GateThresholds = field(default_factory=lambda: GateThresholds())


GATE_NAMES = ("segment_guardrail", "business_benchmark", "serving_budget", "target_leak")


@dataclass(frozen=True)
class GateThresholds:
    """Every promotion gate's thresholds and which gates refuse a promotion (the others warn).

    - segment_guardrail: no segment holding at least ``segment_min_share`` of the holdout's cost
      (volume without a cost column) may score worse than the incumbent on it by more than
      ``segment_margin`` (relative).
    - business_benchmark: predicted cost per outcome within ``cost_per_outcome_band`` (relative)
      of the actual; bias (predicted - actual) / actual at most ``bias_over_max`` above zero and
      ``bias_under_max`` below.
    - serving_budget: single-row p99 latency at most ``serving_p99_factor`` and model size at
      most ``serving_size_factor`` times the incumbent's, measured over ``serving_calls`` calls.
    - target_leak: no feature whose one-feature model scores at most ``leak_feature_ratio`` of
      the best baseline's error, or whose correlation with the target reaches
      ``leak_correlation``; no proposal scoring at most ``leak_champion_ratio`` of it.
    """

    segment_min_share: float = 0.10
    segment_margin: float = 0.25
    cost_per_outcome_band: float = 0.25
    bias_over_max: float = 0.25
    bias_under_max: float = 0.25
    serving_p99_factor: float = 3.0
    serving_size_factor: float = 5.0
    serving_calls: int = 300
    leak_feature_ratio: float = 0.25
    leak_correlation: float = 0.98
    leak_champion_ratio: float = 0.15
    blocking: tuple[str, ...] = ("segment_guardrail",)

    def blocks(self, gate: str) -> bool:
        return gate in self.blocking

    def with_overrides(self, overrides: Mapping[str, Any]) -> GateThresholds:
        """These thresholds with a dataset spec's ``gates:`` values applied (names checked by
        the spec loader)."""
        return replace(self, **overrides) if overrides else self


_THRESHOLDS = {
    "dev": Thresholds(0.20, 0.50, 0.0, strict=False),
    "staging": Thresholds(
        0.10,
        0.40,
        0.01,
        strict=False,
        gates=GateThresholds(
            segment_margin=0.20,
            bias_over_max=0.20,
            bias_under_max=0.25,
            blocking=("segment_guardrail", "business_benchmark", "target_leak"),
        ),
    ),
    "prod": Thresholds(
        0.05,
        0.30,
        0.02,
        strict=True,
        drift_persist_n=2,
        approval_gated=True,
        gates=GateThresholds(
            segment_margin=0.15,
            cost_per_outcome_band=0.20,
            bias_over_max=0.15,
            bias_under_max=0.20,
            blocking=GATE_NAMES,
        ),
    ),
}


MLFLOW_EXPERIMENT = "mlops_assets"
WEBHOOK_VAR = "MLOPS_ALERT_WEBHOOK"
WEBHOOK_FORMAT_VAR = "MLOPS_ALERT_WEBHOOK_FORMAT"
WEBHOOK_FORMATS = ("slack", "json")


@dataclass(frozen=True)
class Settings:
    """Everything environment-specific, derived from three variables."""

    env: str
    data_dir: Path
    dataset_path: Path
    as_of: datetime | None = None
    schema: str = "mlops"
    thresholds: Thresholds = field(default_factory=lambda: _THRESHOLDS["dev"])
    # Where the environment's Dagster UI is reached (MLOPS_DAGSTER_URL): every link an alert
    # carries starts here.
    dagster_url: str = DEFAULT_DAGSTER_URL
    # Where its MLflow UI (MLOPS_MLFLOW_URL) and its saved reports (MLOPS_REPORTS_URL) are
    # reached: the run, plot and report links in asset metadata start here.
    mlflow_url: str = DEFAULT_MLFLOW_URL
    reports_url: str = DEFAULT_REPORTS_URL
    # Where its Evidently UI, serving the business dashboard, is reached (MLOPS_DASHBOARD_URL).
    dashboard_url: str = DEFAULT_DASHBOARD_URL
    # Whether MLOPS_ALERT_WEBHOOK holds a URL (the URL itself stays a secret: the alert resource
    # reads it through dg.EnvVar), and the webhook's format (MLOPS_ALERT_WEBHOOK_FORMAT).
    alert_webhook_set: bool = False
    alert_webhook_format: str = "slack"
    # The warehouse's DuckLake catalog and data path when they are not the embedded ones
    # (MLOPS_WAREHOUSE_CATALOG: 'postgres:<connection string>' or 'sqlite:<file>';
    # MLOPS_WAREHOUSE_DATA_PATH: a folder or an object-store URL).
    warehouse_catalog: str = ""
    warehouse_data_path: str = ""

    @property
    def env_dir(self) -> Path:
        return self.data_dir / self.env

    @property
    def warehouse_path(self) -> Path:
        """The embedded warehouse's folder: its SQLite catalog and (by default) its Parquet."""
        return self.env_dir / "warehouse"

    @property
    def online_store_path(self) -> Path:
        return self.env_dir / "online_store" / "features.parquet"

    @property
    def mlflow_experiment(self) -> str:
        """The MLflow experiment every run of every environment is logged in (one per store)."""
        return MLFLOW_EXPERIMENT

    @property
    def champion_pointer_path(self) -> Path:
        """The version each alias names, published by the decision history beside the online
        store; the endpoint watches this file, never the registry's database."""
        return self.online_store_path.parent / "champion.json"

    @property
    def request_log_dir(self) -> Path:
        return self.env_dir / "request_log"

    @property
    def mlflow_db_path(self) -> Path:
        return self.env_dir / "mlflow.db"

    @property
    def mlflow_tracking_uri(self) -> str:
        return f"sqlite:///{self.mlflow_db_path.resolve()}"

    @property
    def mlflow_artifacts_dir(self) -> Path:
        return self.env_dir / "mlflow_artifacts"

    @property
    def compiled_models_dir(self) -> Path:
        """Compiled libraries of registered versions (``v<version>/model.so`` + sidecar),
        beside the registry's artifacts; written by the ``compile_model`` job only."""
        return self.mlflow_artifacts_dir / "compiled"

    @property
    def registered_model_name(self) -> str:
        return f"mlops_assets_{self.env}"

    @property
    def stage_alias(self) -> str:
        return STAGE_ALIASES[self.env]

    @property
    def reports_dir(self) -> Path:
        return self.env_dir / "reports"

    @property
    def evidently_workspace(self) -> Path:
        """The Evidently workspace of the environment: drift runs, business runs, dashboard."""
        return self.reports_dir / "workspace"

    @property
    def evidently_project(self) -> str:
        return f"mlops_assets_{self.env}"

    def report_url(self, report: Path) -> str:
        """The link to a report saved under :attr:`reports_dir`, as the reports server serves it."""
        relative = Path(report).resolve().relative_to(self.reports_dir.resolve())
        return f"{self.reports_url}/{quote(relative.as_posix())}"

    @property
    def alerts_path(self) -> Path:
        return self.env_dir / "alerts" / "alerts.jsonl"

    @property
    def dagster_home(self) -> Path:
        return self.env_dir / "dagster_home"

    def now(self) -> datetime:
        """The pipeline's clock: fixed by MLOPS_AS_OF (tests, replays) or the wall clock."""
        return self.as_of or datetime.now(UTC).replace(tzinfo=None)

    def today(self) -> date:
        return self.now().date()

    def ensure_dirs(self) -> None:
        for path in (
            self.env_dir,
            self.online_store_path.parent,
            self.request_log_dir,
            self.mlflow_artifacts_dir,
            self.reports_dir,
            self.alerts_path.parent,
            self.dagster_home,
        ):
            path.mkdir(parents=True, exist_ok=True)


def _parse_as_of(raw: str | None) -> datetime | None:
    if not raw:
        return None
    try:
        return datetime.fromisoformat(raw).replace(tzinfo=None)
    except ValueError as exc:
        raise SettingsError(f"MLOPS_AS_OF={raw!r} is not an ISO date or datetime") from exc


# Every path an environment writes; each must resolve inside $MLOPS_DATA_DIR/<env>/.
STATE_PATHS = (
    "env_dir",
    "warehouse_path",
    "online_store_path",
    "champion_pointer_path",
    "request_log_dir",
    "mlflow_db_path",
    "mlflow_artifacts_dir",
    "compiled_models_dir",
    "reports_dir",
    "alerts_path",
    "dagster_home",
)


def check_state_paths(settings: Settings) -> Settings:
    """Refuse an environment whose state would land outside its own folder: every state path,
    symbolic links followed, must lie inside ``$MLOPS_DATA_DIR/<env>/`` (a link from ``dev/``
    or one of its entries into ``prod/``, or anywhere else, is refused), and so must every
    symbolic link anywhere under that folder (:func:`check_links`)."""
    if settings.data_dir.exists() and not settings.data_dir.is_dir():
        raise SettingsError(f"MLOPS_DATA_DIR={settings.data_dir} is not a directory")
    home = settings.env_dir
    for name in STATE_PATHS:
        path = getattr(settings, name)
        resolved = path.resolve()
        if not resolved.is_relative_to(home):
            raise SettingsError(
                f"the {settings.env} environment's {name} {path} resolves to {resolved}, outside "
                f"{home} (a symbolic link?); an environment keeps all its state under "
                "$MLOPS_DATA_DIR/<env>/"
            )
    check_links(settings.env, home)
    return settings


_URLS = {
    "MLOPS_DAGSTER_URL": ("the Dagster UI", DEFAULT_DAGSTER_URL),
    "MLOPS_MLFLOW_URL": ("the MLflow UI", DEFAULT_MLFLOW_URL),
    "MLOPS_REPORTS_URL": ("the reports server", DEFAULT_REPORTS_URL),
    "MLOPS_DASHBOARD_URL": ("the Evidently UI", DEFAULT_DASHBOARD_URL),
}


def _parse_url(variable: str) -> str:
    what, default = _URLS[variable]
    raw = os.environ.get(variable)
    if not raw:
        return default
    url = raw.strip().rstrip("/")
    if not re.match(r"^https?://[^/\s]+(/\S*)?$", url):
        raise SettingsError(f"{variable}={raw!r} is not an http(s) URL of {what} (e.g. {default})")
    return url


def check_links(env: str, home: Path) -> None:
    """Refuse a symbolic link anywhere under ``home`` (an environment's folder, resolved) that
    resolves outside it: whatever is written through it (runs under ``dagster_home/history``,
    artifacts, reports) would land in another environment's folder or elsewhere. Links that
    stay inside are accepted.

    The walk lists each real directory once (``os.scandir``: names and types, no ``stat`` per
    entry), never follows a link (a link to a directory is checked, not entered), and stops at
    the first link that leads out; a missing folder has nothing to check."""
    pending = [str(home)]
    while pending:
        folder = pending.pop()
        try:
            entries = os.scandir(folder)
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise SettingsError(
                f"cannot list {folder} to check the {env} environment's folder for symbolic "
                f"links leading out of it ({exc.strerror}); make it readable by this user"
            ) from exc
        with entries:
            for entry in entries:
                if entry.is_symlink():
                    _check_link(env, home, Path(entry.path))
                elif entry.is_dir(follow_symlinks=False):
                    pending.append(entry.path)


def _check_link(env: str, home: Path, link: Path) -> None:
    target = os.readlink(link)
    resolved = Path(os.path.realpath(link))
    if not resolved.is_relative_to(home):
        raise SettingsError(
            f"the {env} environment's folder holds a symbolic link {link} -> {target}, which "
            f"resolves to {resolved}, outside {home}: what is written through it would land "
            "there. Replace the link with a real folder or file (move what it points to under "
            f"{home}, or remove the link), so that the environment keeps all its state under "
            "$MLOPS_DATA_DIR/<env>/"
        )


def load_settings(
    env: str | None = None,
    data_dir: str | Path | None = None,
    dataset: str | Path | None = None,
) -> Settings:
    """Resolve the settings of one environment from arguments or MLOPS_* variables."""
    name = env or os.environ.get("MLOPS_ENV") or "dev"
    if name not in ENVIRONMENTS:
        raise SettingsError(
            f"unknown environment {name!r} (MLOPS_ENV); valid ones are: {', '.join(ENVIRONMENTS)}"
        )
    root = Path(data_dir or os.environ.get("MLOPS_DATA_DIR") or REPO_ROOT / "data")
    dataset_path = Path(dataset or os.environ.get("MLOPS_DATASET") or DEFAULT_DATASET)
    schema = validate_identifier(os.environ.get("MLOPS_SCHEMA", "mlops"), "MLOPS_SCHEMA")
    settings = Settings(
        env=name,
        data_dir=root.resolve(),
        dataset_path=dataset_path.resolve(),
        as_of=_parse_as_of(os.environ.get("MLOPS_AS_OF")),
        schema=schema,
        thresholds=_THRESHOLDS[name],
        dagster_url=_parse_url("MLOPS_DAGSTER_URL"),
        mlflow_url=_parse_url("MLOPS_MLFLOW_URL"),
        reports_url=_parse_url("MLOPS_REPORTS_URL"),
        dashboard_url=_parse_url("MLOPS_DASHBOARD_URL"),
        alert_webhook_set=bool(os.environ.get(WEBHOOK_VAR)),
        alert_webhook_format=_parse_webhook_format(os.environ.get(WEBHOOK_FORMAT_VAR)),
        warehouse_catalog=os.environ.get("MLOPS_WAREHOUSE_CATALOG", ""),
        warehouse_data_path=os.environ.get("MLOPS_WAREHOUSE_DATA_PATH", ""),
    )
    return check_state_paths(settings)


def env_name_chosen() -> bool:
    """Whether MLOPS_ENV names an environment (commands that default to another one ask)."""
    return bool(os.environ.get("MLOPS_ENV"))


def _parse_webhook_format(raw: str | None) -> str:
    value = raw or "slack"
    if value not in WEBHOOK_FORMATS:
        raise SettingsError(
            f"{WEBHOOK_FORMAT_VAR}={raw!r} is not a webhook format; use one of: "
            + ", ".join(WEBHOOK_FORMATS)
        )
    return value
