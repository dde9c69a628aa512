"""What the ingress records per request: the A/B statistics (graph.abtest) and Prometheus metrics."""

from __future__ import annotations

from typing import Any, cast

from ray.serve import metrics

from graph.abtest import ABStats

LATENCY_BOUNDARIES_MS = [
    5.0,
    10.0,
    25.0,
    50.0,
    100.0,
    250.0,
    500.0,
    750.0,
    1000.0,
    1500.0,
    2500.0,
    5000.0,
    10000.0,
    30000.0,
]


class Records:
    """Per-variant statistics for ``GET /v1/ab`` and the ``hayaku_requests``/``hayaku_latency_ms`` metrics."""

    def __init__(self, stats: ABStats) -> None:
        self.stats = stats
        self.requests = metrics.Counter(
            "hayaku_requests",
            description="Requests by variant, route and HTTP status.",
            tag_keys=cast(Any, ("variant", "route", "status")),
        )
        self.latency = metrics.Histogram(
            "hayaku_latency_ms",
            description="Milliseconds per stage (translate, synthesize, first_audio, total) by variant.",
            boundaries=LATENCY_BOUNDARIES_MS,
            tag_keys=cast(Any, ("variant", "stage")),
        )

    def record(
        self, variant: str, route: str, status: int, total_ms: float, stages: dict[str, float], fallback: bool
    ) -> None:
        # A client's own mistake (4xx) says nothing about the variant: neither error nor latency.
        if status < 400 or status >= 500:
            self.stats.record(variant, status < 400, total_ms, stages, fallback)
        self.requests.inc(tags={"variant": variant, "route": route, "status": str(status)})
        if status < 400:
            self.latency.observe(total_ms, tags={"variant": variant, "stage": "total"})
            for stage, ms in stages.items():
                self.latency.observe(ms, tags={"variant": variant, "stage": stage})
