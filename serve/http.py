"""The HTTP surface: request models, JSON errors, body limits, request ids (FastAPI, no Ray).

Errors are always ``{"error": {"type", "message"}}``: ``InvalidRequest`` keeps its status
(400/413/422), ``BackendUnavailable``/``BackendTimeout`` are 503, anything else is a bug:
logged with its traceback, answered 500 with a generic message. Errors raised in another
replica arrive wrapped by Ray; ``unwrap`` digs out the original so the status is right.
"""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any, Literal
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backends.audio import FORMATS
from backends.errors import BackendUnavailable, HayakuError, InvalidRequest

log = logging.getLogger("hayaku.http")

REQUEST_ID_HEADER = "x-request-id"
AudioFormat = Literal["wav", "pcm", "flac"]
assert set(FORMATS) == {"wav", "pcm", "flac"}, "keep AudioFormat in step with backends.audio.FORMATS"


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TranslateRequest(_Body):
    text: str = Field(..., description="Text to translate (split into sentences, translated in one batch).")
    source_lang: str | None = Field(None, description="ISO 639-1 source language; default from the config.")
    target_lang: str | None = Field(None, description="ISO 639-1 target language; default from the config.")


class TranslateResponse(BaseModel):
    translation: str = Field(..., description="The translated text.")
    source_lang: str
    target_lang: str
    backend: str = Field(..., description="Translator backend that produced it.")
    model: str | None = Field(None, description="Its model.")
    options: dict[str, Any] = Field(default_factory=dict, description="Its options.")
    sentences: int = Field(..., description="How many sentences were translated.")
    timings_ms: dict[str, float] = Field(default_factory=dict, description="Per-stage milliseconds.")
    request_id: str


class SpeechRequest(BaseModel):
    """OpenAI ``/v1/audio/speech`` request (the official client sends exactly these fields)."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    model: str = Field("hayaku", description="Any name ('hayaku', 'tts-1') or the running speaker backend's name.")
    input: str = Field(..., description="Text to speak, in the graph's target language.")
    voice: str | None = Field(None, description="One of the speaker's voices; default: the configured voice.")
    response_format: AudioFormat = Field("wav", description="wav, pcm (s16le mono) or flac.")
    speed: float = Field(1.0, ge=0.25, le=4.0, description="Speaking rate, 0.25 to 4.0.")
    instructions: str | None = Field(None, description="Accepted for OpenAI compatibility; ignored.")
    stream_format: Literal["audio"] | None = Field(None, description="Only 'audio' (a whole file) is supported.")


class SpeechTranslateRequest(_Body):
    text: str = Field(..., description="Text to translate and speak.")
    source_lang: str | None = Field(None, description="Source language; default from the config.")
    target_lang: str | None = Field(None, description="Target language; default from the config.")
    voice: str | None = Field(None, description="One of the speaker's voices; default: the configured voice.")
    format: AudioFormat = Field("wav", description="Audio format: wav, pcm (s16le mono) or flac.")
    speed: float = Field(1.0, ge=0.25, le=4.0, description="Speaking rate, 0.25 to 4.0.")
    response: Literal["audio", "json"] = Field(
        "audio", description="'audio': the audio file, translation in headers; 'json': JSON with base64 audio."
    )


class SpeechTranslateJSON(BaseModel):
    translation: str
    audio_base64: str = Field(..., description="The audio file, base64.")
    format: str
    sample_rate: int
    duration_s: float
    translator: dict[str, Any]
    speaker: dict[str, Any]
    timings_ms: dict[str, float]
    request_id: str


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


def error_response(exc: BaseException, request_id: str | None) -> JSONResponse:
    """Maps an exception (possibly Ray-wrapped) to its status and JSON error body."""
    exc = unwrap(exc)
    if isinstance(exc, InvalidRequest):
        status, kind, message = exc.status, exc.kind, str(exc)
    elif isinstance(exc, BackendUnavailable):
        status, kind, message = 503, exc.kind, str(exc)
    elif isinstance(exc, HayakuError):
        status, kind, message = 500, exc.kind, str(exc)
    else:
        log.error("request %s failed with a bug", request_id, exc_info=(type(exc), exc, exc.__traceback__))
        status, kind = 500, "internal_error"
        message = f"internal error; the server log has the traceback (request id {request_id})"
    return JSONResponse(error_body(kind, message, request_id), status_code=status)


def request_id_of(request: Request) -> str:
    rid = request.headers.get(REQUEST_ID_HEADER)
    return rid or getattr(request.state, "request_id", None) or "-"


def _validation_message(err: RequestValidationError) -> tuple[int, str]:
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
        shown = repr(given) if not isinstance(given, dict) and len(repr(given)) < 80 else type(given).__name__
        parts.append(f"{where}: {e.get('msg')} (got {shown})")
    return status, "; ".join(parts) or "invalid request"


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


def create_app() -> FastAPI:
    """The FastAPI app with hayaku's error handling and limits (routes are added by the ingress)."""
    app = FastAPI(
        title="hayaku",
        version="0.1.0",
        description="English text to Japanese text and speech. Errors are JSON: {error: {type, message}}.",
    )

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, err: RequestValidationError) -> JSONResponse:
        status, message = _validation_message(err)
        kind = "malformed_json" if status == 400 else "invalid_request"
        return JSONResponse(error_body(kind, message, request_id_of(request)), status_code=status)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, err: StarletteHTTPException) -> JSONResponse:
        kind = {404: "not_found", 405: "method_not_allowed", 413: "invalid_request"}.get(err.status_code, "http_error")
        return JSONResponse(error_body(kind, str(err.detail), request_id_of(request)), status_code=err.status_code)

    @app.exception_handler(HayakuError)
    async def _hayaku(request: Request, err: HayakuError) -> JSONResponse:
        return error_response(err, request_id_of(request))

    app.add_middleware(BodyLimitMiddleware)
    app.add_middleware(JsonBodyMiddleware)
    app.add_middleware(RequestIdMiddleware)
    return app


def header_text(text: str) -> str:
    """Percent-encodes text for a response header (headers are latin-1; translations are not)."""
    return quote(text, safe=" ,.!?'-")


def header_json(data: dict[str, Any]) -> str:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=True)
