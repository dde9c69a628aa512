"""One request's run through the orchestrator (graph.pipeline): its pieces in order, as each is ready.

A sentence is either spoken whole once translated (``Run.add``), or, when the translation streams,
clause by clause as its text is decoded (``Run.add_clauses``). Reading a ``Run`` yields ``Piece``s in
order under one deadline per sentence's start (a request's sentences all start at once); stopping early
cancels every stage call not yet read. The run notes fallbacks and stage timings, first audio included.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import numpy as np

from backends.errors import BackendTimeout, InvalidRequest
from backends.types import SpeechResult, TranslationResult
from graph.pieces import GAP_S, Joiner, Piece, SpeechTranslation, TextTranslation, clause_gap, join_translation


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


def _cancel(parts: list[Any]) -> None:
    """Stops stage calls nobody will read (the consumer left, or an earlier sentence failed)."""
    for p in parts:
        cancel = getattr(p, "cancel", None)
        if cancel is not None:
            with contextlib.suppress(Exception):  # already finished or never started: nothing to stop
                cancel()


#: what a sentence yields: (clause text or None, speech or None, the sentence's record or None, whether the
#: sentence goes on right after this piece)
Part = tuple[str | None, SpeechResult | None, TranslationResult | None, bool]
Wait = Callable[[Awaitable[Any]], Awaitable[Any]]


class _Sentence:
    """A sentence whose stage calls already run; its deadline starts when it is added."""

    def __init__(self, source: str, deadline: float) -> None:
        self.source = source
        self.deadline = deadline
        self.start = time.perf_counter()
        self.calls: list[Any] = []
        #: the sentence's translation record, once it exists (None when only speaking)
        self.record: TranslationResult | None = None

    def parts(self, wait: Wait) -> AsyncIterator[Part]:
        raise NotImplementedError


class _Whole(_Sentence):
    def __init__(self, source: str, deadline: float, tr: Awaitable[Any] | None, sp: Awaitable[Any] | None) -> None:
        super().__init__(source, deadline)
        self.tr, self.sp = tr, sp
        self.calls = [c for c in (tr, sp) if c is not None]

    async def parts(self, wait: Wait) -> AsyncIterator[Part]:
        self.record = tr = None if self.tr is None else _value(await wait(self.tr))
        sp = None if self.sp is None else _value(await wait(self.sp))
        yield None, sp, tr, False


class Clauses(_Sentence):
    """A sentence spoken clause by clause: a producer puts each clause's speech call, then the record."""

    def __init__(self, source: str, deadline: float) -> None:
        super().__init__(source, deadline)
        self._queue: asyncio.Queue[tuple[str | None, Any, Any, bool]] = asyncio.Queue()

    def clause(
        self, text: str, speech: Awaitable[Any], final: TranslationResult | None = None, joins_next: bool = False
    ) -> None:
        """One clause's speech call (``joins_next``: a phrase the rest of the sentence follows at once)."""
        self.calls.append(speech)
        self._queue.put_nowait((text, speech, final, joins_next))

    def end(self, final: TranslationResult | BaseException | None) -> None:
        """The sentence's record (None when only speaking) or the error that ended it."""
        self._queue.put_nowait((None, None, final, False))

    async def parts(self, wait: Wait) -> AsyncIterator[Part]:
        spoken = 0
        while True:
            text, speech, final, joins_next = await wait(self._queue.get())
            if text is None:
                self.record = _value(final)
                if not spoken:  # nothing to speak (an empty translation): the record alone
                    yield None, None, self.record, False
                return
            sp = _value(await wait(speech))
            spoken += 1
            yield text, sp, final, joins_next


