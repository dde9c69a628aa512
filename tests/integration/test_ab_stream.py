"""Live A/B routing, live weights, shadow traffic, streamed speech and the WebSocket route, on real Ray Serve."""

from __future__ import annotations

import asyncio
import base64
import json
import struct
import time
from collections import Counter
from typing import Any

import httpx
import numpy as np
import pytest
from ray import serve
from ray.serve.context import _get_global_client
from ray.serve.schema import ServeDeploySchema

from backends.audio import decode_wav
from graph.pieces import join_translation

websockets = pytest.importorskip("websockets", reason="the WebSocket test needs websockets: pip install 'hayaku[test]'")

AB = {
    "translator": {"backend": "echo", "options": {"prefix": "[a] "}},
    "speaker": {"backend": "tone"},
    "variants": [
        {"name": "a", "weight": 0.7},
        {"name": "b", "weight": 0.3, "translator": {"backend": "echo", "options": {"prefix": "[b] "}}},
        {"name": "s", "shadow": True, "weight": 1.0, "translator": {"backend": "echo", "options": {"prefix": "[s] "}}},
    ],
}
#: each sentence's speech takes 300 ms of CPU: the stream's pipelining shows
SLOW = {
    "translator": {"backend": "echo"},
    "speaker": {"backend": "tone", "options": {"work_ms": 300, "sample_rate": 16000}},
}
#: a translator that decodes word by word: the streamed routes speak it clause by clause
STREAMING = {
    "translator": {"backend": "echo", "options": {"stream_ms": 40}},
    "speaker": {"backend": "tone", "options": {"sample_rate": 16000}},
}
JA_PARAGRAPH = "電車は九時に出ます。切符を買ってください。ホームは左です。よい旅を。"
PARAGRAPH = "The train leaves at nine. Please buy a ticket. The platform is on the left. Have a nice trip."


async def _many(
    base: str, path: str, bodies: list[dict[str, Any]], headers: list[dict[str, str]]
) -> list[httpx.Response]:
    sem = asyncio.Semaphore(16)
    async with httpx.AsyncClient(base_url=base, timeout=60) as c:

        async def one(body: dict[str, Any], h: dict[str, str]) -> httpx.Response:
            async with sem:
                return await c.post(path, json=body, headers=h)

        return await asyncio.gather(*(one(b, h) for b, h in zip(bodies, headers, strict=True)))


@pytest.fixture(scope="module")
def ab_url(serve_port: int, deploy_graph: Any) -> Any:
    deploy_graph(AB, "ab", "/ab")
    yield f"http://127.0.0.1:{serve_port}/ab"
    serve.delete("ab")


@pytest.fixture(scope="module")
def slow_url(serve_port: int, deploy_graph: Any) -> Any:
    # One speech at a time, so sentence i is done at (i + 1) x 300 ms whatever the number of cores.
    deploy_graph(SLOW, "slow", "/slow", {"Speaker": {"max_ongoing_requests": 1}})
    yield f"http://127.0.0.1:{serve_port}/slow"
    serve.delete("slow")


def test_variants_split_by_weight_sticky_and_forced(ab_url: str) -> None:
    n = 600
    keys = [f"user-{i}" for i in range(n)]
    replies = asyncio.run(_many(ab_url, "/v1/translate", [{"text": "Hello."}] * n, [{"X-Hayaku-Key": k} for k in keys]))
    assert all(r.status_code == 200 for r in replies)
    served = [r.headers["x-hayaku-variant"] for r in replies]
    # The answer really came from the variant the header names, and never from the shadow.
    assert all(r.json()["translation"].startswith(f"[{v}] ") for r, v in zip(replies, served, strict=True))
    shares = Counter(served)
    assert set(shares) == {"a", "b"}
    assert abs(shares["a"] / n - 0.7) <= 0.03 and abs(shares["b"] / n - 0.3) <= 0.03
    again = asyncio.run(
        _many(ab_url, "/v1/translate", [{"text": "Hi."}] * 200, [{"X-Hayaku-Key": k} for k in keys[:200]])
    )
    assert [r.headers["x-hayaku-variant"] for r in again] == served[:200], "a key keeps its variant"
    by_user = httpx.post(f"{ab_url}/v1/translate", json={"text": "Hi.", "user": keys[5]}, timeout=30)
    assert by_user.headers["x-hayaku-variant"] == served[5], "the user field is a client key too"
    with httpx.Client(base_url=ab_url, timeout=30) as c:
        forced = c.post("/v1/translate?variant=b", json={"text": "Hi."}, headers={"X-Hayaku-Key": keys[0]})
        assert forced.headers["x-hayaku-variant"] == "b" and forced.headers["x-hayaku-routing"] == "forced"
        assert (
            c.post("/v1/translate", json={"text": "Hi."}, headers={"X-Hayaku-Variant": "a"})
            .json()["translation"]
            .startswith("[a]")
        )
        bad = c.post("/v1/translate?variant=zzz", json={"text": "Hi."})
        assert bad.status_code == 400
        assert bad.json()["error"]["message"] == "variant 'zzz' does not exist; valid: a, b"
        report = c.get("/v1/ab").json()
    v = report["variants"]
    assert v["a"]["requests"] >= shares["a"] and v["b"]["requests"] >= shares["b"]
    assert v["a"]["errors"] == 0 and v["a"]["latency_ms"]["p50"] > 0
    assert v["s"]["shadow"] and v["s"]["requests"] + v["s"]["shadow_dropped"] > 0, "the shadow got copies"
    cmp = next(x for x in report["comparisons"] if x["a"] == "b")
    assert cmp["test"].startswith("mann-whitney") and 0 <= cmp["p_value"] <= 1


