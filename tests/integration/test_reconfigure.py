"""Live changes: a new user_config reaches the running replica (no restart); a colocated graph."""

from __future__ import annotations

import time
from typing import Any

import httpx
from ray import serve
from ray.serve.context import _get_global_client
from ray.serve.schema import ServeDeploySchema

ARGS = {"translator": {"backend": "echo"}, "speaker": {"backend": "tone"}}
NO_CPU = {"num_cpus": 0}


def _config(translator_user_config: dict[str, Any]) -> ServeDeploySchema:
    # The same shape as a YAML given to `serve deploy`: only user_config changes between calls.
    return ServeDeploySchema.model_validate(
        {
            "applications": [
                {
                    "name": "live",
                    "route_prefix": "/live",
                    "import_path": "serve.app:build",
                    "args": ARGS,
                    "deployments": [
                        {"name": "Ingress", "ray_actor_options": NO_CPU},
                        {"name": "Translator", "ray_actor_options": NO_CPU, "user_config": translator_user_config},
                        {"name": "Speaker", "ray_actor_options": NO_CPU},
                    ],
                }
            ]
        }
    )


def _translate(c: httpx.Client, prefix: str) -> str:
    r = c.post(f"{prefix}/v1/translate", json={"text": "Hello."})
    assert r.status_code == 200, r.text
    return str(r.json()["translation"])


def test_user_config_switches_option_live(serve_port: int) -> None:
    client = _get_global_client()
    client.deploy_apps(_config({"options": {"prefix": "[v1] "}}), _blocking=True)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{serve_port}", timeout=30) as c:
            assert _translate(c, "/live") == "[v1] Hello."
            g = c.get("/live/v1/graph").json()
            pid = g["translator"]["live"]["pid"]
            assert g["translator"]["live"]["nice"] == 19, "decoding runs below speech and the HTTP path"
            assert g["speaker"]["live"]["nice"] == 15  # Ray's worker niceness
            client.deploy_apps(_config({"options": {"prefix": "[v2] ", "uppercase": True}, "nice": 18}), _blocking=True)
            deadline = time.monotonic() + 60
            while _translate(c, "/live") != "[v2] HELLO." and time.monotonic() < deadline:
                time.sleep(0.2)
            assert _translate(c, "/live") == "[v2] HELLO."
            live = c.get("/live/v1/graph").json()["translator"]["live"]
            assert live["options"] == {"prefix": "[v2] ", "uppercase": True}
            assert live["pid"] == pid, "reconfigure must not restart the replica"
            assert live["nice"] == 18
    finally:
        serve.delete("live")


def test_colocated_graph(serve_port: int, deploy_graph: Any) -> None:
    deploy_graph(
        {**ARGS, "colocate": True, "translator": {"backend": "echo", "options": {"prefix": "c:"}}}, "colo", "/colo"
    )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{serve_port}", timeout=30) as c:
            assert _translate(c, "/colo") == "c:Hello."
            r = c.post("/colo/v1/speech-translate", json={"text": "Hi there.", "voice": "nope"})
            assert r.status_code == 422 and "sine, square" in r.json()["error"]["message"]
            r = c.post("/colo/v1/speech-translate", json={"text": "Hi there."})
            assert r.status_code == 200 and r.headers["content-type"] == "audio/wav"
            g = c.get("/colo/v1/graph").json()
            assert g["colocate"] is True
            assert g["translator"]["live"]["pid"] == g["speaker"]["live"]["pid"]
            assert g["translator"]["live"]["nice"] == 15, "a colocated translator must not lower the ingress"
    finally:
        serve.delete("colo")
