"""Catalog metadata a product manager reads in the UI: column schemas with descriptions in the
dataset's words, and column lineage from predictions and business metrics back to the sources."""

import re
import textwrap

import dagster as dg

from mlops_assets.dataset import DatasetSpec
from mlops_assets.storage.io_manager import COLUMN_SCHEMA

COLUMN_LINEAGE = "dagster/column_lineage"


def _describe(spec: DatasetSpec, column: str) -> tuple[str, str]:
    """(type, description) of a column of the dataset, in its own words."""
    event, outcome = spec.event_noun, spec.outcome_noun
    if column == spec.date_column:
        return "date", f"day of the {event}"
    if column == spec.event_key:
        return "string", f"unique id of the {event}"
    if column == spec.target:
        return "double", f"observed {outcome} ({spec.target})"
    if column == spec.cost_column:
        return "double", f"cost of the {event} ({column})"
    if column in spec.categorical_features:
        return "string", f"{event} attribute {column}"
    if column in spec.numeric_features:
        return "double", f"{event} attribute {column}"
    for key in spec.history_keys:
        if column == f"hist_{key}_mean":
            return (
                "double",
                f"average {outcome} per {key} over the previous {spec.history_days} landed days",
            )
        if column == f"hist_{key}_n":
            return "double", f"number of {event}s per {key} behind that average"
    return "string", column


def _schema(
    spec: DatasetSpec, columns: list[str], extra: dict[str, tuple[str, str]]
) -> dg.TableSchema:
    cols = []
    for name in dict.fromkeys(columns):
        kind, text = extra.get(name) or _describe(spec, name)
        cols.append(dg.TableColumn(name=name, type=kind, description=text))
    return dg.TableSchema(columns=cols)


def column_schemas(spec: DatasetSpec) -> dict[str, dg.TableSchema]:
    """The column schema of every warehouse table, by asset name."""
    event_cols = list(spec.event_columns)
    feature_cols = [
        spec.date_column,
        spec.event_key,
        *spec.model_feature_columns,
        "history_through",
    ]
    outcome = spec.outcome_noun
    extra = {
        "history_through": ("date", f"last day whose {outcome} the history features include"),
        "landed_on": ("date", f"day the {outcome} became known"),
        "prediction": ("double", f"predicted {outcome}"),
        "model_version": ("string", "registry version of the model that predicted"),
        "training_date": ("date", "training partition (week or day)"),
        "day": ("date", "day"),
    }
    schemas = {
        "raw_events": _schema(spec, event_cols, extra),
        "raw_outcomes": _schema(
            spec, [spec.date_column, spec.event_key, spec.target, "landed_on"], extra
        ),
        "outcome_stats": _schema(
            spec,
            ["day", "key_name", "key_value", "n", "total"],
            {
                "day": ("date", "day of the events"),
                "key_name": ("string", "history key (e.g. network)"),
                "key_value": ("string", "value of the key"),
                "n": ("int", f"{spec.event_noun}s with landed {outcome}"),
                "total": ("double", f"their total {outcome}"),
            },
        ),
        "features": _schema(spec, feature_cols, extra),
        "labeled_examples": _schema(spec, [*feature_cols, spec.target], extra),
        "online_features": _schema(
            spec, [*spec.serving_keys, spec.date_column, *spec.model_feature_columns], extra
        ),
        "predictions": _schema(
            spec,
            [
                spec.date_column,
                spec.event_key,
                *spec.serving_keys,
                spec.segment_column,
                "prediction",
                "model_version",
            ],
            extra,
        ),
        "candidate": _declared(spec, CARD_COLUMNS),
        "champion": _declared(spec, {**CARD_COLUMNS, **CHAMPION_COLUMNS}),
        "champion_history": _declared(spec, HISTORY_COLUMNS),
        "release_decisions": _declared(spec, RELEASE_COLUMNS),
        "drift_reference": _schema(
            spec,
            [
                spec.date_column,
                *spec.model_feature_columns,
                spec.target,
                "prediction",
                "model_version",
                "training_date",
            ],
            extra,
        ),
        "drift_report": _declared(spec, DRIFT_COLUMNS),
        "business_metrics": _declared(spec, BUSINESS_COLUMNS),
        "serving_log": _declared(spec, SERVING_LOG_COLUMNS),
        "data_profile": _declared(spec, PROFILE_COLUMNS),
        "pipeline_health": _declared(spec, HEALTH_COLUMNS),
    }
    return schemas


def _table(text: str) -> dict[str, tuple[str, str]]:
    """Columns declared as a text table, one per line: name, type and description template
    separated by two or more spaces; a line indented further continues the description above.
    Names and descriptions may name the dataset's words ({event}, {outcome}, {date},
    {segment}), filled in by :func:`_declared`."""
    columns: dict[str, tuple[str, str]] = {}
    last = ""
    for line in textwrap.dedent(text).strip("\n").splitlines():
        if line[:1].isspace():
            kind, description = columns[last]
            columns[last] = (kind, f"{description} {line.strip()}")
            continue
        last, kind, description = re.split(r"\s{2,}", line.strip(), maxsplit=2)
        columns[last] = (kind, description)
    return columns


