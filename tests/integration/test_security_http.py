"""Security defaults of the real ingress behind Ray Serve's proxy: the API key (given to the replica
through its runtime_env, as on a running cluster), the WebSocket refusal, CORS for one origin."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from ray import serve

from deployments.http.security import UNAUTHORIZED

KEY = "integration-key-4f9c"
ORIGIN = "https://app.example"
ARGS = {
    "translator": {"backend": "echo"},
    "speaker": {"backend": "tone", "voice": "sine"},
    "limits": {"max_chars": 2000, "max_body_bytes": 65536, "request_timeout_s": 30},
    "colocate": True,
    "security": {"cors_origins": [ORIGIN]},
}


@pytest.fixture(scope="module")
def base(serve_port: int) -> Iterator[str]:
    from deployments.app import graph_app
    from graph.auto import resolve_graph

    options = {"num_cpus": 0, "runtime_env": {"env_vars": {"HAYAKU_API_KEY": KEY}}}
    serve.run(
        graph_app(resolve_graph(ARGS), {"Ingress": {"ray_actor_options": options}}), name="sec", route_prefix="/sec"
    )
    yield f"http://127.0.0.1:{serve_port}/sec"
    serve.delete("sec")


def test_the_replica_reads_the_key_from_its_environment(base: str) -> None:
    with httpx.Client(base_url=base, timeout=30) as c:
        r = c.post("/v1/translate", json={"text": "Hello."})
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        assert r.json()["error"] == {"type": "unauthorized", "message": UNAUTHORIZED}
        assert r.headers["x-request-id"]  # the proxy's id, as on every answer
        wrong = c.post("/v1/translate", json={"text": "Hello."}, headers={"authorization": "Bearer nope"})
        assert wrong.status_code == 401 and wrong.json()["error"] == r.json()["error"]
        ok = c.post("/v1/translate", json={"text": "Hello."}, headers={"authorization": f"Bearer {KEY}"})
        assert ok.status_code == 200 and ok.json()["translation"] == "Hello."
        speech = c.post("/v1/speech-translate", json={"text": "Hello."}, headers={"x-api-key": KEY})
        assert speech.status_code == 200 and speech.headers["content-type"] == "audio/wav"
        assert c.get("/healthz").status_code == 200
        for path in ("/v1/graph", "/v1/ab", "/docs", "/openapi.json", "/v1/nope"):
            assert c.get(path).status_code == 401, path
        graph = c.get("/v1/graph", headers={"x-api-key": KEY}).json()
        assert graph["security"]["cors_origins"] == [ORIGIN] and KEY not in json.dumps(graph)


def test_the_websocket_needs_the_key(base: str) -> None:
    ws_client = pytest.importorskip("websockets.sync.client", reason="needs websockets: pip install websockets")
    from websockets.exceptions import InvalidStatus

    url = base.replace("http://", "ws://") + "/v1/stream"
    # Closed before accept: the handshake is refused, no message is ever read from the client.
    with pytest.raises(InvalidStatus) as exc, ws_client.connect(url, open_timeout=30):
        pass
    assert exc.value.response.status_code == 403
    with ws_client.connect(url, open_timeout=30, additional_headers={"x-api-key": KEY}) as ws:
        ws.send(json.dumps({"text": "Hello there. "}))
        ws.send(json.dumps({"type": "end"}))
        kinds = []
        while not kinds or kinds[-1] not in ("done", "error"):
            msg = ws.recv(timeout=60)
            if isinstance(msg, str):
                kinds.append(json.loads(msg)["type"])
    assert kinds[0] == "translation" and kinds[-1] == "done", kinds


def test_cors_for_the_configured_origin_only(base: str) -> None:
    with httpx.Client(base_url=base, timeout=30) as c:
        pre = c.options(
            "/v1/translate",
            headers={
                "origin": ORIGIN,
                "access-control-request-method": "POST",
                "access-control-request-headers": "authorization,content-type",
            },
        )
        assert pre.status_code == 200 and pre.headers["access-control-allow-origin"] == ORIGIN
        ok = c.post("/v1/translate", json={"text": "Hi."}, headers={"origin": ORIGIN, "x-api-key": KEY})
        assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == ORIGIN
        evil: dict[str, Any] = {"origin": "https://evil.example", "x-api-key": KEY}
        assert "access-control-allow-origin" not in c.post("/v1/translate", json={"text": "Hi."}, headers=evil).headers
