"""The /predict request and response: parsing, validation and the OpenAPI schema.

The request path parses the body with the standard ``json`` module and checks it by hand (a few
microseconds for a one-key request); the pydantic models below only describe the shapes for
``/openapi.json`` and are never run on a request.

Request::

    {"keys": [{"network": "ESPN", "daypart": "prime", "creative_id": "cr_80"}, ...],
     "overrides": {"spend": 5000.0}}

- ``keys``: 1..max_keys objects, each with exactly the dataset's serving key columns, string
  values.
- ``overrides`` (optional): one object applied to every key: model feature column -> value that
  replaces the online store's value before predicting (what-if). Numeric features take numbers,
  categorical ones strings. Serving key columns cannot be overridden (ask for that key instead).

Response (200)::

    {"predictions": [{"key": {...}, "prediction": 812.4}, ...],
     "model_version": "7", "request_id": "9f..."}

Errors: ``{"error": "<code>", "detail": "<what is wrong, naming the field, key or limit>",
"request_id": "..."}`` with the codes of :data:`ERROR_CODES`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from mlops_assets.dataset import DatasetSpec

MALFORMED_JSON = "malformed_json"
INVALID_BODY = "invalid_body"
INVALID_KEY = "invalid_key"
INVALID_OVERRIDE = "invalid_override"
KEY_NOT_FOUND = "key_not_found"
TOO_MANY_KEYS = "too_many_keys"
BODY_TOO_LARGE = "body_too_large"
UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
REQUEST_TIMEOUT = "request_timeout"
NO_CHAMPION = "no_champion"
NOT_READY = "not_ready"
INTERNAL_ERROR = "internal_error"
ERROR_CODES = {
    MALFORMED_JSON: (400, "the body is not valid JSON (NaN and Infinity are not JSON)"),
    INVALID_BODY: (422, "the body is not an object with 'keys' (and optional 'overrides')"),
    INVALID_KEY: (422, "a key is not an object of exactly the serving key columns, strings"),
    INVALID_OVERRIDE: (422, "an override names an unknown column or has the wrong type"),
    KEY_NOT_FOUND: (404, "a key is not in the online store (the detail names it)"),
    TOO_MANY_KEYS: (413, "more keys than max_keys in one request"),
    BODY_TOO_LARGE: (413, "the body is larger than max_body_bytes"),
    UNSUPPORTED_MEDIA_TYPE: (415, "the Content-Type is not JSON; send application/json"),
    REQUEST_TIMEOUT: (408, "the body did not arrive within read_timeout_seconds"),
    NO_CHAMPION: (503, "no champion model is loaded"),
    NOT_READY: (503, "the online store is not loaded"),
    INTERNAL_ERROR: (500, "an unexpected error; the request log has the request"),
}
# A 404 lists at most this many of the missing keys.
MAX_MISSING_LISTED = 20


class RequestError(Exception):
    """A request the endpoint refuses: HTTP status, error code and a message naming the problem."""

    def __init__(self, code: str, detail: str, status: int | None = None, **extra: Any):
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.status = status if status is not None else ERROR_CODES[code][0]
        self.extra = extra

    def body(self, request_id: str) -> dict[str, Any]:
        return {"error": self.code, "detail": self.detail, **self.extra, "request_id": request_id}


@dataclass(frozen=True)
class FeatureSchema:
    """What a request may name: the serving key columns and the kind of each model feature."""

    serving_keys: tuple[str, ...]
    numeric: frozenset[str]
    categorical: frozenset[str]
    columns: tuple[str, ...] = field(default=())

    @classmethod
    def from_spec(cls, spec: DatasetSpec) -> FeatureSchema:
        return cls(
            serving_keys=tuple(spec.serving_keys),
            numeric=frozenset(spec.numeric_features + spec.history_feature_columns),
            categorical=frozenset(spec.categorical_features),
            columns=tuple(spec.model_feature_columns),
        )


@dataclass(frozen=True)
class PredictRequest:
    """A validated request: key tuples in serving-key order and the overrides to apply."""

    keys: list[tuple[str, ...]]
    key_objects: list[dict[str, str]]
    overrides: dict[str, Any]


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _short(value: Any, limit: int = 60) -> str:
    text = json.dumps(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def load_json(body: bytes) -> Any:
    """The parsed body; RequestError(malformed_json) naming the position of the problem."""
    if not body.strip():
        raise RequestError(MALFORMED_JSON, "the request body is empty; send a JSON object")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RequestError(MALFORMED_JSON, f"the body is not UTF-8 text: {exc}") from exc
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except ValueError as exc:
        raise RequestError(MALFORMED_JSON, f"the body is not valid JSON: {exc}") from exc
    except RecursionError:
        raise RequestError(MALFORMED_JSON, "the body's JSON is nested too deeply") from None


def parse_predict(payload: Any, schema: FeatureSchema, max_keys: int) -> PredictRequest:
    """Validate a parsed body; RequestError naming the first problem found."""
    if not isinstance(payload, dict):
        raise RequestError(
            INVALID_BODY,
            f"the body must be a JSON object with 'keys', got {_type_name(payload)}",
        )
    unknown = [name for name in payload if name not in ("keys", "overrides")]
    if unknown:
        raise RequestError(
            INVALID_BODY,
            f"unknown field {unknown[0]!r} in the body; the fields are 'keys' and 'overrides'",
        )
    if "keys" not in payload:
        raise RequestError(INVALID_BODY, "the body lacks 'keys': a list of serving key objects")
    raw_keys = payload["keys"]
    if not isinstance(raw_keys, list):
        raise RequestError(
            INVALID_BODY, f"'keys' must be a list of objects, got {_type_name(raw_keys)}"
        )
    if not raw_keys:
        raise RequestError(INVALID_BODY, "'keys' is empty; send at least one key")
    if len(raw_keys) > max_keys:
        raise RequestError(
            TOO_MANY_KEYS,
            f"{len(raw_keys)} keys in one request; the limit is {max_keys} (max_keys)",
        )
    keys, key_objects = parse_keys(raw_keys, schema.serving_keys)
    overrides = parse_overrides(payload.get("overrides"), schema)
    return PredictRequest(keys=keys, key_objects=key_objects, overrides=overrides)


def parse_keys(
    raw_keys: Sequence[Any], serving_keys: tuple[str, ...]
) -> tuple[list[tuple[str, ...]], list[dict[str, str]]]:
    """Key tuples (in ``serving_keys`` order) and the key objects echoed in the response."""
    n = len(serving_keys)
    wanted = ", ".join(serving_keys)
    keys: list[tuple[str, ...]] = []
    objects: list[dict[str, str]] = []
    for i, raw in enumerate(raw_keys):
        if not isinstance(raw, dict):
            raise RequestError(
                INVALID_KEY, f"keys[{i}] must be an object of {wanted}, got {_type_name(raw)}"
            )
        try:
            key = tuple(raw[name] for name in serving_keys)
        except KeyError as exc:
            raise RequestError(
                INVALID_KEY,
                f"keys[{i}] lacks serving key column {exc.args[0]!r} (a key has: {wanted})",
            ) from None
        if len(raw) != n:
            extra = next(name for name in raw if name not in serving_keys)
            raise RequestError(
                INVALID_KEY,
                f"keys[{i}] has unknown column {extra!r}; a key has exactly: {wanted}",
            )
        for name, value in zip(serving_keys, key, strict=True):
            if not isinstance(value, str):
                raise RequestError(
                    INVALID_KEY,
                    f"keys[{i}].{name} must be a string, got {_type_name(value)} {_short(value)}",
                )
        keys.append(key)
        objects.append(raw)
    return keys, objects


def _finite(value: int | float) -> bool:
    """Whether a JSON number is a finite float (an integer beyond float range is not)."""
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def parse_overrides(raw: Any, schema: FeatureSchema) -> dict[str, Any]:
    """The overrides, checked: known non-key model features, numbers or strings by kind."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise RequestError(
            INVALID_OVERRIDE,
            f"'overrides' must be an object of feature column -> value, got {_type_name(raw)}",
        )
    for name, value in raw.items():
        if name in schema.serving_keys:
            raise RequestError(
                INVALID_OVERRIDE,
                f"overrides.{name} is a serving key column; ask for that key instead",
            )
        if name in schema.numeric:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise RequestError(
                    INVALID_OVERRIDE,
                    f"overrides.{name} must be a number, got {_type_name(value)} {_short(value)}",
                )
            if not _finite(value):
                raise RequestError(INVALID_OVERRIDE, f"overrides.{name} must be finite")
        elif name in schema.categorical:
            if not isinstance(value, str):
                raise RequestError(
                    INVALID_OVERRIDE,
                    f"overrides.{name} must be a string, got {_type_name(value)} {_short(value)}",
                )
        else:
            known = ", ".join(c for c in schema.columns if c not in schema.serving_keys)
            raise RequestError(
                INVALID_OVERRIDE,
                f"overrides.{name} is not a model feature column; known: {known}",
            )
    return raw


