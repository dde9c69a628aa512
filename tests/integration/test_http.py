"""The graph over real HTTP (echo translator, tone speaker): every route, bad input, floods."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote

import httpx
import pytest
from ray import serve

from backends.audio import decode_wav, rms

TINY_ARGS = {
    "translator": {"backend": "echo", "options": {"prefix": ""}},
    "speaker": {"backend": "tone", "voice": "sine"},
    "limits": {"max_chars": 2000, "max_body_bytes": 65536, "request_timeout_s": 30},
}


@pytest.fixture(scope="module")
def client(serve_port: int, deploy_graph: Any) -> Iterator[httpx.Client]:
    deploy_graph(TINY_ARGS, "tiny", "/")
    with httpx.Client(base_url=f"http://127.0.0.1:{serve_port}", timeout=60) as c:
        yield c
    serve.delete("tiny")


def _error(r: httpx.Response, status: int) -> str:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body["error"]) == {"type", "message"}
    assert r.headers["x-request-id"]
    return str(body["error"]["message"])


def test_healthz_and_graph(client: httpx.Client) -> None:
    r = client.get("/healthz")
    assert r.status_code == 200 and r.json()["status"] == "ok"
    assert r.headers["x-request-id"]
    g = client.get("/v1/graph").json()
    assert g["translator"]["backend"] == "echo" and g["translator"]["reason"] == "set in config"
    assert g["speaker"]["live"]["voices"] == ["sine", "square"]
    from graph import hardware

    here = hardware.probe(with_runtimes=False)  # the replicas run on this machine: the same hardware
    assert (g["hardware"]["class"], g["hardware"]["key"]) == (here["class"], here["key"]), g["hardware"]
    assert client.get("/docs").status_code == 200
    assert "/v1/speech-translate" in client.get("/openapi.json").json()["paths"]


def test_translate(client: httpx.Client) -> None:
    r = client.post("/v1/translate", json={"text": "Hello there. How are you?", "target_lang": "fr"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["translation"] == "Hello there. How are you?"
    assert body["backend"] == "echo" and body["sentences"] == 2 and body["target_lang"] == "fr"
    assert body["request_id"] == r.headers["x-request-id"]
    assert body["timings_ms"]["total"] >= body["timings_ms"]["translate"] >= 0


def test_speech_translate_audio_and_json(client: httpx.Client) -> None:
    r = client.post("/v1/speech-translate", json={"text": "Hello, how are you today?"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "audio/wav"
    samples, rate = decode_wav(r.content)
    assert rate == 24000 and len(samples) > rate // 2 and rms(samples) > 0.05
    assert unquote(r.headers["x-hayaku-translation"]) == "Hello, how are you today?"
    timings = json.loads(r.headers["x-hayaku-timings"])
    assert {"translate", "synthesize", "encode", "total"} <= set(timings)

    j = client.post("/v1/speech-translate", json={"text": "Hi. Bye.", "response": "json", "voice": "square"})
    assert j.status_code == 200, j.text
    body = j.json()
    samples, rate = decode_wav(base64.b64decode(body["audio_base64"]))
    assert rate == body["sample_rate"] == 24000 and rms(samples) > 0.2  # a square wave is loud
    assert body["speaker"]["voice"] == "square" and body["translator"]["backend"] == "echo"

    pcm = client.post("/v1/speech-translate", json={"text": "Hello.", "format": "pcm"})
    assert pcm.headers["content-type"] == "audio/pcm" and len(pcm.content) % 2 == 0 and pcm.content


def test_openai_client(client: httpx.Client) -> None:
    openai = pytest.importorskip("openai", reason="needs the openai client: pip install 'hayaku[test]'")
    oc = openai.OpenAI(base_url=f"{str(client.base_url).rstrip('/')}/v1", api_key="x", max_retries=0)
    audio = oc.audio.speech.create(model="hayaku", voice="sine", input="こんにちは。元気です。", response_format="wav")
    samples, rate = decode_wav(audio.content)
    assert rate == 24000 and rms(samples) > 0.05
    flac = oc.audio.speech.create(model="tone", voice="square", input="テスト", response_format="flac")
    assert flac.content[:4] == b"fLaC"
    with pytest.raises(openai.UnprocessableEntityError) as err:
        oc.audio.speech.create(model="tts-1", voice="nightingale", input="hi")
    assert "sine, square" in str(err.value) and "alloy, ash" in str(err.value)
    with pytest.raises(openai.UnprocessableEntityError) as err:
        oc.audio.speech.create(model="tts-1", voice="sine", input="hi", response_format="ogg")  # type: ignore[arg-type]
    assert "'mp3', 'opus', 'aac', 'flac', 'wav' or 'pcm'" in str(err.value)
    # The official client's streaming call: PCM arrives sentence by sentence, the same audio as whole.
    whole = oc.audio.speech.create(model="hayaku", voice="sine", input="こんにちは。元気です。", response_format="pcm")
    with oc.audio.speech.with_streaming_response.create(
        model="hayaku", voice="sine", input="こんにちは。元気です。", response_format="pcm", stream_format="audio"
    ) as streamed:
        assert streamed.headers["x-hayaku-sample-rate"] == "24000"
        assert b"".join(streamed.iter_bytes()) == whole.content


@pytest.mark.parametrize(
    ("path", "body", "status", "needle"),
    [
        ("/v1/translate", b"{not json", 400, "malformed JSON"),
        ("/v1/translate", {"text": 5}, 422, "text: Input should be a valid string"),
        ("/v1/translate", {}, 422, "text: Field required"),
        ("/v1/translate", {"text": "hi", "colour": "red"}, 422, "colour: unknown field"),
        ("/v1/translate", {"text": "   "}, 400, "empty"),
        ("/v1/translate", {"text": "x" * 2001}, 413, "max_chars=2000"),
        ("/v1/translate", {"text": "hi", "target_lang": "xx"}, 422, "valid codes: ar, de"),
        ("/v1/translate", {"text": "hi", "source_lang": "ja", "target_lang": "ja"}, 422, "nothing to translate"),
        ("/v1/speech-translate", {"text": "hi", "voice": "../etc"}, 422, "not a path"),
        ("/v1/speech-translate", {"text": "hi", "voice": "nightingale"}, 422, "valid voices: sine, square"),
        ("/v1/speech-translate", {"text": "hi", "format": "ogg"}, 422, "'mp3', 'opus', 'aac', 'flac', 'wav' or 'pcm'"),
        ("/v1/speech-translate", {"text": "hi", "speed": 9}, 422, "speed"),
        ("/v1/audio/speech", {"input": ["a"]}, 422, "input: Input should be a valid string"),
        ("/v1/nope", {}, 404, "Not Found"),
    ],
)
def test_bad_input(client: httpx.Client, path: str, body: object, status: int, needle: str) -> None:
    if isinstance(body, bytes):
        r = client.post(path, content=body, headers={"content-type": "application/json"})
    else:
        r = client.post(path, json=body)
    assert needle in _error(r, status)


def test_huge_body_is_refused_unread(client: httpx.Client) -> None:
    big = b'{"text": "' + b"a" * (8 * 1024 * 1024) + b'"}'
    try:
        r = client.post("/v1/translate", content=big, headers={"content-type": "application/json"})
    except httpx.TransportError:
        pass  # the server may close before the client has written 8 MB; the next request must work
    else:
        assert "max_body_bytes=65536" in _error(r, 413)

    def chunks() -> Iterator[bytes]:
        yield b'{"text": "'
        for _ in range(40):
            yield b"b" * 4096
        yield b'"}'

    r = client.post("/v1/translate", content=chunks(), headers={"content-type": "application/json"})
    assert "max_body_bytes=65536" in _error(r, 413)
    assert client.post("/v1/translate", json={"text": "still serving"}).status_code == 200


def test_concurrent_flood(client: httpx.Client) -> None:
    async def flood() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=str(client.base_url), timeout=120) as ac:
            reqs = []
            for i in range(60):
                if i % 3 == 0:
                    reqs.append(ac.post("/v1/speech-translate", json={"text": f"Sentence number {i}."}))
                elif i % 3 == 1:
                    reqs.append(ac.post("/v1/translate", json={"text": f"Sentence {i}. And more."}))
                else:
                    reqs.append(ac.post("/v1/translate", json={"text": "x" * 3000}))
            return list(await asyncio.gather(*reqs))

    responses = asyncio.run(flood())
    for i, r in enumerate(responses):
        if i % 3 == 2:
            _error(r, 413)
        else:
            assert r.status_code == 200, r.text
            if i % 3 == 1:
                assert r.json()["translation"] == f"Sentence {i}.And more."
    assert len({r.headers["x-request-id"] for r in responses}) == len(responses)
    assert client.get("/healthz").status_code == 200


@pytest.mark.parametrize("ctype", [None, "application/x-www-form-urlencoded", "text/plain"])
def test_json_body_whatever_the_content_type(client: httpx.Client, ctype: str | None) -> None:
    """`curl -d '{"text": ...}'` sends form-encoded headers; the body is still read as JSON."""
    headers = {"content-type": ctype} if ctype else {}
    r = client.post("/v1/speech-translate", content=b'{"text":"Hello, how are you today?"}', headers=headers)
    assert r.status_code == 200, r.text
    samples, rate = decode_wav(r.content)
    assert rate == 24000 and rms(samples) > 0.05
    assert unquote(r.headers["x-hayaku-translation"]) == "Hello, how are you today?"
