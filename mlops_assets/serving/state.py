"""What the endpoint serves with, and how it is switched without a restart.

A :class:`Snapshot` pairs the champion model with the online store. The endpoint holds exactly
one snapshot reference; a request reads it once when it starts and uses that pair to the end, so
a switch never changes the model or the features under a request in flight.

The :class:`Refresher` thread polls the champion pointer file (every ``model_poll_seconds``;
:mod:`mlops_assets.storage.champion_pointer`, published beside the online store by the decision
history) and the online store file (every ``store_poll_seconds``), each by its (mtime, size,
inode); a file is read only when that changed. The model of the version the pointer names for
the alias is loaded from the MLflow registry. On a change it loads the
new model or store completely, checks it (a model must predict a store row; a store must have
every serving key and model feature column, one row per key), and only then replaces the
reference with a new snapshot. A load that fails keeps the previous pair and is reported in
``/model`` and the log; a store file is retried once it changes again, a model version after
``retry_seconds``. When the pointer names no version for the alias (or is removed), the
champion is dropped (the endpoint answers 503):
serving a model that is no longer promoted is worse than not serving.

A version is served by its booster until a verified compiled library of it appears in the
compiled models folder (``Settings.compiled_models_dir``, written by the ``compile_model`` job):
each model poll ``stat``s that version's sidecar, and when it appears or changes the library is
loaded, checked against the booster (:func:`mlops_assets.ml.compiled.with_compiled`) and swapped
in as a new snapshot, without a restart and without a request waiting. A refused library leaves
the booster serving (the reason is in ``/model``).
"""

from __future__ import annotations

import gc
import logging
import math
import os
import threading
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from mlops_assets.dataset import DatasetSpec
from mlops_assets.ml.model import TabularModel
from mlops_assets.serving.fastpath import AnyRowPredictor, row_predictor
from mlops_assets.serving.store import (
    OnlineStore,
    Signature,
    StoreError,
    file_signature,
    load_online_store,
)
from mlops_assets.storage import champion_pointer

logger = logging.getLogger(__name__)


def _now() -> datetime:
    return datetime.now(UTC)


def _freeze_heap() -> None:
    """Exempt every object alive now (MLflow, SQLAlchemy, the model, the store) from the cyclic
    garbage collector. With MLflow loaded the heap holds about 350k objects, and a full
    collection stalled the event loop for about 0.4 s here; frozen, a collection scans only the
    objects requests create. (Cyclic garbage alive at this moment is never reclaimed: a load's
    worth, once per load.)"""
    gc.freeze()


@dataclass(frozen=True)
class Champion:
    model: TabularModel
    version: str
    loaded_at: datetime
    # One-row requests of a LightGBM champion take the fast path (see serving.fastpath).
    row_predictor: AnyRowPredictor | None = None
    # Why the booster predicts rather than a compiled library ("" when compiled).
    compiled_problem: str = ""

    @property
    def predictor(self) -> str:
        return self.model.predictor

    def describe(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "predictor": self.predictor,
            "compiled_problem": self.compiled_problem or None,
            "candidate": self.model.candidate,
            "kind": self.model.kind,
            "loaded_at": self.loaded_at.isoformat(),
            "feature_columns": list(self.model.feature_columns),
        }


@dataclass(frozen=True)
class Snapshot:
    """The pair a request uses from start to end, and the store's rows encoded for that
    champion (a request without overrides predicts on them directly)."""

    champion: Champion | None = None
    store: OnlineStore | None = None
    encoded: dict[tuple[str, ...], np.ndarray] | None = None


def replace_champion(snapshot: Snapshot, champion: Champion) -> Snapshot:
    """``snapshot`` with another ``Champion`` of the same model features (the compiled library
    of the same version): the store's encoded rows are kept."""
    return Snapshot(champion, snapshot.store, snapshot.encoded)


def paired(champion: Champion | None, store: OnlineStore | None) -> Snapshot:
    """A snapshot of ``champion`` and ``store`` with the store's rows encoded for the model."""
    if champion is None or store is None or not store.rows:
        return Snapshot(champion, store)
    matrix = champion.model.encode_rows(list(store.rows.values()))
    return Snapshot(champion, store, dict(zip(store.rows, matrix, strict=True)))


class ServingState:
    """The one snapshot reference, plus why the endpoint is not ready (if it is not)."""

    def __init__(self) -> None:
        self.snapshot = Snapshot()
        self.model_problem: str | None = "loading: the champion alias was not checked yet"
        self.store_problem: str | None = "loading: the online store was not read yet"
        self.model_checked_at: datetime | None = None
        self.store_checked_at: datetime | None = None

    def not_ready_reasons(self) -> list[str]:
        """Empty when a champion and the online store are loaded."""
        snapshot = self.snapshot
        reasons = []
        if snapshot.champion is None:
            reasons.append(self.model_problem or "no champion loaded")
        if snapshot.store is None:
            reasons.append(self.store_problem or "no online store loaded")
        return reasons


