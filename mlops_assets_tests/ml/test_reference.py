"""The ``drift_reference`` stage function (``ml/reference.py``) on a few simulated rows, without
Dagster: a training date's reference is a bounded sample of the training window of the version
it hands to monitoring (its proposal while it awaits approval, else the champion in force after
it), with that version's predictions; a training date after which no model is watched is
refused, naming it."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import polars as pl
import pytest

from mlops_assets.ml import decision_history, promotion, reference
from mlops_assets.ml.model import TabularModel
from mlops_assets_tests.worlds import FIRST_DAY, simulated_examples, small_spec

SPEC = small_spec()
TRAINING_DATE = date(2025, 3, 10)
WINDOW = (FIRST_DAY, FIRST_DAY + timedelta(days=2))


def history(action: str, proposed: str | None, to_version: str | None) -> pl.DataFrame:
    """A decision history of one training decision (and nothing else)."""
    row = {
        "seq": 1,
        "effective_from": TRAINING_DATE,
        "kind": promotion.TRAINING,
        "training_date": TRAINING_DATE,
        "action": action,
        "proposed_version": proposed,
        "to_version": to_version,
    }
    return pl.DataFrame([row], schema=decision_history.HISTORY_SCHEMA)


def constant(value: float) -> TabularModel:
    return TabularModel(
        kind="global_mean", feature_columns=("spend",), categories={}, table=np.array(value)
    )


def stage(frame: pl.DataFrame, max_rows: int = 100) -> reference.ReferenceResult:
    examples = simulated_examples(SPEC, FIRST_DAY, 5, airings_per_day=10)
    reads: list[tuple[date, date]] = []

    def read(start: date, end: date) -> pl.DataFrame:
        reads.append((start, end))
        return examples.filter(pl.col(SPEC.date_column).is_between(start, end))

    result = reference.drift_reference_stage(
        SPEC,
        frame,
        TRAINING_DATE,
        train_window=lambda version: WINDOW,
        read_examples=read,
        load={"1": constant(2.0), "2": constant(4.0)}.__getitem__,
        max_rows=max_rows,
        seed=11,
    )
    assert reads == [WINDOW]
    return result


def test_the_champion_in_force_after_the_date_is_sampled_with_its_predictions() -> None:
    result = stage(history("promote", "1", "1"))
    frame = result.frame
    assert frame.height == 30 and result.version == "1"
    assert frame[SPEC.date_column].max() == WINDOW[1]
    assert frame.columns == [
        SPEC.date_column,
        *SPEC.model_feature_columns,
        SPEC.target,
        "prediction",
        "model_version",
        "training_date",
    ]
    assert set(frame["prediction"]) == {2.0} and set(frame["model_version"]) == {"1"}
    assert set(frame["training_date"]) == {TRAINING_DATE}
    assert result.metadata() == {
        "champion_version": "1",
        "window": f"{WINDOW[0]}..{WINDOW[1]}",
        "rows": 30,
    }


def test_a_proposal_awaiting_approval_is_watched_and_the_sample_is_bounded() -> None:
    result = stage(history("propose", "2", "1"), max_rows=7)
    assert result.version == "2" and result.frame.height == 7
    assert set(result.frame["prediction"]) == {4.0}


@pytest.mark.parametrize("frame", [pl.DataFrame(), history("keep", None, None)])
def test_no_model_watched_after_the_date_is_refused_naming_it(frame: pl.DataFrame) -> None:
    with pytest.raises(reference.NoReferenceError, match="after training date 2025-03-10"):
        stage(frame)
