"""The HTTP surface: request models, JSON errors, body limits, request ids (FastAPI, no Ray).

Errors are always ``{"error": {"type", "message"}}``: ``InvalidRequest`` keeps its status
(400/413/422), ``BackendUnavailable``/``BackendTimeout`` are 503, anything else is a bug:
logged with its traceback, answered 500 with a generic message. Errors raised in another
replica arrive wrapped by Ray; ``unwrap`` digs out the original so the status is right.

Security (``security`` in the YAML, applied by ``configure_security``): an optional API key on
every route but /healthz and /, CORS closed unless origins are listed, and exception messages
(which may quote request text) withheld from logs unless ``log_request_text`` or DEBUG logging.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import traceback
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backends.audio import FORMATS
from backends.base import format_validation_error, short_repr
from backends.errors import BackendUnavailable, HayakuError, InvalidRequest
from deployments.admission import ServiceRate

log = logging.getLogger("hayaku.http")

REQUEST_ID_HEADER = "x-request-id"
AudioFormat = Literal["mp3", "opus", "aac", "flac", "wav", "pcm"]
assert get_args(AudioFormat) == FORMATS, "keep AudioFormat in step with backends.audio.FORMATS"


def _valid_unicode(value: Any) -> Any:
    # JSON may carry half a UTF-16 pair ("\ud800"); it has no UTF-8 form, so no answer could quote it.
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValueError(
                f"contains a lone UTF-16 surrogate (U+{ord(value[exc.start]):04X}) at position {exc.start}; "
                "send valid Unicode"
            ) from None
    return value


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")

    _unicode = field_validator("*")(_valid_unicode)


class TranslateRequest(_Body):
    text: str = Field(..., description="Text to translate (split into sentences, translated in one batch).")
    source_lang: str | None = Field(None, description="ISO 639-1 source language; default from the config.")
    target_lang: str | None = Field(None, description="ISO 639-1 target language; default from the config.")
    user: str | None = Field(
        None, max_length=256, description="Client key for A/B stickiness (as the X-Hayaku-Key header): hashed."
    )


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


class SpeechRequest(_Body):
    """OpenAI ``/v1/audio/speech`` request (the official client sends exactly these fields)."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    model: str = Field(
        "tts-1",
        description="tts-1, tts-1-hd, gpt-4o-mini-tts, hayaku or a speaker backend of this graph (GET /v1/models): "
        "each speaks with the graph's speaker.",
    )
    input: str = Field(
        ..., description="Text to speak, in the graph's target language; at most 4096 characters, as OpenAI's."
    )
    voice: str | None = Field(
        None,
        description="An OpenAI voice name (alloy, ash, ...; the config's `voices:` says which voice each stands "
        "for), one of the speaker's voices, or an alias from `voices:` (GET /v1/audio/voices); default: the "
        "configured voice.",
    )
    response_format: AudioFormat = Field(
        "mp3",
        description="mp3 (the default, as OpenAI's), opus (Ogg), aac (ADTS; needs PyAV), flac, wav, or pcm "
        "(s16le mono at 24 kHz, as OpenAI's).",
    )
    speed: float = Field(1.0, ge=0.25, le=4.0, description="Speaking rate, 0.25 to 4.0.")
    instructions: str | None = Field(
        None,
        description="Accepted for OpenAI compatibility; no hayaku speaker takes instructions, so they are ignored "
        "and the response says so in X-Hayaku-Ignored.",
    )
    stream_format: Literal["audio", "sse"] | None = Field(
        None,
        description="None: one whole file. 'audio': the file streamed sentence by sentence as it is synthesised "
        "(any format but flac). 'sse': server-sent events speech.audio.delta (base64 pieces of that stream) then "
        "speech.audio.done.",
    )
    user: str | None = Field(
        None, max_length=256, description="Client key for A/B stickiness (as the X-Hayaku-Key header): hashed."
    )


