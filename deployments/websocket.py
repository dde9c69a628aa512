"""``WS /v1/stream``: live captions in, speech out, over one graph.pipeline live session.

Client messages: ``{"text": piece}`` as text arrives, ``{"type": "flush"}`` to speak an unfinished
sentence, ``{"type": "end"}`` to finish. Each finished sentence goes back as ``{"type": "translation"}``,
``{"type": "audio"}`` and one binary message of s16le PCM (every sentence after the first starts with the
streams' gap, all at the first sentence's rate), then ``{"type": "done"}``. Each sentence is one request
for the deadline and the records. Garbage gets an error message and close code 1003; a socket silent
for ``IDLE_TIMEOUT_S`` is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from typing import Any

from fastapi import WebSocket, WebSocketDisconnect

from backends.errors import InvalidRequest
from deployments import streams
from deployments.http.errors import error_response
from graph.pieces import Joiner
from graph.pipeline import Live
from graph.run import within

#: how long a WebSocket may stay silent before the server closes it
IDLE_TIMEOUT_S = 30.0
#: (status, ms from the sentence's start, stage ms) of each sentence
Record = Callable[[int, float, dict[str, float]], None]


def parse_message(msg: dict[str, Any]) -> tuple[str, str]:
    """(kind, text) of a client message; anything else is a clear InvalidRequest."""
    raw = msg.get("text")
    if raw is None:
        raise InvalidRequest('send JSON text messages: {"text": "..."}, {"type": "flush"} or {"type": "end"}')
    try:
        data = json.loads(raw)
    except json.JSONDecodeError:
        raise InvalidRequest(f'not JSON: {raw[:40]!r}; send {{"text": "..."}}') from None
    if not isinstance(data, dict):
        raise InvalidRequest(f"expected a JSON object, got {type(data).__name__}")
    kind = data.get("type", "text")
    text = data.get("text", "")
    if kind not in ("text", "flush", "end") or not isinstance(text, str):
        raise InvalidRequest(f"unknown message {str(data)[:60]}; valid types: text, flush, end (text: a string)")
    return kind, text


async def _send(ws: WebSocket, live: Live, record: Record) -> None:
    """Sends each sentence's translation and audio in order as they finish; records each sentence."""
    joiner: Joiner | None = None
    while True:
        try:
            p = await live.run.__anext__()
        except StopAsyncIteration:
            return
        except Exception as exc:
            record(error_response(exc, None).status_code, 0.0, {})
            raise
        await ws.send_json(streams.ws_translation(p))
        stages = {"translate": p.translation.timings_ms.get("translate", 0.0)} if p.translation else {}
        if p.speech is not None:
            joiner = joiner or Joiner(p.speech.sample_rate)
            pcm = joiner.pcm(p)
            stages["synthesize"] = p.speech.timings_ms.get("synthesize", 0.0)
            await ws.send_json(streams.ws_audio(p, pcm, joiner.rate))
            await ws.send_bytes(pcm)
        record(200, p.ms, stages)


async def serve_socket(ws: WebSocket, live: Live, variant: str, record: Record) -> None:
    """Runs one accepted socket to its end: reads pieces of text, sends each sentence as it is ready."""
    sender = asyncio.create_task(_send(ws, live, record))
    code, reason = 1000, "done"
    try:
        while True:
            try:
                msg = await within(ws.receive(), IDLE_TIMEOUT_S)
            except (TimeoutError, asyncio.TimeoutError):
                idle = {"type": "idle_timeout", "message": f"nothing received for {IDLE_TIMEOUT_S:g} s; closing"}
                await ws.send_json({"type": "error", "error": idle})
                code, reason = 1000, "idle timeout"
                live.run.end()
                break
            if msg["type"] == "websocket.disconnect":
                code = -1
                break
            if sender.done():  # a sentence failed: say so now, not when the client ends
                sender.result()
            kind, piece = parse_message(msg)
            live.feed(piece, flush=kind == "flush")
            if kind == "end":
                live.end()
                break
        if code != -1:
            await sender
            timings = streams.timings(**live.run.stages, total=live.run.elapsed_ms())
            await ws.send_json({"type": "done", "sentences": live.count, "variant": variant, "timings_ms": timings})
    except InvalidRequest as exc:
        code, reason = 1003, "bad message"
        await ws.send_json({"type": "error", "error": {"type": exc.kind, "message": str(exc)}})
    except (WebSocketDisconnect, RuntimeError):
        code = -1  # the client went away: just stop its work
    except Exception as exc:
        code, reason = 1011, "internal error"
        await ws.send_json({"type": "error", **json.loads(bytes(error_response(exc, None).body))})
    finally:
        sender.cancel()
        await live.run.aclose()
        if code != -1:
            with contextlib.suppress(RuntimeError):  # already closed by the client
                await ws.close(code=code, reason=reason)
