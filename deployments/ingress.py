"""The HTTP ingress: routes and A/B, on Ray Serve. Every route runs the one orchestrator (graph.pipeline).

A request picks its variant (serve.abtest's Router), runs that variant's Pipeline under the request
deadline, and encodes the result (deployments.streams for streamed bodies, NDJSON, SSE and the
WebSocket). Each response names its variant and is recorded (deployments.records); shadow variants get
a copy, measured and never returned.
"""

# No `from __future__ import annotations` here: serve.ingress reads the route signatures as
# they are, and FastAPI needs real classes (Request, the body models) in them.
import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

from fastapi import Request, Response, WebSocket
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
from ray import serve

from backends import audio
from backends.errors import BackendTimeout, HayakuError
from deployments import openai_api, responses, streams
from deployments.http.app import create_app, header_text
from deployments.http.errors import error_body, error_response, unwrap
from deployments.http.middleware import request_id_of
from deployments.http.schemas import (
    SpeechRequest,
    SpeechTranslateRequest,
    TranslateRequest,
    TranslateResponse,
)
from deployments.http.security import configure_security
from deployments.records import Records
from deployments.variants import Variant, build_variants
from deployments.websocket import serve_socket
from graph.abtest import ABStats, Router
from graph.config import ABConfig, ConfigError, Limits
from graph.run import Run, within

log = logging.getLogger("hayaku.ingress")

HEALTH_TIMEOUT_S = 5.0
PAGE = Path(__file__).resolve().parent / "static" / "index.html"

app = create_app()


class _Ctx:
    """What a route's work tells the wrapper: its run (stage timings, fallbacks) and whether it streams."""

    def __init__(self) -> None:
        self.run: Run | None = None
        self.streaming = False

    @property
    def stages(self) -> dict[str, float]:
        return self.run.stages if self.run else {}

    @property
    def fallbacks(self) -> list[str]:
        return self.run.fallbacks if self.run else []


Work = Callable[[Variant, _Ctx], Coroutine[Any, Any, Response]]


