"""The one orchestrator: text -> sentences -> translation -> speech, for every route, the CLI and the benchmarks.

``Pipeline`` drives two stages (graph.stages: in-process, or a Ray Serve handle's adapter in
deployments/). Every sentence's translation and speech start at once; the speaker gets each
translation unawaited, so sentence i's speech starts the moment its translation exists. A ``Run`` is
an async iterator of ``Piece``s in sentence order, under one deadline per request (a live session:
per sentence), cancelling what is left when its consumer stops; it notes fallbacks and stage timings,
time to first audio included. ``Run.whole()`` joins the pieces into one ``SpeechTranslation``.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from backends import audio
from backends.base import Speaker, Translator
from backends.errors import BackendTimeout, InvalidRequest
from backends.languages import normalize_lang
from backends.text import check_text, complete_sentences, split_sentences
from backends.types import SpeechResult, TranslationResult
from graph.stages import Speaking, SpeakStage, TranslateStage, Translating

#: silence between spoken sentences
GAP_S = 0.12


def join_translation(parts: list[str], target_lang: str) -> str:
    sep = "" if target_lang in ("ja", "zh", "th") else " "
    return sep.join(p.strip() for p in parts)


@dataclass
class Piece:
    """One sentence of a run: its source text, translation (None when only speaking) and speech
    (None when the translation is empty), with when it was ready."""

    index: int
    source: str
    translation: TranslationResult | None
    speech: SpeechResult | None
    since_start_ms: float
    #: from the sentence's start (a live session's sentences start when they are complete) to ready
    ms: float

    @property
    def text(self) -> str:
        """What was spoken: the translation, or the source when nothing was translated."""
        return self.translation.text if self.translation is not None else self.source


@dataclass
class SpeechTranslation:
    """A whole run: the translation, the joined audio, and per-stage timings in ms."""

    source_text: str
    translation: str
    pieces: list[Piece]
    samples: np.ndarray
    sample_rate: int
    timings_ms: dict[str, float] = field(default_factory=dict)
    fallbacks: list[str] = field(default_factory=list)

    @property
    def sentences(self) -> list[TranslationResult]:
        return [p.translation for p in self.pieces if p.translation is not None]

    @property
    def speech(self) -> list[SpeechResult]:
        return [p.speech for p in self.pieces if p.speech is not None]

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.sample_rate if self.sample_rate else 0.0

    def encode(self, fmt: str = "wav") -> bytes:
        return audio.encode(self.samples, self.sample_rate, fmt)

    def wav(self) -> bytes:
        return self.encode("wav")


async def within(work: Awaitable[Any], timeout_s: float) -> Any:
    """``await work`` with a deadline, raising TimeoutError; on 3.11+ without wait_for's extra task."""
    if sys.version_info >= (3, 11):
        async with asyncio.timeout(timeout_s):
            return await work
    return await asyncio.wait_for(work, timeout_s)


def _value(out: Any) -> Any:
    """A stage's answer; an expected error a stage returned as a value is raised."""
    if isinstance(out, BaseException):
        raise out
    return out


def _started(call: Awaitable[Any]) -> Awaitable[Any]:
    """A stage call running now: a coroutine (an in-process stage) becomes a task, so every sentence runs
    at once and its result can be awaited twice (by the run, and by the speaker given the translation)."""
    return asyncio.ensure_future(call) if asyncio.iscoroutine(call) else call


def _cancel(parts: list[Any]) -> None:
    """Stops stage calls nobody will read (the consumer left, or an earlier sentence failed)."""
    for p in parts:
        cancel = getattr(p, "cancel", None)
        if cancel is not None:
            with contextlib.suppress(Exception):  # already finished or never started: nothing to stop
                cancel()


