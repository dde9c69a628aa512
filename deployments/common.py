"""What the translator and speaker replicas share: building the stage's backend, health, a description."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from backends.base import Backend
from backends.errors import HayakuError
from graph.config import DEFAULT_ATTEMPT_TIMEOUT_S

B = TypeVar("B", bound=Backend)

log = logging.getLogger("hayaku.replica")


def build_stage_backend(
    stage: dict[str, Any],
    role: str,
    create: Callable[[dict[str, Any]], B],
    probe: Callable[[B], Any],
    chain: Callable[..., B],
) -> B:
    """The stage's backend, loaded and warmed up with ``probe`` (one tiny real call); blocking.

    A stage that lists fallbacks (or sets attempt_timeout_s) gets a fallback chain of
    ``create(stage)`` and ``create(fallback)`` for each fallback, built by ``chain``.
    """
    members = [create(stage), *(create(fb) for fb in stage.get("fallbacks") or [])]
    timeout = stage.get("attempt_timeout_s")
    if len(members) == 1 and timeout is None:
        backend = members[0]
        backend.load()
        try:
            probe(backend)
        except HayakuError as exc:
            if backend.health().get("ok"):
                raise
            # It says itself that it is unhealthy (an injected fault): serve its errors, as /healthz reports.
            log.warning("%s %s failed its warm-up and reports itself unhealthy: %s", role, backend.name, exc)
        return backend
    if timeout is None and len(members) > 1:
        timeout = DEFAULT_ATTEMPT_TIMEOUT_S
    built = chain(
        members,
        probe=probe,
        attempt_timeout_s=timeout,
        probe_interval_s=stage.get("probe_interval_s", 10.0),
        where=role,
    )
    built.load()  # loads and probes every backend of the chain
    return built


class BackendHolder(Generic[B]):
    """A replica that holds one loaded backend in ``self._backend`` (swapped on reconfigure)."""

    role = "backend"
    _backend: B

    def check_health(self) -> None:
        """Ray's liveness check: fails only when the replica holds no loaded backend.

        A backend reporting a fault (``ok: False``) keeps its replica: a restart would not
        fix it, and Ray would not even start a replica whose first check fails. /healthz
        reports it, and a fallback chain's probe restores it.
        """
        if not self._backend.loaded:
            raise RuntimeError(f"{self.role} backend is not loaded: {self._backend.health()}")

    def health(self) -> dict[str, Any]:
        """The backend's own report (for a fallback chain: each backend's state, reason and since)."""
        return self._backend.health()

    def _live(self) -> dict[str, Any]:
        """What runs now (after any reconfigure), for GET /v1/graph."""
        return {**self._backend.describe(), "load_ms": self._backend.load_ms, "pid": os.getpid()}
