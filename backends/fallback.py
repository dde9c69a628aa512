"""Fallback chains: a primary backend and the backends tried, in order, when it fails.

A call goes to the first healthy backend. One that raises, runs past the per-attempt
timeout, fails its own health check or returns garbage (an empty translation of a
non-empty text; empty or non-finite audio) is marked unhealthy, with the reason and the
time, and the next one is tried. Unhealthy backends are probed in a background thread
(``health()`` plus one tiny real call) and restored when they pass. When every backend
fails the call raises ``BackendUnavailable`` (HTTP 503) naming each backend and why.

A result served by a fallback carries ``fallback_from = {"backend", "reason"}``, naming
the primary and why it did not serve. ``FallbackTranslator`` and ``FallbackSpeaker`` are
a ``Translator`` and a ``Speaker`` themselves, so whatever holds one backend can hold a
chain. The chain itself (ordering, states, attempt threads, probing) is ``backends.fallback_chain``.
Plain Python, no Ray.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from backends.base import Backend, Speaker, Translator
from backends.errors import BackendUnavailable
from backends.fallback_chain import FallbackChain
from backends.types import SpeechResult, TranslationResult


def garbage_translations(results: list[TranslationResult]) -> str | None:
    """Why a translator's results are unusable (an empty translation of a non-empty text), or None."""
    for r in results:
        if r.source_text.strip() and not r.text.strip():
            return f"empty translation of a {len(r.source_text)}-character text"
    return None


def garbage_speech(result: SpeechResult) -> str | None:
    """Why a speaker's result is unusable (no samples, or NaN/inf samples), or None."""
    if not len(result.audio):
        return "no audio"
    if result.audio.dtype != np.int16 and not np.all(np.isfinite(result.audio)):
        return "non-finite audio samples"
    return None


class _Chained(Backend):
    """What FallbackTranslator and FallbackSpeaker share: loading, health, description, closing."""

    primary: Backend
    chain: FallbackChain[Any]
    _where: str

    def _load(self) -> None:
        for i, b in enumerate(self.chain.backends):
            try:
                b.load()
            except BackendUnavailable as exc:
                at = self._where if i == 0 else f"{self._where}.fallbacks[{i - 1}]"
                raise type(exc)(f"{at} ({b.name}) cannot run here: {exc}") from None
        # Every backend takes its probe now: a failing one is known, and fallbacks are warm, before traffic.
        self.chain.warm_up()

    def health(self) -> dict[str, Any]:
        """ok while some backend is healthy; ``backends`` lists each one's state, reason and since."""
        report = {"backend": self.primary.name, "model": self.primary.model, **self.chain.health()}
        report["ok"] = report["ok"] and self.loaded
        return report

    def describe(self) -> dict[str, Any]:
        return {**self.primary.describe(), "fallback": self.chain.describe()}

    def close(self) -> None:
        self.chain.close()
        super().close()


