"""Compiled champions: whenever the champion pointer names a version (a promotion, a rollback, a
training date's decision, a challenger alias) that has no compiled library yet, the
``compile_champion`` sensor launches the small ``compile_model`` job for it. The job compiles
the version's booster once (lleaves), verifies it against ``Booster.predict`` and stores it beside
the registry's artifacts; nothing in the daily graph waits for it, and batch inference and the
endpoint use the booster until the library is there.

The sensor reads one small JSON file and ``stat``s one sidecar per named version; the run key
(the version) launches each compile once."""

import dagster as dg

from mlops_assets.defs.common import Project, project
from mlops_assets.defs.resources import MlflowResource

COMPILE_JOB = "compile_model"
COMPILE_SENSOR = "compile_champion"


class CompileConfig(dg.Config):
    version: str


def build_compile_job(p: Project) -> tuple[dg.JobDefinition, dg.SensorDefinition]:
    cache_dir = p.settings.compiled_models_dir
    pointer_path = p.settings.champion_pointer_path

    @dg.op(
        name="compile_model_version",
        description="Compile a registered version with lleaves and verify it within 1e-9.",
    )
    def compile_model_version(
        context: dg.OpExecutionContext, config: CompileConfig, mlflow: MlflowResource
    ) -> dg.Output[None]:
        from mlops_assets.ml import compiled

        mlflow.experiment_id()
        result = compiled.compile_version(
            mlflow.registered_model, config.version, mlflow.tracking_uri, cache_dir
        )
        context.log.info(f"v{config.version}: {result}")
        return dg.Output(None, metadata={k: v for k, v in result.items() if v is not None})

    @dg.job(
        name=COMPILE_JOB,
        description="Compile one registered model version for fast batch and online predictions.",
    )
    def compile_model() -> None:
        compile_model_version()

    @dg.sensor(
        name=COMPILE_SENSOR,
        job=compile_model,
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=30,
        description="Compiles every version the champion pointer names that has no compiled "
        "library yet.",
    )
    def compile_champion(context: dg.SensorEvaluationContext):
        from mlops_assets.ml import compiled
        from mlops_assets.storage import champion_pointer

        try:
            pointer = champion_pointer.read(pointer_path)
        except champion_pointer.PointerError as exc:
            return dg.SkipReason(str(exc))
        if pointer is None:
            return dg.SkipReason(f"no champion pointer at {pointer_path}")
        versions = sorted({v for v in pointer.aliases.values() if v is not None})
        missing = [v for v in versions if not compiled.sidecar_path(v, cache_dir).exists()]
        if not missing:
            return dg.SkipReason(f"versions {versions or 'none'} are compiled")
        return [
            dg.RunRequest(
                run_key=f"compile-v{version}",
                run_config=dg.RunConfig(
                    ops={"compile_model_version": CompileConfig(version=version)}
                ),
                tags={"mlops/model_version": version},
            )
            for version in missing
        ]

    return compile_model, compile_champion


@dg.definitions
def defs() -> dg.Definitions:
    job, sensor = build_compile_job(project())
    return dg.Definitions(jobs=[job], sensors=[sensor])