def _check_model(
    model: TabularModel,
    predictor: AnyRowPredictor | None,
    spec: DatasetSpec,
    store: OnlineStore | None,
) -> None:
    unknown = [c for c in model.feature_columns if c not in spec.model_feature_columns]
    if unknown:
        raise StoreError(
            f"the model needs features {unknown} that the online store of dataset "
            f"{spec.name!r} does not hold"
        )
    if store is not None and store.rows:
        row = next(iter(store.rows.values()))
        matrix = model.encode_rows([row])
        value = float(model.predict_matrix(matrix)[0])
        if not math.isfinite(value):
            raise StoreError(f"the model predicts {value} for an online store row")
        if predictor is not None and predictor.predict(matrix[0]) != value:
            raise StoreError("the one-row fast path disagrees with the model's batch prediction")


class Refresher:
    """Background thread keeping the snapshot in line with the alias and the store file."""

    def __init__(
        self,
        state: ServingState,
        spec: DatasetSpec,
        *,
        store_path: Path,
        pointer_path: Path,
        tracking_uri: str,
        model_name: str,
        alias: str,
        model_poll_seconds: float = 1.5,
        store_poll_seconds: float = 1.0,
        retry_seconds: float = 30.0,
        compiled_dir: Path | None = None,
    ):
        self.state = state
        self.spec = spec
        self.store_path = Path(store_path)
        self.pointer_path = Path(pointer_path)
        self.tracking_uri = tracking_uri
        self.model_name = model_name
        self.alias = alias
        self.model_poll_seconds = model_poll_seconds
        self.store_poll_seconds = store_poll_seconds
        self.retry_seconds = retry_seconds
        self.compiled_dir = None if compiled_dir is None else Path(compiled_dir)
        # (version, sidecar signature) of the compiled library last tried.
        self._compiled_seen: tuple[str, Signature | None] | None = None
        self._registry_ready = False
        # The pointer file's signature at its last read, and the version it named for the alias.
        self._pointer_seen: Signature | None = None
        self._pointed: str | None = None
        self._pointer_problem: str | None = None
        self.pointer_reads = 0
        self._failed_version: tuple[str, float] | None = None
        self._failed_signature: Signature | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="serving-refresher", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _use_registry(self) -> None:
        # Every registry call below passes this environment's URI; the process-wide URIs point at
        # it too, so that no MLflow lookup made without one can fall back to ./mlflow.db (which
        # MLflow would create). Only reads follow: the endpoint never writes to the registry.
        # MLflow's usage telemetry stays off unless asked for: the endpoint does not phone home.
        os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        import mlflow

        mlflow.set_tracking_uri(self.tracking_uri)
        mlflow.set_registry_uri(self.tracking_uri)

    def _run(self) -> None:
        next_store = next_model = time.monotonic()
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= next_store:
                self.check_store()
                next_store = time.monotonic() + self.store_poll_seconds
            if now >= next_model:
                self.check_model()
                next_model = time.monotonic() + self.model_poll_seconds
            self._stop.wait(max(0.0, min(next_store, next_model) - time.monotonic()))

    # Store -------------------------------------------------------------------------------

    def check_store(self) -> bool:
        """Load the store file if it changed; True when the snapshot was replaced."""
        state = self.state
        state.store_checked_at = _now()
        current = state.snapshot.store
        signature = file_signature(self.store_path)
        if signature is None:
            state.store_problem = f"online store file {self.store_path} does not exist"
            return False
        if current is not None and signature == current.signature:
            state.store_problem = None
            return False
        if signature == self._failed_signature:
            return False
        try:
            store = load_online_store(self.store_path, self.spec)
        except Exception as exc:  # a bad file must never stop the endpoint: keep the old one
            self._failed_signature = signature
            state.store_problem = f"cannot load the online store: {exc}"
            logger.error("%s (keeping the previous store)", state.store_problem)
            return False
        self._failed_signature = None
        state.snapshot = paired(state.snapshot.champion, store)
        state.store_problem = None
        _freeze_heap()
        logger.info(
            "online store loaded: %d keys, features through %s, from %s",
            store.row_count,
            store.features_through,
            store.path,
        )
        return True

    # Model -------------------------------------------------------------------------------

    def _drop_champion(self, problem: str) -> bool:
        state = self.state
        state.model_problem = problem
        if state.snapshot.champion is None:
            return False
        logger.warning("%s: dropping champion v%s", problem, state.snapshot.champion.version)
        state.snapshot = paired(None, state.snapshot.store)
        return True

    def check_model(self) -> bool:
        """Load the version the pointer names for the alias if it changed; True when the
        snapshot was replaced. The pointer is read only when its file changed (one ``stat``
        per poll otherwise)."""
        state = self.state
        state.model_checked_at = _now()
        signature = file_signature(self.pointer_path)
        current = state.snapshot.champion
        if signature is None:
            return self._drop_champion(
                f"no champion: the champion pointer {self.pointer_path} does not exist "
                "(champion_history publishes it when it decides the champion)"
            )
        if signature != self._pointer_seen:
            self._pointer_seen, self._pointed, self._pointer_problem = signature, None, None
            try:
                self.pointer_reads += 1
                pointer = champion_pointer.read(self.pointer_path)
            except champion_pointer.PointerError as exc:  # keep serving what is loaded
                self._pointer_problem = f"cannot read the champion pointer: {exc}"
                logger.error(self._pointer_problem)
                pointer = None
            if pointer is not None and pointer.model_name != self.model_name:
                self._pointer_problem = (
                    f"the champion pointer {self.pointer_path} names model "
                    f"{pointer.model_name!r}; this environment serves {self.model_name!r}"
                )
                logger.error(self._pointer_problem)
            elif pointer is not None:
                self._pointed = pointer.version(self.alias)
        if self._pointer_problem is not None:
            state.model_problem = self._pointer_problem
            return False
        version = self._pointed
        if version is None:
            return self._drop_champion(
                f"no champion: registered model {self.model_name!r} has no alias {self.alias!r} "
                f"in the champion pointer {self.pointer_path}"
            )
        if current is not None and current.version == version:
            state.model_problem = None
            return self._check_compiled(current)
        from mlops_assets.ml import registry

        if not self._registry_ready:
            self._use_registry()
            self._registry_ready = True
        failed = self._failed_version
        if failed and failed[0] == version and time.monotonic() - failed[1] < self.retry_seconds:
            return False
        try:
            model = registry.load_model_version(self.model_name, version, self.tracking_uri)
            model, compiled_problem = self._with_compiled(model, version)
            predictor = row_predictor(model)
            _check_model(model, predictor, self.spec, state.snapshot.store)
        except Exception as exc:  # a bad version must never stop the endpoint
            self._failed_version = (version, time.monotonic())
            state.model_problem = (
                f"cannot load {self.model_name!r} v{version} (alias {self.alias!r}): {exc}"
            )
            logger.error("%s (keeping %s)", state.model_problem, current and f"v{current.version}")
            return False
        self._failed_version = None
        champion = Champion(
            model=model,
            version=version,
            loaded_at=_now(),
            row_predictor=predictor,
            compiled_problem=compiled_problem,
        )
        state.snapshot = paired(champion, state.snapshot.store)
        state.model_problem = None
        _freeze_heap()
        logger.info(
            "champion loaded: %s v%s (%s, %s)",
            self.model_name,
            version,
            model.candidate or model.kind,
            model.predictor,
        )
        return True

    # Compiled library --------------------------------------------------------------------

    def _sidecar_signature(self, version: str) -> Signature | None:
        from mlops_assets.ml import compiled

        if self.compiled_dir is None:
            return None
        return file_signature(compiled.sidecar_path(version, self.compiled_dir))

    def _with_compiled(self, model: TabularModel, version: str) -> tuple[TabularModel, str]:
        """``model`` with the version's verified compiled library attached when there is one,
        and why not otherwise."""
        from mlops_assets.ml import compiled, registry

        self._compiled_seen = (version, self._sidecar_signature(version))
        if self.compiled_dir is None:
            return model, "no compiled models folder"
        if self._compiled_seen[1] is None:
            return model, "no compiled library yet"
        try:
            model_file = compiled.registry_model_file(self.model_name, version, self.tracking_uri)
        except registry.RegistryError as exc:
            return model, str(exc)
        return compiled.with_compiled(model, version, model_file, self.compiled_dir)

    def _check_compiled(self, current: Champion) -> bool:
        """Swap in the compiled library of the version in force once its sidecar appears (or
        changes); True when the snapshot was replaced. One ``stat`` per poll otherwise."""
        if current.predictor != "booster" or self.compiled_dir is None:
            return False
        version = current.version
        if (version, self._sidecar_signature(version)) == self._compiled_seen:
            return False
        state = self.state
        try:
            model, problem = self._with_compiled(current.model, version)
            predictor = row_predictor(model)
            _check_model(model, predictor, self.spec, state.snapshot.store)
        except Exception as exc:  # a bad library must never stop the endpoint: keep the booster
            problem = f"cannot use the compiled library of v{version}: {exc}"
            logger.error("%s (keeping the booster)", problem)
            model = current.model
        if model is current.model:
            if problem != current.compiled_problem:
                logger.warning("v%s keeps the booster: %s", version, problem)
                state.snapshot = replace_champion(
                    state.snapshot, replace(current, compiled_problem=problem)
                )
            return False
        champion = replace(current, model=model, row_predictor=predictor, compiled_problem="")
        state.snapshot = replace_champion(state.snapshot, champion)
        _freeze_heap()
        logger.info("champion v%s now predicts with its compiled library", version)
        return True
