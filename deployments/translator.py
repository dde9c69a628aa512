"""The translator deployment: builds its backend from the stage config and delegates to it.

``TranslatorReplica`` is a plain class (the ingress runs it in-process when the graph is
colocated); ``Translator`` is the same class as a Ray Serve deployment. Concurrent
requests are grouped by ``@serve.batch``; a request that finds the replica idle skips the
batch queue (a batch would hold it alone), which saves its task hops. Blocking backend
calls run in a worker thread so the replica's event loop keeps accepting requests while a
batch is computed; backends that declare ``blocking = False`` are called in place. Backends that
declare ``concurrent = True`` (llama.cpp slots) batch concurrent calls themselves: each request is
its own call, so no request waits for another's batch to finish.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, cast

from ray import serve

from backends import registry
from backends.base import Translator as TranslatorBackend
from backends.errors import BadOutput, HayakuError
from backends.fallback import FallbackTranslator, garbage_translations
from deployments.common import BackendHolder, build_stage_backend
from deployments.http.redaction import install_log_redaction
from graph.config import BatchConfig, merge_update

log = logging.getLogger("hayaku.translator")

WARMUP_TEXT = "Hello."
#: stage fields whose change needs a new backend (the rest, batching, applies in place)
REBUILD_KEYS = ("backend", "model", "options", "fallbacks", "attempt_timeout_s", "probe_interval_s")


def build_translator(stage: dict[str, Any], max_chars: int, source_lang: str, target_lang: str) -> TranslatorBackend:
    """Builds, loads and warms up (one short request) the stage's backend or fallback chain; blocking."""

    def create(s: dict[str, Any]) -> TranslatorBackend:
        return registry.create_translator(s["backend"], s.get("model"), s.get("options"), max_chars=max_chars)

    def probe(backend: TranslatorBackend) -> Any:
        return backend.translate([WARMUP_TEXT], source_lang, target_lang)

    return build_stage_backend(stage, "translator", create, probe, FallbackTranslator)


class TranslatorReplica(BackendHolder[TranslatorBackend]):
    """Holds one loaded translator backend; swaps it on ``reconfigure``."""

    role = "translator"

    def __init__(self, stage: dict[str, Any], max_chars: int, source_lang: str, target_lang: str) -> None:
        install_log_redaction()  # Ray logs failed requests here too: no request text in them
        self._base = dict(stage)
        self._max_chars = max_chars
        self._langs = (source_lang, target_lang)
        self._stage = dict(stage)
        self._backend = build_translator(self._stage, max_chars, source_lang, target_lang)
        self._apply_batch(self._stage.get("batch"))
        # One backend call at a time, direct or batched, as @serve.batch alone guaranteed.
        self._lock = asyncio.Lock()
        self._active = 0
        self._concurrent_calls: dict[int, int] = {}  # id(backend) -> calls running on it outside the lock
        log.info("translator ready: %s (loaded in %.0f ms)", self._backend.describe(), self._backend.load_ms or 0)

    def _apply_batch(self, batch: Any) -> None:
        cfg = BatchConfig.model_validate(batch or {})
        batched = cast(Any, self._batched)  # serve.batch adds these setters to the method
        batched.set_max_batch_size(cfg.max_batch_size)
        batched.set_batch_wait_timeout_s(cfg.batch_wait_timeout_s)

    async def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Applies a ``user_config`` live: new backend/model/options are built and warmed, then swapped in."""
        new = merge_update(self._base, user_config, "translator", "user_config")
        if new == self._stage:
            return
        rebuild = {k: new.get(k) for k in REBUILD_KEYS} != {k: self._stage.get(k) for k in REBUILD_KEYS}
        if rebuild:
            backend = await asyncio.to_thread(build_translator, new, self._max_chars, *self._langs)
            async with self._lock:  # no call is still running on the old backend when it closes
                old, self._backend = self._backend, backend
            while self._concurrent_calls.get(id(old)):
                await asyncio.sleep(0.05)
            old.close()
        self._apply_batch(new.get("batch"))
        self._stage = new
        log.info("translator reconfigured: %s", self.describe())

    def describe(self) -> dict[str, Any]:
        """What runs now (after any reconfigure), for GET /v1/graph."""
        return {**self._live(), "batch": BatchConfig.model_validate(self._stage.get("batch") or {}).model_dump()}

    async def translate(self, text: str, source_lang: str, target_lang: str) -> dict[str, Any] | HayakuError:
        """Translates one sentence; concurrent calls share backend calls.

        Returns the TranslationResult as a dict, or the HayakuError (bad request, backend
        unavailable) as a value: an expected error is data for the ingress, not a crash
        for Ray to log with a traceback.
        """
        try:
            # Validated alone first, so one bad request fails by itself instead of failing its batch.
            src, tgt = self._backend.validate_request([text], source_lang, target_lang)
        except HayakuError as exc:
            return exc
        backend = self._backend
        if backend.concurrent and not isinstance(backend, FallbackTranslator):
            return await self._run_concurrent(backend, text, src, tgt)
        self._active += 1
        try:
            if self._active == 1:
                return (await self._run([(text, src, tgt)]))[0]
            result: dict[str, Any] | HayakuError = await self._batched((text, src, tgt))
            return result
        finally:
            self._active -= 1

    async def _run_concurrent(
        self, backend: TranslatorBackend, text: str, src: str, tgt: str
    ) -> dict[str, Any] | HayakuError:
        """A backend that batches concurrent calls itself gets each request as it comes, in its own thread."""
        key = id(backend)
        self._concurrent_calls[key] = self._concurrent_calls.get(key, 0) + 1
        try:
            (result,) = await asyncio.to_thread(backend.translate, [text], src, tgt)
        except HayakuError as exc:
            return exc
        finally:
            self._concurrent_calls[key] -= 1
            if not self._concurrent_calls[key]:
                del self._concurrent_calls[key]
        why = garbage_translations([result])
        return BadOutput(f"{result.backend} returned {why}") if why else result.to_dict()

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.0)
    async def _batched(self, items: list[tuple[str, str, str]]) -> list[dict[str, Any] | HayakuError]:
        return await self._run(items)

    async def _run(self, items: list[tuple[str, str, str]]) -> list[dict[str, Any] | HayakuError]:
        """One backend call per language pair in ``items``; results (or errors) in input order."""
        out: list[dict[str, Any] | HayakuError | None] = [None] * len(items)
        groups: dict[tuple[str, str], list[int]] = {}
        for i, (_, src, tgt) in enumerate(items):
            groups.setdefault((src, tgt), []).append(i)
        async with self._lock:
            backend = self._backend  # a reconfigure mid-batch must not mix two backends in one call
            for (src, tgt), idx in groups.items():
                try:
                    texts = [items[i][0] for i in idx]
                    if isinstance(backend, FallbackTranslator):  # times out and hops threads itself
                        results = await backend.atranslate(texts, src, tgt)
                    elif backend.blocking:
                        results = await asyncio.to_thread(backend.translate, texts, src, tgt)
                    else:
                        results = backend.translate(texts, src, tgt)
                except HayakuError as exc:
                    for i in idx:
                        out[i] = exc
                    continue
                for i, r in zip(idx, results, strict=True):
                    # A chain already refused garbage; a single backend's empty answer is a 503, not a 200.
                    why = garbage_translations([r])
                    out[i] = BadOutput(f"{r.backend} returned {why}") if why else r.to_dict()
        return [r for r in out if r is not None]


Translator = serve.deployment(name="Translator", max_ongoing_requests=32, health_check_period_s=10)(TranslatorReplica)
