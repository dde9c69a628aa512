"""Admission by measured service rate: what cannot finish within the deadline is a fast 503."""

from __future__ import annotations

import asyncio

import httpx
from fastapi import FastAPI

from deployments.admission import ServiceRate
from deployments.http.middleware import InflightLimitMiddleware


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_rate_is_completions_per_busy_second() -> None:
    clock = Clock()
    rate = ServiceRate(window_s=1e9, min_samples=2, clock=clock)
    assert rate.rate() is None and rate.capacity(10) is None  # nothing to go by yet: admit
    for _ in range(4):  # one at a time, 0.5 s each, with idle gaps that must not count
        rate.started()
        clock.now += 0.5
        rate.finished()
        clock.now += 3.0
    assert abs((rate.rate() or 0) - 2.0) < 1e-6
    assert rate.capacity(10, headroom=0.8) == 16


def test_concurrent_completions_raise_the_rate_and_failures_do_not() -> None:
    clock = Clock()
    rate = ServiceRate(window_s=1e9, min_samples=1, clock=clock)
    for _ in range(4):
        rate.started()
    clock.now += 1.0
    for _ in range(4):
        rate.finished()
    rate.started()
    clock.now += 1.0
    rate.finished(served=False)  # a refused or failed request is no evidence of service
    assert abs((rate.rate() or 0) - 2.0) < 1e-6


def test_old_measurements_fade() -> None:
    clock = Clock()
    rate = ServiceRate(window_s=10.0, min_samples=1, clock=clock)
    for _ in range(5):  # slow at first: 1 per second
        rate.started()
        clock.now += 1.0
        rate.finished()
    for _ in range(300):  # then fast for three windows: 10 per second
        rate.started()
        clock.now += 0.1
        rate.finished()
    assert (rate.rate() or 0) > 9.0


def _app(deadline_s: float, work_s: float) -> FastAPI:
    app = FastAPI()
    app.add_middleware(InflightLimitMiddleware)
    app.state.deadline_s = deadline_s

    @app.post("/work")
    async def work() -> dict[str, bool]:
        await asyncio.sleep(work_s)
        return {"ok": True}

    @app.get("/healthz")
    async def health() -> dict[str, bool]:
        return {"ok": True}

    return app


def test_middleware_refuses_what_the_measured_rate_cannot_serve_in_time() -> None:
    # 0.2 s per request one at a time: ~5/s; a 1.1 s deadline with 0.8 headroom admits 4 in flight
    async def scenario() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=_app(deadline_s=1.1, work_s=0.2))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            for _ in range(3):  # warm: the rate is measured from completed requests
                assert (await client.post("/work")).status_code == 200
            burst = await asyncio.gather(*(client.post("/work") for _ in range(10)))
            assert (await client.get("/healthz")).status_code == 200  # GETs are never refused
            return list(burst)

    responses = asyncio.run(scenario())
    codes = sorted(r.status_code for r in responses)
    assert codes.count(200) == 4 and codes.count(503) == 6, codes
    refused = next(r for r in responses if r.status_code == 503)
    assert refused.headers["retry-after"] == "1"
    body = refused.json()["error"]
    assert body["type"] == "overloaded" and "deadline" in body["message"]


def test_middleware_admits_everything_before_it_has_measured() -> None:
    async def scenario() -> list[int]:
        transport = httpx.ASGITransport(app=_app(deadline_s=0.01, work_s=0.05))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return [r.status_code for r in await asyncio.gather(*(client.post("/work") for _ in range(2)))]

    assert asyncio.run(scenario()) == [200, 200]