def _deploy_ab(weights: dict[str, float]) -> None:
    schema = ServeDeploySchema.model_validate(
        {
            "applications": [
                {
                    "name": "abw",
                    "route_prefix": "/abw",
                    "import_path": "serve.app:build",
                    "args": {**AB, "variants": AB["variants"][:2]},
                    "deployments": [
                        {"name": n, "ray_actor_options": {"num_cpus": 0}}
                        for n in ("Translator", "Speaker", "Translator_b")
                    ]
                    + [{"name": "Ingress", "ray_actor_options": {"num_cpus": 0}, "user_config": {"weights": weights}}],
                }
            ]
        }
    )
    _get_global_client().deploy_apps(schema, _blocking=True)


def test_weights_change_live_without_restart(serve_port: int) -> None:
    _deploy_ab({"a": 1.0, "b": 0.0})
    base = f"http://127.0.0.1:{serve_port}/abw"
    try:
        with httpx.Client(base_url=base, timeout=30) as c:
            assert {c.post("/v1/translate", json={"text": "Hi."}).headers["x-hayaku-variant"] for _ in range(20)} == {
                "a"
            }
            since = c.get("/v1/ab").json()["since"]
            _deploy_ab({"a": 0.0, "b": 1.0})
            deadline = time.monotonic() + 30
            while c.get("/v1/ab").json()["weights"] != {"a": 0.0, "b": 1.0} and time.monotonic() < deadline:
                time.sleep(0.2)
            assert {c.post("/v1/translate", json={"text": "Hi."}).headers["x-hayaku-variant"] for _ in range(20)} == {
                "b"
            }
            after = c.get("/v1/ab").json()
            assert after["since"] == since, "the ingress kept its state: reconfigured, not restarted"
            assert after["variants"]["a"]["requests"] == 20
    finally:
        serve.delete("abw")


def _ndjson_lines(url: str, body: dict[str, Any]) -> tuple[httpx.Response, list[tuple[float, dict[str, Any]]]]:
    lines = []
    t0 = time.perf_counter()
    with httpx.Client(timeout=60) as c, c.stream("POST", url, json=body) as r:
        buf = b""
        for chunk in r.iter_bytes():
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                lines.append((time.perf_counter() - t0, json.loads(line)))
    return r, lines


