"""The HTTP ingress: FastAPI routes on Ray Serve, calling each variant's translator and speaker.

The translator's DeploymentResponse is handed to the speaker unawaited, so Ray starts
the speech as soon as the translation exists, without a round trip through the ingress.
A streamed request sends sentence i's audio as soon as it exists while later sentences
are still translating. With ``colocate: true`` the same routes call in-process stage
objects instead of handles. Which variant serves a request, and what each variant did,
live in graph.abtest (plain Python); this module only wires them to HTTP.
"""

# No `from __future__ import annotations` here: serve.ingress reads the route signatures as
# they are, and FastAPI needs real classes (Request, the body models) in them.
import asyncio
import base64
import contextlib
import inspect
import json
import logging
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, cast

import numpy as np
from fastapi import Request, Response, WebSocket, WebSocketDisconnect
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
from ray import serve
from ray.serve import metrics
from ray.serve.handle import DeploymentHandle

from backends import audio
from backends.errors import BackendTimeout, HayakuError, InvalidRequest
from backends.languages import normalize_lang
from backends.pipeline import join_translation
from backends.text import check_text, split_sentences
from backends.types import SpeechResult
from deployments import openai_api
from deployments.http.app import create_app, header_json, header_text
from deployments.http.errors import error_body, error_response, unwrap
from deployments.http.middleware import request_id_of
from deployments.http.schemas import (
    SpeechRequest,
    SpeechTranslateJSON,
    SpeechTranslateRequest,
    TranslateRequest,
    TranslateResponse,
)
from deployments.http.security import configure_security
from deployments.speaker import SpeakerReplica
from deployments.translator import TranslatorReplica
from graph.abtest import ABStats, Router
from graph.config import ConfigError

log = logging.getLogger("hayaku.ingress")

#: silence between spoken sentences, as in backends.pipeline.SpeechTranslator
GAP_S = 0.12
HEALTH_TIMEOUT_S = 5.0
#: how long a WebSocket may stay silent before the server closes it
WS_IDLE_TIMEOUT_S = 30.0
PAGE = Path(__file__).resolve().parent / "static" / "index.html"
LATENCY_BOUNDARIES_MS = [
    5.0,
    10.0,
    25.0,
    50.0,
    100.0,
    250.0,
    500.0,
    750.0,
    1000.0,
    1500.0,
    2500.0,
    5000.0,
    10000.0,
    30000.0,
]
_SENTENCE_END = ".!?。！？…\"'”’」』)）"

app = create_app()


class _Remote:
    """Calls a stage deployment through its handle; results are DeploymentResponses."""

    def __init__(self, handle: DeploymentHandle) -> None:
        self.handle = handle

    def call(self, method: str, *args: Any) -> Awaitable[Any]:
        return getattr(self.handle, method).remote(*args)


class _Local:
    """Calls an in-process stage object (colocated graph); awaitable arguments are awaited first."""

    def __init__(self, obj: Any) -> None:
        self.obj = obj

    def call(self, method: str, *args: Any) -> Awaitable[Any]:
        return asyncio.ensure_future(self._call(method, args))

    async def _call(self, method: str, args: tuple[Any, ...]) -> Any:
        resolved = [await a if inspect.isawaitable(a) else a for a in args]
        out = getattr(self.obj, method)(*resolved)
        return await out if inspect.isawaitable(out) else out


class _Variant:
    """One translator + speaker combination that requests can be routed to."""

    def __init__(self, name: str, info: dict[str, Any], tr: "_Remote | _Local", sp: "_Remote | _Local") -> None:
        self.name = name
        self.info = info
        self.tr = tr
        self.sp = sp


class _Ctx:
    """What a route's work tells the wrapper: stage timings, fallbacks, and whether it streams."""

    def __init__(self) -> None:
        self.stages: dict[str, float] = {}
        self.fallback: list[str] = []
        self.streaming = False

    def note_fallbacks(self, role: str, results: list[Any]) -> None:
        for r in results:
            src = r.get("fallback_from") if isinstance(r, dict) else getattr(r, "fallback_from", None)
            served = r.get("backend") if isinstance(r, dict) else getattr(r, "backend", None)
            if src:
                note = f"{role}: {src.get('backend')} failed ({src.get('reason')}), {served} served"
                if note not in self.fallback:
                    self.fallback.append(note)


def _raise_errors(out: list[Any]) -> list[Any]:
    for r in out:
        if isinstance(r, BaseException):
            raise r
    return out


async def _results(parts: list[Awaitable[Any]]) -> list[Any]:
    """Awaits stage calls; an error a stage returned as a value is raised here."""
    # One part (a one-sentence request) is awaited as is: gather would wrap it in a new task.
    out = [await parts[0]] if len(parts) == 1 else await asyncio.gather(*parts)
    return _raise_errors(out)


