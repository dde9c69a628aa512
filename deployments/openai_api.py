"""What ``/v1/audio/speech`` needs beyond speech to answer as OpenAI's speech API does: the model
names it accepts, its input limit and pcm rate, the bodies of ``GET /v1/models`` and
``GET /v1/audio/voices``, and what to say about request fields no hayaku speaker can use.
Plain functions (no Ray); the ingress routes call them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from backends import audio
from backends.errors import InvalidRequest
from deployments.http.schemas import SpeechRequest

#: the model names of OpenAI's speech API; any of them speaks with the graph's speaker
OPENAI_MODELS = ("tts-1", "tts-1-hd", "gpt-4o-mini-tts")
OWN_MODEL = "hayaku"
#: OpenAI's limit on ``input``, answered 400 above it as OpenAI does (the graph's max_chars may be lower: 413)
MAX_INPUT_CHARS = 4096
#: OpenAI's ``pcm`` is headerless 24 kHz s16le: clients play it at that rate whatever the speaker made
PCM_RATE = 24000


def model_ids(speaker_backends: Iterable[str]) -> list[str]:
    """The names ``model`` may take: OpenAI's, ``hayaku`` and the graph's speaker backends."""
    return list(dict.fromkeys([*OPENAI_MODELS, OWN_MODEL, *speaker_backends]))


def check_request(body: SpeechRequest, models: list[str]) -> None:
    """Raises InvalidRequest for what OpenAI's API would refuse, or what this machine cannot encode."""
    if body.model not in models:
        raise InvalidRequest(f"unknown model {body.model!r}; valid models: {', '.join(models)}", field="model")
    if len(body.input) > MAX_INPUT_CHARS:
        raise InvalidRequest(
            f"input has {len(body.input)} characters; the speech API takes at most {MAX_INPUT_CHARS}", status=400
        )
    audio.check_format(body.response_format, stream=body.stream_format is not None)


def output_rate(fmt: str, rate: int) -> int:
    """The sample rate a response of ``fmt`` is made at from speech at ``rate``."""
    return PCM_RATE if fmt == "pcm" else audio.codec_rate(fmt, rate)


def ignored_headers(body: SpeechRequest) -> dict[str, str]:
    """Response headers that say which accepted fields had no effect."""
    if body.instructions:
        return {"X-Hayaku-Ignored": "instructions (no hayaku speaker takes instructions)"}
    return {}


def models_body(ids: list[str]) -> dict[str, Any]:
    """``GET /v1/models`` as OpenAI's client reads it."""
    return {
        "object": "list",
        "data": [{"id": i, "object": "model", "created": 0, "owned_by": "hayaku"} for i in ids],
    }


def voices_body(speaker: dict[str, Any], variant: str) -> dict[str, Any]:
    """``GET /v1/audio/voices``: every name ``voice`` takes and the voice each one speaks with."""
    aliases: dict[str, str] = speaker.get("aliases") or {}
    own: list[str] = speaker.get("voices") or []
    data = [{"id": v, "object": "voice", "voice": v, "alias": False} for v in own if v not in aliases]
    data += [{"id": a, "object": "voice", "voice": v, "alias": True} for a, v in aliases.items()]
    return {
        "object": "list",
        "data": data,
        "voices": [d["id"] for d in data],
        "default": speaker.get("voice"),
        "backend": speaker.get("backend"),
        "variant": variant,
    }
