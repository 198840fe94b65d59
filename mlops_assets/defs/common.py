"""What every stage's definitions share: the loaded project (settings + dataset spec), the
partitions, the type of the frames assets pass, the warehouse resource and catalog metadata
helpers."""

import hashlib
import importlib.util
import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeAlias, cast

import dagster as dg

from mlops_assets.dataset import DatasetSpec
from mlops_assets.dataset_load import load_spec
from mlops_assets.defs.catalog import schema_metadata
from mlops_assets.environments import Settings, load_settings
from mlops_assets.storage.io_manager import PARTITION_COLUMN

# The DuckLake warehouse takes several writers at once, so the daily stages run in parallel. The
# stages that change the model registry and the champion (training, deployment) take this pool,
# whose limit of 1 (dagster.yaml) keeps one of them at a time: decisions are made in order
# against the incumbent.
REGISTRY_POOL = "registry"
# The layout of the frames assets write; bump it when a table's columns change meaning.
FORMAT_VERSION = "2"


@cache
def _module_source(name: str) -> bytes:
    """A module's source, read from its file without importing it (definitions stay light)."""
    found = importlib.util.find_spec(name)
    if found is None or not found.origin:
        raise ValueError(f"no source for module {name!r}")
    return Path(found.origin).read_bytes()


def code_version(*modules: str, extra: tuple[object, ...] = ()) -> str:
    """The code version of an asset: a hash of the source of the modules that compute it, of
    any functions in ``extra`` (or their own text), and of the frames' format version. It
    changes whenever that code changes, so Dagster marks what it computed as changed, and it
    keys the reuse of MLflow runs."""
    digest = hashlib.sha256(FORMAT_VERSION.encode())
    for name in modules:
        digest.update(name.encode() + b"\0" + _module_source(name))
    for item in extra:
        target = getattr(item, "func", item)
        text = inspect.getsource(target) if callable(target) else repr(target)
        digest.update(text.encode())
    return digest.hexdigest()[:12]


def _is_polars_frame(_context: dg.TypeCheckContext, value: object) -> dg.TypeCheck:
    import polars as pl

    if isinstance(value, pl.DataFrame):
        return dg.TypeCheck(success=True)
    return dg.TypeCheck(
        success=False, description=f"expected a polars DataFrame, got {type(value).__name__}"
    )


# A polars DataFrame: the type of asset inputs and outputs. Asset and check signatures name it
# rather than `pl.DataFrame` so that loading the definitions does not import polars: Dagster
# evaluates annotations when it decorates (and rejects `Annotated[Any, ...]`), while this type
# imports polars only to check a value.
if TYPE_CHECKING:
    import polars as pl

    # What a type checker sees: the frame itself.
    Frame: TypeAlias = pl.DataFrame
else:
    Frame = dg.DagsterType(
        type_check_fn=_is_polars_frame, name="PolarsDataFrame", description="A polars DataFrame."
    )


@dataclass(frozen=True)
class Project:
    settings: Settings
    spec: DatasetSpec

    @property
    def daily(self) -> dg.DailyPartitionsDefinition:
        return dg.DailyPartitionsDefinition(start_date=self.spec.start_date.isoformat())

    @property
    def training(self) -> dg.TimeWindowPartitionsDefinition:
        start = self.spec.start_date.isoformat()
        if self.spec.training.cadence == "daily":
            return dg.DailyPartitionsDefinition(start_date=start)
        return dg.WeeklyPartitionsDefinition(start_date=start, day_offset=1)

    def words(self, text: str) -> str:
        """Fill a description template with the dataset's own nouns."""
        return text.format(
            event=self.spec.event_noun,
            events=self.spec.event_noun + "s",
            outcome=self.spec.outcome_noun,
            target=self.spec.target,
            lag=self.spec.label_lag_days,
            history_days=self.spec.history_days,
            dataset=self.spec.name,
        )


@cache
def _project(env: str, data_dir: str, dataset: str, as_of: datetime | None) -> Project:
    settings = load_settings(env, data_dir, dataset)
    spec = load_spec(settings.dataset_path, data_dir=settings.data_dir)
    return Project(settings=clock_from_data(settings, spec), spec=spec)


