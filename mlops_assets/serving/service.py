"""What the endpoint does, without the web framework: :class:`PredictionService` answers a
/predict body (validate, look the keys up, predict, log) and reports readiness and what is
loaded. :mod:`mlops_assets.serving.app` wires it to routes.

The request path stays small: the body is decoded and validated in one pass by the request
schema (:mod:`mlops_assets.serving.protocol`), the features come from an in-memory dict of the
online store, and a one-row request goes through LightGBM's single-row API
(:mod:`mlops_assets.serving.fastpath`; no pandas). Each request reads the snapshot reference
once, at its start (see :mod:`mlops_assets.serving.state` for switching). Every answer, errors
included, becomes one request log entry (:mod:`mlops_assets.storage.request_log`), written
before the answer is sent and stamped with the pipeline clock
(:mod:`mlops_assets.serving.clock`).
"""

from __future__ import annotations

import itertools
import logging
import os
import time
from collections.abc import Iterator
from typing import Any, cast

import msgspec

from mlops_assets.dataset import DatasetSpec
from mlops_assets.environments import Settings
from mlops_assets.serving import protocol
from mlops_assets.serving.clock import serving_clock
from mlops_assets.serving.config import ServingConfig
from mlops_assets.serving.protocol import (
    INTERNAL_ERROR,
    NO_CHAMPION,
    NOT_READY,
    RequestError,
    RequestSchema,
)
from mlops_assets.serving.state import Refresher, ServingState
from mlops_assets.storage.request_log import RequestLog, iso_utc

logger = logging.getLogger(__name__)
_encode = msgspec.json.Encoder().encode


def _request_ids() -> Iterator[str]:
    """Request ids: 32 hex digits, a random half for the process and a counter, unique across
    processes and restarts without a system call per request."""
    prefix = os.urandom(8).hex()
    return (f"{prefix}{n:016x}" for n in itertools.count())


def _raw_fields(body: bytes) -> tuple[Any, Any]:
    """``keys`` and ``overrides`` of a refused body as sent, for its log entry (None for what
    is not there or not JSON)."""
    try:
        payload = msgspec.json.decode(body)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return None, None
    if not isinstance(payload, dict):
        return None, None
    keys = payload.get("keys")
    return (keys if isinstance(keys, list) else None), payload.get("overrides")


