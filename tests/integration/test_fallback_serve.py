"""Fallback chains in a real Ray Serve graph over HTTP: a failing primary, a serving fallback, a restore."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
from ray import serve

from backends.audio import decode_wav, rms

ARGS = {
    # The translator's primary returns empty translations for its first 3 s after load, then recovers.
    "translator": {
        "backend": "echo",
        "options": {"fault": "garbage", "fault_for_s": 3.0},
        "fallbacks": [{"backend": "echo", "options": {"prefix": "[fb] "}}],
        "probe_interval_s": 0.2,
    },
    # The speaker's primary raises on every call: a second tone at another pitch serves.
    "speaker": {
        "backend": "tone",
        "options": {"fault": "raise", "frequency": 440},
        "fallbacks": [{"backend": "tone", "options": {"frequency": 660}}],
        "attempt_timeout_s": 5,
        "probe_interval_s": 0.2,
    },
    "limits": {"request_timeout_s": 30},
}


@pytest.fixture(scope="module")
def client(serve_port: int, deploy_graph: Any) -> Iterator[httpx.Client]:
    deploy_graph(ARGS, "fallback", "/fb")
    with httpx.Client(base_url=f"http://127.0.0.1:{serve_port}/fb", timeout=60) as c:
        yield c
    serve.delete("fallback")


def _pitch_hz(samples: np.ndarray, rate: int) -> float:
    crossings = np.count_nonzero(np.diff(np.signbit(samples.astype(np.float32))))
    return crossings / 2 / (len(samples) / rate)


def test_failing_primary_speaker_falls_back_with_audio(client: httpx.Client) -> None:
    r = client.post("/v1/speech-translate", json={"text": "Hello, how are you today?"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("audio/wav")
    samples, rate = decode_wav(r.content)
    assert len(samples) > rate // 10 and rms(samples) > 0.05
    assert abs(_pitch_hz(samples, rate) - 660) < 40, "the 660 Hz fallback should have spoken"
    assert "speaker" in r.headers.get("x-hayaku-fallback", ""), dict(r.headers)

    health = client.get("/healthz").json()
    speaker = health["speaker"]
    assert speaker["ok"] is True and speaker["degraded"] is True
    primary, fallback = speaker["backends"]
    assert primary["state"] == "unhealthy" and "injected" in primary["reason"] and primary["since"] > 0
    assert fallback["state"] == "healthy" and fallback["served"] >= 1

    graph = client.get("/v1/graph").json()
    chain = graph["speaker"]["live"]["fallback"]
    assert [b["options"]["frequency"] for b in chain["backends"]] == [440, 660]


def test_primary_translator_is_restored_by_the_probe(client: httpx.Client) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        primary = client.get("/healthz").json()["translator"]["backends"][0]
        if primary["state"] == "healthy":
            break
        time.sleep(0.2)
    assert primary["state"] == "healthy", primary
    assert primary["failures"] >= 1, "the warm-up's empty translation should have marked it unhealthy once"
    r = client.post("/v1/translate", json={"text": "Hello."})
    assert r.status_code == 200, r.text
    assert r.json()["translation"] == "Hello."
    assert "x-hayaku-fallback" not in r.headers