class FallbackTranslator(_Chained, Translator):
    """A Translator that serves from the first healthy one of its translators.

    Requests are validated by the primary (its languages and limits); the results carry the
    serving backend's name and options, and ``fallback_from`` when it was not the primary.
    """

    name = "fallback"
    primary: Translator

    def __init__(
        self,
        translators: Sequence[Translator],
        *,
        probe: Callable[[Translator], Any],
        attempt_timeout_s: float | None = None,
        probe_interval_s: float = 10.0,
        where: str = "translator",
    ) -> None:
        self.primary = translators[0]
        super().__init__(self.primary.model, None, max_chars=self.primary.max_chars)
        self.chain: FallbackChain[Translator] = FallbackChain(
            translators,
            probe=probe,
            garbage=garbage_translations,
            attempt_timeout_s=attempt_timeout_s,
            probe_interval_s=probe_interval_s,
        )
        self.blocking = any(t.blocking for t in translators)
        self._where = where

    def supported_languages(self) -> set[str] | None:
        return self.primary.supported_languages()

    def validate_request(self, texts: Sequence[str], source_lang: str, target_lang: str) -> tuple[str, str]:
        return self.primary.validate_request(texts, source_lang, target_lang)

    def translate(
        self, texts: Sequence[str], source_lang: str = "en", target_lang: str = "ja"
    ) -> list[TranslationResult]:
        """Translates with the first backend that serves; raises BackendUnavailable if none does."""
        self.validate_request(texts, source_lang, target_lang)
        self._ensure_loaded()
        return self._mark(*self.chain.call(lambda t: t.translate(texts, source_lang, target_lang)))

    async def atranslate(
        self, texts: Sequence[str], source_lang: str = "en", target_lang: str = "ja"
    ) -> list[TranslationResult]:
        """``translate`` for an event loop (a replica): never blocks the loop, one thread hop at most."""
        self.validate_request(texts, source_lang, target_lang)
        self._ensure_loaded()
        return self._mark(*await self.chain.acall(lambda t: t.translate(texts, source_lang, target_lang)))

    def _mark(self, results: list[TranslationResult], served: int) -> list[TranslationResult]:
        if served:
            origin = self.chain.fallback_from()
            for r in results:
                r.fallback_from = origin
        return results

    def _translate(self, texts: list[str], source_lang: str, target_lang: str) -> list[tuple[str, int | None]]:
        return [(r.text, r.output_tokens) for r in self.translate(texts, source_lang, target_lang)]


class FallbackSpeaker(_Chained, Speaker):
    """A Speaker that speaks with the first healthy one of its speakers.

    A voice asked for in the request goes to a fallback only if that fallback has it (as a voice
    or an alias, such as an OpenAI voice name, which each speaker maps to its own voices);
    otherwise the fallback speaks in its own configured voice.
    """

    name = "fallback"
    primary: Speaker

    def __init__(
        self,
        speakers: Sequence[Speaker],
        *,
        probe: Callable[[Speaker], Any],
        attempt_timeout_s: float | None = None,
        probe_interval_s: float = 10.0,
        where: str = "speaker",
    ) -> None:
        self.primary = speakers[0]
        super().__init__(self.primary.model, None, max_chars=self.primary.max_chars)
        self.voice = self.primary.voice or self.primary.default_voice
        self.chain: FallbackChain[Speaker] = FallbackChain(
            speakers,
            probe=probe,
            garbage=garbage_speech,
            attempt_timeout_s=attempt_timeout_s,
            probe_interval_s=probe_interval_s,
        )
        self.blocking = any(s.blocking for s in speakers)
        self._where = where

    def list_voices(self) -> tuple[str, ...]:
        return self.primary.list_voices()

    def check_voice(self, voice: str) -> str:
        return self.primary.check_voice(voice)

    def voice_aliases(self) -> dict[str, str]:
        return self.primary.voice_aliases()

    def synthesize(self, text: str, lang: str = "ja", voice: str | None = None, speed: float = 1.0) -> SpeechResult:
        """Speaks with the first speaker that serves; raises BackendUnavailable if none does."""
        return self._mark(*self.chain.call(self._speak(text, lang, voice, speed)))

    async def asynthesize(
        self, text: str, lang: str = "ja", voice: str | None = None, speed: float = 1.0
    ) -> SpeechResult:
        """``synthesize`` for an event loop (a replica): never blocks the loop, one thread hop at most."""
        return self._mark(*await self.chain.acall(self._speak(text, lang, voice, speed)))

    def _speak(self, text: str, lang: str, voice: str | None, speed: float) -> Callable[[Speaker], SpeechResult]:
        primary = self.primary
        if voice:
            primary.check_voice(voice)  # an unknown voice is the caller's mistake even while a fallback serves
        self._ensure_loaded()

        def speak(s: Speaker) -> SpeechResult:
            own = voice if s is primary or (voice is not None and s.knows_voice(voice)) else None
            return s.synthesize(text, lang, own, speed)

        return speak

    def _mark(self, result: SpeechResult, served: int) -> SpeechResult:
        if served:
            result.fallback_from = self.chain.fallback_from()
        return result

    def _synthesize(self, text: str, lang: str, voice: str, speed: float) -> tuple[np.ndarray, int]:
        result = self.synthesize(text, lang, voice, speed)
        return result.audio, result.sample_rate
