"""The load client (benchmarks/load.py) against a real local HTTP server: records, never raises, bounded."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

pytest.importorskip("httpx", reason="the load client needs httpx: pip install 'hayaku[serve]'")
uvicorn = pytest.importorskip("uvicorn", reason="the test server needs uvicorn: pip install 'hayaku[serve]'")

from benchmarks.load import LoadResult, check_loopback, load  # noqa: E402
from tests.conftest import free_port  # noqa: E402


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    """A FastAPI app on a free loopback port: every 4th POST /x is a JSON 503 with Retry-After."""
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse

    app = FastAPI()
    calls = {"n": 0}

    @app.post("/x")
    async def x(body: dict) -> object:  # type: ignore[type-arg]
        calls["n"] += 1
        if calls["n"] % 4 == 0:
            return JSONResponse({"error": {"type": "busy", "message": "later"}}, 503, {"retry-after": "1"})
        return body

    @app.get("/slow")
    async def slow() -> dict[str, str]:
        import asyncio

        await asyncio.sleep(5)
        return {}

    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started:
        assert time.monotonic() < deadline, "test server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(timeout=10)


def test_records_every_request_and_status(server: str) -> None:
    res = load(server, "/x", [{"a": 1}, {"b": 2}], 4, max_requests=40, max_seconds=30)
    s = res.summary()
    assert s["requests"] == 40 and s["ok"] == 30 and s["errors_by_status"] == {"503": 10}, s
    shed = [r for r in res.records if r.status == 503]
    assert all(r.headers.get("retry-after") == "1" and r.error == "HTTP 503 busy: later" for r in shed)
    assert s["p50_ms"] is not None and s["p50_ms"] <= s["p95_ms"] <= s["p99_ms"] <= s["max_ms"]
    assert all(r.start_s >= 0 for r in res.records)


def test_time_bound_stops_an_unbounded_count(server: str) -> None:
    # max_requests is out of reach: only the time bound can end this run
    done: list[LoadResult] = []
    runner = threading.Thread(
        target=lambda: done.append(load(server, "/x", [{}], 2, max_requests=10**9, max_seconds=0.5)), daemon=True
    )
    runner.start()
    runner.join(timeout=120)  # a guard against a hang, not a speed claim
    assert done, "max_seconds=0.5 did not stop a load whose max_requests is never reached"
    (res,) = done
    assert res.records and all(r.status in (200, 503) for r in res.records), res.summary()
    # no request starts once the bound has passed (0.5 s of slack for a thread descheduled in between)
    late = [r.start_s for r in res.records if r.start_s >= 0.5 + 0.5]
    assert not late, f"{len(late)} requests started after max_seconds: {late[:5]}"


def test_timeouts_and_refused_connections_are_records(server: str) -> None:
    slow = load(server, "/slow", [None], 2, max_requests=2, max_seconds=5, timeout_s=0.3)
    assert [r.status for r in slow.records] == [0, 0]
    assert all(r.error and r.error.startswith("ReadTimeout") for r in slow.records)
    refused = load(f"http://127.0.0.1:{free_port()}", "/x", [{}], 2, max_requests=3, max_seconds=5)
    assert len(refused.records) == 3 and not any(r.ok for r in refused.records)
    assert refused.summary()["p50_ms"] is None and refused.summary()["throughput_rps"] == 0


@pytest.mark.parametrize("url", ["http://10.1.2.3:8000", "http://example.com", "ftp://127.0.0.1:1"])
def test_only_loopback(url: str) -> None:
    with pytest.raises(ValueError, match="base_url"):
        check_loopback(url)


def test_bad_bounds_are_refused() -> None:
    with pytest.raises(ValueError, match="payloads"):
        load("http://127.0.0.1:1", "/x", [], 1, max_requests=1, max_seconds=1)
    with pytest.raises(ValueError, match="positive"):
        load("http://127.0.0.1:1", "/x", [{}], 0, max_requests=1, max_seconds=1)
