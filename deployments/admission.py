"""Admission by measured service rate: refuse at once what could not be served within the deadline.

A fixed ``max_inflight`` is either too high for a slow translator (32 queued requests behind a
2-3 s one wait a minute) or too low for a fast one. Instead the ingress measures how many requests
it completes per second of busy time (time with at least one request in flight) and admits a new
request only while ``in flight + 1`` of them can complete within ``headroom`` x the request deadline
at that rate. Until it has seen ``min_samples`` completions it admits everything (a cold server
has nothing to go by; ``max_inflight`` still bounds it).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable


class ServiceRate:
    """Completions per busy second, exponentially weighted over ``window_s`` of wall time."""

    def __init__(
        self, window_s: float = 60.0, min_samples: int = 3, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.window_s = window_s
        self.min_samples = min_samples
        self.clock = clock
        self.inflight = 0
        self._done = 0.0  # decayed completions
        self._busy = 0.0  # decayed busy seconds
        self._seen = 0
        self._last = clock()

    def _advance(self) -> None:
        now = self.clock()
        dt = max(0.0, now - self._last)
        decay = math.exp(-dt / self.window_s)
        if self.inflight:
            # busy time accrues before it decays: the interval just ended counts almost whole
            self._busy += dt
        self._busy *= decay
        self._done *= decay
        self._last = now

    def started(self) -> None:
        self._advance()
        self.inflight += 1

    def finished(self, served: bool = True) -> None:
        """One request left; ``served=False`` (refused, failed) adds its time but no completion."""
        self._advance()
        self.inflight = max(0, self.inflight - 1)
        if served:
            self._done += 1.0
            self._seen += 1

    def rate(self) -> float | None:
        """Requests completed per busy second, or None before ``min_samples`` completions."""
        self._advance()
        if self._seen < self.min_samples or self._busy <= 0:
            return None
        return self._done / self._busy

    def capacity(self, deadline_s: float, headroom: float = 0.8) -> int | None:
        """Most requests in flight that can all complete within ``headroom`` x ``deadline_s``, or None."""
        rate = self.rate()
        if rate is None:
            return None
        return max(1, int(rate * deadline_s * headroom))