def _declared(spec: DatasetSpec, columns: dict[str, tuple[str, str]]) -> dg.TableSchema:
    words = {
        "event": spec.event_noun,
        "outcome": spec.outcome_noun,
        "date": spec.date_column,
        "segment": spec.segment_column,
    }
    return dg.TableSchema(
        columns=[
            dg.TableColumn(name=n.format(**words), type=k, description=t.format(**words))
            for n, (k, t) in columns.items()
        ]
    )


# A candidate's model card: one row per candidate and training date.
CARD_COLUMNS = _table(
    """
    training_date  date    training partition (week or day)
    candidate      string  candidate name
    role           string  baseline or model (baselines never become champion)
    model_version  string  registry version of the model that predicted
    run_id         string  MLflow run id
    run_url        string  link to the MLflow run
    mae            double  mean absolute error on the holdout
    rmse           double  root mean squared error on the holdout
    wape           double  weighted absolute percentage error on the holdout
    bias           double  (predicted - actual) / actual on the holdout
    train_start    string  first training day
    train_end      string  last training day
    holdout_start  string  first holdout day
    holdout_end    string  last holdout day
    train_rows     int     rows trained on
    holdout_rows   int     rows scored
    metric         string  the metric the leaderboard ranks by
    """
)

# The champion's evaluation of a training date: the leaderboard's card and the decision.
CHAMPION_COLUMNS = _table(
    """
    effective_from   date    cut-off of the training date: the day its decision takes effect
    proposed         bool    the candidate this training date proposes as champion
    serves           bool    the proposal loaded from the registry and predicted (empty: none)
    evaluation       string  why this candidate (or none) is proposed
    gates            string  JSON: the gates decided on the proposal alone, with evidence
    refused_by       string  the gate that refused the proposal (empty: none)
    baseline_topped  bool    a baseline topped this training date's leaderboard
    segment_scores   string  JSON: the proposal's share and score per segment
    serve_p50_ms     double  proposal's single-row p50 latency in the serve check
    serve_p99_ms     double  proposal's single-row p99 latency in the serve check
    serve_load_s     double  seconds to download and load the proposal
    model_bytes      double  size of the proposal's model files
    """
)

DRIFT_COLUMNS = _table(
    """
    day                   date    day
    column                string  monitored column (__drifted__: the day's summary row)
    kind                  string  numeric, categorical, target, prediction or summary
    stattest              string  Evidently's drift test
    score                 double  drift score (summary row: share of columns drifted)
    threshold             double  score above which the column drifted
    drifted               bool    the column (or the day) drifted
    null_share_current    double  share of empty values today
    null_share_reference  double  share of empty values in the reference
    status                string  ok, drift, empty or excluded
    rule                  string  why the column is in the report: monitored, excluded:
                                    day-constant, excluded: spec, or target of <day> (the
                                    newest day whose outcomes landed)
    """
)

# One row per day and raw attribute of the day's events.
PROFILE_COLUMNS = _table(
    """
    day            date    the day profiled
    column         string  an attribute of the day's {event}s
    kind           string  numeric or categorical
    rows           int     {event}s on the day
    missing_share  double  share of empty values (null, NaN or infinite)
    min            double  smallest value (numeric)
    p25            double  first quartile (numeric)
    median         double  median (numeric)
    p75            double  third quartile (numeric)
    max            double  largest value (numeric)
    mean           double  mean (numeric)
    distinct       int     distinct values (categorical)
    top_values     string  most frequent values with their counts (categorical)
    new_values     string  values never seen in the reference days (categorical)
    absent_values  string  regular values of the reference with no row today
                           (for {segment}: vanished segments)
    stable         bool    the column took no new value over the reference: new ones warn
    """
)

# One row per asset, with its stage's rolled-up status.
HEALTH_COLUMNS = _table(
    """
    stage              string     pipeline stage (asset group)
    stage_status       string     the stage's status: its worst asset's
    asset              string     asset
    status             string     Healthy, Warning or Degraded
    reason             string     why, in business words (empty when healthy)
    last_materialized  timestamp  latest materialization (UTC; empty: never)
    freshness          string     freshness state (PASS, WARN, FAIL; empty: no policy)
    failed_checks      int        checks whose latest evaluation failed
    open_alerts        int        alerts it raised within the alert cooldown
    """
)

