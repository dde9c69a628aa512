"""A run's result as an HTTP response: the whole file (or JSON) once every piece is ready, or a stream
body with the headers it starts with. Called by the ingress's routes; the encodings are deployments.streams."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import Response
from fastapi.responses import JSONResponse

from backends import audio
from deployments import openai_api, streams
from deployments.http.app import header_json, header_text
from deployments.http.errors import error_response
from deployments.http.schemas import SpeechRequest, SpeechTranslateJSON, SpeechTranslateRequest
from graph.pieces import SpeechTranslation
from graph.run import Run

#: a streamed body, its media type and the headers it starts with
Stream = tuple[AsyncIterator[bytes], str, dict[str, str]]


def _encoded(out: SpeechTranslation, run: Run, fmt: str) -> tuple[bytes, dict[str, float]]:
    t1 = time.perf_counter()
    data = audio.encode(out.samples, out.sample_rate, fmt)
    encode_ms = out.timings_ms["join"] + (time.perf_counter() - t1) * 1000
    return data, streams.timings(**run.stages, encode=encode_ms, total=run.elapsed_ms())


async def speech(run: Run, body: SpeechRequest) -> Response:
    """``POST /v1/audio/speech``: the whole file at the rate OpenAI's clients expect of its format."""
    fmt = body.response_format
    out = await run.whole(lambda rate: openai_api.output_rate(fmt, rate))
    data, timings = _encoded(out, run, fmt)
    first = out.speech[0]
    headers = {
        "X-Hayaku-Speaker": first.backend,
        "X-Hayaku-Voice": first.voice,
        "X-Hayaku-Sample-Rate": str(out.sample_rate),
        "X-Hayaku-Timings": header_json(timings),
        **openai_api.ignored_headers(body),
    }
    return Response(data, media_type=audio.MEDIA_TYPES[fmt], headers=headers)


async def speech_stream(run: Run, body: SpeechRequest) -> Stream:
    """``POST /v1/audio/speech`` with ``stream_format``: audio bytes, or OpenAI's SSE events."""
    before, first = await run.first_audio()
    enc = audio.Encoder(body.response_format, openai_api.output_rate(body.response_format, first.sample_rate))
    sse = body.stream_format == "sse"

    async def chunks() -> AsyncIterator[bytes]:
        async for data in streams.audio_stream(streams.chain(before, run), enc):
            yield streams.sse(data) if sse else data
        if sse:
            yield streams.sse_done(sum(p.speech is not None for p in run.read))

    headers = {
        "X-Hayaku-Speaker": first.backend,
        "X-Hayaku-Voice": first.voice,
        "X-Hayaku-Sample-Rate": str(enc.rate),
        "X-Hayaku-Timings": header_json(streams.timings(first_audio=run.stages["first_audio"])),
        **openai_api.ignored_headers(body),
    }
    return chunks(), "text/event-stream" if sse else audio.MEDIA_TYPES[body.response_format], headers


async def speech_translate(run: Run, body: SpeechTranslateRequest, rid: str, variant: str) -> Response:
    """``POST /v1/speech-translate``: the audio file with the translation in headers, or JSON."""
    out = await run.whole()
    data, timings = _encoded(out, run, body.format)
    tr, sp = out.sentences[0], out.speech[0]
    translator: dict[str, Any] = {"backend": tr.backend, "model": tr.model, "options": tr.options}
    speaker: dict[str, Any] = {"backend": sp.backend, "voice": sp.voice, "options": sp.options}
    rate = audio.codec_rate(body.format, out.sample_rate)
    if body.response == "json":
        payload = SpeechTranslateJSON(
            translation=out.translation,
            audio_base64=base64.b64encode(data).decode(),
            format=body.format,
            sample_rate=rate,
            duration_s=round(out.duration_s, 4),
            translator=translator,
            speaker=speaker,
            timings_ms=timings,
            request_id=rid,
        )
        return JSONResponse({**payload.model_dump(), "variant": variant})
    headers = {
        "X-Hayaku-Translation": header_text(out.translation),
        "X-Hayaku-Translator": tr.backend,
        "X-Hayaku-Speaker": sp.backend,
        "X-Hayaku-Voice": sp.voice,
        "X-Hayaku-Sample-Rate": str(rate),
        "X-Hayaku-Timings": header_json(timings),
    }
    return Response(data, media_type=audio.MEDIA_TYPES[body.format], headers=headers)


async def speech_translate_stream(
    run: Run, body: SpeechTranslateRequest, rid: str, variant: str, translator_backend: str
) -> Stream:
    """``POST /v1/speech-translate`` with ``stream``: the audio file piece by piece, or NDJSON lines (one per
    piece: a sentence, or a clause of one; then ``done``; an ``error`` line if the stream breaks).
    ``translator_backend`` names the translator in the headers: they leave before a translation is whole."""
    before, first = await run.first_audio()
    enc = None if body.response == "json" else audio.Encoder(body.format, first.sample_rate)

    async def lines() -> AsyncIterator[bytes]:
        try:
            async for p in streams.chain(before, run):
                yield streams.ndjson(streams.sentence_line(p, body.format))
            tr = run.records[0]
            done = {
                "type": "done",
                "translation": run.translation(),
                "variant": variant,
                "translator": {"backend": tr.backend, "model": tr.model, "options": tr.options},
                "speaker": {"backend": first.backend, "voice": first.voice},
                "fallbacks": run.fallbacks,
                "timings_ms": streams.timings(first_audio=run.stages["first_audio"], total=run.elapsed_ms()),
                "request_id": rid,
            }
            yield streams.ndjson(done)
        except Exception as exc:
            yield streams.ndjson({"type": "error", **json.loads(bytes(error_response(exc, rid).body))})
            raise

    chunks = lines() if enc is None else streams.audio_stream(streams.chain(before, run), enc)
    headers = {
        "X-Hayaku-Translator": run.records[0].backend if run.records else translator_backend,
        "X-Hayaku-Speaker": first.backend,
        "X-Hayaku-Voice": first.voice,
        "X-Hayaku-Sample-Rate": str(enc.rate if enc else first.sample_rate),
        "X-Hayaku-Timings": header_json(streams.timings(first_audio=run.stages["first_audio"])),
    }
    return chunks, "application/x-ndjson" if enc is None else audio.MEDIA_TYPES[body.format], headers
