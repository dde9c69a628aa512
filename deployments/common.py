"""What the translator and speaker replicas share: the stage they run, health, a description."""

from __future__ import annotations

import os
from typing import Any, Generic, TypeVar

from backends.base import Backend
from graph.stages import SpeakStage, TranslateStage

S = TypeVar("S", TranslateStage, SpeakStage)


class StageHolder(Generic[S]):
    """A replica that runs one graph.stages stage in ``self._stage`` (its backend swapped on reconfigure)."""

    role = "backend"
    _stage: S

    @property
    def _backend(self) -> Backend:
        return self._stage.backend

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