async def _within(work: Awaitable[Any], timeout_s: float) -> Any:
    """``await work`` with a deadline, raising TimeoutError; on 3.11+ without wait_for's extra task."""
    if sys.version_info >= (3, 11):
        async with asyncio.timeout(timeout_s):
            return await work
    return await asyncio.wait_for(work, timeout_s)


def _cancel(parts: list[Any]) -> None:
    """Stops stage calls nobody will read (a client left, or an earlier sentence failed)."""
    for p in parts:
        cancel = getattr(p, "cancel", None)
        if cancel is not None:
            with contextlib.suppress(Exception):  # already finished or never started: nothing to stop
                cancel()


def _timings(**ms: float) -> dict[str, float]:
    return {k: round(v, 3) for k, v in ms.items()}


def _ndjson(obj: dict[str, Any]) -> bytes:
    return (json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n").encode()


def _stream_piece(enc: audio.Encoder, sp: SpeechResult, first: bool) -> bytes:
    """One sentence's audio through a stream's encoder, after the gap every sentence but the first has."""
    pcm = audio.at_rate(sp, enc.in_rate)
    return enc.write(pcm if first else np.concatenate([audio.silence(enc.in_rate, GAP_S), pcm]))


def _complete_sentences(buffer: str, lang: str, flush: bool) -> tuple[list[str], str]:
    """Splits a live text buffer into finished sentences and the unfinished rest (raw, spaces kept)."""
    sentences = split_sentences(buffer, lang)
    if not sentences:
        return [], "" if flush else buffer
    if flush or buffer.rstrip()[-1:] in _SENTENCE_END:
        return sentences, ""
    # Splitting only normalises whitespace: the rest is the buffer's tail with as many visible characters.
    visible = sum(not ch.isspace() for ch in sentences[-1])
    pos = len(buffer)
    while visible and pos:
        pos -= 1
        visible -= not buffer[pos].isspace()
    return sentences[:-1], buffer[pos:]


# The ingress mostly awaits other replicas: it reserves no CPU, so a 2-core machine fits the whole graph.
@serve.deployment(name="Ingress", max_ongoing_requests=64, ray_actor_options={"num_cpus": 0})
@serve.ingress(app)
class Ingress:
    """Routes: /v1/translate, /v1/audio/speech, /v1/models, /v1/audio/voices, /v1/speech-translate,
    /v1/stream (WebSocket), /v1/ab, /v1/graph, /healthz, / (web page), /docs."""

    def __init__(self, graph: dict[str, Any], variants: list[dict[str, Any]]) -> None:
        self.graph = graph
        self.source_lang: str = graph["source_lang"]
        self.target_lang: str = graph["target_lang"]
        limits = graph["limits"]
        self.max_chars = int(limits["max_chars"])
        self.timeout_s = float(limits["request_timeout_s"])
        app.state.max_body_bytes = int(limits["max_body_bytes"])
        app.state.max_inflight = limits.get("max_inflight")
        app.state.deadline_s = self.timeout_s
        configure_security(app, graph.get("security"))
        ab = graph.get("ab") or {}
        self.sticky = bool(ab.get("sticky", True))
        self.shadow_max = int(ab.get("shadow_max_inflight", 4))
        self.variants: dict[str, _Variant] = {}
        self.shadow_names: set[str] = set()
        # Colocated variants that share a stage config share one loaded backend.
        self.local: dict[str, Any] = {}
        weights: dict[str, float] = {}
        shadows: dict[str, float] = {}
        for v in variants:
            tr = self._stage(v, "translator")
            sp = self._stage(v, "speaker")
            self.variants[v["name"]] = _Variant(v["name"], v["graph"], tr, sp)
            (shadows if v.get("shadow") else weights)[v["name"]] = float(v["weight"])
        self.shadow_names = set(shadows)
        self.model_ids = openai_api.model_ids(v.info["speaker"]["backend"] for v in self.variants.values())
        self.router = Router(weights, shadows)
        self.stats = ABStats(weights, int(ab.get("window", 5000)), shadows)
        self._shadow_tasks: set[asyncio.Task[Any]] = set()
        self.m_requests = metrics.Counter(
            "hayaku_requests",
            description="Requests by variant, route and HTTP status.",
            tag_keys=cast(Any, ("variant", "route", "status")),
        )
        self.m_latency = metrics.Histogram(
            "hayaku_latency_ms",
            description="Milliseconds per stage (translate, synthesize, first_audio, total) by variant.",
            boundaries=LATENCY_BOUNDARIES_MS,
            tag_keys=cast(Any, ("variant", "stage")),
        )
        log.info(
            "hayaku ingress ready: variants=%s colocate=%s",
            {n: (v.info["translator"]["backend"], v.info["speaker"]["backend"]) for n, v in self.variants.items()},
            graph["colocate"],
        )

    def _stage(self, v: dict[str, Any], role: str) -> "_Remote | _Local":
        handle = v.get(role)
        if handle is not None:
            return _Remote(handle)
        stage = v.get(f"{role}_stage")
        if stage is None:
            raise ValueError(f"variant {v['name']!r} has neither a {role} handle nor a {role}_stage")
        key = role + json.dumps(stage, sort_keys=True, default=str)
        if key not in self.local:
            if role == "translator":
                self.local[key] = TranslatorReplica(stage, self.max_chars, self.source_lang, self.target_lang)
            else:
                self.local[key] = SpeakerReplica(stage, self.max_chars, self.target_lang)
        return _Local(self.local[key])

    @property
    def default(self) -> _Variant:
        return next(iter(self.variants.values()))

    async def reconfigure(self, user_config: dict[str, Any]) -> None:
        """``weights: {variant: w}`` changes the A/B split live; colocated graphs also take
        ``translator``/``speaker`` updates (as for the stage deployments) for the default variant."""
        unknown = set(user_config) - {"translator", "speaker", "weights"}
        if unknown:
            raise ConfigError(
                f"Ingress user_config: unknown keys {sorted(unknown)}; valid: weights, translator, speaker"
            )
        if "weights" in user_config:
            weights = user_config["weights"]
            if not isinstance(weights, dict):
                raise ConfigError(f"Ingress user_config.weights: expected a mapping variant -> weight, got {weights!r}")
            self.router.set_weights(weights, "Ingress user_config.weights")
            log.info("A/B weights now %s", self.router.weights)
        for role in ("translator", "speaker"):
            if role not in user_config:
                continue
            stage = getattr(self.default, "tr" if role == "translator" else "sp")
            if not isinstance(stage, _Local):
                log.warning("Ingress user_config.%s is ignored unless colocate: true; set it on the deployment", role)
                continue
            await stage.obj.reconfigure(user_config[role])

    # -- routing, deadlines, records ---------------------------------------------------------------

    def _pick(self, request: Request | WebSocket, user: str | None) -> tuple[_Variant, str]:
        forced = request.query_params.get("variant") or request.headers.get("x-hayaku-variant")
        key = (request.headers.get("x-hayaku-key") or user) if self.sticky else None
        name, how = self.router.choose(key, forced)
        return self.variants[name], how

    def _record(self, variant: str, route: str, status: int, total_ms: float, ctx: _Ctx) -> None:
        ok = status < 500
        # A client's own mistake (4xx) says nothing about the variant: neither error nor latency.
        if status < 400 or status >= 500:
            self.stats.record(variant, status < 400, total_ms, ctx.stages, bool(ctx.fallback))
        self.m_requests.inc(tags={"variant": variant, "route": route, "status": str(status)})
        if ok and status < 400:
            self.m_latency.observe(total_ms, tags={"variant": variant, "stage": "total"})
            for stage, ms in ctx.stages.items():
                self.m_latency.observe(ms, tags={"variant": variant, "stage": stage})

    async def _serve(
        self,
        request: Request,
        route: str,
        user: str | None,
        work: Callable[[_Variant, _Ctx], Coroutine[Any, Any, Response]],
    ) -> Response:
        """Picks the variant, runs the route's work under the request deadline, turns every failure
        into a JSON error, labels the response with its variant and records it."""
        rid = request_id_of(request)
        t0 = time.perf_counter()
        try:
            v, how = self._pick(request, user)
        except Exception as exc:
            return error_response(exc, rid)
        ctx = _Ctx()
        try:
            out = await _within(work(v, ctx), self.timeout_s)
        except (TimeoutError, asyncio.TimeoutError):
            err = BackendTimeout(f"no answer within request_timeout_s={self.timeout_s:g} s; try again or raise it")
            out = error_response(err, rid)
        except Exception as exc:
            out = error_response(exc, rid)
        out.headers["X-Hayaku-Variant"] = v.name
        out.headers["X-Hayaku-Routing"] = how
        if ctx.fallback:
            out.headers["X-Hayaku-Fallback"] = header_text("; ".join(ctx.fallback))
        if not (ctx.streaming and out.status_code < 400):  # a stream records itself when it ends
            self._record(v.name, route, out.status_code, (time.perf_counter() - t0) * 1000, ctx)
        if route != "graph" and not ctx.streaming:
            self._shadow(route, work)
        return out

    def _shadow(self, route: str, work: Callable[[_Variant, _Ctx], Coroutine[Any, Any, Response]]) -> None:
        """Copies the request to shadow variants: measured, never returned, dropped when too many run."""
        for name in self.router.shadow_targets():
            if len(self._shadow_tasks) >= self.shadow_max:
                self.stats.drop(name)
                continue
            task = asyncio.create_task(self._run_shadow(self.variants[name], route, work))
            self._shadow_tasks.add(task)
            task.add_done_callback(self._shadow_tasks.discard)

    async def _run_shadow(
        self, v: _Variant, route: str, work: Callable[[_Variant, _Ctx], Coroutine[Any, Any, Response]]
    ) -> None:
        ctx = _Ctx()
        t0 = time.perf_counter()
        try:
            out = await _within(work(v, ctx), self.timeout_s)
            status = out.status_code
        except Exception as exc:
            status = error_response(exc, None).status_code
        self._record(v.name, route, status, (time.perf_counter() - t0) * 1000, ctx)

    # -- shared steps --------------------------------------------------------------------------------

    def _langs(self, source_lang: str | None, target_lang: str | None) -> tuple[str, str]:
        return normalize_lang(source_lang or self.source_lang), normalize_lang(target_lang or self.target_lang)

    def _sentences(self, text: str, lang: str) -> list[str]:
        return split_sentences(check_text(text, self.max_chars), lang)

    async def _speech(self, parts: list[Awaitable[Any]]) -> tuple[list[SpeechResult], float]:
        results = [r for r in await _results(parts) if r is not None]
        if not results:
            raise InvalidRequest("the translation is empty; nothing to speak")
        return results, max(r.timings_ms.get("synthesize", 0.0) for r in results)

    def _pipeline(
        self, v: _Variant, sentences: list[str], src: str, tgt: str, voice: str | None, speed: float
    ) -> tuple[list[Awaitable[Any]], list[Awaitable[Any]]]:
        """Starts every sentence's translation and speech at once; the speaker gets each translation
        unawaited, so Ray resolves it in place and sentence i's speech starts when its translation exists."""
        translations = [v.tr.call("translate", s, src, tgt) for s in sentences]
        spoken = [v.sp.call("speak", tr, tgt, voice, speed) for tr in translations]
        return translations, spoken

    async def _pieces(
        self,
        translations: list[Awaitable[Any]] | None,
        spoken: list[Awaitable[Any]],
        deadline: float,
        ctx: _Ctx,
    ) -> AsyncIterator[tuple[int, dict[str, Any] | None, SpeechResult | None]]:
        """Yields (index, translation, speech) in sentence order as each becomes ready; cancels the
        rest when the consumer stops early (client gone, error)."""
        try:
            for i, sp_part in enumerate(spoken):
                tr: dict[str, Any] | None = None
                if translations is not None:
                    tr = _raise_errors([await _within(translations[i], max(0.001, deadline - time.monotonic()))])[0]
                    ctx.note_fallbacks("translator", [tr])
                sp = _raise_errors([await _within(sp_part, max(0.001, deadline - time.monotonic()))])[0]
                if sp is not None:
                    ctx.note_fallbacks("speaker", [sp])
                yield i, tr, sp
        finally:
            _cancel([*(translations or []), *spoken])

    async def _first_audio(
        self, pieces: AsyncIterator[tuple[int, dict[str, Any] | None, SpeechResult | None]]
    ) -> tuple[list[tuple[int, dict[str, Any] | None, SpeechResult | None]], SpeechResult]:
        """Reads pieces up to the first one with audio (its rate goes in the response headers)."""
        before = []
        async for piece in pieces:
            before.append(piece)
            if piece[2] is not None:
                return before, piece[2]
        raise InvalidRequest("the translation is empty; nothing to speak")

    def _stream_response(
        self,
        v: _Variant,
        route: str,
        ctx: _Ctx,
        t0: float,
        chunks: AsyncIterator[bytes],
        media_type: str,
        headers: dict[str, str],
    ) -> StreamingResponse:
        """A streamed body that records the request (and its time to first audio) when it ends."""
        ctx.streaming = True

        async def body() -> AsyncIterator[bytes]:
            status = 200
            try:
                async for chunk in chunks:
                    yield chunk
            except Exception as exc:  # the status line is gone: the stream ends early, the record says why
                status = error_response(exc, None).status_code
                log.warning("stream %s on variant %s ended early: %s", route, v.name, type(unwrap(exc)).__name__)
            finally:
                await chunks.aclose()  # type: ignore[attr-defined]
                self._record(v.name, route, status, (time.perf_counter() - t0) * 1000, ctx)

        return StreamingResponse(body(), media_type=media_type, headers={**headers, "X-Hayaku-Variant": v.name})

    # -- routes ----------------------------------------------------------------------------------------

    @app.get("/", include_in_schema=False)
    async def page(self) -> Response:
        try:
            return HTMLResponse(PAGE.read_text(encoding="utf-8"))
        except OSError:
            return JSONResponse(error_body("not_found", f"the web page is not installed ({PAGE})", None), 404)

    @app.post("/v1/translate", response_model=TranslateResponse, summary="Translate text")
    async def translate(self, body: TranslateRequest, request: Request) -> Any:
        rid = request_id_of(request)
        return await self._serve(request, "translate", body.user, lambda v, ctx: self._translate(v, ctx, body, rid))

    async def _translate(self, v: _Variant, ctx: _Ctx, body: TranslateRequest, rid: str) -> Response:
        t0 = time.perf_counter()
        src, tgt = self._langs(body.source_lang, body.target_lang)
        sentences = self._sentences(body.text, src)
        results = await _results([v.tr.call("translate", s, src, tgt) for s in sentences])
        ctx.note_fallbacks("translator", results)
        first = results[0]
        ctx.stages["translate"] = max(r["timings_ms"]["translate"] for r in results)
        payload = TranslateResponse(
            translation=join_translation([r["text"] for r in results], tgt),
            source_lang=src,
            target_lang=tgt,
            backend=first["backend"],
            model=first["model"],
            options=first["options"],
            sentences=len(results),
            timings_ms=_timings(translate=ctx.stages["translate"], total=(time.perf_counter() - t0) * 1000),
            request_id=rid,
        )
        return JSONResponse(payload.model_dump())

    @app.post(
        "/v1/audio/speech",
        summary="Speak text (OpenAI-compatible)",
        response_class=Response,
        responses={200: {"content": {**{t: {} for t in audio.MEDIA_TYPES.values()}, "text/event-stream": {}}}},
    )
    async def audio_speech(self, body: SpeechRequest, request: Request) -> Any:
        return await self._serve(request, "speech", body.user, lambda v, ctx: self._audio_speech(v, ctx, body))

    async def _audio_speech(self, v: _Variant, ctx: _Ctx, body: SpeechRequest) -> Response:
        t0 = time.perf_counter()
        openai_api.check_request(body, self.model_ids)
        lang = self.target_lang
        sentences = self._sentences(body.input, lang)
        spoken = [v.sp.call("speak", s, lang, body.voice, body.speed) for s in sentences]
        if body.stream_format is not None:
            return await self._stream_speech(v, ctx, body, spoken, t0)
        speech, synth_ms = await self._speech(spoken)
        ctx.note_fallbacks("speaker", speech)
        t1 = time.perf_counter()
        samples, rate = audio.concat(speech, GAP_S, openai_api.output_rate(body.response_format, speech[0].sample_rate))
        data = audio.encode(samples, rate, body.response_format)
        t2 = time.perf_counter()
        ctx.stages["synthesize"] = synth_ms
        timings = _timings(synthesize=synth_ms, encode=(t2 - t1) * 1000, total=(t2 - t0) * 1000)
        return Response(
            data,
            media_type=audio.MEDIA_TYPES[body.response_format],
            headers={
                "X-Hayaku-Speaker": speech[0].backend,
                "X-Hayaku-Voice": speech[0].voice,
                "X-Hayaku-Sample-Rate": str(rate),
                "X-Hayaku-Timings": header_json(timings),
                **openai_api.ignored_headers(body),
            },
        )

    async def _stream_speech(
        self, v: _Variant, ctx: _Ctx, body: SpeechRequest, spoken: list[Awaitable[Any]], t0: float
    ) -> Response:
        pieces = self._pieces(None, spoken, time.monotonic() + self.timeout_s, ctx)
        before, first = await self._first_audio(pieces)
        enc = audio.Encoder(body.response_format, openai_api.output_rate(body.response_format, first.sample_rate))
        ctx.stages["first_audio"] = (time.perf_counter() - t0) * 1000
        sse = body.stream_format == "sse"

        def event(data: bytes) -> bytes:
            if not sse:
                return data
            delta = {"type": "speech.audio.delta", "audio": base64.b64encode(data).decode()}
            return f"data: {json.dumps(delta)}\n\n".encode()

        async def chunks() -> AsyncIterator[bytes]:
            n = 0
            try:
                async for _, _, sp in self._chain(before, pieces):
                    if sp is None:
                        continue
                    data = _stream_piece(enc, sp, first=not n)
                    n += 1
                    if data:  # a codec may hold a sentence's first bytes until it fills a frame
                        yield event(data)
                tail = enc.close()
                if tail:
                    yield event(tail)
                if sse:
                    yield f"data: {json.dumps({'type': 'speech.audio.done', 'sentences': n})}\n\n".encode()
            finally:
                await pieces.aclose()  # type: ignore[attr-defined]

        media = "text/event-stream" if sse else audio.MEDIA_TYPES[body.response_format]
        headers = {
            "X-Hayaku-Speaker": first.backend,
            "X-Hayaku-Voice": first.voice,
            "X-Hayaku-Sample-Rate": str(enc.rate),
            "X-Hayaku-Timings": header_json(_timings(first_audio=ctx.stages["first_audio"])),
            **openai_api.ignored_headers(body),
        }
        return self._stream_response(v, "speech", ctx, t0, chunks(), media, headers)

    @app.get("/v1/models", summary="The model names /v1/audio/speech takes (OpenAI-compatible)")
    async def list_models(self) -> Any:
        return JSONResponse(openai_api.models_body(self.model_ids))

    @app.get("/v1/audio/voices", summary="Every voice name /v1/audio/speech takes, and the voice each speaks with")
    async def list_voices(self, request: Request) -> Any:
        rid = request_id_of(request)
        try:
            v, _ = self._pick(request, None)
            described = await _within(v.sp.call("describe"), HEALTH_TIMEOUT_S)
            return JSONResponse(openai_api.voices_body(described, v.name))
        except Exception as exc:
            return error_response(exc, rid)

    @staticmethod
    async def _chain(before: list[Any], rest: AsyncIterator[Any]) -> AsyncIterator[Any]:
        for item in before:
            yield item
        async for item in rest:
            yield item

    @app.post(
        "/v1/speech-translate",
        summary="Translate text and speak the translation",
        response_class=Response,
        responses={
            200: {
                "content": {
                    **{t: {} for t in audio.MEDIA_TYPES.values()},
                    "application/json": {},
                    "application/x-ndjson": {},
                }
            }
        },
    )
    async def speech_translate(self, body: SpeechTranslateRequest, request: Request) -> Any:
        rid = request_id_of(request)
        return await self._serve(
            request, "speech-translate", body.user, lambda v, ctx: self._speech_translate(v, ctx, body, rid)
        )

    async def _speech_translate(self, v: _Variant, ctx: _Ctx, body: SpeechTranslateRequest, rid: str) -> Response:
        t0 = time.perf_counter()
        src, tgt = self._langs(body.source_lang, body.target_lang)
        audio.check_format(body.format, stream=body.stream and body.response == "audio")
        sentences = self._sentences(body.text, src)
        translations, spoken = self._pipeline(v, sentences, src, tgt, body.voice, body.speed)
        if body.stream:
            return await self._stream_speech_translate(v, ctx, body, rid, sentences, translations, spoken, t0)
        tr_results = await _results(translations)
        speech, synth_ms = await self._speech(spoken)
        ctx.note_fallbacks("translator", tr_results)
        ctx.note_fallbacks("speaker", speech)
        t1 = time.perf_counter()
        samples, rate = audio.concat(speech, GAP_S)
        data = audio.encode(samples, rate, body.format)
        t2 = time.perf_counter()
        translation = join_translation([r["text"] for r in tr_results], tgt)
        ctx.stages.update(translate=max(r["timings_ms"]["translate"] for r in tr_results), synthesize=synth_ms)
        timings = _timings(**ctx.stages, encode=(t2 - t1) * 1000, total=(t2 - t0) * 1000)
        translator: dict[str, Any] = {k: tr_results[0][k] for k in ("backend", "model", "options")}
        speaker: dict[str, Any] = {"backend": speech[0].backend, "voice": speech[0].voice, "options": speech[0].options}
        if body.response == "json":
            payload = SpeechTranslateJSON(
                translation=translation,
                audio_base64=base64.b64encode(data).decode(),
                format=body.format,
                sample_rate=audio.codec_rate(body.format, rate),
                duration_s=round(len(samples) / rate, 4),
                translator=translator,
                speaker=speaker,
                timings_ms=timings,
                request_id=rid,
            )
            return JSONResponse({**payload.model_dump(), "variant": v.name})
        return Response(
            data,
            media_type=audio.MEDIA_TYPES[body.format],
            headers={
                "X-Hayaku-Translation": header_text(translation),
                "X-Hayaku-Translator": translator["backend"],
                "X-Hayaku-Speaker": speaker["backend"],
                "X-Hayaku-Voice": speaker["voice"],
                "X-Hayaku-Sample-Rate": str(audio.codec_rate(body.format, rate)),
                "X-Hayaku-Timings": header_json(timings),
            },
        )

    async def _stream_speech_translate(
        self,
        v: _Variant,
        ctx: _Ctx,
        body: SpeechTranslateRequest,
        rid: str,
        sentences: list[str],
        translations: list[Awaitable[Any]],
        spoken: list[Awaitable[Any]],
        t0: float,
    ) -> Response:
        tgt = self._langs(body.source_lang, body.target_lang)[1]
        pieces = self._pieces(translations, spoken, time.monotonic() + self.timeout_s, ctx)
        before, first = await self._first_audio(pieces)
        enc = None if body.response == "json" else audio.Encoder(body.format, first.sample_rate)
        ctx.stages["first_audio"] = (time.perf_counter() - t0) * 1000
        first_tr = next(tr for _, tr, _ in before if tr is not None)
        translator = {k: first_tr[k] for k in ("backend", "model", "options")}
        as_json = body.response == "json"

        async def chunks() -> AsyncIterator[bytes]:
            texts: list[str] = []
            n = 0
            try:
                async for i, tr, sp in self._chain(before, pieces):
                    assert tr is not None
                    texts.append(tr["text"])
                    ctx.stages["translate"] = max(ctx.stages.get("translate", 0.0), tr["timings_ms"]["translate"])
                    if sp is not None:
                        ctx.stages["synthesize"] = max(
                            ctx.stages.get("synthesize", 0.0), sp.timings_ms.get("synthesize", 0.0)
                        )
                    if as_json:
                        line: dict[str, Any] = {
                            "type": "sentence",
                            "index": i,
                            "source": sentences[i],
                            "translation": tr["text"],
                            "audio_base64": base64.b64encode(audio.encode_result(sp, body.format)).decode()
                            if sp
                            else None,
                            "format": body.format,
                            "sample_rate": sp.sample_rate if sp else None,
                            "timings_ms": _timings(
                                translate=tr["timings_ms"]["translate"],
                                synthesize=sp.timings_ms.get("synthesize", 0.0) if sp else 0.0,
                                since_start=(time.perf_counter() - t0) * 1000,
                            ),
                        }
                        yield _ndjson(line)
                    elif sp is not None and enc is not None:
                        data = _stream_piece(enc, sp, first=not n)
                        if data:
                            yield data
                    n += int(sp is not None)
                if enc is not None and (tail := enc.close()):
                    yield tail
                if as_json:
                    yield _ndjson(
                        {
                            "type": "done",
                            "translation": join_translation(texts, tgt),
                            "variant": v.name,
                            "translator": translator,
                            "speaker": {"backend": first.backend, "voice": first.voice},
                            "fallbacks": ctx.fallback,
                            "timings_ms": _timings(
                                first_audio=ctx.stages["first_audio"], total=(time.perf_counter() - t0) * 1000
                            ),
                            "request_id": rid,
                        }
                    )
            except Exception as exc:
                if not as_json:
                    raise
                err = error_response(exc, rid)
                yield _ndjson({"type": "error", **json.loads(bytes(err.body))})
                raise
            finally:
                await pieces.aclose()  # type: ignore[attr-defined]

        media = "application/x-ndjson" if as_json else audio.MEDIA_TYPES[body.format]
        headers = {
            "X-Hayaku-Translator": translator["backend"],
            "X-Hayaku-Speaker": first.backend,
            "X-Hayaku-Voice": first.voice,
            "X-Hayaku-Sample-Rate": str(enc.rate if enc else first.sample_rate),
            "X-Hayaku-Timings": header_json(_timings(first_audio=ctx.stages["first_audio"])),
        }
        return self._stream_response(v, "speech-translate", ctx, t0, chunks(), media, headers)

    @app.websocket("/v1/stream")
    async def stream_ws(self, ws: WebSocket) -> None:
        """Live captions in, speech out: send ``{"text": piece}`` messages as text arrives,
        ``{"type": "flush"}`` to speak an unfinished sentence, ``{"type": "end"}`` to finish.
        Each finished sentence comes back as ``{"type": "translation", ...}`` followed by
        ``{"type": "audio", ...}`` and one binary message of s16le PCM; then ``{"type": "done"}``."""
        await ws.accept()
        try:
            v, _ = self._pick(ws, ws.query_params.get("key"))
        except HayakuError as exc:
            await ws.send_json({"type": "error", "error": {"type": exc.kind, "message": str(exc)}})
            await ws.close(code=1008)
            return
        src, tgt = self._langs(ws.query_params.get("source_lang"), ws.query_params.get("target_lang"))
        voice = ws.query_params.get("voice")
        queue: asyncio.Queue[tuple[int, str, Awaitable[Any], Awaitable[Any]] | None] = asyncio.Queue()
        outstanding: list[Awaitable[Any]] = []
        sender = asyncio.create_task(self._ws_sender(ws, v, queue))
        buffer, index, code, reason = "", 0, 1000, "done"
        try:
            while True:
                try:
                    msg = await _within(ws.receive(), WS_IDLE_TIMEOUT_S)
                except (TimeoutError, asyncio.TimeoutError):
                    await ws.send_json(
                        {
                            "type": "error",
                            "error": {
                                "type": "idle_timeout",
                                "message": f"nothing received for {WS_IDLE_TIMEOUT_S:g} s; closing",
                            },
                        }
                    )
                    code, reason = 1000, "idle timeout"
                    break
                if msg["type"] == "websocket.disconnect":
                    code = -1
                    break
                kind, piece = self._ws_message(msg)
                buffer += piece
                if len(buffer) > self.max_chars:
                    raise InvalidRequest(f"unfinished text over max_chars={self.max_chars}; send sentence ends")
                done, buffer = _complete_sentences(buffer, src, kind in ("flush", "end"))
                for s in done:
                    tr, sp = self._pipeline(v, [s], src, tgt, voice, 1.0)
                    outstanding.extend([tr[0], sp[0]])
                    await queue.put((index, s, tr[0], sp[0]))
                    index += 1
                if kind == "end":
                    break
            if code != -1:
                await queue.put(None)
                await sender
                await ws.send_json({"type": "done", "sentences": index, "variant": v.name})
        except InvalidRequest as exc:
            code, reason = 1003, "bad message"
            await ws.send_json({"type": "error", "error": {"type": exc.kind, "message": str(exc)}})
        except (WebSocketDisconnect, RuntimeError):
            code = -1  # the client went away: just stop its work
        except Exception as exc:
            code, reason = 1011, "internal error"
            err = json.loads(bytes(error_response(exc, None).body))
            await ws.send_json({"type": "error", **err})
        finally:
            sender.cancel()
            _cancel(outstanding)
            if code != -1:
                with contextlib.suppress(RuntimeError):  # already closed by the client
                    await ws.close(code=code, reason=reason)

    @staticmethod
    def _ws_message(msg: dict[str, Any]) -> tuple[str, str]:
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

    async def _ws_sender(
        self, ws: WebSocket, v: _Variant, queue: "asyncio.Queue[tuple[int, str, Awaitable[Any], Awaitable[Any]] | None]"
    ) -> None:
        """Sends each sentence's translation and audio in order as they finish."""
        while (item := await queue.get()) is not None:
            index, source, tr_part, sp_part = item
            ctx = _Ctx()
            t0 = time.perf_counter()
            tr = _raise_errors([await _within(tr_part, self.timeout_s)])[0]
            await ws.send_json(
                {
                    "type": "translation",
                    "index": index,
                    "source": source,
                    "text": tr["text"],
                    "timings_ms": tr["timings_ms"],
                }
            )
            sp = _raise_errors([await _within(sp_part, self.timeout_s)])[0]
            ctx.stages["translate"] = tr["timings_ms"]["translate"]
            if sp is not None:
                ctx.stages["synthesize"] = sp.timings_ms.get("synthesize", 0.0)
                pcm = audio.pcm_bytes(sp.int16())
                await ws.send_json(
                    {
                        "type": "audio",
                        "index": index,
                        "sample_rate": sp.sample_rate,
                        "format": "pcm_s16le",
                        "bytes": len(pcm),
                    }
                )
                await ws.send_bytes(pcm)
            self._record(v.name, "stream", 200, (time.perf_counter() - t0) * 1000, ctx)

    @app.get("/v1/ab", summary="Per-variant counts, latency percentiles, error rates and a significance test")
    async def ab(self) -> Any:
        report = self.stats.report({**self.router.weights, **self.router.shadows})
        report["weights"] = self.router.weights
        report["sticky"] = self.sticky
        return JSONResponse(report)

    @app.get("/v1/graph", summary="The running graph: backends, options, hardware, why chosen")
    async def graph_info(self, request: Request) -> Any:
        rid = request_id_of(request)
        try:
            return JSONResponse(await _within(self._graph_info(), HEALTH_TIMEOUT_S * 2))
        except Exception as exc:
            return error_response(exc, rid)

    async def _graph_info(self) -> dict[str, Any]:
        async def live(v: _Variant) -> dict[str, Any]:
            tr, sp = await asyncio.gather(v.tr.call("describe"), v.sp.call("describe"))
            return {
                **v.info,
                "translator": {**v.info["translator"], "live": tr},
                "speaker": {**v.info["speaker"], "live": sp},
                "weight": self.router.weights.get(v.name, self.router.shadows.get(v.name)),
                "shadow": v.name in self.shadow_names,
            }

        described = await asyncio.gather(*(live(v) for v in self.variants.values()))
        out = {**self.graph, **{k: described[0][k] for k in ("translator", "speaker")}}
        out["variants"] = {v.name: d for v, d in zip(self.variants.values(), described, strict=True)}
        return out

    @app.get("/healthz", summary="Liveness of the ingress and every variant's stages")
    async def healthz(self, request: Request) -> Any:
        checks = {
            f"{n}.{role}": getattr(v, attr)
            for n, v in self.variants.items()
            for role, attr in (("translator", "tr"), ("speaker", "sp"))
        }
        try:
            results = await _within(
                asyncio.gather(*(stage.call("health") for stage in checks.values())), HEALTH_TIMEOUT_S
            )
        except Exception as exc:
            return JSONResponse(
                {"status": "unavailable", "error": {"type": "unhealthy", "message": str(unwrap(exc))}}, status_code=503
            )
        by_name = dict(zip(checks, results, strict=True))
        ok = all(bool(r.get("ok")) for r in results)
        body: dict[str, Any] = {"status": "ok" if ok else "unhealthy"}
        d = self.default.name
        body["translator"], body["speaker"] = by_name[f"{d}.translator"], by_name[f"{d}.speaker"]
        if len(self.variants) > 1:
            body["variants"] = by_name
        return JSONResponse(body, status_code=200 if ok else 503)