class Run:
    """One request's pieces, in order, as each becomes ready."""

    def __init__(self, timeout_s: float | None, target_lang: str) -> None:
        self.started = time.perf_counter()
        self.timeout_s = timeout_s
        self.target_lang = target_lang
        #: per stage: the slowest sentence's own ms (translate, synthesize), and first_audio since start
        self.stages: dict[str, float] = {}
        self.fallbacks: list[str] = []
        self.source_text = ""
        # per sentence: source, translation call, speech call, deadline, start
        self._queue: list[tuple[str, Awaitable[Any] | None, Awaitable[Any] | None, float, float]] = []
        self._next = 0
        #: the pieces read so far
        self.read: list[Piece] = []
        self._ended = False
        self._wake = asyncio.Event()
        self._closed = False

    # -- filling ---------------------------------------------------------------------------------

    def add(self, source: str, translation: Awaitable[Any] | None, speech: Awaitable[Any] | None) -> None:
        """Queues one sentence whose stage calls already run; its deadline starts now."""
        deadline = time.monotonic() + self.timeout_s if self.timeout_s is not None else float("inf")
        self._queue.append((source, translation, speech, deadline, time.perf_counter()))
        self._wake.set()

    def end(self) -> None:
        """No more sentences will be added."""
        self._ended = True
        self._wake.set()

    # -- reading ---------------------------------------------------------------------------------

    def __aiter__(self) -> AsyncIterator[Piece]:
        return self

    async def __anext__(self) -> Piece:
        try:
            while self._next >= len(self._queue):
                if self._ended or self._closed:
                    raise StopAsyncIteration
                self._wake.clear()
                await self._wake.wait()
            source, tr_part, sp_part, deadline, start = self._queue[self._next]
            tr = None if tr_part is None else _value(await self._within(tr_part, deadline))
            sp = None if sp_part is None else _value(await self._within(sp_part, deadline))
        except BaseException:
            await self.aclose()
            raise
        now = time.perf_counter()
        piece = Piece(self._next, source, tr, sp, (now - self.started) * 1000, (now - start) * 1000)
        self._next += 1
        self.read.append(piece)
        self._note(tr, sp, piece.since_start_ms)
        return piece

    async def _within(self, part: Awaitable[Any], deadline: float) -> Any:
        if deadline == float("inf"):
            return await part
        try:
            return await within(part, max(0.001, deadline - time.monotonic()))
        except (TimeoutError, asyncio.TimeoutError):
            raise BackendTimeout(
                f"no answer within request_timeout_s={self.timeout_s:g} s; try again or raise it"
            ) from None

    def _note(self, tr: TranslationResult | None, sp: SpeechResult | None, at_ms: float) -> None:
        for role, r in (("translator", tr), ("speaker", sp)):
            src = getattr(r, "fallback_from", None)
            if src:
                note = f"{role}: {src.get('backend')} failed ({src.get('reason')}), {r.backend} served"  # type: ignore[union-attr]
                if note not in self.fallbacks:
                    self.fallbacks.append(note)
        if tr is not None:
            self.stages["translate"] = max(self.stages.get("translate", 0.0), tr.timings_ms.get("translate", 0.0))
        if sp is not None:
            self.stages["synthesize"] = max(self.stages.get("synthesize", 0.0), sp.timings_ms.get("synthesize", 0.0))
            self.stages.setdefault("first_audio", at_ms)

    async def aclose(self) -> None:
        """Cancels every stage call not yet read."""
        if not self._closed:
            self._closed = True
            self._wake.set()
            _cancel([p for _, tr, sp, _, _ in self._queue[self._next :] for p in (tr, sp) if p is not None])

    def elapsed_ms(self) -> float:
        return (time.perf_counter() - self.started) * 1000

    async def first_audio(self) -> tuple[list[Piece], SpeechResult]:
        """Reads pieces up to the first one with audio (a stream's rate and headers come from it)."""
        before: list[Piece] = []
        async for piece in self:
            before.append(piece)
            if piece.speech is not None:
                return before, piece.speech
        raise InvalidRequest("the translation is empty; nothing to speak")

    async def whole(self, rate: Callable[[int], int] = int) -> SpeechTranslation:
        """Every piece, the speech joined with a gap between sentences at ``rate(first piece's rate)``."""
        pieces = [p async for p in self]
        speech = [p.speech for p in pieces if p.speech is not None]
        if not speech:
            raise InvalidRequest("the translation is empty; nothing to speak")
        t0 = time.perf_counter()
        samples, out_rate = audio.concat(speech, GAP_S, rate(speech[0].sample_rate))
        timings = {**self.stages, "join": (time.perf_counter() - t0) * 1000, "total": self.elapsed_ms()}
        return SpeechTranslation(
            self.source_text, self.translation(pieces), pieces, samples, out_rate, timings, self.fallbacks
        )

    def translation(self, pieces: list[Piece]) -> str:
        return join_translation([p.text for p in pieces], self.target_lang)

    async def text(self) -> TextTranslation:
        """Every piece's translation, joined (a run without speech: ``POST /v1/translate``)."""
        pieces = [p async for p in self]
        return TextTranslation(
            self.translation(pieces),
            [p.translation for p in pieces if p.translation is not None],
            {**self.stages, "total": self.elapsed_ms()},
            self.fallbacks,
        )


@dataclass
class TextTranslation:
    """A translation without speech (``POST /v1/translate``)."""

    translation: str
    sentences: list[TranslationResult]
    timings_ms: dict[str, float]
    fallbacks: list[str]