class Run:
    """One request's pieces, in order, as each becomes ready."""

    def __init__(self, timeout_s: float | None, target_lang: str, source_text: str = "") -> None:
        self.started = time.perf_counter()
        self.timeout_s = timeout_s
        self.target_lang = target_lang
        self.source_text = source_text
        #: per stage: the slowest sentence's own ms (translate, synthesize), and first_audio since start
        self.stages: dict[str, float] = {}
        self.fallbacks: list[str] = []
        #: the pieces read so far; each finished sentence's source and translation record
        self.read: list[Piece] = []
        self.sentences: list[str] = []
        self.records: list[TranslationResult] = []
        self._queue: list[_Sentence] = []
        self._current: AsyncIterator[Part] | None = None
        self._clause = 0
        self._ended = False
        self._wake = asyncio.Event()
        self._closed = False
        self._tasks: list[asyncio.Task[Any]] = []
        #: set once the first piece is read (its audio is out), or the first sentence has none to give
        self.first_heard = asyncio.Event()

    # -- filling ---------------------------------------------------------------------------------

    def _deadline(self) -> float:
        return time.monotonic() + self.timeout_s if self.timeout_s is not None else float("inf")

    def add(self, source: str, translation: Awaitable[Any] | None, speech: Awaitable[Any] | None) -> None:
        """Queues one sentence whose stage calls already run, spoken whole."""
        self._queue.append(_Whole(source, self._deadline(), translation, speech))
        self._wake.set()

    def add_clauses(self, source: str, produce: Callable[[Clauses], Awaitable[None]]) -> None:
        """Queues one sentence spoken clause by clause; ``produce`` fills it (run as a task of the run's)."""
        sentence = Clauses(source, self._deadline())
        self._tasks.append(asyncio.ensure_future(produce(sentence)))
        self._queue.append(sentence)
        self._wake.set()

    def queued(self) -> int:
        """How many sentences were added."""
        return len(self._queue)

    def end(self) -> None:
        """No more sentences will be added."""
        self._ended = True
        self._wake.set()

    # -- reading ---------------------------------------------------------------------------------

    def __aiter__(self) -> AsyncIterator[Piece]:
        return self

    async def __anext__(self) -> Piece:
        try:
            return await self._next_piece()
        except StopAsyncIteration:
            raise
        except BaseException:
            await self.aclose()
            raise

    async def _next_piece(self) -> Piece:
        while True:
            n = len(self.sentences)
            if self._current is None:
                while n >= len(self._queue):
                    if self._ended or self._closed:
                        raise StopAsyncIteration
                    self._wake.clear()
                    await self._wake.wait()
                self._current, self._clause = self._queue[n].parts(functools.partial(self._within, sentence=n)), 0
            try:
                text, sp, tr, joins_next = await self._current.__anext__()
            except StopAsyncIteration:
                self._current = None
                done = self._queue[n]
                self.sentences.append(done.source)
                if done.record is not None:
                    self.records.append(done.record)
                    self._note(done.record, None, 0.0)
                continue
            return self._piece(self._queue[n], n, text, sp, tr, joins_next)

    def _piece(
        self,
        sentence: _Sentence,
        n: int,
        text: str | None,
        sp: SpeechResult | None,
        tr: TranslationResult | None,
        joins_next: bool,
    ) -> Piece:
        now = time.perf_counter()
        prev = self.read[-1] if self.read else None
        if prev is None:
            gap = 0.0
        elif self._clause == 0:
            gap = GAP_S
        else:
            gap = clause_gap(prev.text)
        piece = Piece(
            len(self.read), sentence.source, tr, sp, (now - self.started) * 1000, (now - sentence.start) * 1000,
            n, self._clause, text, gap, joins_next, prev is not None and prev.joins_next,
        )  # fmt: skip
        self._clause += 1
        self.read.append(piece)
        self.first_heard.set()
        self._note(None, sp, piece.since_start_ms)
        return piece

    async def _within(self, part: Awaitable[Any], sentence: int) -> Any:
        deadline = self._queue[sentence].deadline
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
            if r is not None and src:
                note = f"{role}: {src.get('backend')} failed ({src.get('reason')}), {r.backend} served"
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
            _cancel([*self._tasks, *(c for s in self._queue[len(self.sentences) :] for c in s.calls)])

    def elapsed_ms(self) -> float:
        return (time.perf_counter() - self.started) * 1000

    # -- results ---------------------------------------------------------------------------------

    async def first_audio(self) -> tuple[list[Piece], SpeechResult]:
        """Reads pieces up to the first one with audio (a stream's rate and headers come from it)."""
        before: list[Piece] = []
        async for piece in self:
            before.append(piece)
            if piece.speech is not None:
                return before, piece.speech
        raise InvalidRequest("the translation is empty; nothing to speak")

    def translation(self) -> str:
        """The finished sentences' translations (their records' text, not the clauses'), joined; the
        sources when only speaking."""
        texts = [r.text for r in self.records] if self.records else self.sentences
        return join_translation(texts, self.target_lang)

    async def whole(self, rate: Callable[[int], int] = int) -> SpeechTranslation:
        """Every piece, the speech joined with a gap between sentences at ``rate(first piece's rate)``."""
        pieces = [p async for p in self]
        spoken = [p for p in pieces if p.speech is not None]
        if not spoken:
            raise InvalidRequest("the translation is empty; nothing to speak")
        t0 = time.perf_counter()
        joiner = Joiner(rate(spoken[0].speech.sample_rate))  # type: ignore[union-attr]
        samples = np.concatenate([joiner.samples(p) for p in spoken])
        timings = {**self.stages, "join": (time.perf_counter() - t0) * 1000, "total": self.elapsed_ms()}
        return SpeechTranslation(
            self.source_text, self.translation(), pieces, samples, joiner.rate, timings, self.fallbacks, self.records
        )

    async def text(self) -> TextTranslation:
        """Every sentence's translation, joined (a run without speech: ``POST /v1/translate``)."""
        async for _ in self:
            pass
        return TextTranslation(
            self.translation(),
            list(self.records),
            {**self.stages, "total": self.elapsed_ms()},
            self.fallbacks,
        )
