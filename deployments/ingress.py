"""The HTTP ingress: FastAPI routes on Ray Serve, calling the translator and speaker.

The translator's DeploymentResponse is handed to the speaker unawaited, so Ray starts
the speech as soon as the translation exists, without a round trip through the ingress.
With ``colocate: true`` the same routes call in-process stage objects instead of handles.
"""

# No `from __future__ import annotations` here: serve.ingress reads the route signatures as
# they are, and FastAPI needs real classes (Request, the body models) in them.
import asyncio
import base64
import inspect
import logging
import sys
import time
from collections.abc import Awaitable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.responses import JSONResponse
from ray import serve
from ray.serve.handle import DeploymentHandle

from backends import audio
from backends.errors import BackendTimeout, InvalidRequest
from backends.languages import normalize_lang
from backends.pipeline import join_translation
from backends.text import split_sentences
from backends.types import SpeechResult
from deployments.speaker import SpeakerReplica
from deployments.translator import TranslatorReplica
from serve.http import (
    SpeechRequest,
    SpeechTranslateJSON,
    SpeechTranslateRequest,
    TranslateRequest,
    TranslateResponse,
    create_app,
    error_response,
    header_json,
    header_text,
    request_id_of,
)

log = logging.getLogger("hayaku.ingress")

#: silence between spoken sentences, as in backends.pipeline.SpeechTranslator
GAP_S = 0.12
HEALTH_TIMEOUT_S = 5.0

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


async def _results(parts: list[Awaitable[Any]]) -> list[Any]:
    """Awaits stage calls; an error a stage returned as a value is raised here."""
    # One part (a one-sentence request) is awaited as is: gather would wrap it in a new task.
    out = [await parts[0]] if len(parts) == 1 else await asyncio.gather(*parts)
    for r in out:
        if isinstance(r, BaseException):
            raise r
    return out


async def _within(work: Awaitable[Any], timeout_s: float) -> Any:
    """``await work`` with a deadline, raising TimeoutError; on 3.11+ without wait_for's extra task."""
    if sys.version_info >= (3, 11):
        async with asyncio.timeout(timeout_s):
            return await work
    return await asyncio.wait_for(work, timeout_s)


def _timings(**ms: float) -> dict[str, float]:
    return {k: round(v, 3) for k, v in ms.items()}