class Pipeline:
    """Splits, translates and speaks with two stages; the stages decide where the work runs."""

    def __init__(
        self,
        translator: Translating | None,
        speaker: Speaking,
        *,
        source_lang: str = "en",
        target_lang: str = "ja",
        max_chars: int = 5000,
        timeout_s: float | None = None,
        voice: str | None = None,
    ) -> None:
        self.translator = translator
        self.speaker = speaker
        self.source_lang = source_lang
        self.target_lang = target_lang
        self.max_chars = max_chars
        self.timeout_s = timeout_s
        self.voice = voice
        self._loop: asyncio.AbstractEventLoop | None = None

    def langs(self, source_lang: str | None = None, target_lang: str | None = None) -> tuple[str, str]:
        return normalize_lang(source_lang or self.source_lang), normalize_lang(target_lang or self.target_lang)

    def sentences(self, text: str, lang: str) -> list[str]:
        """The text's sentences; InvalidRequest for empty text (400) or text over max_chars (413)."""
        return split_sentences(check_text(text, self.max_chars), lang)

    def _translating(self) -> Translating:
        if self.translator is None:
            raise InvalidRequest("this pipeline only speaks: it has no translator")
        return self.translator

    def _start(self, run: Run, sentence: str, src: str, tgt: str, voice: str | None, speed: float) -> None:
        tr = _started(self._translating().translate(sentence, src, tgt))
        run.add(sentence, tr, _started(self.speaker.speak(tr, tgt, voice or self.voice, speed)))

    def speech_translate(
        self,
        text: str,
        source_lang: str | None = None,
        target_lang: str | None = None,
        voice: str | None = None,
        speed: float = 1.0,
    ) -> Run:
        """Every sentence translated and spoken, all in flight at once; pieces in order."""
        src, tgt = self.langs(source_lang, target_lang)
        run = self._run(text, tgt)
        for sentence in self.sentences(text, src):
            self._start(run, sentence, src, tgt, voice, speed)
        run.end()
        return run

    def speak(self, text: str, lang: str | None = None, voice: str | None = None, speed: float = 1.0) -> Run:
        """Speech of text already in the target language, sentence by sentence."""
        tgt = normalize_lang(lang or self.target_lang)
        run = self._run(text, tgt)
        for sentence in self.sentences(text, tgt):
            run.add(sentence, None, _started(self.speaker.speak(sentence, tgt, voice or self.voice, speed)))
        run.end()
        return run

    def translate(self, text: str, source_lang: str | None = None, target_lang: str | None = None) -> Run:
        """Every sentence translated at once, nothing spoken; ``await run.text()`` joins them."""
        src, tgt = self.langs(source_lang, target_lang)
        translator = self._translating()
        run = self._run(text, tgt)
        for sentence in self.sentences(text, src):
            run.add(sentence, _started(translator.translate(sentence, src, tgt)), None)
        run.end()
        return run

    def _run(self, text: str, lang: str) -> Run:
        run = Run(self.timeout_s, lang)
        run.source_text = text
        return run

    def live(self, source_lang: str | None = None, target_lang: str | None = None, voice: str | None = None) -> Live:
        """A session fed text as it arrives (live captions): each finished sentence starts at once."""
        return Live(self, *self.langs(source_lang, target_lang), voice)

    def run_sync(self, text: str, voice: str | None = None, speed: float = 1.0) -> SpeechTranslation:
        """``speech_translate(...).whole()`` from synchronous code (the CLI, offline benchmarks).

        Runs on one event loop of this pipeline's own: the stages' locks belong to the loop they wait on.
        """
        if self._loop is None:
            self._loop = asyncio.new_event_loop()

        async def whole() -> SpeechTranslation:
            return await self.speech_translate(text, voice=voice, speed=speed).whole()

        return self._loop.run_until_complete(whole())


def local_pipeline(
    translator: Translator | None,
    speaker: Speaker,
    *,
    source_lang: str = "en",
    target_lang: str = "ja",
    max_chars: int | None = None,
    timeout_s: float | None = None,
) -> Pipeline:
    """A Pipeline over backends in this process (loaded here unless they are)."""
    for backend in (translator, speaker):
        if backend is not None and not backend.loaded:
            backend.load()
    limit = max_chars or min(b.max_chars for b in (translator, speaker) if b is not None)
    return Pipeline(
        TranslateStage(translator) if translator is not None else None,
        SpeakStage(speaker),
        source_lang=source_lang,
        target_lang=target_lang,
        max_chars=limit,
        timeout_s=timeout_s,
    )


class Live:
    """A live session: ``feed`` text pieces, then ``end``; read its ``run`` for the pieces in order.

    Each sentence has its own deadline from when it was complete: a socket may stay open for hours.
    """

    def __init__(self, pipeline: Pipeline, source_lang: str, target_lang: str, voice: str | None) -> None:
        self.pipeline = pipeline
        self.langs = (source_lang, target_lang)
        self.voice = voice
        self.run = Run(pipeline.timeout_s, target_lang)
        self.buffer = ""
        self.count = 0

    def feed(self, piece: str, flush: bool = False) -> int:
        """Adds text; starts every sentence it completes (all of it with ``flush``); returns how many."""
        self.buffer += piece
        if len(self.buffer) > self.pipeline.max_chars:
            raise InvalidRequest(f"unfinished text over max_chars={self.pipeline.max_chars}; send sentence ends")
        done, self.buffer = complete_sentences(self.buffer, self.langs[0], flush)
        for sentence in done:
            self.pipeline._start(self.run, sentence, *self.langs, self.voice, 1.0)
        self.count += len(done)
        return len(done)

    def end(self) -> None:
        self.feed("", flush=True)
        self.run.end()
