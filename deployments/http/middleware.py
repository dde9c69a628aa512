"""The ASGI middlewares of the ingress besides security: request ids, body limits, JSON bodies, load shedding.

Each refuses what it must before the route runs (413 for a body over the limit, 503 with
Retry-After for a request over the in-flight limit) with hayaku's JSON error body.
"""

from __future__ import annotations

import uuid

from fastapi import Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from deployments.admission import ServiceRate
from deployments.http.errors import RETRY_AFTER_S, error_body

REQUEST_ID_HEADER = "x-request-id"


def request_id_of(request: Request) -> str:
    rid = request.headers.get(REQUEST_ID_HEADER)
    return rid or getattr(request.state, "request_id", None) or "-"


class BodyLimitMiddleware:
    """Answers 413 for bodies over ``app.state.max_body_bytes`` without reading them all.

    A declared Content-Length over the limit is refused before reading a byte; a chunked
    body is counted as it arrives and refused at the first chunk past the limit.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = getattr(scope.get("app"), "state", None)
        limit = int(getattr(state, "max_body_bytes", 1_048_576))
        headers = {k.lower(): v for k, v in scope.get("headers", [])}
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            rid = headers.get(REQUEST_ID_HEADER.encode(), b"").decode() or None
            resp = JSONResponse(
                error_body("invalid_request", _too_large(int(declared), limit), rid),
                status_code=413,
                headers={"connection": "close"},
            )
            await resp(scope, receive, send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > limit:
                    raise StarletteHTTPException(413, _too_large(seen, limit))
            return msg

        await self.app(scope, counted, send)


def overloaded_response(limit: int, request_id: str | None, why: str | None = None) -> JSONResponse:
    """503 + Retry-After for a request refused because the ingress is at its limit of requests in flight."""
    why = why or f"the server is at its limit of {limit} requests in flight (limits.max_inflight)"
    return JSONResponse(
        error_body("overloaded", f"{why}; retry after {RETRY_AFTER_S} s", request_id),
        status_code=503,
        headers={"retry-after": str(RETRY_AFTER_S)},
    )


class InflightLimitMiddleware:
    """Sheds load: answers 503 + Retry-After at once instead of queueing what cannot be served.

    Two limits on POSTs in flight: ``app.state.max_inflight`` (fixed, from the config) and the
    measured one (``deployments.admission``): as many as the observed service rate completes within the
    request deadline (``app.state.deadline_s``). Without them extra requests wait in Ray Serve's
    queues (unbounded unless the YAML sets ``max_queued_requests``, whose 503 is plain text). Only
    POSTs (the work routes) count, so /healthz and /v1/graph keep answering under load; a streamed
    response counts until its last byte is sent, and only successful ones count as served.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.rate = ServiceRate()

    @property
    def inflight(self) -> int:
        return self.rate.inflight

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        state = getattr(scope.get("app"), "state", None)
        limit = getattr(state, "max_inflight", None)
        deadline = getattr(state, "deadline_s", None)
        if scope["type"] != "http" or scope.get("method") != "POST" or not (limit or deadline):
            await self.app(scope, receive, send)
            return
        capacity = self.rate.capacity(deadline) if deadline else None
        why = None
        if limit and self.inflight >= limit:
            why = f"the server is at its limit of {limit} requests in flight (limits.max_inflight)"
        elif capacity is not None and self.inflight >= capacity:
            why = (
                f"the server has {self.inflight} requests in flight and serves {self.rate.rate() or 0:.2g} per second:"
                f" one more would not finish within the {deadline:g} s deadline (limits.request_timeout_s)"
            )
        if why:
            headers = {k.lower(): v for k, v in scope.get("headers", [])}
            rid = headers.get(REQUEST_ID_HEADER.encode(), b"").decode("latin-1") or None
            await overloaded_response(int(limit or capacity or 0), rid, why)(scope, receive, send)
            return
        status = 500

        async def watched(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        self.rate.started()
        try:
            await self.app(scope, receive, watched)
        finally:
            self.rate.finished(served=status < 400)


def _too_large(size: int, limit: int) -> str:
    return f"request body is {size}+ bytes; the limit is max_body_bytes={limit}"


class JsonBodyMiddleware:
    """Reads POST bodies as JSON whatever Content-Type the client sent with them.

    Every route takes JSON, and `curl -d '{...}'` (the README's first request) labels its body
    application/x-www-form-urlencoded; without this FastAPI would refuse it with a 422.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("method") == "POST":
            headers = scope.get("headers", [])
            ctype = next((v for k, v in headers if k.lower() == b"content-type"), b"")
            if not ctype or ctype.split(b";")[0].strip().lower() in (
                b"application/x-www-form-urlencoded",
                b"text/plain",
            ):
                scope = dict(scope)
                scope["headers"] = [(k, v) for k, v in headers if k.lower() != b"content-type"] + [
                    (b"content-type", b"application/json")
                ]
        await self.app(scope, receive, send)


class RequestIdMiddleware:
    """Gives every request an id. Behind Ray Serve the proxy already assigned one (and adds the
    response header itself), so this only fills in when the app runs without Ray's proxy."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or any(k.lower() == REQUEST_ID_HEADER.encode() for k, _ in scope["headers"]):
            await self.app(scope, receive, send)
            return
        rid = uuid.uuid4().hex
        scope = dict(scope)
        scope["headers"] = [*scope["headers"], (REQUEST_ID_HEADER.encode(), rid.encode())]

        async def with_id(msg: Message) -> None:
            if msg["type"] == "http.response.start":
                msg = dict(msg)
                msg["headers"] = [*msg.get("headers", []), (b"x-request-id", rid.encode())]
            await send(msg)

        await self.app(scope, receive, with_id)
