"""The graph with a real model: the transformers backend on a tiny random MarianMT (en->ja)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx
import pytest
from ray import serve

from backends.audio import decode_wav, rms


@pytest.fixture(scope="module")
def marian(serve_port: int, deploy_graph: Any, tiny_marian: Path) -> Iterator[httpx.Client]:
    args = {
        "translator": {
            "backend": "transformers",
            "model": str(tiny_marian),
            "options": {"device": "cpu", "max_new_tokens": 12},
        },
        "speaker": {"backend": "tone"},
    }
    deploy_graph(args, "marian", "/marian")
    with httpx.Client(base_url=f"http://127.0.0.1:{serve_port}/marian", timeout=120) as c:
        yield c
    serve.delete("marian")


def test_translate_with_tiny_marian(marian: httpx.Client) -> None:
    r = marian.post("/v1/translate", json={"text": "Hello, how are you today? The cat is sleeping."})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["backend"] == "transformers" and body["sentences"] == 2
    assert body["translation"].strip() and body["options"]["max_new_tokens"] == 12


def test_speech_translate_with_tiny_marian(marian: httpx.Client) -> None:
    r = marian.post("/v1/speech-translate", json={"text": "Please open the window."})
    assert r.status_code == 200, r.text
    assert unquote(r.headers["x-hayaku-translation"]).strip()
    samples, rate = decode_wav(r.content)
    assert rate == 24000 and rms(samples) > 0.05


def test_model_language_pairs_are_enforced(marian: httpx.Client) -> None:
    r = marian.post("/v1/translate", json={"text": "Bonjour.", "source_lang": "fr"})
    assert r.status_code == 422, r.text
    assert "en" in r.json()["error"]["message"]
