"""The request and response bodies of the HTTP routes (pydantic), as the OpenAPI spec shows them.

Every request body refuses unknown fields and strings that are not valid Unicode, so a typo
or a lone surrogate is a 422 that names the field rather than a silent default or a 500.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator

from backends.audio import FORMATS

AudioFormat = Literal["mp3", "opus", "aac", "flac", "wav", "pcm"]
assert get_args(AudioFormat) == FORMATS, "keep AudioFormat in step with backends.audio.FORMATS"


def _valid_unicode(value: Any) -> Any:
    # JSON may carry half a UTF-16 pair ("\ud800"); it has no UTF-8 form, so no answer could quote it.
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValueError(
                f"contains a lone UTF-16 surrogate (U+{ord(value[exc.start]):04X}) at position {exc.start}; "
                "send valid Unicode"
            ) from None
    return value


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")

    _unicode = field_validator("*")(_valid_unicode)


class TranslateRequest(_Body):
    text: str = Field(..., description="Text to translate (split into sentences, translated in one batch).")
    source_lang: str | None = Field(None, description="ISO 639-1 source language; default from the config.")
    target_lang: str | None = Field(None, description="ISO 639-1 target language; default from the config.")
    user: str | None = Field(
        None, max_length=256, description="Client key for A/B stickiness (as the X-Hayaku-Key header): hashed."
    )


class TranslateResponse(BaseModel):
    translation: str = Field(..., description="The translated text.")
    source_lang: str
    target_lang: str
    backend: str = Field(..., description="Translator backend that produced it.")
    model: str | None = Field(None, description="Its model.")
    options: dict[str, Any] = Field(default_factory=dict, description="Its options.")
    sentences: int = Field(..., description="How many sentences were translated.")
    timings_ms: dict[str, float] = Field(default_factory=dict, description="Per-stage milliseconds.")
    request_id: str


class SpeechRequest(_Body):
    """OpenAI ``/v1/audio/speech`` request (the official client sends exactly these fields)."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    model: str = Field(
        "tts-1",
        description="tts-1, tts-1-hd, gpt-4o-mini-tts, hayaku or a speaker backend of this graph (GET /v1/models): "
        "each speaks with the graph's speaker.",
    )
    input: str = Field(
        ..., description="Text to speak, in the graph's target language; at most 4096 characters, as OpenAI's."
    )
    voice: str | None = Field(
        None,
        description="An OpenAI voice name (alloy, ash, ...; the config's `voices:` says which voice each stands "
        "for), one of the speaker's voices, or an alias from `voices:` (GET /v1/audio/voices); default: the "
        "configured voice.",
    )
    response_format: AudioFormat = Field(
        "mp3",
        description="mp3 (the default, as OpenAI's), opus (Ogg), aac (ADTS; needs PyAV), flac, wav, or pcm "
        "(s16le mono at 24 kHz, as OpenAI's).",
    )
    speed: float = Field(1.0, ge=0.25, le=4.0, description="Speaking rate, 0.25 to 4.0.")
    instructions: str | None = Field(
        None,
        description="Accepted for OpenAI compatibility; no hayaku speaker takes instructions, so they are ignored "
        "and the response says so in X-Hayaku-Ignored.",
    )
    stream_format: Literal["audio", "sse"] | None = Field(
        None,
        description="None: one whole file. 'audio': the file streamed sentence by sentence as it is synthesised "
        "(any format but flac). 'sse': server-sent events speech.audio.delta (base64 pieces of that stream) then "
        "speech.audio.done.",
    )
    user: str | None = Field(
        None, max_length=256, description="Client key for A/B stickiness (as the X-Hayaku-Key header): hashed."
    )


class SpeechTranslateRequest(_Body):
    text: str = Field(..., description="Text to translate and speak.")
    source_lang: str | None = Field(None, description="Source language; default from the config.")
    target_lang: str | None = Field(None, description="Target language; default from the config.")
    voice: str | None = Field(None, description="One of the speaker's voices; default: the configured voice.")
    format: AudioFormat = Field(
        "wav",
        description="Audio format: wav, mp3, opus (Ogg), aac (ADTS; needs PyAV), flac, or pcm (s16le mono at the "
        "speaker's rate, in X-Hayaku-Sample-Rate). A stream of audio can be any but flac.",
    )
    speed: float = Field(1.0, ge=0.25, le=4.0, description="Speaking rate, 0.25 to 4.0.")
    response: Literal["audio", "json"] = Field(
        "audio",
        description="'audio': the audio file, translation in headers; 'json': JSON with base64 audio "
        "(with stream: NDJSON, one line per sentence).",
    )
    stream: bool = Field(
        False,
        description="Send each sentence's audio as soon as it exists, in order, while later sentences are still "
        "translating: chunked wav/pcm (response: audio) or NDJSON lines (response: json).",
    )
    user: str | None = Field(
        None, max_length=256, description="Client key for A/B stickiness (as the X-Hayaku-Key header): hashed."
    )


class SpeechTranslateJSON(BaseModel):
    translation: str
    audio_base64: str = Field(..., description="The audio file, base64.")
    format: str
    sample_rate: int
    duration_s: float
    translator: dict[str, Any]
    speaker: dict[str, Any]
    timings_ms: dict[str, float]
    request_id: str
