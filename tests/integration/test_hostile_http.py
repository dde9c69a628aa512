"""Hostile input over real HTTP to a real Serve graph (echo + tone, colocated): text, voice and model
fields, raw bodies. Every answer is a success or a JSON 4xx; never a 5xx, never a hang."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote

import httpx
import pytest
from hypothesis import strategies as st
from ray import serve

from backends.audio import decode_wav
from backends.base import OPENAI_VOICES
from benchmarks.hostile import DASH_TEXT, MB, NAMES, SPECIAL_TEXT, SURROGATE_TEXT, TEXT, budget, check, tried

ARGS = {
    "translator": {"backend": "echo"},
    "speaker": {"backend": "tone", "voice": "sine", "options": {"seconds_per_char": 0.002}},
    "limits": {"max_chars": 2000, "max_body_bytes": 65536, "request_timeout_s": 30},
    "colocate": True,
}
DEPTHS = [pytest.param("quick", id="quick"), pytest.param("long", id="long", marks=pytest.mark.slow)]


@pytest.fixture(scope="module")
def client(serve_port: int, deploy_graph: Any) -> Iterator[httpx.Client]:
    deploy_graph(ARGS, "hostile", "/hostile")
    with httpx.Client(base_url=f"http://127.0.0.1:{serve_port}/hostile", timeout=60) as c:
        yield c
    serve.delete("hostile")


def _post(client: httpx.Client, path: str, body: Any) -> httpx.Response:
    # ensure_ascii: lone surrogates travel as \\udXXX escapes, as a hostile JSON client would send them
    data = json.dumps(body, ensure_ascii=True).encode()
    return client.post(path, content=data, headers={"content-type": "application/json"})


def _ok_or_4xx(r: httpx.Response) -> bool:
    """True for a success; asserts any other answer is a JSON 4xx error."""
    assert r.status_code < 500, (r.status_code, r.text[:300])
    if r.status_code < 400:
        return True
    body = r.json()
    assert set(body["error"]) == {"type", "message"} and body["error"]["message"], body
    return False


def _same_text(sent: str, got: str) -> None:
    # echo translates to its input: nothing may be lost or altered on the way (whitespace aside).
    # Two surrogates that make a pair are one character once JSON is decoded.
    sent = sent.encode("utf-16-le", "surrogatepass").decode("utf-16-le")
    assert "".join(got.split()) == "".join(sent.split())


@pytest.mark.parametrize("depth", DEPTHS)
def test_any_text_to_translate(client: httpx.Client, depth: str) -> None:
    def prop(text: str) -> None:
        r = _post(client, "/v1/translate", {"text": text})
        if _ok_or_4xx(r):
            _same_text(text, r.json()["translation"])

    check("http.text.translate", st.one_of(TEXT, DASH_TEXT, SURROGATE_TEXT), prop, budget(40, depth))


@pytest.mark.parametrize("depth", DEPTHS)
def test_any_text_to_speech_translate(client: httpx.Client, depth: str) -> None:
    def prop(case: tuple[str, str]) -> None:
        text, response = case
        r = _post(client, "/v1/speech-translate", {"text": text, "response": response})
        if not _ok_or_4xx(r):
            return
        if response == "json":
            _same_text(text, r.json()["translation"])
        else:
            samples, rate = decode_wav(r.content)
            assert rate == 24000 and len(samples) > 0

    texts = st.one_of(TEXT, DASH_TEXT, SURROGATE_TEXT)
    check("http.text.speech-translate", st.tuples(texts, st.sampled_from(["audio", "json"])), prop, budget(25, depth))


@pytest.mark.parametrize("depth", DEPTHS)
def test_hostile_voice_and_model_fields(client: httpx.Client, depth: str) -> None:
    def prop(case: tuple[str, str]) -> None:
        voice, model = case
        r = _post(client, "/v1/speech-translate", {"text": "Hello.", "voice": voice})
        if voice in ("sine", "square", "", *OPENAI_VOICES):  # the voices and their aliases (OpenAI's names)
            assert r.status_code == 200, r.text
        else:
            assert r.status_code == 422, (voice, r.status_code, r.text[:200])
            assert "voice" in r.json()["error"]["message"]
        # OpenAI's `model` is accepted as any name and never used to find a file
        r = _post(client, "/v1/audio/speech", {"input": "テスト", "model": model})
        _ok_or_4xx(r)

    check("http.names.voice+model", st.tuples(NAMES, NAMES), prop, budget(30, depth))


#: (body, the text it carries when it is valid, its answer on /v1/translate and /v1/speech-translate)
RAW_BODIES: list[tuple[bytes, str | None, int]] = [
    (b"[" * 50_000 + b"]" * 50_000, None, 413),  # over max_body_bytes: refused unread
    (b'{"text": ' + b"9" * 5000 + b"}", None, 400),  # a number Python will not read
    (b'{"text": 1e999999}', None, 422),  # inf is no string
    (b'{"text": "a", "speed": 1e999}', None, 422),  # translate takes no speed; speech-translate's is at most 4
    (b'{"text": "a", "speed": NaN}', None, 422),
    (b'{"text": "\\u0000"}', "\x00", 200),  # NUL is just text to echo and tone
    (b'{"text": "a\\ud800b"}', None, 422),  # lone surrogates are refused, with the position
    (b'{"text": "\\udfff\\ud800"}', None, 422),
    (b"\xff\xfe\x00\x00", None, 400),
    (b"\xef\xbb\xbf" + b'{"text": "bom"}', "bom", 200),  # a UTF-8 byte order mark is skipped
    (b'{"text": "a", "text": "b"}', "b", 200),  # the last of duplicate keys counts, as in json.loads
    (b'{"text": ["a"]}', None, 422),
    (b'{"text": {"$ne": ""}}', None, 422),
    (b'{"__proto__": {"x": 1}, "text": "a"}', None, 422),  # an unknown field
    (b"null", None, 422),
    (b"", None, 422),
    (b'"text"', None, 422),
    (b'{"text": "' + b"a" * 70_000 + b'"}', None, 413),
]
#: the error type of each refusal
ERROR_TYPE = {400: "malformed_json", 413: "invalid_request", 422: "invalid_request"}


@pytest.mark.parametrize("path", ["/v1/translate", "/v1/speech-translate", "/v1/audio/speech"])
def test_raw_hostile_bodies(client: httpx.Client, path: str) -> None:
    for raw, text, status in RAW_BODIES:
        tried("http.raw-body")
        # /v1/audio/speech (OpenAI's) reads "input", not "text": every object these bodies hold is a 422 there
        if path == "/v1/audio/speech" and status == 200:
            status = 422
        r = client.post(path, content=raw, headers={"content-type": "application/json"})
        assert r.status_code == status, (raw[:40], r.status_code, r.text[:200])
        if status != 200:
            assert r.json()["error"]["type"] == ERROR_TYPE[status], (raw[:40], r.text[:200])
        elif path == "/v1/translate":
            assert r.json()["translation"] == text, (raw[:40], r.text[:200])
        else:
            samples, rate = decode_wav(r.content)
            assert rate == 24000 and len(samples) > 0 and unquote(r.headers["x-hayaku-translation"]) == text


@pytest.mark.parametrize("depth", DEPTHS)
def test_random_bytes_as_a_body(client: httpx.Client, depth: str) -> None:
    def prop(raw: bytes) -> None:
        r = client.post("/v1/translate", content=raw, headers={"content-type": "application/json"})
        _ok_or_4xx(r)

    check("http.random-bytes", st.binary(max_size=200), prop, budget(20, depth))


def test_megabyte_text_is_a_413_unread(client: httpx.Client) -> None:
    for piece in ("a", "日本", "👨‍👩‍👧", "-"):
        tried("http.text.1mb")
        text = (piece * (MB // len(piece) + 1))[:MB]
        r = _post(client, "/v1/speech-translate", {"text": text})
        assert r.status_code == 413 and "max_body_bytes=65536" in r.json()["error"]["message"], r.text[:200]


def test_cors_is_closed_by_default(client: httpx.Client) -> None:
    origin = {"origin": "https://evil.example"}
    r = client.post("/v1/translate", json={"text": "Hello."}, headers=origin)
    assert r.status_code == 200 and "access-control-allow-origin" not in r.headers
    r = client.options("/v1/translate", headers={**origin, "access-control-request-method": "POST"})
    # no CORS middleware answers the preflight: the route takes POST only
    assert "access-control-allow-origin" not in r.headers and r.status_code == 405, r.text[:200]
    assert r.json()["error"]["type"] == "method_not_allowed"


def test_hostile_text_over_the_websocket(serve_port: int, client: httpx.Client) -> None:
    ws_client = pytest.importorskip("websockets.sync.client", reason="needs websockets: pip install websockets")
    with ws_client.connect(f"ws://127.0.0.1:{serve_port}/hostile/v1/stream", open_timeout=30) as ws:
        for text in SPECIAL_TEXT:
            tried("ws.text")
            ws.send(json.dumps({"text": text + " "}))
        ws.send(json.dumps({"type": "end"}))
        kinds = []
        while True:
            msg = ws.recv(timeout=60)
            if isinstance(msg, bytes):
                continue
            data = json.loads(msg)
            kinds.append(data["type"])
            if data["type"] in ("done", "error"):
                break
    # NUL, controls, markup and flags are all just text to echo and tone: every sentence is spoken
    assert kinds[-1] == "done" and "error" not in kinds and kinds.count("audio") >= 1, kinds
