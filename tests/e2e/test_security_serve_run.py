"""`serve run` started with HAYAKU_API_KEY in its environment: the key reaches the ingress replica.

`serve run` starts a local Ray whose workers inherit its environment, so exporting the key
before `serve run` (or `hayaku serve`) is enough; no secret needs to be written into the YAML.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from test_serve_run import _config, _start, _stop, _wait_healthy

from tests.conftest import free_port

KEY = "e2e-key-from-the-driver-environment"


# A Ray of its own (about a minute on 2 cores); the default run checks the runtime_env path instead.
@pytest.mark.slow
def test_the_key_in_serve_runs_environment_protects_the_api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HAYAKU_API_KEY", KEY)  # _start hands serve run this process's environment
    port = free_port()
    log = tmp_path / "serve.log"
    proc = _start(_config(tmp_path, port), log)
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_healthy(proc, log, base)  # /healthz stays public: orchestrators probe it without the key
        with httpx.Client(base_url=base, timeout=30) as c:
            denied = c.post("/v1/translate", json={"text": "Hello."})
            assert denied.status_code == 401 and denied.json()["error"]["type"] == "unauthorized"
            ok = c.post("/v1/translate", json={"text": "Hello."}, headers={"authorization": f"Bearer {KEY}"})
            assert ok.status_code == 200 and ok.json()["translation"] == "Hello."
    finally:
        _stop(proc)
    assert KEY not in log.read_text(errors="replace"), "the key must never be logged"