def test_ndjson_stream_sends_sentences_in_order_as_they_finish(slow_url: str) -> None:
    r, lines = _ndjson_lines(f"{slow_url}/v1/speech-translate", {"text": PARAGRAPH, "stream": True, "response": "json"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/x-ndjson")
    kinds = [line["type"] for _, line in lines]
    assert kinds == ["sentence"] * 4 + ["done"]
    sentences = [line for _, line in lines[:4]]
    assert [s["index"] for s in sentences] == [0, 1, 2, 3]
    assert [s["source"] for s in sentences] == [s["translation"] for s in sentences], "echo keeps each sentence"
    for s in sentences:
        samples, rate = decode_wav(base64.b64decode(s["audio_base64"]))
        assert rate == 16000 and len(samples) > 1000 and np.abs(samples).max() > 0.1
    # Sentence 0 went out well before the last one existed: each sentence's speech costs 300 ms.
    arrival = [t for t, _ in lines[:4]]
    assert arrival[3] - arrival[0] > 0.6
    since = [s["timings_ms"]["since_start"] for s in sentences]
    assert since == sorted(since) and since[3] - since[0] > 600
    done = lines[-1][1]
    assert done["translation"] == join_translation([s["source"] for s in sentences], "ja")
    assert done["variant"] == "default"
    assert done["timings_ms"]["first_audio"] < done["timings_ms"]["total"]


def test_pcm_and_wav_streams_carry_the_whole_audio(slow_url: str) -> None:
    with httpx.Client(timeout=60) as c:
        whole = c.post(f"{slow_url}/v1/speech-translate", json={"text": PARAGRAPH, "format": "pcm"})
        pcm = c.post(f"{slow_url}/v1/speech-translate", json={"text": PARAGRAPH, "format": "pcm", "stream": True})
        wav = c.post(f"{slow_url}/v1/speech-translate", json={"text": PARAGRAPH, "format": "wav", "stream": True})
        speech = {"input": JA_PARAGRAPH, "response_format": "pcm"}
        whole_speech = c.post(f"{slow_url}/v1/audio/speech", json=speech)
        sse = c.post(f"{slow_url}/v1/audio/speech", json={**speech, "stream_format": "sse"})
        chunked = c.post(f"{slow_url}/v1/audio/speech", json={**speech, "stream_format": "audio"})
    assert pcm.status_code == 200 and pcm.headers["content-type"] == "audio/pcm"
    assert pcm.headers["x-hayaku-sample-rate"] == "16000"
    assert pcm.content == whole.content, "the stream is the same audio as the whole response"
    assert wav.content[:4] == b"RIFF" and wav.content[8:16] == b"WAVEfmt "
    assert struct.unpack("<I", wav.content[24:28])[0] == 16000
    assert wav.content[44:] == whole.content
    events = [json.loads(x[6:]) for x in sse.text.split("\n\n") if x.startswith("data: ")]
    # the first sentence starts at its first phrase (電車は九時に), so it comes in two pieces of the same length
    assert [e["type"] for e in events] == ["speech.audio.delta"] * 5 + ["speech.audio.done"]
    deltas = [base64.b64decode(e["audio"]) for e in events[:5]]
    assert len(b"".join(deltas)) == len(whole_speech.content)
    assert whole_speech.content.endswith(b"".join(deltas[2:])), "the later sentences are the same audio"
    assert chunked.content.endswith(b"".join(deltas[2:])) and chunked.headers["content-type"] == "audio/pcm"
    assert len(chunked.content) == len(whole_speech.content)


def test_client_that_leaves_mid_stream_frees_the_replica(slow_url: str) -> None:
    long_text = " ".join(f"Sentence number {i} is here." for i in range(20))  # 20 x 300 ms of speech
    with httpx.Client(timeout=60) as c:
        with c.stream("POST", f"{slow_url}/v1/speech-translate", json={"text": long_text, "stream": True}) as r:
            assert r.status_code == 200
            next(r.iter_bytes())
        # Left after the first chunk: the other ~19 sentences must not keep the speaker busy for ~6 s.
        t0 = time.perf_counter()
        after = c.post(f"{slow_url}/v1/speech-translate", json={"text": "Short."})
        waited = time.perf_counter() - t0
    assert after.status_code == 200
    assert waited < 3.5, f"the next request waited {waited:.1f} s behind the abandoned stream's work"


@pytest.fixture(scope="module")
def streaming_url(serve_port: int, deploy_graph: Any) -> Any:
    deploy_graph(STREAMING, "streaming", "/streaming")
    yield f"http://127.0.0.1:{serve_port}/streaming"
    serve.delete("streaming")


def test_a_decoding_translation_is_streamed_clause_by_clause(streaming_url: str) -> None:
    """Through the translator deployment's streaming handle: each clause's audio leaves while the rest of its
    sentence is still being decoded; the non-streamed response is unchanged."""
    text = "Good morning, and thank you for coming today. Have a nice trip."
    with httpx.Client(timeout=60) as c:
        lines = [json.loads(x) for x in c.post(
            f"{streaming_url}/v1/speech-translate", json={"text": text, "stream": True, "response": "json"}
        ).text.splitlines()]  # fmt: skip
        whole = c.post(f"{streaming_url}/v1/speech-translate", json={"text": text, "response": "json"}).json()
    pieces, done = lines[:-1], lines[-1]
    assert [(p["sentence"], p["clause"], p["translation"]) for p in pieces] == [
        (0, 0, "Good morning,"),
        (0, 1, " and thank you for coming today."),
        (1, 0, "Have a nice trip."),
    ]
    assert all(p["audio_base64"] for p in pieces)
    # the first clause was heard before the sentence's translation (7 words x 40 ms) was done
    assert pieces[0]["timings_ms"]["since_start"] < pieces[1]["timings_ms"]["since_start"]
    assert done["type"] == "done" and done["translation"] == whole["translation"]
    assert whole["translation"] == join_translation(
        ["Good morning, and thank you for coming today.", "Have a nice trip."], "ja"
    )
    assert done["timings_ms"]["first_audio"] <= pieces[1]["timings_ms"]["since_start"]


def test_streams_refuse_flac_and_bad_input_clearly(slow_url: str) -> None:
    with httpx.Client(timeout=30) as c:
        r = c.post(f"{slow_url}/v1/speech-translate", json={"text": "Hi.", "stream": True, "format": "flac"})
        assert r.status_code == 422 and "flac cannot be streamed" in r.json()["error"]["message"]
        r = c.post(f"{slow_url}/v1/speech-translate", json={"text": "  ", "stream": True})
        assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request"


async def _ws(url: str, messages: list[Any]) -> list[Any]:
    got: list[Any] = []
    async with websockets.connect(url, open_timeout=20) as ws:
        for m in messages:
            await ws.send(m if isinstance(m, str) else json.dumps(m))
        try:
            while True:
                got.append(await asyncio.wait_for(ws.recv(), 30))
        except websockets.ConnectionClosed as closed:
            got.append(("closed", closed.rcvd.code if closed.rcvd else None))
    return got


def test_websocket_captions_in_speech_out(slow_url: str) -> None:
    ws_url = slow_url.replace("http://", "ws://") + "/v1/stream"
    pieces = [{"text": "The train leaves "}, {"text": "at nine. Please buy"}, {"text": " a ticket"}, {"type": "end"}]
    got = asyncio.run(_ws(ws_url, pieces))
    texts = [json.loads(m) for m in got if isinstance(m, str)]
    audio = [m for m in got if isinstance(m, bytes)]
    translations = [t for t in texts if t["type"] == "translation"]
    assert [t["source"] for t in translations] == ["The train leaves at nine.", "Please buy a ticket"]
    assert [t["index"] for t in translations] == [0, 1]
    assert len(audio) == 2 and all(len(a) > 1000 for a in audio)
    heads = [t for t in texts if t["type"] == "audio"]
    assert [h["bytes"] for h in heads] == [len(a) for a in audio] and heads[0]["sample_rate"] == 16000
    assert texts[-1]["type"] == "done" and got[-1] == ("closed", 1000)
    # One way of joining sentences for every route: the socket's audio is the streamed HTTP audio (the gap
    # before the second sentence included), byte for byte.
    body = {"text": "The train leaves at nine. Please buy a ticket", "stream": True, "format": "pcm"}
    streamed = httpx.post(f"{slow_url}/v1/speech-translate", json=body, timeout=60)
    assert streamed.status_code == 200 and b"".join(audio) == streamed.content


def test_websocket_garbage_gets_an_error_and_a_clean_close(slow_url: str) -> None:
    ws_url = slow_url.replace("http://", "ws://") + "/v1/stream"
    got = asyncio.run(_ws(ws_url, ["this is not json"]))
    err = json.loads(got[0])
    assert err["type"] == "error" and "not JSON" in err["error"]["message"]
    assert got[-1] == ("closed", 1003)
    got = asyncio.run(_ws(ws_url, [{"type": "explode"}]))
    assert "valid types: text, flush, end" in json.loads(got[0])["error"]["message"]
    # The server keeps serving.
    assert httpx.post(f"{slow_url}/v1/translate", json={"text": "Hi."}, timeout=30).status_code == 200


def test_per_variant_metrics_reach_prometheus(ab_url: str) -> None:
    """hayaku_requests / hayaku_latency_ms by variant, scraped from Ray's Prometheus endpoint."""
    import ray

    port = ray._private.worker.global_worker.node.metrics_export_port
    with httpx.Client(timeout=30) as c:
        for v in ("a", "b"):
            assert c.post(f"{ab_url}/v1/translate?variant={v}", json={"text": "Hi."}).status_code == 200
        deadline = time.monotonic() + 90  # Ray exports custom metrics every few seconds
        text = ""
        while time.monotonic() < deadline:
            text = c.get(f"http://127.0.0.1:{port}/metrics").text
            if 'variant="b"' in text and "hayaku_latency_ms_bucket" in text:
                break
            time.sleep(2)
    lines = [x for x in text.splitlines() if x.startswith("ray_hayaku_")]
    assert any(x.startswith("ray_hayaku_requests") and 'variant="a"' in x and 'route="translate"' in x for x in lines)
    assert any("hayaku_latency_ms_bucket" in x and 'variant="b"' in x and 'stage="translate"' in x for x in lines)
