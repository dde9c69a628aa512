"""Typed errors shared by every layer.

User mistakes are ``InvalidRequest`` (HTTP 4xx); a backend that this machine cannot
run is ``BackendUnavailable`` (HTTP 503, or a failed start). Anything else is a bug.
"""

from __future__ import annotations


class HayakuError(Exception):
    """Base class of the errors hayaku raises on purpose."""

    kind = "hayaku_error"


class InvalidRequest(HayakuError, ValueError):
    """The caller asked for something invalid; the message says what would be valid."""

    kind = "invalid_request"

    def __init__(self, message: str, *, status: int = 422, field: str | None = None):
        super().__init__(message)
        self.status = status
        self.field = field


class BackendUnavailable(HayakuError, RuntimeError):
    """A backend cannot run here (package, platform or model missing); says the fix."""

    kind = "backend_unavailable"


class BackendTimeout(BackendUnavailable):
    """A backend did not answer within its deadline."""

    kind = "timeout"


class BadOutput(BackendUnavailable):
    """A backend answered with garbage (non-finite or no audio, the wrong number of outputs): 503, not a 200."""

    kind = "bad_output"