# The ingress mostly awaits other replicas: it reserves no CPU, so a 2-core machine fits the whole graph.
@serve.deployment(name="Ingress", max_ongoing_requests=64, ray_actor_options={"num_cpus": 0})
@serve.ingress(app)
class Ingress:
    """Routes: /v1/translate, /v1/audio/speech, /v1/models, /v1/audio/voices, /v1/speech-translate,
    /v1/stream (WebSocket), /v1/ab, /v1/graph, /healthz, / (web page), /docs."""

    def __init__(self, graph: dict[str, Any], variants: list[dict[str, Any]]) -> None:
        self.graph = graph
        # Typed here from what Ray handed over, so every default is the config schema's own.
        limits = Limits.model_validate(graph["limits"])
        ab = ABConfig.model_validate(graph["ab"])
        self.timeout_s = limits.request_timeout_s
        app.state.max_body_bytes = limits.max_body_bytes
        app.state.max_inflight = limits.max_inflight
        app.state.deadline_s = self.timeout_s
        configure_security(app, graph["security"])
        self.sticky = ab.sticky
        self.shadow_max = ab.shadow_max_inflight
        self.variants = build_variants(limits, graph["source_lang"], graph["target_lang"], variants)
        weights = {v["name"]: float(v["weight"]) for v in variants if not v.get("shadow")}
        shadows = {v["name"]: float(v["weight"]) for v in variants if v.get("shadow")}
        self.shadow_names = set(shadows)
        self.model_ids = openai_api.model_ids(v.info["speaker"]["backend"] for v in self.variants.values())
        self.router = Router(weights, shadows)
        self.records = Records(ABStats(weights, ab.window, shadows))
        self._shadow_tasks: set[asyncio.Task[Any]] = set()
        log.info(
            "hayaku ingress ready: variants=%s colocate=%s",
            {n: (v.info["translator"]["backend"], v.info["speaker"]["backend"]) for n, v in self.variants.items()},
            graph["colocate"],
        )

    @property
    def default(self) -> Variant:
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
            stage = self.default.tr if role == "translator" else self.default.sp
            if not stage.local:
                log.warning("Ingress user_config.%s is ignored unless colocate: true; set it on the deployment", role)
                continue
            await stage.call("reconfigure", user_config[role])

    # -- routing, deadlines, records ---------------------------------------------------------------

    def _pick(self, request: Request | WebSocket, user: str | None) -> tuple[Variant, str]:
        forced = request.query_params.get("variant") or request.headers.get("x-hayaku-variant")
        key = (request.headers.get("x-hayaku-key") or user) if self.sticky else None
        name, how = self.router.choose(key, forced)
        return self.variants[name], how

    def _record(self, variant: str, route: str, status: int, total_ms: float, ctx: _Ctx) -> None:
        self.records.record(variant, route, status, total_ms, ctx.stages, bool(ctx.fallbacks))

    async def _serve(self, request: Request, route: str, user: str | None, work: Work) -> Response:
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
            out = await within(work(v, ctx), self.timeout_s)
        except (TimeoutError, asyncio.TimeoutError):
            err = BackendTimeout(f"no answer within request_timeout_s={self.timeout_s:g} s; try again or raise it")
            out = error_response(err, rid)
        except Exception as exc:
            out = error_response(exc, rid)
        out.headers["X-Hayaku-Variant"] = v.name
        out.headers["X-Hayaku-Routing"] = how
        if ctx.fallbacks:
            out.headers["X-Hayaku-Fallback"] = header_text("; ".join(ctx.fallbacks))
        if not (ctx.streaming and out.status_code < 400):  # a stream records itself when it ends
            self._record(v.name, route, out.status_code, (time.perf_counter() - t0) * 1000, ctx)
        if route != "graph" and not ctx.streaming:
            self._shadow(route, work)
        return out

    def _shadow(self, route: str, work: Work) -> None:
        """Copies the request to shadow variants: measured, never returned, dropped when too many run."""
        for name in self.router.shadow_targets():
            if len(self._shadow_tasks) >= self.shadow_max:
                self.records.stats.drop(name)
                continue
            task = asyncio.create_task(self._run_shadow(self.variants[name], route, work))
            self._shadow_tasks.add(task)
            task.add_done_callback(self._shadow_tasks.discard)

    async def _run_shadow(self, v: Variant, route: str, work: Work) -> None:
        ctx = _Ctx()
        t0 = time.perf_counter()
        try:
            status = (await within(work(v, ctx), self.timeout_s)).status_code
        except Exception as exc:
            status = error_response(exc, None).status_code
        self._record(v.name, route, status, (time.perf_counter() - t0) * 1000, ctx)

    def _stream_response(
        self, v: Variant, route: str, ctx: _Ctx, chunks: AsyncIterator[bytes], media: str, headers: dict[str, str]
    ) -> StreamingResponse:
        """A streamed body that records the request (and its time to first audio) when it ends."""
        ctx.streaming = True
        run = ctx.run
        assert run is not None

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
                await run.aclose()  # a client that left cancels what is still being translated or spoken
                self._record(v.name, route, status, run.elapsed_ms(), ctx)

        return StreamingResponse(body(), media_type=media, headers={**headers, "X-Hayaku-Variant": v.name})

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

    async def _translate(self, v: Variant, ctx: _Ctx, body: TranslateRequest, rid: str) -> Response:
        src, tgt = v.pipeline.langs(body.source_lang, body.target_lang)
        ctx.run = run = v.pipeline.translate(body.text, src, tgt)
        out = await run.text()
        first = out.sentences[0]
        payload = TranslateResponse(
            translation=out.translation,
            source_lang=src,
            target_lang=tgt,
            backend=first.backend,
            model=first.model,
            options=first.options,
            sentences=len(out.sentences),
            timings_ms=streams.timings(**out.timings_ms),
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

    async def _audio_speech(self, v: Variant, ctx: _Ctx, body: SpeechRequest) -> Response:
        openai_api.check_request(body, self.model_ids)
        streamed = body.stream_format is not None
        ctx.run = run = v.pipeline.speak(body.input, voice=body.voice, speed=body.speed, clauses=streamed)
        if body.stream_format is None:
            return await responses.speech(run, body)
        return self._stream_response(v, "speech", ctx, *await responses.speech_stream(run, body))

    @app.get("/v1/models", summary="The model names /v1/audio/speech takes (OpenAI-compatible)")
    async def list_models(self) -> Any:
        return JSONResponse(openai_api.models_body(self.model_ids))

    @app.get("/v1/audio/voices", summary="Every voice name /v1/audio/speech takes, and the voice each speaks with")
    async def list_voices(self, request: Request) -> Any:
        rid = request_id_of(request)
        try:
            v, _ = self._pick(request, None)
            described = await within(v.sp.call("describe"), HEALTH_TIMEOUT_S)
            return JSONResponse(openai_api.voices_body(described, v.name))
        except Exception as exc:
            return error_response(exc, rid)

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

    async def _speech_translate(self, v: Variant, ctx: _Ctx, body: SpeechTranslateRequest, rid: str) -> Response:
        audio.check_format(body.format, stream=body.stream and body.response == "audio")
        ctx.run = run = v.pipeline.speech_translate(
            body.text, body.source_lang, body.target_lang, voice=body.voice, speed=body.speed, clauses=body.stream
        )
        if not body.stream:
            return await responses.speech_translate(run, body, rid, v.name)
        stream = await responses.speech_translate_stream(run, body, rid, v.name, v.info["translator"]["backend"])
        return self._stream_response(v, "speech-translate", ctx, *stream)

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
        q = ws.query_params
        live = v.pipeline.live(q.get("source_lang"), q.get("target_lang"), q.get("voice"))

        def record(status: int, ms: float, stages: dict[str, float]) -> None:
            self.records.record(v.name, "stream", status, ms, stages, False)

        await serve_socket(ws, live, v.name, record)

    @app.get("/v1/ab", summary="Per-variant counts, latency percentiles, error rates and a significance test")
    async def ab(self) -> Any:
        report = self.records.stats.report({**self.router.weights, **self.router.shadows})
        report["weights"] = self.router.weights
        report["sticky"] = self.sticky
        return JSONResponse(report)

    @app.get("/v1/graph", summary="The running graph: backends, options, hardware, why chosen")
    async def graph_info(self, request: Request) -> Any:
        rid = request_id_of(request)
        try:
            return JSONResponse(await within(self._graph_info(), HEALTH_TIMEOUT_S * 2))
        except Exception as exc:
            return error_response(exc, rid)

    async def _graph_info(self) -> dict[str, Any]:
        async def live(v: Variant) -> dict[str, Any]:
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
            f"{n}.{role}": stage
            for n, v in self.variants.items()
            for role, stage in (("translator", v.tr), ("speaker", v.sp))
        }
        try:
            results = await within(
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
