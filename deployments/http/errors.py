"""Errors as JSON: the one error body every answer uses, and the status each exception maps to.

Errors are always ``{"error": {"type", "message"}}``: ``InvalidRequest`` keeps its status
(400/413/422), ``BackendUnavailable``/``BackendTimeout`` are 503, anything else is a bug:
logged with its traceback, answered 500 with a generic message. Errors raised in another
replica arrive wrapped by Ray; ``unwrap`` digs out the original so the status is right.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from backends.base import short_repr
from backends.errors import BackendTimeout, BackendUnavailable, BadOutput, HayakuError, InvalidRequest
from deployments.http.redaction import RedactRequestText

log = logging.getLogger("hayaku.http")
# A bug's traceback is logged here; the filter withholds the messages in it (they may quote request text).
log.addFilter(RedactRequestText())


def unwrap(exc: BaseException) -> BaseException:
    """The original exception inside Ray's wrappers (RayTaskError and friends)."""
    seen = set()
    while id(exc) not in seen:
        seen.add(id(exc))
        cause = getattr(exc, "cause", None)
        if isinstance(cause, BaseException):
            exc = cause
            continue
        if not isinstance(exc, HayakuError) and isinstance(exc.__cause__, HayakuError):
            exc = exc.__cause__
            continue
        break
    return exc


def error_body(kind: str, message: str, request_id: str | None) -> dict[str, Any]:
    return {"error": {"type": kind, "message": message}, "request_id": request_id}


#: seconds a back-pressure or replica-loss 503 asks the client to wait before retrying
RETRY_AFTER_S = 1
#: Ray errors (matched by class name: this module does not import Ray) that mean "busy or restarting, retry":
#: a full handle queue, a deployment without replicas, a replica that died while serving the request
RAY_RETRYABLE = {
    "BackPressureError": "overloaded",
    "DeploymentUnavailableError": "unavailable",
    "RayActorError": "replica_lost",
    "ActorUnavailableError": "replica_lost",
}


def _ray_retryable(exc: BaseException) -> str | None:
    return next((RAY_RETRYABLE[c.__name__] for c in type(exc).__mro__ if c.__name__ in RAY_RETRYABLE), None)


def error_response(exc: BaseException, request_id: str | None) -> JSONResponse:
    """Maps an exception (possibly Ray-wrapped) to its status and JSON error body."""
    exc = unwrap(exc)
    retryable = _ray_retryable(exc)
    if retryable is not None:
        log.warning("request %s: %s (%s)", request_id, retryable, type(exc).__name__)
        state = "busy" if retryable == "overloaded" else "restarting"
        message = f"a stage replica is {state}; retry after {RETRY_AFTER_S} s"
        return JSONResponse(
            error_body(retryable, message, request_id), status_code=503, headers={"retry-after": str(RETRY_AFTER_S)}
        )
    if isinstance(exc, InvalidRequest):
        status, kind, message = exc.status, exc.kind, str(exc)
    elif isinstance(exc, (BackendTimeout, BadOutput)):
        # a slow or garbled answer may not repeat; a backend that cannot run here will, so no Retry-After for it
        body = error_body(exc.kind, str(exc), request_id)
        return JSONResponse(body, status_code=503, headers={"retry-after": str(RETRY_AFTER_S)})
    elif isinstance(exc, BackendUnavailable):
        status, kind, message = 503, exc.kind, str(exc)
    elif isinstance(exc, HayakuError):
        status, kind, message = 500, exc.kind, str(exc)
    else:
        log.error("request %s failed with a bug", request_id, exc_info=(type(exc), exc, exc.__traceback__))
        status, kind = 500, "internal_error"
        message = f"internal error; the server log has the traceback (request id {request_id})"
    return JSONResponse(error_body(kind, message, request_id), status_code=status)


def validation_message(err: RequestValidationError) -> tuple[int, str]:
    parts = []
    status = 422
    for e in err.errors():
        loc = [str(p) for p in e.get("loc", ()) if p != "body"]
        where = ".".join(loc) or "body"
        if e.get("type") == "json_invalid":
            status = 400
            ctx = e.get("ctx") or {}
            parts.append(f"malformed JSON body: {ctx.get('error', e.get('msg'))}")
            continue
        if e.get("type") == "extra_forbidden":
            parts.append(f"{where}: unknown field")
            continue
        given = e.get("input")
        shown = short_repr(given, 80) if not isinstance(given, dict) else type(given).__name__
        parts.append(f"{where}: {e.get('msg')} (got {shown})")
    return status, "; ".join(parts) or "invalid request"


class ErrorDetail(BaseModel):
    type: str = Field(..., description="Machine-readable kind, e.g. invalid_request, unauthorized, timeout.")
    message: str = Field(..., description="What went wrong and what would be valid.")


class ErrorResponse(BaseModel):
    """The body of every error answer."""

    error: ErrorDetail
    request_id: str | None = Field(None, description="The request's id (also in the X-Request-Id header).")