# The ingress mostly awaits other replicas: it reserves no CPU, so a 2-core machine fits the whole graph.
@serve.deployment(name="Ingress", max_ongoing_requests=64, ray_actor_options={"num_cpus": 0})
@serve.ingress(app)
class Ingress:
    """Routes: /v1/translate, /v1/audio/speech, /v1/speech-translate, /v1/graph, /healthz, /docs."""

    def __init__(
        self,
        graph: dict[str, Any],
        translator: DeploymentHandle | None = None,
        speaker: DeploymentHandle | None = None,
        translator_stage: dict[str, Any] | None = None,
        speaker_stage: dict[str, Any] | None = None,
    ) -> None:
        self.graph = graph
        self.source_lang: str = graph["source_lang"]
        self.target_lang: str = graph["target_lang"]
        limits = graph["limits"]
        self.max_chars = int(limits["max_chars"])
        self.timeout_s = float(limits["request_timeout_s"])
        app.state.max_body_bytes = int(limits["max_body_bytes"])
        self.local: dict[str, Any] = {}
        if translator is not None and speaker is not None:
            self.tr: _Remote | _Local = _Remote(translator)
            self.sp: _Remote | _Local = _Remote(speaker)
        else:
            if translator_stage is None or speaker_stage is None:
                raise ValueError("a colocated ingress needs translator_stage and speaker_stage")
            self.local = {
                "translator": TranslatorReplica(translator_stage, self.max_chars, self.source_lang, self.target_lang),
                "speaker": SpeakerReplica(speaker_stage, self.max_chars, self.target_lang),
            }
            self.tr, self.sp = _Local(self.local["translator"]), _Local(self.local["speaker"])
        log.info(
            "hayaku ingress ready: translator=%s speaker=%s colocate=%s",
            graph["translator"]["backend"],
            graph["speaker"]["backend"],
            graph["colocate"],
        )

    async def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Colocated graphs only: ``{translator: {...}, speaker: {...}}`` as for the stage deployments."""
        if not self.local:
            if user_config:
                log.warning("Ingress user_config is ignored unless colocate: true; set it on Translator/Speaker")
            return
        unknown = set(user_config) - {"translator", "speaker"}
        if unknown:
            raise InvalidRequest(f"Ingress user_config: unknown keys {sorted(unknown)}; valid: translator, speaker")
        for role in ("translator", "speaker"):
            if role in user_config:
                await self.local[role].reconfigure(user_config[role])

    async def _guard(self, request: Request, work: Coroutine[Any, Any, Response | dict[str, Any]]) -> Any:
        """Runs a route's work under the request deadline; every failure becomes a JSON error."""
        rid = request_id_of(request)
        try:
            return await _within(work, self.timeout_s)
        except (TimeoutError, asyncio.TimeoutError):
            err = BackendTimeout(f"no answer within request_timeout_s={self.timeout_s:g} s; try again or raise it")
            return error_response(err, rid)
        except Exception as exc:
            return error_response(exc, rid)

    def _langs(self, source_lang: str | None, target_lang: str | None) -> tuple[str, str]:
        return normalize_lang(source_lang or self.source_lang), normalize_lang(target_lang or self.target_lang)

    def _sentences(self, text: str, lang: str) -> list[str]:
        if not text.strip():
            raise InvalidRequest(f"text is empty or whitespace only ({text!r}); send some text", status=400)
        if len(text) > self.max_chars:
            raise InvalidRequest(
                f"text has {len(text)} characters; the limit is max_chars={self.max_chars}", status=413
            )
        return split_sentences(text, lang)

    async def _speech(self, parts: list[Awaitable[Any]]) -> tuple[list[SpeechResult], float]:
        results = [r for r in await _results(parts) if r is not None]
        if not results:
            raise InvalidRequest("the translation is empty; nothing to speak")
        return results, max(r.timings_ms.get("synthesize", 0.0) for r in results)

    @app.post("/v1/translate", response_model=TranslateResponse, summary="Translate text")
    async def translate(self, body: TranslateRequest, request: Request) -> Any:
        return await self._guard(request, self._translate(body, request_id_of(request)))

    async def _translate(self, body: TranslateRequest, rid: str) -> dict[str, Any]:
        t0 = time.perf_counter()
        src, tgt = self._langs(body.source_lang, body.target_lang)
        sentences = self._sentences(body.text, src)
        results = await _results([self.tr.call("translate", s, src, tgt) for s in sentences])
        first = results[0]
        return {
            "translation": join_translation([r["text"] for r in results], tgt),
            "source_lang": src,
            "target_lang": tgt,
            "backend": first["backend"],
            "model": first["model"],
            "options": first["options"],
            "sentences": len(results),
            "timings_ms": _timings(
                translate=max(r["timings_ms"]["translate"] for r in results), total=(time.perf_counter() - t0) * 1000
            ),
            "request_id": rid,
        }

    @app.post(
        "/v1/audio/speech",
        summary="Speak text (OpenAI-compatible)",
        response_class=Response,
        responses={200: {"content": {"audio/wav": {}}}},
    )
    async def audio_speech(self, body: SpeechRequest, request: Request) -> Any:
        return await self._guard(request, self._audio_speech(body, request_id_of(request)))

    async def _audio_speech(self, body: SpeechRequest, rid: str) -> Response:
        t0 = time.perf_counter()
        lang = self.target_lang
        sentences = self._sentences(body.input, lang)
        speech, synth_ms = await self._speech(
            [self.sp.call("speak", s, lang, body.voice, body.speed) for s in sentences]
        )
        t1 = time.perf_counter()
        samples, rate = audio.concat(speech, GAP_S)
        data = audio.encode(samples, rate, body.response_format)
        t2 = time.perf_counter()
        timings = _timings(synthesize=synth_ms, encode=(t2 - t1) * 1000, total=(t2 - t0) * 1000)
        return Response(
            data,
            media_type=audio.MEDIA_TYPES[body.response_format],
            headers={
                "X-Hayaku-Speaker": speech[0].backend,
                "X-Hayaku-Voice": speech[0].voice,
                "X-Hayaku-Sample-Rate": str(rate),
                "X-Hayaku-Timings": header_json(timings),
            },
        )

    @app.post(
        "/v1/speech-translate",
        summary="Translate text and speak the translation",
        response_class=Response,
        responses={200: {"content": {"audio/wav": {}, "application/json": {}}}},
    )
    async def speech_translate(self, body: SpeechTranslateRequest, request: Request) -> Any:
        return await self._guard(request, self._speech_translate(body, request_id_of(request)))

    async def _speech_translate(self, body: SpeechTranslateRequest, rid: str) -> Response:
        t0 = time.perf_counter()
        src, tgt = self._langs(body.source_lang, body.target_lang)
        sentences = self._sentences(body.text, src)
        translations = [self.tr.call("translate", s, src, tgt) for s in sentences]
        # The speaker gets each translation's response unawaited: Ray resolves it in place.
        spoken = [self.sp.call("speak", tr, tgt, body.voice, body.speed) for tr in translations]
        tr_results = await _results(translations)
        speech, synth_ms = await self._speech(spoken)
        t1 = time.perf_counter()
        samples, rate = audio.concat(speech, GAP_S)
        data = audio.encode(samples, rate, body.format)
        t2 = time.perf_counter()
        translation = join_translation([r["text"] for r in tr_results], tgt)
        timings = _timings(
            translate=max(r["timings_ms"]["translate"] for r in tr_results),
            synthesize=synth_ms,
            encode=(t2 - t1) * 1000,
            total=(t2 - t0) * 1000,
        )
        translator: dict[str, Any] = {k: tr_results[0][k] for k in ("backend", "model", "options")}
        speaker: dict[str, Any] = {"backend": speech[0].backend, "voice": speech[0].voice, "options": speech[0].options}
        if body.response == "json":
            payload = SpeechTranslateJSON(
                translation=translation,
                audio_base64=base64.b64encode(data).decode(),
                format=body.format,
                sample_rate=rate,
                duration_s=round(len(samples) / rate, 4),
                translator=translator,
                speaker=speaker,
                timings_ms=timings,
                request_id=rid,
            )
            return JSONResponse(payload.model_dump())
        return Response(
            data,
            media_type=audio.MEDIA_TYPES[body.format],
            headers={
                "X-Hayaku-Translation": header_text(translation),
                "X-Hayaku-Translator": translator["backend"],
                "X-Hayaku-Speaker": speaker["backend"],
                "X-Hayaku-Voice": speaker["voice"],
                "X-Hayaku-Sample-Rate": str(rate),
                "X-Hayaku-Timings": header_json(timings),
            },
        )

    @app.get("/v1/graph", summary="The running graph: backends, options, hardware, why chosen")
    async def graph_info(self, request: Request) -> Any:
        return await self._guard(request, self._graph_info())

    async def _graph_info(self) -> dict[str, Any]:
        live_tr, live_sp = await asyncio.gather(self.tr.call("describe"), self.sp.call("describe"))
        out = dict(self.graph)
        out["translator"] = {**self.graph["translator"], "live": live_tr}
        out["speaker"] = {**self.graph["speaker"], "live": live_sp}
        return out

    @app.get("/healthz", summary="Liveness of the ingress and both stages")
    async def healthz(self, request: Request) -> Any:
        try:
            tr, sp = await _within(asyncio.gather(self.tr.call("health"), self.sp.call("health")), HEALTH_TIMEOUT_S)
        except Exception as exc:
            return JSONResponse(
                {"status": "unavailable", "error": {"type": "unhealthy", "message": str(exc)}}, status_code=503
            )
        ok = bool(tr.get("ok")) and bool(sp.get("ok"))
        return JSONResponse(
            {"status": "ok" if ok else "unhealthy", "translator": tr, "speaker": sp}, status_code=200 if ok else 503
        )
