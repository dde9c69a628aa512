"""How a run's pieces leave over the wire: an audio stream, NDJSON lines, OpenAI's SSE events and the
WebSocket's messages. Every stream joins pieces as the whole response does (graph.pieces.Joiner: the gap before
every sentence but the first, a short pause after a clause's comma, at the stream's one rate), whatever
speaker served each piece. A piece is a sentence, or a clause of one where the translation streamed."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any

from backends import audio
from graph.pieces import Joiner, Piece
from graph.run import Run


def chain(before: list[Piece], run: Run) -> AsyncIterator[Piece]:
    """The pieces already read (up to the first audio), then the rest of the run."""

    async def pieces() -> AsyncIterator[Piece]:
        for p in before:
            yield p
        async for p in run:
            yield p

    return pieces()


async def audio_stream(pieces: AsyncIterator[Piece], enc: audio.Encoder) -> AsyncIterator[bytes]:
    """The pieces' speech through one stream encoder (a codec may hold a sentence's first bytes)."""
    joiner = Joiner(enc.in_rate)
    async for p in pieces:
        if p.speech is not None and (data := enc.write(joiner.samples(p))):
            yield data
    if tail := enc.close():
        yield tail


def ndjson(obj: dict[str, Any]) -> bytes:
    return (json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n").encode()


def timings(**ms: float) -> dict[str, float]:
    return {k: round(v, 3) for k, v in ms.items()}


def sentence_line(p: Piece, fmt: str) -> dict[str, Any]:
    """One NDJSON line of a streamed speech-translate: the sentence, its translation and its audio file
    (cut at a joint with a phrase, as the Joiner cuts it)."""
    sp, tr = p.speech, p.translation
    return {
        "type": "sentence",
        "index": p.index,
        "sentence": p.sentence,
        "clause": p.clause,
        "source": p.source,
        "translation": p.text,
        "audio_base64": base64.b64encode(audio.encode_result(p.joint_speech(), fmt)).decode() if sp else None,
        "format": fmt,
        "sample_rate": sp.sample_rate if sp else None,
        "gap_s": p.gap_s,
        "timings_ms": timings(
            translate=tr.timings_ms.get("translate", 0.0) if tr else 0.0,
            synthesize=sp.timings_ms.get("synthesize", 0.0) if sp else 0.0,
            since_start=p.since_start_ms,
        ),
    }


def sse(data: bytes) -> bytes:
    """One ``speech.audio.delta`` event of OpenAI's streamed speech."""
    delta = {"type": "speech.audio.delta", "audio": base64.b64encode(data).decode()}
    return f"data: {json.dumps(delta)}\n\n".encode()


def sse_done(sentences: int) -> bytes:
    return f"data: {json.dumps({'type': 'speech.audio.done', 'sentences': sentences})}\n\n".encode()


def ws_translation(p: Piece) -> dict[str, Any]:
    tr = p.translation
    return {
        "type": "translation",
        "index": p.index,
        "sentence": p.sentence,
        "clause": p.clause,
        "source": p.source,
        "text": p.text,
        "timings_ms": tr.timings_ms if tr else {},
    }


def ws_audio(p: Piece, pcm: bytes, rate: int) -> dict[str, Any]:
    return {"type": "audio", "index": p.index, "sample_rate": rate, "format": "pcm_s16le", "bytes": len(pcm)}
