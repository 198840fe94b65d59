"""The /predict request and response: one schema, built from the dataset spec, that validates
every request (msgspec decodes and checks the body in one pass) and documents it in
``/openapi.json`` (its JSON schema is generated from the same types).

Request::

    {"keys": [{"network": "ESPN", "daypart": "prime", "creative_id": "cr_80"}, ...],
     "overrides": {"spend": 5000.0}}

- ``keys``: 1..max_keys objects, each with exactly the dataset's serving key columns, strings.
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

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

import msgspec
from msgspec import UNSET, Meta, UnsetType

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
_WHERE = re.compile(r"^(?P<reason>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)


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
class PredictRequest:
    """A validated request: key tuples in serving-key order, the key objects echoed in the
    answer and the overrides to apply (only the columns the request named)."""

    keys: list[tuple[str, ...]]
    key_objects: list[dict[str, str]]
    overrides: dict[str, Any]


class KeyPrediction(msgspec.Struct):
    key: Annotated[dict[str, str], Meta(description="The serving key, as requested.")]
    prediction: Annotated[float, Meta(description="The champion's prediction for this key.")]


class PredictResponse(msgspec.Struct):
    """Predictions in request order, with the champion version that made all of them."""

    predictions: list[KeyPrediction]
    model_version: str
    request_id: str


class ErrorResponse(msgspec.Struct):
    """Every 4xx/5xx answer of the endpoint."""

    error: Annotated[str, Meta(description="Error code: " + ", ".join(ERROR_CODES))]
    detail: Annotated[str, Meta(description="What is wrong, naming the field, key or limit.")]
    request_id: str | None = None
    missing: (
        Annotated[
            list[dict[str, str]],
            Meta(description=f"key_not_found only: up to {MAX_MISSING_LISTED} missing keys."),
        ]
        | None
    ) = None


class RequestSchema:
    """The request types of one dataset and the decoder that validates bodies against them."""

    def __init__(self, spec: DatasetSpec, max_keys: int):
        self.serving_keys = tuple(spec.serving_keys)
        self.max_keys = max_keys
        numeric = set(spec.numeric_features + spec.history_feature_columns)
        keyed = set(spec.serving_keys)
        self.overridable = tuple(c for c in spec.model_feature_columns if c not in keyed)
        key_type = msgspec.defstruct(
            "ServingKey",
            [(name, str) for name in self.serving_keys],
            forbid_unknown_fields=True,
        )
        key_type.__doc__ = f"One {spec.event_noun} key: exactly the serving key columns, strings."
        overrides_type = msgspec.defstruct(
            "Overrides",
            [
                (name, (float if name in numeric else str) | UnsetType, UNSET)
                for name in self.overridable
            ],
            forbid_unknown_fields=True,
        )
        overrides_type.__doc__ = (
            "One object applied to every key: model feature column -> value replacing the online "
            "store's value (numbers for numeric features, strings for categorical ones; serving "
            "key columns cannot be overridden)."
        )
        self.body_type = msgspec.defstruct(
            "PredictBody",
            [
                (
                    "keys",
                    Annotated[
                        list[key_type],  # type: ignore[valid-type]
                        Meta(
                            min_length=1,
                            max_length=max_keys,
                            description=f"Serving keys ({', '.join(self.serving_keys)}), at "
                            f"most {max_keys} (max_keys) per request.",
                            examples=[[dict.fromkeys(self.serving_keys, "...")]],
                        ),
                    ],
                ),
                ("overrides", overrides_type | None, None),  # type: ignore[valid-type]
            ],
            forbid_unknown_fields=True,
        )
        self.body_type.__doc__ = (
            "A prediction request: serving keys and optional what-if overrides for all of them."
        )
        self._decoder = msgspec.json.Decoder(self.body_type)

    def parse(self, body: bytes) -> PredictRequest:
        """The validated request; RequestError naming the first problem and its fix."""
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise RequestError(MALFORMED_JSON, f"the body is not UTF-8 text: {exc}") from None
        try:
            # body_type is built from the dataset spec at run time: its fields are not static.
            decoded: Any = self._decoder.decode(text)
        except msgspec.ValidationError as exc:
            raise self._refusal(str(exc)) from None
        except RecursionError:
            raise RequestError(MALFORMED_JSON, "the body's JSON is nested too deeply") from None
        except msgspec.DecodeError as exc:
            if not body.strip():
                detail = "the body is empty; send a JSON object"
                raise RequestError(MALFORMED_JSON, detail) from None
            raise RequestError(
                MALFORMED_JSON,
                f"the body is not valid JSON ({exc}); send a JSON object as UTF-8 text "
                "(NaN and Infinity are not JSON)",
            ) from None
        keys = [msgspec.structs.astuple(key) for key in decoded.keys]
        objects = [dict(zip(self.serving_keys, key, strict=True)) for key in keys]
        overrides: dict[str, Any] = {}
        if decoded.overrides is not None:
            for name in self.overridable:
                value = getattr(decoded.overrides, name)
                if value is not UNSET:
                    overrides[name] = value
        return PredictRequest(keys=keys, key_objects=objects, overrides=overrides)

    def _refusal(self, message: str) -> RequestError:
        """msgspec's validation message as the endpoint's error code, field and fix."""
        match = _WHERE.match(message)
        assert match is not None, f"a msgspec message of another form: {message}"
        reason, path = match["reason"], match["path"] or ""
        where = path.lstrip(".") or "the body"
        wanted = ", ".join(self.serving_keys)
        if path.startswith(".keys["):
            fix = f"a key has exactly the string columns: {wanted}"
            return RequestError(INVALID_KEY, f"{where}: {reason}; {fix}")
        if path.startswith(".overrides"):
            if reason == "Number out of range":
                reason = "must be a finite number"
            fix = (
                f"the overridable columns are: {', '.join(self.overridable)} (serving key "
                "columns cannot be overridden: ask for that key instead)"
            )
            return RequestError(INVALID_OVERRIDE, f"{where}: {reason}; {fix}")
        if path == ".keys" and "length <=" in reason:
            return RequestError(
                TOO_MANY_KEYS,
                f"more keys in one request than the limit of {self.max_keys} (max_keys); "
                "split the request",
            )
        fix = "send an object with 'keys' (a list of serving key objects) and optional 'overrides'"
        return RequestError(INVALID_BODY, f"{where}: {reason}; {fix}")

    def json_schemas(self) -> dict[str, Any]:
        """JSON schemas of the request, answer and error types, for ``/openapi.json``."""
        _, components = msgspec.json.schema_components(
            [self.body_type, PredictResponse, ErrorResponse],
            ref_template="#/components/schemas/{name}",
        )
        return components


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


def error_responses() -> dict[int, str]:
    """Every error status of /predict with the meaning of its codes, for ``/openapi.json``."""
    by_status: dict[int, list[str]] = {}
    for code, (status, meaning) in ERROR_CODES.items():
        by_status.setdefault(status, []).append(f"`{code}`: {meaning}")
    return {status: "; ".join(lines) for status, lines in sorted(by_status.items())}


def feature_row(row: Mapping[str, Any], overrides: Mapping[str, Any]) -> Mapping[str, Any]:
    """A store row with the overrides applied (the store's row itself when there are none)."""
    return {**row, **overrides} if overrides else row
