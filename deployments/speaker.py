"""The speaker deployment: builds its backend from the stage config and delegates to it.

``SpeakerReplica`` is a plain class (run in-process by a colocated ingress); ``Speaker`` is
the Ray Serve deployment. Backend calls run one at a time per replica (speech engines are
not all thread-safe) in a worker thread, so the event loop stays responsive (backends that
declare ``blocking = False`` are called in place); scale with ``num_replicas``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from ray import serve

from backends import registry
from backends.base import Speaker as SpeakerBackend
from backends.errors import HayakuError
from backends.fallback import FallbackSpeaker
from backends.types import SpeechResult
from deployments.common import BackendHolder, build_stage_backend
from deployments.http.redaction import install_log_redaction
from graph.config import merge_update

log = logging.getLogger("hayaku.speaker")

#: one short sentence per language, spoken once at start so the first request is not the slow one
WARMUP_TEXT = {"ja": "こんにちは。", "zh": "你好。", "ko": "안녕하세요."}


def build_speaker(stage: dict[str, Any], max_chars: int, lang: str) -> SpeakerBackend:
    """Builds, loads and warms up the stage's speaker or fallback chain; blocking."""

    def create(s: dict[str, Any]) -> SpeakerBackend:
        return registry.create_speaker(
            s["backend"],
            s.get("model"),
            s.get("options"),
            voice=s.get("voice"),
            max_chars=max_chars,
            voice_map=s.get("voices"),
        )

    def probe(backend: SpeakerBackend) -> Any:
        warm_lang = lang if not backend.languages or lang in backend.languages else backend.languages[0]
        return backend.synthesize(WARMUP_TEXT.get(warm_lang, "Hello."), warm_lang)

    return build_stage_backend(stage, "speaker", create, probe, FallbackSpeaker)


class SpeakerReplica(BackendHolder[SpeakerBackend]):
    """Holds one loaded speaker backend; swaps it on ``reconfigure``."""

    role = "speaker"

    def __init__(self, stage: dict[str, Any], max_chars: int, lang: str) -> None:
        install_log_redaction()  # Ray logs failed requests here too: no request text in them
        self._base = dict(stage)
        self._max_chars = max_chars
        self._lang = lang
        self._stage = dict(stage)
        self._backend = build_speaker(self._stage, max_chars, lang)
        self._lock = asyncio.Lock()
        log.info("speaker ready: %s (loaded in %.0f ms)", self._backend.describe(), self._backend.load_ms or 0)

    async def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Applies a ``user_config`` live: the new backend is built and warmed, then swapped in."""
        new = merge_update(self._base, user_config, "speaker", "user_config")
        if new == self._stage:
            return
        backend = await asyncio.to_thread(build_speaker, new, self._max_chars, self._lang)
        async with self._lock:
            old, self._backend = self._backend, backend
            self._stage = new
        old.close()
        log.info("speaker reconfigured: %s", self.describe())

    def describe(self) -> dict[str, Any]:
        """What runs now (after any reconfigure), for GET /v1/graph."""
        backend = self._backend
        return {
            **self._live(),
            "voice": backend.voice or backend.default_voice,
            "voices": list(backend.list_voices()),
            "aliases": backend.voice_aliases(),
        }

    async def speak(
        self, item: str | dict[str, Any] | HayakuError, lang: str, voice: str | None = None, speed: float = 1.0
    ) -> SpeechResult | HayakuError | None:
        """Speaks a text, or a translator result (its ``text``); None for an empty translation.

        A translator error passed in is handed back as is, and this speaker's own expected
        errors are returned as values too (see ``TranslatorReplica.translate``).
        """
        if isinstance(item, HayakuError):
            return item
        text = item["text"] if isinstance(item, dict) else item
        if isinstance(item, dict) and not str(text).strip():
            return None
        async with self._lock:
            backend = self._backend
            try:
                if isinstance(backend, FallbackSpeaker):  # times out and hops threads itself
                    return await backend.asynthesize(text, lang, voice, speed)
                if not backend.blocking:
                    return backend.synthesize(text, lang, voice, speed)
                return await asyncio.to_thread(backend.synthesize, text, lang, voice, speed)
            except HayakuError as exc:
                return exc


Speaker = serve.deployment(name="Speaker", max_ongoing_requests=32, health_check_period_s=10)(SpeakerReplica)
