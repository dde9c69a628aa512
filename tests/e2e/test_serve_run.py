"""The real CLI: `serve run configs/tiny.yaml` as a subprocess, driven over HTTP, stopped with SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import unquote

import httpx
import pytest
import yaml

from backends.audio import decode_wav, rms
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
SERVE = Path(sys.executable).with_name("serve")
START_TIMEOUT_S = 180


def _config(tmp_path: Path, port: int, **args_update: object) -> Path:
    cfg = yaml.safe_load((ROOT / "configs" / "tiny.yaml").read_text())
    cfg["http_options"] = {"host": "127.0.0.1", "port": port}
    cfg["applications"][0]["args"].update(args_update)
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _start(config: Path, log: Path) -> subprocess.Popen[bytes]:
    if not SERVE.exists():
        pytest.skip(f"Ray Serve's CLI is not next to {sys.executable}: pip install 'hayaku[serve]'")
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)  # a fresh local Ray, not the test session's
    with log.open("wb") as out:
        return subprocess.Popen(
            [str(SERVE), "run", str(config)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _stop(proc: subprocess.Popen[bytes]) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)  # `serve run` ignores SIGINT for a while
        try:
            return proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
            pytest.fail("serve run did not exit within 60 s of SIGTERM")
    return int(proc.returncode)


def _wait_healthy(proc: subprocess.Popen[bytes], log: Path, base: str, probe_timeout_s: float = 2.0) -> None:
    """Waits until `serve run` answers /healthz; fails with its log if it exits or takes too long."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        assert proc.poll() is None, f"serve run exited early:\n{log.read_text()[-3000:]}"
        try:
            if httpx.get(f"{base}/healthz", timeout=probe_timeout_s).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, f"no /healthz within {START_TIMEOUT_S} s:\n{log.read_text()[-3000:]}"
        time.sleep(0.5)


def test_serve_run_tiny(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "serve.log"
    proc = _start(_config(tmp_path, port), log)
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_healthy(proc, log, base)
        with httpx.Client(base_url=base, timeout=30) as c:
            r = c.post("/v1/translate", json={"text": "Hello, how are you today?"})
            assert r.status_code == 200 and r.json()["translation"] == "Hello, how are you today?"
            r = c.post("/v1/speech-translate", json={"text": "Hello, how are you today?"})
            assert r.status_code == 200 and unquote(r.headers["x-hayaku-translation"]).startswith("Hello")
            samples, rate = decode_wav(r.content)
            assert rate == 24000 and rms(samples) > 0.05
            r = c.post("/v1/audio/speech", json={"model": "hayaku", "input": "テスト", "voice": "square"})
            assert r.status_code == 200 and r.headers["content-type"] == "audio/mpeg"  # OpenAI's default format
            assert c.get("/v1/graph").json()["speaker"]["backend"] == "tone"
            r = c.post("/v1/translate", content=b"{", headers={"content-type": "application/json"})
            assert r.status_code == 400 and r.json()["error"]["type"] == "malformed_json"
    finally:
        running = proc.poll() is None
        code = _stop(proc)  # SIGTERM; fails the test unless the process exits within 60 s
    # It served until the SIGTERM ended it. Its exit status says nothing more: Ray 2.60's own `serve run` has
    # no drain, its signal handler ends the driver with status 15 or an abort (README, Reliability);
    # `hayaku serve` drains and exits 0 (tests/e2e/test_reliability_drain.py).
    assert running, f"serve run had already exited ({code}):\n{log.read_text(errors='replace')[-3000:]}"


def test_serve_run_bad_config_fails_at_once(tmp_path: Path) -> None:
    # Ray 2.60 builds a config file's app in the controller and `serve run` keeps running after a
    # failed build; what must happen at once is the build failing with our message (no replica starts).
    config = _config(tmp_path, free_port(), translator={"backend": "echo", "options": {"num_beams": 3}})
    log = tmp_path / "serve.log"
    proc = _start(config, log)
    needle = "args.translator.options.num_beams: unknown option (got 3). Valid options: fault, fault_every"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while needle not in log.read_text(errors="replace"):
            assert time.monotonic() < deadline, (
                f"no config error within {START_TIMEOUT_S} s:\n{log.read_text()[-3000:]}"
            )
            assert proc.poll() is None or needle in log.read_text(errors="replace"), log.read_text()[-3000:]
            time.sleep(0.5)
        assert "ServeReplica:hayaku:Translator" not in log.read_text(errors="replace")
    finally:
        _stop(proc)