class PredictionService:
    """The champion and online store of one environment, served and logged."""

    def __init__(self, settings: Settings, spec: DatasetSpec, config: ServingConfig):
        self.settings = settings
        self.spec = spec
        self.config = config
        self.schema = RequestSchema(spec, config.max_keys)
        self.state = ServingState()
        self.request_log = RequestLog(
            settings.request_log_dir, max_entry_bytes=config.max_log_entry_bytes
        )
        self.clock = serving_clock(settings.as_of)
        self.refresher = Refresher(
            self.state,
            spec,
            store_path=settings.online_store_path,
            pointer_path=settings.champion_pointer_path,
            tracking_uri=settings.mlflow_tracking_uri,
            model_name=settings.registered_model_name,
            alias=config.alias,
            model_poll_seconds=config.model_poll_seconds,
            store_poll_seconds=config.store_poll_seconds,
            retry_seconds=config.retry_seconds,
            compiled_dir=settings.compiled_models_dir,
        )
        self.started_at = time.monotonic()
        self._request_ids = _request_ids()

    def start(self) -> None:
        self.refresher.start()
        settings = self.settings
        logger.info(
            "serving %s (%s) alias %r; champion pointer %s; online store %s; request log %s; "
            "clock %s",
            settings.registered_model_name,
            settings.env,
            self.config.alias,
            settings.champion_pointer_path,
            settings.online_store_path,
            settings.request_log_dir,
            f"from MLOPS_AS_OF={settings.as_of.isoformat()}" if settings.as_of else "wall",
        )

    def stop(self) -> None:
        self.refresher.stop()
        self.request_log.close()
        logger.info("request log closed: %d entries written", self.request_log.written)

    def answer(self, body: bytes | RequestError, started: float) -> tuple[int, bytes, str]:
        """Status, JSON body and request id for a /predict body (or the error met reading it),
        with its request log entry written. Synchronous: nothing here waits on the loop."""
        snapshot = self.state.snapshot
        request_id = next(self._request_ids)
        ts = self.clock()
        keys: Any = None
        overrides: Any = None
        features: list[Any] | None = None
        predictions: list[float] | None = None
        champion = snapshot.champion
        version = champion.version if champion is not None else None
        predictor = champion.predictor if champion is not None else None
        try:
            if isinstance(body, RequestError):
                raise body
            try:
                parsed = self.schema.parse(body)
            except RequestError:
                keys, overrides = _raw_fields(body)
                raise
            keys, overrides = parsed.key_objects, parsed.overrides or None
            if champion is None:
                raise RequestError(NO_CHAMPION, self.state.model_problem or "no champion loaded")
            store = snapshot.store
            if store is None:
                raise RequestError(NOT_READY, self.state.store_problem or "no online store")
            rows = store.rows
            found = [rows.get(key) for key in parsed.keys]
            if None in found:
                missing = [k for k, row in zip(parsed.keys, found, strict=True) if row is None]
                raise protocol.missing_keys_error(missing, self.schema.serving_keys, len(found))
            present = cast("list[dict[str, Any]]", found)
            if parsed.overrides:
                features = [protocol.feature_row(row, parsed.overrides) for row in present]
            else:
                features = present
            model = champion.model
            if len(found) == 1 and champion.row_predictor is not None:
                row = None if parsed.overrides else (snapshot.encoded or {}).get(parsed.keys[0])
                if row is None:
                    row = model.encode_rows(features)[0]
                predictions = [champion.row_predictor.predict(row)]
            else:
                predictions = model.predict_matrix(model.encode_rows(features)).tolist()
            status, error = 200, None
            content = _encode(
                {
                    "predictions": [
                        {"key": key, "prediction": value}
                        for key, value in zip(parsed.key_objects, predictions, strict=True)
                    ],
                    "model_version": version,
                    "predictor": predictor,
                    "request_id": request_id,
                }
            )
        except RequestError as exc:
            status, error = exc.status, exc.code
            content = _encode(exc.body(request_id))
        except Exception as exc:  # never crash on input: answer 500 and log the request
            logger.exception("request %s failed", request_id)
            status, error = 500, INTERNAL_ERROR
            content = _encode(
                RequestError(INTERNAL_ERROR, f"{type(exc).__name__}: {exc}").body(request_id)
            )
        self.request_log.append(
            {
                "ts": ts,
                "request_id": request_id,
                "status": status,
                "error": error,
                "keys": keys,
                "overrides": overrides,
                "features": features,
                "predictions": predictions,
                "model_version": version,
                "predictor": predictor,
                "latency_ms": round((time.perf_counter() - started) * 1000.0, 4),
            }
        )
        return status, content, request_id

    def health(self) -> dict[str, Any]:
        uptime = round(time.monotonic() - self.started_at, 3)
        return {"status": "ok", "pid": os.getpid(), "uptime_s": uptime}

    def readiness(self) -> tuple[int, dict[str, Any]]:
        """200 and what is loaded, or 503 and the reasons it is not ready."""
        reasons = self.state.not_ready_reasons()
        if reasons:
            return 503, {"error": NOT_READY, "detail": "; ".join(reasons), "reasons": reasons}
        snapshot = self.state.snapshot
        champion, store = snapshot.champion, snapshot.store
        assert champion is not None and store is not None, "ready means both are loaded"
        return 200, {
            "status": "ready",
            "model_version": champion.version,
            "online_store_rows": store.row_count,
        }

    def describe(self) -> dict[str, Any]:
        """The loaded champion, the online store, the request log and the clock (``/model``)."""
        state, settings, log = self.state, self.settings, self.request_log
        snapshot = state.snapshot
        champion = snapshot.champion.describe() if snapshot.champion else {}
        return {
            "env": settings.env,
            "model_name": settings.registered_model_name,
            "alias": self.config.alias,
            "version": champion.get("version"),
            "candidate": champion.get("candidate"),
            "kind": champion.get("kind"),
            "predictor": champion.get("predictor"),
            "compiled_problem": champion.get("compiled_problem"),
            "loaded_at": champion.get("loaded_at"),
            "feature_columns": champion.get("feature_columns"),
            "model_problem": state.model_problem,
            "model_checked_at": state.model_checked_at and state.model_checked_at.isoformat(),
            "champion_pointer": str(settings.champion_pointer_path),
            "online_store": {
                **(snapshot.store.describe() if snapshot.store else {"path": None}),
                "watched_path": str(settings.online_store_path),
                "problem": state.store_problem,
                "checked_at": state.store_checked_at and state.store_checked_at.isoformat(),
            },
            "request_log": {
                "dir": str(log.log_dir),
                "written": log.written,
                "pending": log.pending,
                "dropped": log.dropped,
                "capped": log.capped,
                "max_entry_bytes": log.max_entry_bytes,
            },
            "clock": {
                "as_of": settings.as_of and settings.as_of.isoformat(),
                "now": iso_utc(self.clock()),
            },
            "ready": not state.not_ready_reasons(),
        }