BUSINESS_COLUMNS = _table(
    """
    {date}                      date    day of the {event}
    {segment}                   string  segment ({segment}); ALL = total
    events                      int     {event}s with a prediction and landed {outcome}
    cost_missing                int     events without a known cost
    cost                        double  total cost
    actual                      double  actual {outcome}
    predicted                   double  predicted {outcome}
    abs_error                   double  sum of absolute errors
    cost_per_outcome_actual     double  cost per actual {outcome}
    cost_per_outcome_predicted  double  cost per predicted {outcome}
    wape                        double  the model's weighted absolute percentage error
    bias                        double  (predicted - actual) / actual
    """
)

SERVING_LOG_COLUMNS = _table(
    """
    day            date       day of the request
    ts             timestamp  when the request arrived (UTC)
    request_id     string     request id
    status         int        HTTP status answered
    error          string     error code of a refused request
    model_version  string     champion version that answered
    predictor      string     what predicted: the compiled library or the booster
    latency_ms     double     time to answer in milliseconds
    n_keys         int        serving keys asked for
    prediction     double     first predicted {outcome}
    predictions    list       every predicted {outcome}
    keys           json       serving keys asked for
    overrides      json       feature overrides sent
    features       json       features used after overrides
    pid            int        endpoint process
    """
)

HISTORY_COLUMNS = _table(
    """
    seq                  int     order of the decision
    kind                 string  training (a training date's decision) or release (a person's)
    training_date        date    training date decided (empty for a release decision)
    effective_from       date    first day the decision is in force
    action               string  first, promote, keep, keep_not_serving, refused (by a promotion
                                 gate), propose (awaiting approval), or the release decision's
                                 promote or rollback
    from_version         string  champion version in force before the decision
    to_version           string  champion version in force after the decision
    candidate            string  candidate of the champion in force after the decision
    role                 string  role of the champion in force (never baseline)
    proposed_version     string  version the decision proposed or released
    proposed_candidate   string  candidate of that version
    metric               string  metric of the comparison
    chosen_score         double  the proposal's score on the training date's holdout
    incumbent_score      double  the champion in force re-scored on the same holdout
    best_baseline_score  double  the best baseline's score on the same holdout
    baseline_topped      bool    a baseline topped the leaderboard
    reason               string  why, in words
    approved_by          string  who approved a release decision
    evaluation_key       string  fingerprint of the training date's evaluation
    gates                string  JSON: every gate's verdict, observed value and threshold
    serving_gate         string  JSON: the serving budget's verdict and measurements
    incumbent_segments   string  JSON: the incumbent's share and score per segment
    """
)

RELEASE_COLUMNS = _table(
    """
    seq             int        order in which people decided
    effective_from  date       first day the decision is in force (the pipeline clock's day)
    action          string     promote or rollback
    version         string     the version made champion (empty: no champion)
    candidate       string     its candidate
    approved_by     string     who decided
    reason          string     why
    source          string     where the version came from (a proposal, another environment)
    recorded_at     timestamp  when it was recorded (UTC)
    """
)


def schema_metadata(spec: DatasetSpec, asset: str) -> dict[str, dg.TableSchema]:
    return {COLUMN_SCHEMA: column_schemas(spec)[asset]}


def _deps(asset: str, columns: list[str]) -> list[dg.TableColumnDep]:
    return [dg.TableColumnDep(asset_key=dg.AssetKey(asset), column_name=c) for c in columns]


def features_lineage(spec: DatasetSpec) -> dg.TableColumnLineage:
    deps = {c: _deps("raw_events", [c]) for c in spec.raw_feature_columns}
    for key in spec.history_keys:
        for col in (f"hist_{key}_mean", f"hist_{key}_n"):
            deps[col] = _deps("outcome_stats", ["key_value", "n", "total"]) + _deps(
                "raw_events", [key]
            )
    deps[spec.event_key] = _deps("raw_events", [spec.event_key])
    return dg.TableColumnLineage(deps_by_column=deps)


def predictions_lineage(spec: DatasetSpec) -> dg.TableColumnLineage:
    return dg.TableColumnLineage(
        deps_by_column={
            "prediction": _deps("features", list(spec.model_feature_columns)),
            "model_version": _deps("champion_history", ["to_version", "effective_from"]),
            spec.event_key: _deps("features", [spec.event_key]),
        }
    )


def business_lineage(spec: DatasetSpec) -> dg.TableColumnLineage:
    deps = {
        "actual": _deps("raw_outcomes", [spec.target]),
        "predicted": _deps("predictions", ["prediction"]),
        "wape": _deps("predictions", ["prediction"]) + _deps("raw_outcomes", [spec.target]),
        "bias": _deps("predictions", ["prediction"]) + _deps("raw_outcomes", [spec.target]),
        spec.segment_column: _deps("predictions", [spec.segment_column]),
    }
    if spec.cost_column:
        deps["cost"] = _deps("raw_events", [spec.cost_column])
        deps["cost_per_outcome_actual"] = _deps("raw_events", [spec.cost_column]) + _deps(
            "raw_outcomes", [spec.target]
        )
    return dg.TableColumnLineage(deps_by_column=deps)
