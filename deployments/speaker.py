"""The speaker deployment: runs a graph.stages SpeakStage and answers errors as values.

``SpeakerReplica`` is a plain class (run in-process by a colocated ingress); ``SpeakerDeployment``
is the Ray Serve deployment named ``Speaker``. Backend calls run one at a time per replica (speech
engines are not all thread-safe) in a worker thread; scale with ``num_replicas``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from ray import serve

from backends.errors import HayakuError
from backends.types import SpeechResult
from deployments.common import StageHolder
from deployments.http.redaction import install_log_redaction
from graph.config import merge_update
from graph.stages import SpeakStage, build_speaker

log = logging.getLogger("hayaku.speaker")


class SpeakerReplica(StageHolder[SpeakStage]):
    """Holds one loaded speaker backend; swaps it on ``reconfigure``."""

    role = "speaker"

    def __init__(self, stage: dict[str, Any], max_chars: int, lang: str) -> None:
        install_log_redaction()  # Ray logs failed requests here too: no request text in them
        self._base = dict(stage)
        self._max_chars = max_chars
        self._lang = lang
        self._config = dict(stage)
        backend = build_speaker(stage, max_chars, lang)
        self._stage = SpeakStage(backend)
        log.info("speaker ready: %s (loaded in %.0f ms)", backend.describe(), backend.load_ms or 0)

    async def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Applies a ``user_config`` live: the new backend is built and warmed, then swapped in."""
        new = merge_update(self._base, user_config, "speaker", "user_config")
        if new == self._config:
            return
        backend = await asyncio.to_thread(build_speaker, new, self._max_chars, self._lang)
        (await self._stage.swap(backend)).close()
        self._config = new
        log.info("speaker reconfigured: %s", self.describe())

    def describe(self) -> dict[str, Any]:
        """What runs now (after any reconfigure), for GET /v1/graph."""
        backend = self._stage.backend
        return {
            **self._live(),
            "voice": backend.voice or backend.default_voice,
            "voices": list(backend.list_voices()),
            "aliases": backend.voice_aliases(),
        }

    async def speak(
        self, item: Any, lang: str, voice: str | None = None, speed: float = 1.0
    ) -> SpeechResult | HayakuError | None:
        """Speaks a text or a translator's answer (a translation, or its error, handed back as is);
        None for an empty translation. Expected errors are returned as values (see the translator)."""
        try:
            return await self._stage.speak(item, lang, voice, speed)
        except HayakuError as exc:
            return exc


SpeakerDeployment = serve.deployment(name="Speaker", max_ongoing_requests=32, health_check_period_s=10)(SpeakerReplica)
