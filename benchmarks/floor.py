"""Dagster's own floor for the daily cycle: trivial assets of the same shape as the
``daily_cycle`` job (the same assets, dependencies, partitions and checks, under the key prefix
``floor``), each doing nothing but report its checks passed, run through the same runner on the
same instance. What a run of them costs is what Dagster costs for this graph; the cycle's
overhead over its direct path is compared with it (``orchestration.overhead_vs_floor``)."""

from __future__ import annotations

from typing import Any

FLOOR_JOB = "floor_daily_cycle"
PREFIX = "floor"


def _trivial(key: Any, deps: list[Any], checks: list[str], partitions_def: Any) -> Any:
    import dagster as dg

    @dg.asset(
        key=key,
        deps=deps,
        partitions_def=partitions_def,
        check_specs=[dg.AssetCheckSpec(name, asset=key) for name in checks],
    )
    def _asset():  # no annotation: Dagster would resolve it, and dg is a local import
        results = [dg.AssetCheckResult(check_name=name, passed=True) for name in checks]
        return dg.MaterializeResult(check_results=results)

    return _asset


def floor_definitions(defs: Any, job_name: str) -> Any:
    """Definitions of one job, :data:`FLOOR_JOB`, mirroring the assets of ``job_name``: each
    asset's dependencies inside the job, its partitions and its checks."""
    import dagster as dg

    layer = defs.resolve_job_def(job_name).asset_layer
    graph, selected = layer.asset_graph, layer.selected_asset_keys

    def mirrored(key: Any) -> Any:
        return dg.AssetKey([PREFIX, *key.path])

    assets = []
    for key in sorted(selected, key=lambda k: k.to_user_string()):
        node = graph.get(key)
        deps = [mirrored(k) for k in sorted(node.parent_keys, key=str) if k in selected]
        checks = sorted(c.name for c in node.check_keys)
        assets.append(_trivial(mirrored(key), deps, checks, node.partitions_def))
    job = dg.define_asset_job(FLOOR_JOB, selection=[a.key for a in assets])
    return dg.Definitions(assets=assets, jobs=[job])


def shape(defs: Any, job_name: str) -> dict[str, int]:
    """How many assets and checks a job runs."""
    layer = defs.resolve_job_def(job_name).asset_layer
    keys = layer.selected_asset_keys
    checks = sum(len(layer.asset_graph.get(k).check_keys) for k in keys)
    return {"assets": len(keys), "checks": checks}
