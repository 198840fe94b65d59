"""A simulated clock for declarative automation: evaluates every asset's automation condition
the way the automation sensor does (same cursor from one evaluation to the next), at a chosen
time with the pipeline clock (MLOPS_AS_OF) set to that time, and runs exactly what it requests
in process, grouped like the sensor groups its runs: one run per partitions definition and
partition."""

from __future__ import annotations

from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta

import dagster as dg

from mlops_assets_tests.helpers import Pipeline

# (asset name, partition key or None for an unpartitioned asset)
AssetPartition = tuple[str, str | None]

# The automation sensor evaluates every 30 seconds, so what the runs of one evaluation made
# possible is requested by the next. A tick here is the morning evaluation plus follow-up
# evaluations a minute apart until one requests nothing.
FOLLOW_UP = timedelta(minutes=1)
MAX_EVALUATIONS_PER_TICK = 6


def at(partition: str | None, *assets: str) -> set[AssetPartition]:
    """The asset partitions ``assets`` x ``partition``: a row of an expectation table."""
    return {(asset, partition) for asset in assets}


@dataclass(frozen=True)
class Evaluation:
    at: datetime
    requested: frozenset[AssetPartition]
    runs: tuple[dg.ExecuteInProcessResult, ...]

    def failed_runs(self) -> list[str]:
        return [
            f"{r.dagster_run.tags.get('dagster/partition', '-')}: "
            f"{sorted(k.to_user_string() for k in r.dagster_run.asset_selection or [])}"
            for r in self.runs
            if not r.success
        ]


class AutomationClock:
    """Evaluates and runs the automation of one pipeline, tick after tick."""

    def __init__(self, pipeline: Pipeline):
        self.pipeline = pipeline
        self.cursor = None
        self.first_requested: dict[AssetPartition, datetime] = {}
        self.requested_again: list[str] = []

    def evaluate(self, when: datetime) -> frozenset[AssetPartition]:
        """One evaluation of every automation condition at ``when``; nothing is run."""
        self.pipeline.monkeypatch.setenv("MLOPS_AS_OF", when.isoformat(timespec="minutes"))
        defs = self.pipeline.definitions()
        # Dagster's evaluator calls asyncio.run, which refuses a thread where an event loop is
        # running, and a test run earlier on the same worker can leave one running on the main
        # thread (Playwright's sync API runs one while a browser is open). A thread of its own
        # has none, as in the daemon.
        with ThreadPoolExecutor(max_workers=1) as pool:
            result = pool.submit(
                dg.evaluate_automation_conditions,
                defs,
                self.pipeline.instance,
                evaluation_time=when,
                cursor=self.cursor,
            ).result()
        self.cursor = result.cursor
        requested = frozenset(
            (key.to_user_string(), partition)
            for key in defs.resolve_all_asset_keys()
            for partition in result.get_requested_partitions(key)
        )
        for asset_partition in sorted(requested, key=str):
            first = self.first_requested.setdefault(asset_partition, when)
            # An unpartitioned asset (the online store) is refreshed on purpose; a partition of
            # a partitioned asset is requested once.
            if first != when and asset_partition[1] is not None:
                self.requested_again.append(f"{asset_partition} at {first} and at {when}")
        return requested

    def run(self, requested: frozenset[AssetPartition]) -> tuple[dg.ExecuteInProcessResult, ...]:
        """Materialize ``requested``: daily partitions in date order, then other partitions
        (training weeks), then unpartitioned assets, each group in one run of its assets."""
        defs = self.pipeline.definitions()
        daily = self.pipeline.project.daily
        groups: dict[tuple, list[dg.AssetKey]] = defaultdict(list)
        for name, partition in requested:
            key = dg.AssetKey(name)
            groups[(defs.resolve_assets_def(key).partitions_def, partition)].append(key)

        def order(group: tuple) -> tuple:
            partitions_def, partition = group
            rank = 0 if partitions_def == daily else 1 if partitions_def is not None else 2
            return rank, partition or ""

        results = []
        for group in sorted(groups, key=order):
            keys = sorted(groups[group], key=lambda k: k.to_user_string())
            partition = group[1]
            job = defs.resolve_implicit_job_def_def_for_assets(keys)
            results.append(
                job.execute_in_process(
                    instance=self.pipeline.instance,
                    asset_selection=keys,
                    raise_on_error=False,
                    **({"partition_key": partition} if partition else {}),
                )
            )
        return tuple(results)

    def tick(self, morning: datetime) -> list[Evaluation]:
        """The evaluation at ``morning`` and its follow-ups, each followed by its runs, until an
        evaluation requests nothing; returns the evaluations that requested something."""
        evaluations = []
        for n in range(MAX_EVALUATIONS_PER_TICK):
            when = morning + n * FOLLOW_UP
            requested = self.evaluate(when)
            if not requested:
                return evaluations
            evaluations.append(Evaluation(when, requested, self.run(requested)))
        raise AssertionError(
            f"automation still requests after {MAX_EVALUATIONS_PER_TICK} evaluations "
            f"from {morning}: {sorted(evaluations[-1].requested, key=str)}"
        )


def show(requests: list[frozenset[AssetPartition]] | list[set[AssetPartition]]) -> list[str]:
    """Evaluations as sorted `asset@partition` lists, for readable assertion messages."""
    return [
        ", ".join(sorted(f"{a}@{p}" if p else a for a, p in evaluation)) for evaluation in requests
    ]
