"""Resources every stage shares: the warehouse for direct reads and the MLflow store.

MLflow is called through this small resource rather than dagster-mlflow's `mlflow_tracking`:
importing dagster_mlflow imports mlflow (about 1.3 s) when definitions load, its run-ending hook
only attaches to explicit jobs (not to materializations launched from the UI or by automation),
and it opens one MLflow run per Dagster run where we need a run per candidate and partition.
mlflow itself is imported only inside `mlops_assets.ml.registry` functions, when a step uses it.
"""

from datetime import date, timedelta
from functools import cache
from typing import TYPE_CHECKING
from urllib.parse import quote

import dagster as dg

from mlops_assets.environments import DEFAULT_DAGSTER_URL
from mlops_assets.storage.alerts import Alert, AlertSink
from mlops_assets.storage.warehouse import Warehouse

if TYPE_CHECKING:
    from mlops_assets.ml.model import TabularModel


class WarehouseResource(dg.ConfigurableResource):
    """Direct access to the environment's warehouse for reads that are not asset inputs."""

    database: str
    schema_name: str = "mlops"
    catalog: str = ""
    data_path: str = ""

    def get(self) -> Warehouse:
        return Warehouse(
            self.database, self.schema_name, catalog=self.catalog, data_path=self.data_path
        )


class MlflowResource(dg.ConfigurableResource):
    """The environment's MLflow tracking store, artifact folder and registered model."""

    tracking_uri: str
    artifacts_dir: str
    registered_model: str
    experiment: str
    ui_base: str = "http://127.0.0.1:5000"

    def experiment_id(self) -> str:
        """Point MLflow at this store and return the experiment id (created once per process).

        The process-wide MLflow URIs are set on every call: one process may serve several
        environments, and a run must never land in another environment's store."""
        import mlflow

        experiment_id = _configure(self.tracking_uri, self.artifacts_dir, self.experiment)
        mlflow.set_tracking_uri(self.tracking_uri)
        mlflow.set_registry_uri(self.tracking_uri)
        mlflow.set_experiment(experiment_id=experiment_id)
        return experiment_id

    def registry(self, stage_alias: str):
        """The registered model and the aliases promotion moves."""
        from mlops_assets.ml.promotion import Registry

        return Registry(self.tracking_uri, self.registered_model, stage_alias)

    def alias_version(self, alias: str) -> str | None:
        """The version of the registered model an alias points to, if any."""
        from mlops_assets.ml import registry

        return registry.get_alias_version(self.registered_model, alias, self.tracking_uri)

    def load_version(self, version: str) -> "TabularModel":
        """A version of the registered model, loaded from the registry."""
        from mlops_assets.ml import registry

        return registry.load_model_version(self.registered_model, version, self.tracking_uri)

    def train_window(self, version: str) -> tuple[date, date]:
        """The training window a version of the registered model was trained on (its tags)."""
        from mlops_assets.ml import registry

        tags = registry.version_tags(self.registered_model, version, self.tracking_uri)
        start, end = (date.fromisoformat(d) for d in tags["train_window"].split(".."))
        return start, end


class AlertSinkResource(dg.ConfigurableResource):
    """Where alerts go: the environment's alert log, plus a webhook when MLOPS_ALERT_WEBHOOK is
    set (passed as an EnvVar, so the URL never shows in the UI)."""

    env: str
    path: str
    webhook_url: str | None = None
    webhook_format: str = "slack"
    cooldown_minutes: float = 360.0
    # The Dagster UI's base URL (Settings.dagster_url, from MLOPS_DAGSTER_URL).
    ui_base: str = DEFAULT_DAGSTER_URL

    def sink(self) -> AlertSink:
        return AlertSink(
            self.path,
            self.webhook_url,
            self.webhook_format,
            cooldown=timedelta(minutes=self.cooldown_minutes),
        )

    def run_url(self, run_id: str) -> str:
        return f"{self.ui_base.rstrip('/')}/runs/{run_id}" if run_id else ""

    def asset_url(self, asset: dg.AssetKey) -> str:
        path = "/".join(quote(part, safe="") for part in asset.path)
        return f"{self.ui_base.rstrip('/')}/assets/{path}"

    def send(
        self,
        kind: str,
        asset: str,
        cause: str,
        message: str,
        partition: str = "",
        run_id: str = "",
        details: dict | None = None,
        asset_key: dg.AssetKey | None = None,
    ) -> bool:
        alert = Alert(
            env=self.env,
            kind=kind,
            asset=asset,
            partition=partition,
            cause=cause,
            message=message,
            run_id=run_id,
            run_url=self.run_url(run_id),
            asset_url=self.asset_url(asset_key) if asset_key is not None else "",
            details=details or {},
        )
        return self.sink().send(alert)


@cache
def _configure(tracking_uri: str, artifacts_dir: str, experiment: str) -> str:
    from mlops_assets.ml import registry

    return registry.configure(tracking_uri, artifacts_dir, experiment)