def clock_from_data(settings: Settings, spec: DatasetSpec) -> Settings:
    """For a file or table source without MLOPS_AS_OF, the pipeline's clock is midnight after
    the source's last day: the data, not the wall clock, says what has happened."""
    from dataclasses import replace

    from mlops_assets.dataset_load import source_days

    if settings.as_of is not None or spec.source.kind == "simulator":
        return settings
    # A file or table source always has a day range (source_days raises when it holds none).
    _first, last = cast("tuple[date, date]", source_days(spec))
    return replace(settings, as_of=datetime.combine(last + timedelta(days=1), time()))


def project() -> Project:
    """The project of the current MLOPS_* environment (loaded once per distinct environment)."""
    s = load_settings()
    return _project(s.env, str(s.data_dir), str(s.dataset_path), s.as_of)


def partition_day(context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext) -> date:
    return datetime.fromisoformat(context.partition_key).date()


def partition_days(context: dg.AssetExecutionContext) -> list[date]:
    """The days of the partition range this run materializes (one day or a backfill range)."""
    window = context.partition_time_window
    start, end = window.start.date(), window.end.date()
    return [start + timedelta(days=i) for i in range((end - start).days)]


# Daily assets take a whole range in one run: a backfill is one run, not one per day.
SINGLE_RUN = dg.BackfillPolicy.single_run()


def table_metadata(partition_column: str | None = None, **extra: object) -> dict[str, object]:
    meta: dict[str, object] = dict(extra)
    if partition_column:
        meta[PARTITION_COLUMN] = partition_column
    return meta


# The column of a training-partitioned table that holds its training date.
TRAINING_DATE = "training_date"
DEFAULT_KINDS = frozenset({"duckdb", "polars"})


@dataclass(frozen=True)
class Stage:
    """What the assets of one stage (one folder of ``defs/``) share, so that each asset states
    only what is its own. :meth:`asset` is ``dg.asset`` with these defaults:

    - the stage's group and owners, and its pool (:data:`REGISTRY_POOL` for the stages that
      change the registry; none for the others);
    - partitions by name: ``"daily"`` (a range of days runs as one run), ``"training"``
      (training dates) or none;
    - metadata: the column schema of the table it stores (``table``, by default the asset's
      name) and, when partitioned, its partition column (the dataset's date column for daily
      assets, :data:`TRAINING_DATE` for training dates, unless ``partition_column`` says);
    - the code version hashed from the source of the ``code`` modules (or ``version`` given
      whole, when it hashes more than modules);
    - kinds duckdb and polars, unless ``kinds`` says.

    Everything else (ins, deps, checks, automation, description) passes through to
    ``dg.asset``."""

    project: "Project"
    group: str
    owners: Sequence[str]
    pool: str | None = None

    def asset(
        self,
        name: str,
        *,
        code: Sequence[str] = (),
        version: str | None = None,
        partitions: Literal["daily", "training"] | None = None,
        table: str | None = None,
        partition_column: str | None = None,
        kinds: frozenset[str] | set[str] = DEFAULT_KINDS,
        metadata: Mapping[str, object] | None = None,
        **kwargs: Any,
    ) -> Callable[[Callable[..., Any]], dg.AssetsDefinition]:
        if bool(code) == (version is not None):
            raise ValueError(f"{name}: give either the code modules or the code version")
        p = self.project
        partitions_def = {"daily": p.daily, "training": p.training, None: None}[partitions]
        if partitions and partition_column is None:
            partition_column = p.spec.date_column if partitions == "daily" else TRAINING_DATE
        return dg.asset(
            name=name,
            group_name=self.group,
            owners=list(self.owners),
            pool=self.pool,
            kinds=set(kinds),
            partitions_def=partitions_def,
            backfill_policy=SINGLE_RUN if partitions == "daily" else None,
            code_version=version or code_version(*code),
            metadata=table_metadata(
                partition_column, **(metadata or {}), **schema_metadata(p.spec, table or name)
            ),
            **kwargs,
        )


def severity(strict: bool) -> dg.AssetCheckSeverity:
    return dg.AssetCheckSeverity.ERROR if strict else dg.AssetCheckSeverity.WARN


def rule_result(result, *, asset_key=None, check_name=None, sev=None) -> dg.AssetCheckResult:
    """Turn an ml.rules.RuleResult into an AssetCheckResult carrying its evidence."""
    kwargs = {}
    if asset_key is not None:
        kwargs["asset_key"] = asset_key
    if check_name is not None:
        kwargs["check_name"] = check_name
    return dg.AssetCheckResult(
        passed=bool(result.passed),
        severity=sev or dg.AssetCheckSeverity.ERROR,
        metadata=result.metadata(),
        **kwargs,
    )


