"""What the translator and speaker replicas share: health and a description of the live backend."""

from __future__ import annotations

import os
from typing import Any, Generic, TypeVar

from backends.base import Backend

B = TypeVar("B", bound=Backend)


class BackendHolder(Generic[B]):
    """A replica that holds one loaded backend in ``self._backend`` (swapped on reconfigure)."""

    role = "backend"
    _backend: B

    def check_health(self) -> None:
        """Raises when the backend reports itself unhealthy (Ray then replaces the replica)."""
        health = self._backend.health()
        if not health.get("ok"):
            raise RuntimeError(f"{self.role} backend unhealthy: {health}")

    def health(self) -> dict[str, Any]:
        return self._backend.health()

    def _live(self) -> dict[str, Any]:
        """What runs now (after any reconfigure), for GET /v1/graph."""
        return {**self._backend.describe(), "load_ms": self._backend.load_ms, "pid": os.getpid()}