def missing_keys_error(
    missing: list[tuple[str, ...]], serving_keys: tuple[str, ...], total: int
) -> RequestError:
    """The 404 naming the keys the online store does not hold."""
    listed = [dict(zip(serving_keys, key, strict=True)) for key in missing[:MAX_MISSING_LISTED]]
    first = ", ".join(f"{k}={v!r}" for k, v in listed[0].items())
    more = f" (and {len(missing) - 1} more of {total} keys)" if len(missing) > 1 else ""
    return RequestError(
        KEY_NOT_FOUND,
        f"key {{{first}}} is not in the online store{more}",
        missing=listed,
    )


# OpenAPI description only (see the module docstring): never validated on the request path.


class PredictBody(BaseModel):
    """A prediction request: serving keys and optional what-if overrides for all of them."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "keys": [{"network": "ESPN", "daypart": "prime", "creative_id": "cr_80"}],
                    "overrides": {"spend": 5000.0},
                }
            ]
        },
    )

    keys: list[dict[str, str]] = Field(
        min_length=1,
        description=(
            "Serving keys: each object has exactly the dataset's serving key columns "
            "(default dataset: network, daypart, creative_id), string values. At most max_keys "
            "(default 1000) per request."
        ),
    )
    overrides: dict[str, float | str] | None = Field(
        default=None,
        description=(
            "One object applied to every key: model feature column -> value replacing the "
            "online store's value (numbers for numeric features, strings for categorical ones; "
            "serving key columns cannot be overridden)."
        ),
    )


class KeyPrediction(BaseModel):
    key: dict[str, str] = Field(description="The serving key, as requested.")
    prediction: float = Field(description="The champion's prediction for this key.")


class PredictResponse(BaseModel):
    """Predictions in request order, with the champion version that made all of them."""

    predictions: list[KeyPrediction]
    model_version: str
    request_id: str


class ErrorResponse(BaseModel):
    """Every 4xx/5xx answer of the endpoint."""

    error: str = Field(description="Error code: " + ", ".join(ERROR_CODES))
    detail: str = Field(description="What is wrong, naming the field, key or limit.")
    request_id: str | None = None
    missing: list[dict[str, str]] | None = Field(
        default=None, description=f"key_not_found only: up to {MAX_MISSING_LISTED} missing keys."
    )


def openapi_responses() -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` of the /predict route: the 200 shape and every error status."""
    by_status: dict[int, list[str]] = {}
    for code, (status, meaning) in ERROR_CODES.items():
        by_status.setdefault(status, []).append(f"`{code}`: {meaning}")
    responses: dict[int | str, dict[str, Any]] = {
        200: {"model": PredictResponse, "description": "One prediction per key, in order."}
    }
    for status, lines in sorted(by_status.items()):
        responses[status] = {"model": ErrorResponse, "description": "; ".join(lines)}
    return responses


def request_body_schema() -> dict[str, Any]:
    """The JSON schema of :class:`PredictBody` for the route's ``openapi_extra``."""
    return PredictBody.model_json_schema(ref_template="#/components/schemas/{model}")


def feature_row(row: Mapping[str, Any], overrides: Mapping[str, Any]) -> Mapping[str, Any]:
    """A store row with the overrides applied (the store's row itself when there are none)."""
    return {**row, **overrides} if overrides else row
