"""The translator deployment: runs a graph.stages TranslateStage and answers errors as values.

``TranslatorReplica`` is a plain class (a colocated ingress runs it in-process);
``TranslatorDeployment`` is it as a Ray Serve deployment named ``Translator``, in a process whose CPU
priority the stage's ``nice`` lowers: decoding keeps every core busy, and speech and the HTTP path,
which the listener waits for, should not wait behind it.
The stage groups concurrent requests into one backend call (``batch`` in the stage config) and
runs blocking backends in a worker thread, so the replica's event loop keeps accepting requests.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from typing import Any

from ray import serve

from backends.errors import HayakuError
from backends.types import TranslationResult
from deployments.common import StageHolder, set_niceness
from deployments.http.redaction import install_log_redaction
from graph.config import BatchConfig, merge_update
from graph.stages import TranslateStage, build_translator

log = logging.getLogger("hayaku.translator")

#: stage fields whose change needs a new backend (the rest, batching, applies in place)
REBUILD_KEYS = ("backend", "model", "options", "fallbacks", "attempt_timeout_s", "probe_interval_s")


class TranslatorReplica(StageHolder[TranslateStage]):
    """Holds one loaded translator backend; swaps it on ``reconfigure``."""

    role = "translator"
    #: whether this replica is a process of its own, whose CPU priority the stage's ``nice`` sets
    own_process = False

    def __init__(self, stage: dict[str, Any], max_chars: int, source_lang: str, target_lang: str) -> None:
        install_log_redaction()  # Ray logs failed requests here too: no request text in them
        self._renice(stage.get("nice"))  # before loading: the engine's threads take this thread's niceness
        self._base = dict(stage)
        self._max_chars = max_chars
        self._langs = (source_lang, target_lang)
        self._config = dict(stage)
        backend = build_translator(stage, max_chars, source_lang, target_lang)
        self._stage = TranslateStage(backend, BatchConfig.model_validate(stage.get("batch") or {}))
        log.info("translator ready: %s (loaded in %.0f ms)", backend.describe(), backend.load_ms or 0)

    async def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Applies a ``user_config`` live: new backend/model/options are built and warmed, then swapped in."""
        new = merge_update(self._base, user_config, "translator", "user_config")
        if new == self._config:
            return
        if {k: new.get(k) for k in REBUILD_KEYS} != {k: self._config.get(k) for k in REBUILD_KEYS}:
            backend = await asyncio.to_thread(build_translator, new, self._max_chars, *self._langs)
            (await self._stage.swap(backend)).close()
        self._stage.batch = BatchConfig.model_validate(new.get("batch") or {})
        if new.get("nice") != self._config.get("nice"):
            self._renice(new.get("nice"))
        self._config = new
        log.info("translator reconfigured: %s", self.describe())

    def _renice(self, nice: int | None) -> None:
        if not self.own_process or nice is None:
            return
        try:
            set_niceness(nice)
        except PermissionError:
            log.warning(
                "translator: nice %d needs CAP_SYS_NICE (a higher priority than Ray's workers get); keeping %d",
                nice,
                os.getpriority(os.PRIO_PROCESS, 0),
            )

    def describe(self) -> dict[str, Any]:
        """What runs now (after any reconfigure), for GET /v1/graph."""
        return {**self._live(), "batch": self._stage.batch.model_dump()}

    async def translate(self, text: str, source_lang: str, target_lang: str) -> TranslationResult | HayakuError:
        """Translates one sentence; concurrent calls share backend calls.

        An expected error (bad request, backend unavailable, empty output) is returned as a value:
        it is data for the ingress, not a crash for Ray to log with a traceback.
        """
        try:
            return await self._stage.translate(text, source_lang, target_lang)
        except HayakuError as exc:
            return exc

    async def translate_stream(
        self, text: str, source_lang: str, target_lang: str
    ) -> AsyncIterator[str | TranslationResult | HayakuError]:
        """The translation's text pieces as they are decoded, then its record (or the expected error, as a
        value); called through a streaming handle. A caller that stops reading stops the decoding."""
        try:
            async for item in self._stage.translate_stream(text, source_lang, target_lang):
                yield item
        except HayakuError as exc:
            yield exc


class TranslatorProcess(TranslatorReplica):
    """The replica as a Serve deployment, a process of its own."""

    own_process = True


TranslatorDeployment = serve.deployment(name="Translator", max_ongoing_requests=32, health_check_period_s=10)(
    TranslatorProcess
)
