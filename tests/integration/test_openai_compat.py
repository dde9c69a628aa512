"""The official ``openai`` client, unchanged, against the graph (echo translator, tone speaker): its
defaults, every voice name, model and format, streamed responses, and what OpenAI's API refuses.
Every answer is decoded back with a real decoder (libsndfile, FFmpeg) and checked for length and sound."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from ray import serve

from backends import audio
from backends.base import OPENAI_VOICES

openai = pytest.importorskip("openai", reason="needs the official openai client: pip install 'hayaku[test]'")

ARGS = {
    "translator": {"backend": "echo", "options": {"prefix": ""}},
    "speaker": {"backend": "tone", "voice": "sine", "voices": {"onyx": "square", "robot": "square"}},
    # max_chars above OpenAI's 4096, so that its own limit is the one a long input meets
    "limits": {"max_chars": 6000, "max_body_bytes": 65536, "request_timeout_s": 30},
}
TEXT = "こんにちは。元気です。"
#: the tone speaker: 0.06 s per character, 0.12 s between sentences
SECONDS = 0.06 * len(TEXT) + 0.12
SLACK_S = 0.15


@pytest.fixture(scope="module")
def base_url(serve_port: int, deploy_graph: Any) -> Iterator[str]:
    deploy_graph(ARGS, "openai", "/openai")
    yield f"http://127.0.0.1:{serve_port}/openai"
    serve.delete("openai")


@pytest.fixture(scope="module")
def oc(base_url: str) -> Any:
    return openai.OpenAI(base_url=f"{base_url}/v1", api_key="unused", max_retries=0)


def _check_audio(data: bytes, fmt: str, seconds: float = SECONDS) -> None:
    samples, rate = audio.decode(data, fmt)
    assert abs(len(samples) / rate - seconds) < SLACK_S, (fmt, len(samples) / rate, seconds)
    assert audio.rms(samples) > 0.1, fmt


def test_the_clients_defaults(oc: Any, tmp_path: Any) -> None:
    # The snippet as tools built on OpenAI's API send it: no response_format, so mp3.
    oc.audio.speech.create(model="tts-1", voice="alloy", input=TEXT).write_to_file(tmp_path / "hi.mp3")
    _check_audio((tmp_path / "hi.mp3").read_bytes(), "mp3")
    response = oc.audio.speech.with_raw_response.create(model="tts-1", voice="alloy", input=TEXT)
    assert response.headers["content-type"] == "audio/mpeg"
    assert response.headers["x-hayaku-voice"] == "sine"  # alloy speaks with the configured voice
    assert "x-hayaku-ignored" not in response.headers


@pytest.mark.parametrize("fmt", audio.FORMATS)
def test_every_format(oc: Any, fmt: str) -> None:
    response = oc.audio.speech.with_raw_response.create(
        model="gpt-4o-mini-tts", voice="coral", input=TEXT, response_format=fmt
    )
    assert response.headers["content-type"] == audio.MEDIA_TYPES[fmt]
    if fmt == "pcm":
        assert response.headers["x-hayaku-sample-rate"] == "24000"  # OpenAI's pcm rate
    _check_audio(response.content, fmt)


@pytest.mark.parametrize("fmt", audio.STREAMABLE)
def test_streamed_with_the_clients_streaming_response(oc: Any, fmt: str) -> None:
    with oc.audio.speech.with_streaming_response.create(
        model="tts-1-hd", voice="onyx", input=TEXT, response_format=fmt, stream_format="audio"
    ) as streamed:
        assert streamed.headers["content-type"] == audio.MEDIA_TYPES[fmt]
        assert streamed.headers["x-hayaku-voice"] == "square"  # onyx -> square in the config's voices:
        chunks = list(streamed.iter_bytes())
    _check_audio(b"".join(chunks), fmt)


def test_sse_carries_the_stream_of_the_asked_format(oc: Any) -> None:
    with oc.audio.speech.with_streaming_response.create(
        model="tts-1", voice="alloy", input=TEXT, response_format="opus", stream_format="sse"
    ) as streamed:
        assert streamed.headers["content-type"].startswith("text/event-stream")
        events = [json.loads(line[6:]) for line in streamed.iter_lines() if line.startswith("data: ")]
    assert events[-1] == {"type": "speech.audio.done", "sentences": 2}
    assert {e["type"] for e in events[:-1]} == {"speech.audio.delta"}
    _check_audio(b"".join(base64.b64decode(e["audio"]) for e in events[:-1]), "opus")


@pytest.mark.parametrize("voice", OPENAI_VOICES)
def test_every_openai_voice_speaks(oc: Any, voice: str) -> None:
    response = oc.audio.speech.with_raw_response.create(
        model="tts-1", voice=voice, input="テスト", response_format="wav"
    )
    assert response.headers["x-hayaku-voice"] == ("square" if voice == "onyx" else "sine")


def test_models_voices_speed_and_instructions(oc: Any, base_url: str) -> None:
    ids = [m.id for m in oc.models.list()]
    assert ids == ["tts-1", "tts-1-hd", "gpt-4o-mini-tts", "hayaku", "tone"]
    for model in ids:
        oc.audio.speech.create(model=model, voice="sine", input="テスト", response_format="pcm")
    voices = httpx.get(f"{base_url}/v1/audio/voices").json()
    assert voices["voices"] == ["sine", "square", *OPENAI_VOICES, "robot"]
    assert {d["id"]: d["voice"] for d in voices["data"]}["onyx"] == "square"
    assert voices["default"] == "sine" and voices["backend"] == "tone"
    slow = oc.audio.speech.create(model="tts-1", voice="robot", input=TEXT, response_format="wav", speed=0.25)
    fast = oc.audio.speech.create(model="tts-1", voice="robot", input=TEXT, response_format="wav", speed=4.0)
    _check_audio(slow.content, "wav", 0.06 * len(TEXT) / 0.25 + 0.12)
    _check_audio(fast.content, "wav", 0.06 * len(TEXT) / 4.0 + 0.12)
    told = oc.audio.speech.with_raw_response.create(
        model="gpt-4o-mini-tts", voice="alloy", input=TEXT, instructions="Speak cheerfully."
    )
    assert told.headers["x-hayaku-ignored"].startswith("instructions")
    _check_audio(told.content, "mp3")


def test_what_openais_api_refuses(oc: Any) -> None:
    with pytest.raises(openai.UnprocessableEntityError) as err:
        oc.audio.speech.create(model="tts-1", voice="nightingale", input=TEXT)
    message = err.value.body["message"]
    assert "valid voices: sine, square" in message and "alloy, ash, ballad" in message and "robot" in message
    with pytest.raises(openai.UnprocessableEntityError) as err:
        oc.audio.speech.create(model="tts-1", voice="alloy", input=TEXT, response_format="ogg")
    assert "'mp3', 'opus', 'aac', 'flac', 'wav' or 'pcm'" in err.value.body["message"]
    with pytest.raises(openai.BadRequestError) as err:
        oc.audio.speech.create(model="tts-1", voice="alloy", input="あ" * 4097)
    assert "at most 4096" in err.value.body["message"]
    oc.audio.speech.create(model="tts-1", voice="alloy", input="あ" * 4096, response_format="pcm")
    with pytest.raises(openai.UnprocessableEntityError) as err:
        oc.audio.speech.create(model="whisper-1", voice="alloy", input=TEXT)
    assert "valid models: tts-1, tts-1-hd, gpt-4o-mini-tts, hayaku, tone" in err.value.body["message"]
    with pytest.raises(openai.UnprocessableEntityError) as err:
        oc.audio.speech.create(model="tts-1", voice="alloy", input=TEXT, speed=4.5)
    with pytest.raises(openai.UnprocessableEntityError) as err:
        oc.audio.speech.create(model="tts-1", voice="alloy", input=TEXT, response_format="flac", stream_format="audio")
    assert "flac cannot be streamed" in err.value.body["message"]


@pytest.mark.parametrize("fmt", audio.FORMATS)
def test_speech_translate_in_every_format(base_url: str, fmt: str) -> None:
    text = "Hello there. How are you?"
    seconds = 0.06 * len(text) + 0.12  # echo: the translation is the text
    with httpx.Client(base_url=base_url, timeout=30) as c:
        whole = c.post("/v1/speech-translate", json={"text": text, "format": fmt})
        assert whole.status_code == 200 and whole.headers["content-type"] == audio.MEDIA_TYPES[fmt]
        samples, rate = audio.decode(whole.content, fmt, pcm_rate=int(whole.headers["x-hayaku-sample-rate"]))
        assert abs(len(samples) / rate - seconds) < SLACK_S and audio.rms(samples) > 0.1
        streamed = c.post("/v1/speech-translate", json={"text": text, "format": fmt, "stream": True})
        if fmt not in audio.STREAMABLE:
            assert streamed.status_code == 422 and "cannot be streamed" in streamed.json()["error"]["message"]
            return
        assert streamed.status_code == 200 and streamed.headers["content-type"] == audio.MEDIA_TYPES[fmt]
        _check_audio(streamed.content, fmt, seconds)
        lines = c.post("/v1/speech-translate", json={"text": text, "format": fmt, "stream": True, "response": "json"})
        sentences = [json.loads(x) for x in lines.text.splitlines()][:-1]
        assert [s["format"] for s in sentences] == [fmt, fmt]
        decoded = [audio.decode(base64.b64decode(s["audio_base64"]), fmt, s["sample_rate"]) for s in sentences]
        assert all(audio.rms(y) > 0.1 for y, _ in decoded)
