"""The FastAPI app of the ingress: hayaku's error handlers, its middlewares in order, and an OpenAPI
spec that documents the errors hayaku actually sends; plus the helpers that put text in response headers.

The routes are added by the ingress (``deployments.ingress``).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from backends.errors import HayakuError
from deployments.http.errors import ErrorDetail, ErrorResponse, error_body, error_response, validation_message
from deployments.http.middleware import (
    BodyLimitMiddleware,
    InflightLimitMiddleware,
    JsonBodyMiddleware,
    RequestIdMiddleware,
    request_id_of,
)
from deployments.http.security import PUBLIC_PATHS, SecurityMiddleware

#: error statuses any route may answer, documented on every operation of the OpenAPI spec
ERROR_STATUSES = {
    "400": "Malformed JSON body, or empty text",
    "401": "Missing or invalid API key (when the server has one)",
    "413": "Body over max_body_bytes, or text over max_chars",
    "422": "A field is invalid; the message names it and says what is valid",
    "503": "A backend is unavailable, overloaded or past the request deadline",
}


_ANY_JSON = {"application/json": {"schema": {"type": "object"}}}


def _document_errors(app: FastAPI) -> None:
    """Makes the OpenAPI spec say what errors look like: FastAPI documents its own 422 shape
    (``{detail: [...]}``), which hayaku never sends."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = generate()
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for model in (ErrorDetail, ErrorResponse):
            components[model.__name__] = model.model_json_schema(ref_template="#/components/schemas/{model}")
            components[model.__name__].pop("$defs", None)
        ref = {"$ref": "#/components/schemas/ErrorResponse"}
        for path, ops in schema.get("paths", {}).items():
            for op in ops.values():
                responses = op.setdefault("responses", {})
                if path in PUBLIC_PATHS:
                    # /healthz: no key needed, no input; 503 carries the per-stage report, not an error body
                    responses.setdefault("503", {"description": "A stage is unhealthy", "content": _ANY_JSON})
                    continue
                for code, description in ERROR_STATUSES.items():
                    if code in ("400", "413") and "requestBody" not in op:
                        continue
                    own = responses.get(code)
                    if own is None or own.get("content", {}).get("application/json", {}).get("schema", {}).get(
                        "$ref", ""
                    ).endswith("/HTTPValidationError"):
                        responses[code] = {"description": description, "content": {"application/json": {"schema": ref}}}
        for unused in ("HTTPValidationError", "ValidationError"):
            if unused not in json.dumps(schema.get("paths", {})):
                components.pop(unused, None)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def create_app() -> FastAPI:
    """The FastAPI app with hayaku's error handling and limits (routes are added by the ingress)."""
    app = FastAPI(
        title="hayaku",
        version="0.1.0",
        description="English text to Japanese text and speech. Errors are JSON: {error: {type, message}}.",
    )
    _document_errors(app)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, err: RequestValidationError) -> JSONResponse:
        status, message = validation_message(err)
        kind = "malformed_json" if status == 400 else "invalid_request"
        return JSONResponse(error_body(kind, message, request_id_of(request)), status_code=status)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, err: StarletteHTTPException) -> JSONResponse:
        kinds = {400: "malformed_json", 404: "not_found", 405: "method_not_allowed", 413: "invalid_request"}
        kind = kinds.get(err.status_code, "http_error")
        message = str(err.detail)
        if message == "There was an error parsing the body":  # FastAPI's words for JSON Python cannot hold
            message = "malformed JSON body: nested too deeply, or a number with more than 4300 digits"
        return JSONResponse(error_body(kind, message, request_id_of(request)), status_code=err.status_code)

    @app.exception_handler(HayakuError)
    async def _hayaku(request: Request, err: HayakuError) -> JSONResponse:
        return error_response(err, request_id_of(request))

    app.add_middleware(BodyLimitMiddleware)
    app.add_middleware(JsonBodyMiddleware)
    # Outside the body readers, so an unauthorised request is refused before its body is read.
    app.add_middleware(SecurityMiddleware)
    # Outside auth and body reading: a request over the limit costs next to nothing.
    app.add_middleware(InflightLimitMiddleware)
    app.add_middleware(RequestIdMiddleware)
    return app


def header_text(text: str) -> str:
    """Percent-encodes text for a response header (headers are latin-1; translations are not)."""
    return quote(text, safe=" ,.!?'-")


def header_json(data: dict[str, Any]) -> str:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=True)