class SpeechTranslateRequest(_Body):
    text: str = Field(..., description="Text to translate and speak.")
    source_lang: str | None = Field(None, description="Source language; default from the config.")
    target_lang: str | None = Field(None, description="Target language; default from the config.")
    voice: str | None = Field(None, description="One of the speaker's voices; default: the configured voice.")
    format: AudioFormat = Field(
        "wav",
        description="Audio format: wav, mp3, opus (Ogg), aac (ADTS; needs PyAV), flac, or pcm (s16le mono at the "
        "speaker's rate, in X-Hayaku-Sample-Rate). A stream of audio can be any but flac.",
    )
    speed: float = Field(1.0, ge=0.25, le=4.0, description="Speaking rate, 0.25 to 4.0.")
    response: Literal["audio", "json"] = Field(
        "audio",
        description="'audio': the audio file, translation in headers; 'json': JSON with base64 audio "
        "(with stream: NDJSON, one line per sentence).",
    )
    stream: bool = Field(
        False,
        description="Send each sentence's audio as soon as it exists, in order, while later sentences are still "
        "translating: chunked wav/pcm (response: audio) or NDJSON lines (response: json).",
    )
    user: str | None = Field(
        None, max_length=256, description="Client key for A/B stickiness (as the X-Hayaku-Key header): hashed."
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
        shown = short_repr(given, 80) if not isinstance(given, dict) else type(given).__name__
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


# -- security: API key, CORS, log redaction ----------------------------------------------------

API_KEY_HEADER = "x-api-key"
#: reachable without the API key: liveness for orchestrators, and the web page (its own JS sends the key)
PUBLIC_PATHS = frozenset({"/healthz", "/", "/favicon.ico"})
#: the OpenAPI docs: public only with ``security.public_docs: true``
DOCS_PATHS = frozenset({"/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})
#: one message for a missing header, a wrong scheme and a wrong key alike: it must not say which part failed
UNAUTHORIZED = "missing or invalid API key; send it as 'Authorization: Bearer <key>' or 'X-API-Key: <key>'"
#: a WebSocket refused before accept is closed with this code (RFC 6455: policy violation)
WS_POLICY_VIOLATION = 1008
#: response headers a browser on an allowed origin may read
CORS_EXPOSE_HEADERS = (
    "x-request-id",
    "x-hayaku-variant",
    "x-hayaku-translation",
    "x-hayaku-translator",
    "x-hayaku-speaker",
    "x-hayaku-voice",
    "x-hayaku-sample-rate",
    "x-hayaku-timings",
)

# Whether log records may quote request text; the ingress sets it from security.log_request_text.
_log_request_text = False


def _digest(key: bytes) -> bytes:
    # Comparing fixed-length digests keeps the comparison constant-time in the key's length too.
    return hashlib.sha256(key).digest()


@dataclass(frozen=True)
class SecurityPolicy:
    """What the security middleware enforces: made from the ``security`` section and the environment."""

    api_key_digest: bytes | None = None
    api_key_env: str = "HAYAKU_API_KEY"
    public_docs: bool = False
    cors_origins: tuple[str, ...] = ()
    cors_allow_headers: tuple[str, ...] = ()
    log_request_text: bool = False

    @classmethod
    def from_config(cls, section: Mapping[str, Any] | None, environ: Mapping[str, str] | None = None) -> SecurityPolicy:
        """Reads the key from the environment variable the section names (this process's environment by default).

        Raises ConfigError for a bad section, or when ``require_api_key`` is set and the variable is empty.
        """
        from graph.config import ConfigError, SecurityConfig

        try:
            cfg = SecurityConfig.model_validate(dict(section or {}))
        except ValidationError as err:
            raise ConfigError(format_validation_error(err, "security")) from None
        env = os.environ if environ is None else environ
        key = env.get(cfg.api_key_env, "").strip()
        if cfg.require_api_key and not key:
            raise ConfigError(
                f"security.require_api_key: the environment variable {cfg.api_key_env} is unset or empty in the "
                f"ingress replica; set it in the environment of `serve run`, or for a running Ray cluster in the "
                f"YAML's runtime_env: {{env_vars: {{{cfg.api_key_env}: ...}}}}"
            )
        return cls(
            api_key_digest=_digest(key.encode()) if key else None,
            api_key_env=cfg.api_key_env,
            public_docs=cfg.public_docs,
            cors_origins=tuple(cfg.cors_origins),
            cors_allow_headers=tuple(cfg.cors_allow_headers),
            log_request_text=cfg.log_request_text,
        )

    @property
    def auth_enabled(self) -> bool:
        return self.api_key_digest is not None

    def is_public(self, path: str) -> bool:
        return path in PUBLIC_PATHS or (self.public_docs and path in DOCS_PATHS)

    def authorized(self, headers: list[tuple[bytes, bytes]]) -> bool:
        """True when a ``Bearer`` Authorization or an X-API-Key header carries the key."""
        if self.api_key_digest is None:
            return True
        ok = False
        for name, value in headers:
            name = name.lower()
            if name == b"authorization":
                scheme, _, given = value.strip().partition(b" ")
                if scheme.lower() != b"bearer":
                    continue
            elif name == API_KEY_HEADER.encode():
                given = value
            else:
                continue
            # Every candidate is compared (no early exit), each in constant time.
            ok |= hmac.compare_digest(_digest(given.strip()), self.api_key_digest)
        return ok


def _route_path(scope: Scope) -> str:
    """The path inside the application (without Serve's route prefix, which arrives as root_path)."""
    path = str(scope.get("path") or "/")
    root = str(scope.get("root_path") or "").rstrip("/")
    if root and (path == root or path.startswith(root + "/")):
        path = path[len(root) :] or "/"
    return path


def app_policy(app: Any) -> SecurityPolicy:
    """The app's policy; one made from the environment alone when the ingress has not configured it,
    so that HAYAKU_API_KEY protects an app even where ``configure_security`` was never called."""
    state = getattr(app, "state", None)
    policy = getattr(state, "security", None)
    if not isinstance(policy, SecurityPolicy):
        policy = SecurityPolicy.from_config(None)
        if state is not None:
            state.security = policy
    return policy


class SecurityMiddleware:
    """API key on every route but the public ones (HTTP 401, WebSocket close 1008), and CORS when configured.

    CORS wraps the key check, so a browser's preflight (which never carries credentials) is
    answered by CORS alone, and a 401 still carries the CORS headers the browser needs to read it.
    Without ``cors_origins`` no CORS header is ever sent.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._cors: tuple[SecurityPolicy, ASGIApp] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        policy = app_policy(scope.get("app"))
        if policy.cors_origins and scope["type"] == "http":
            await self._cors_app(policy)(scope, receive, send)
        else:
            await self._check_key(scope, receive, send)

    def _cors_app(self, policy: SecurityPolicy) -> ASGIApp:
        if self._cors is None or self._cors[0] is not policy:
            cors = CORSMiddleware(
                self._check_key,
                allow_origins=list(policy.cors_origins),
                allow_methods=["GET", "POST", "OPTIONS"],
                allow_headers=list(policy.cors_allow_headers),
                expose_headers=list(CORS_EXPOSE_HEADERS),
                max_age=600,
            )
            self._cors = (policy, cors)
        return self._cors[1]

    async def _check_key(self, scope: Scope, receive: Receive, send: Send) -> None:
        policy = app_policy(scope.get("app"))
        if policy.is_public(_route_path(scope)) or policy.authorized(scope.get("headers", [])):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            msg = await receive()  # the websocket.connect event; closing now refuses the handshake
            if msg["type"] == "websocket.connect":
                await send({"type": "websocket.close", "code": WS_POLICY_VIOLATION, "reason": "unauthorized"})
            return
        headers = {k.lower(): v for k, v in scope.get("headers", [])}
        rid = headers.get(REQUEST_ID_HEADER.encode(), b"").decode("latin-1") or None
        resp = JSONResponse(
            error_body("unauthorized", UNAUTHORIZED, rid), status_code=401, headers={"www-authenticate": "Bearer"}
        )
        await resp(scope, receive, send)


def text_loggable(logger_name: str = "hayaku") -> bool:
    """May a log record of ``logger_name`` quote request text? Only with log_request_text or DEBUG logging."""
    return _log_request_text or logging.getLogger(logger_name).isEnabledFor(logging.DEBUG)


def redacted_traceback(exc: BaseException) -> str:
    """The traceback of ``exc`` (and its causes) with each exception's message replaced by its length.

    Exception messages may quote the request's text; the frames (file, line, code) never do.
    """
    chain: list[BaseException] = []
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        chain.append(cur)
        cur = cur.__cause__ or (None if cur.__suppress_context__ else cur.__context__)
    parts = []
    for i, e in enumerate(reversed(chain)):
        if i:
            parts.append("\nwhich led to:\n\n")
        parts.append("Traceback (most recent call last):\n")
        parts.extend(traceback.format_tb(e.__traceback__))
        try:
            size = len(str(e))
        except Exception:
            size = -1
        parts.append(
            f"{type(e).__module__}.{type(e).__qualname__}: <message withheld: {size} characters; "
            "security.log_request_text or DEBUG logging shows it>\n"
        )
    return "".join(parts).rstrip("\n")


class RedactRequestText(logging.Filter):
    """Withholds exception messages (which may quote request text) from a logger's records.

    Formatters (logging's and Ray's) print ``record.exc_text`` when it is set, so setting it to
    the redacted traceback is enough; the record's message itself never quotes request text.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None and not text_loggable(record.name):
            record.exc_text = redacted_traceback(record.exc_info[1])
        return True


log.addFilter(RedactRequestText())

#: loggers whose records may carry exceptions raised while serving a request
REDACTED_LOGGERS = ("hayaku", "hayaku.http", "hayaku.ingress", "hayaku.translator", "hayaku.speaker", "ray.serve")


def install_log_redaction(log_request_text: bool | None = None) -> None:
    """Adds the redaction filter to the serving loggers (idempotent); sets log_request_text if given."""
    global _log_request_text
    if log_request_text is not None:
        _log_request_text = bool(log_request_text)
    for name in REDACTED_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactRequestText) for f in logger.filters):
            logger.addFilter(RedactRequestText())


def configure_security(app: FastAPI, section: Mapping[str, Any] | None) -> SecurityPolicy:
    """Applies a graph's ``security`` section to ``app`` (call in the ingress replica, before it serves).

    The API key is read here, from this process's environment: in Ray Serve that is the replica's,
    which inherits the environment of the `serve run` that started Ray, plus the YAML's runtime_env.
    """
    policy = SecurityPolicy.from_config(section)
    app.state.security = policy
    install_log_redaction(policy.log_request_text)
    log.info(
        "API key auth %s; CORS %s; request text in logs: %s",
        f"on (key from ${policy.api_key_env})" if policy.auth_enabled else f"off (${policy.api_key_env} is not set)",
        f"open to {', '.join(policy.cors_origins)}" if policy.cors_origins else "closed",
        "yes" if policy.log_request_text else "no",
    )
    return policy


class ErrorDetail(BaseModel):
    type: str = Field(..., description="Machine-readable kind, e.g. invalid_request, unauthorized, timeout.")
    message: str = Field(..., description="What went wrong and what would be valid.")


class ErrorResponse(BaseModel):
    """The body of every error answer."""

    error: ErrorDetail
    request_id: str | None = Field(None, description="The request's id (also in the X-Request-Id header).")


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
        status, message = _validation_message(err)
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
