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
        nice = os.getpriority(os.PRIO_PROCESS, 0) if hasattr(os, "getpriority") else None
        return {**self._backend.describe(), "load_ms": self._backend.load_ms, "pid": os.getpid(), "nice": nice}


def set_niceness(nice: int) -> None:
    """Gives every thread of this process the CPU niceness ``nice``.

    On Linux a thread's niceness is its own (setpriority on the process id changes one thread), and a
    thread started later takes its starter's: every thread there now is set, so all later ones follow.
    PermissionError when raising the priority needs CAP_SYS_NICE.
    """
    task = "/proc/self/task"
    threads = [int(t) for t in os.listdir(task)] if os.path.isdir(task) else [0]
    for tid in threads:
        try:
            os.setpriority(os.PRIO_PROCESS, tid, nice)
        except ProcessLookupError:  # the thread ended meanwhile
            continue
