"""Ray's "busy or restarting" errors become JSON 503s with Retry-After; the in-flight limit sheds at once."""

from __future__ import annotations

import asyncio
import json

import pytest

pytest.importorskip("ray", reason="Ray's exception classes need ray: pip install 'hayaku[serve]'")
httpx = pytest.importorskip("httpx", reason="needs httpx: pip install 'hayaku[serve]'")

from ray.exceptions import ActorDiedError, ActorUnavailableError  # noqa: E402
from ray.serve.exceptions import BackPressureError  # noqa: E402

from backends.errors import BackendTimeout, BackendUnavailable, BadOutput  # noqa: E402
from deployments.http.app import create_app  # noqa: E402
from deployments.http.errors import RETRY_AFTER_S, error_response  # noqa: E402


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (BackPressureError(num_queued_requests=5, max_queued_requests=5), "overloaded"),
        (ActorDiedError(), "replica_lost"),
        (ActorUnavailableError("restarting", None), "replica_lost"),
    ],
)
def test_ray_errors_are_retryable_503s(exc: BaseException, kind: str) -> None:
    resp = error_response(exc, "rid-1")
    assert resp.status_code == 503 and resp.headers["retry-after"] == str(RETRY_AFTER_S)
    body = json.loads(bytes(resp.body))
    assert body["error"]["type"] == kind and body["request_id"] == "rid-1"


def test_other_errors_are_not_retryable() -> None:
    resp = error_response(ValueError("boom"), "rid-2")
    assert resp.status_code == 500 and "retry-after" not in resp.headers
    missing = error_response(BackendUnavailable("kokoro needs the kokoro package"), "rid-3")
    assert missing.status_code == 503 and "retry-after" not in missing.headers  # retrying will not install it


@pytest.mark.parametrize(
    ("exc", "kind"), [(BackendTimeout("no answer in 5 s"), "timeout"), (BadOutput("NaN"), "bad_output")]
)
def test_transient_backend_faults_are_retryable_503s(exc: BaseException, kind: str) -> None:
    resp = error_response(exc, "rid-4")
    assert resp.status_code == 503 and resp.headers["retry-after"] == str(RETRY_AFTER_S)
    assert json.loads(bytes(resp.body))["error"] == {"type": kind, "message": str(exc)}


def test_max_inflight_sheds_extra_posts_with_retry_after() -> None:
    app = create_app()
    app.state.max_inflight = 2
    gate = asyncio.Event()

    @app.post("/work")
    async def work() -> dict[str, bool]:
        await gate.wait()
        return {"ok": True}

    @app.get("/healthz")
    async def healthz() -> dict[str, bool]:
        return {"ok": True}

    async def run() -> tuple[list[int], httpx.Response, httpx.Response, int]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
            held = [asyncio.ensure_future(c.post("/work", json={})) for _ in range(2)]
            await asyncio.sleep(0.1)
            shed = await asyncio.wait_for(c.post("/work", json={}), 10)  # refused, not queued behind the gate
            health = await c.get("/healthz")  # GETs are not counted or refused
            gate.set()
            done = [r.status_code for r in await asyncio.gather(*held)]
            after = (await c.post("/work", json={})).status_code
            return done, shed, health, after

    done, shed, health, after = asyncio.run(run())
    assert done == [200, 200] and health.status_code == 200 and after == 200
    assert shed.status_code == 503 and shed.headers["retry-after"] == str(RETRY_AFTER_S)
    assert shed.json()["error"]["type"] == "overloaded" and "max_inflight" in shed.json()["error"]["message"]