def eager_within(days: int) -> dg.AutomationCondition:
    """Eager, but over the last ``days`` partitions rather than only the newest: a day whose
    inputs arrive late (outcomes land days after it) is still picked up."""
    condition: dg.AutomationCondition = dg.AutomationCondition.eager()
    if days > 1:
        window = dg.AutomationCondition.in_latest_time_window(timedelta(days=days))
        condition = condition.replace("in_latest_time_window", window)
    return condition


def when_landed(label_lag_days: int, lookback_days: int = 7) -> dg.AutomationCondition:
    """Request a missing day once its outcomes have landed (``label_lag_days`` after it), within
    the last ``lookback_days`` days; a failed attempt is not retried by itself."""
    A = dg.AutomationCondition
    condition = (
        A.missing()
        & A.in_latest_time_window(timedelta(days=label_lag_days + lookback_days))
        & ~A.in_progress()
        & ~A.execution_failed()
    )
    if label_lag_days > 1:
        condition = condition & ~A.in_latest_time_window(timedelta(days=label_lag_days - 1))
    return condition.with_label(f"missing and landed ({label_lag_days} days after the day)")


def after_blocking_checks(condition: dg.AutomationCondition) -> dg.AutomationCondition:
    """``condition``, and no blocking check of the upstream partitions it reads has failed.

    "Not failed" rather than "passed": a range run (a single-run backfill) records its check
    results without a partition, so the days it built have no per-day result and must not
    wait for one."""
    A = dg.AutomationCondition
    no_failed_check = A.all_checks_match(~A.check_failed(), blocking_only=True)
    return condition & A.all_deps_match(no_failed_check).with_label(
        "no upstream blocking check failed"
    )


def after_latest_blocking_checks(condition: dg.AutomationCondition) -> dg.AutomationCondition:
    """``condition``, and the newest partition of each upstream asset failed no blocking check
    (for an asset that reads every upstream partition, such as the online store)."""
    A = dg.AutomationCondition
    no_failed_check = A.all_checks_match(~A.check_failed(), blocking_only=True)
    return condition & A.all_deps_match(A.in_latest_time_window() & no_failed_check).with_label(
        "no blocking check failed on the newest upstream partition"
    )


HISTORY_ASSET = "champion_history"


def when_decided() -> dg.AutomationCondition:
    """The decision history: whenever a training date's evaluation or a release decision is
    updated (not on every new day of examples it re-scores from)."""
    A = dg.AutomationCondition
    inputs = dg.AssetSelection.assets("champion", "release_decisions")
    updated = A.any_deps_match(A.newly_updated() | A.will_be_requested()).allow(inputs)
    return (updated & ~A.in_progress()).with_label("a training date or a release decision changed")


def champion_in_force_mapping(p: Project) -> dg.TimeWindowPartitionMapping:
    """Day D depends on the training partition whose window ended on or before D (the one whose
    decision is the latest in force on D)."""
    period = 1 if p.spec.training.cadence == "daily" else 7
    return dg.TimeWindowPartitionMapping(start_offset=-period, end_offset=-period)


def ignoring_history(condition: dg.AutomationCondition) -> dg.AutomationCondition:
    """``condition`` with updates of the decision history left out of "a dependency was
    updated": a day is re-predicted when the training date in force on it changes, not on
    every re-derivation of the history."""
    A = dg.AutomationCondition
    history = dg.AssetSelection.assets(HISTORY_ASSET)
    return condition.replace("any_deps_updated", A.any_deps_updated().ignore(history))


def after_history() -> dg.AutomationCondition:
    """Once the decision history was updated, in the latest time window (a training date's
    drift reference follows the decision about it)."""
    A = dg.AutomationCondition
    history = dg.AssetSelection.assets(HISTORY_ASSET)
    updated = A.any_deps_match(A.newly_updated()).allow(history)
    return (
        A.in_latest_time_window()
        & updated.since_last_handled()
        & ~A.any_deps_missing()
        & ~A.any_deps_in_progress()
        & ~A.in_progress()
    ).with_label("after the decision history")
