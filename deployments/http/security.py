"""Who may call the API: the API key on every route but the public ones, and CORS.

Applied from the YAML's ``security`` section by ``configure_security``: an optional API key on
every route but /healthz and /, CORS closed unless origins are listed, and exception messages
(which may quote request text) withheld from logs unless ``log_request_text`` or DEBUG logging.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from backends.base import format_validation_error
from deployments.http.errors import error_body
from deployments.http.middleware import REQUEST_ID_HEADER
from deployments.http.redaction import install_log_redaction

log = logging.getLogger("hayaku.http")

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
