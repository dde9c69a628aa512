"""The one orchestrator: text -> sentences -> translation -> speech, for every route, the CLI and the benchmarks.

``Pipeline`` drives two stages (graph.stages: in-process, or a Ray Serve handle's adapter in
deployments/). Every sentence's translation and speech start at once; the speaker gets each
translation unawaited, so sentence i's speech starts the moment its translation exists. With
``clauses=True`` (the streamed routes) a sentence's translation streams instead, and each clause
(backends.text.complete_clauses) is spoken as soon as its text is decoded, while the rest is still
being translated; the first audio of a run starts at its first phrase (backends.text.first_phrase) even
before a comma. A ``graph.run.Run`` yields the pieces in order; ``Run.whole()`` joins them.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Awaitable
from typing import Any

from backends.base import Speaker, Translator
from backends.errors import InvalidRequest
from backends.languages import normalize_lang
from backends.text import check_text, complete_clauses, complete_sentences, first_phrase, split_sentences
from backends.types import TranslationResult
from graph.pieces import SpeechTranslation
from graph.run import Clauses, Run
from graph.stages import Speaking, SpeakStage, TranslateStage, Translating


def _started(call: Awaitable[Any]) -> Awaitable[Any]:
    """A stage call running now: a coroutine (an in-process stage) becomes a task, so every sentence runs
    at once and its result can be awaited twice (by the run, and by the speaker given the translation)."""
    return asyncio.ensure_future(call) if asyncio.iscoroutine(call) else call


def _rest(final: str, spoken: str, unspoken: str) -> str:
    """What is left to speak once the whole translation is known: the record's text past what the clauses
    already said (the record is the cleaned answer; the clauses were its raw decoded text, so the two are
    compared without whitespace)."""
    said = "".join(spoken.split())
    if not said:
        return final
    if not "".join(final.split()).startswith(said):
        return unspoken  # the cleaning changed what was already spoken: say what the decoding left
    seen = 0
    for i, ch in enumerate(final):  # the shortest prefix of the record that holds what was said
        seen += not ch.isspace()
        if seen == len(said):
            return final[i + 1 :]
    return ""


async def _stop(stream: Any) -> None:
    """Ends a translation stream nobody reads: a Ray streaming call is cancelled, a local one closed
    (its backend stops decoding at the next token)."""
    cancel, aclose = getattr(stream, "cancel", None), getattr(stream, "aclose", None)
    with contextlib.suppress(Exception):
        if cancel is not None:
            cancel()
        elif aclose is not None:
            await aclose()


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

    def _start(
        self, run: Run, sentence: str, src: str, tgt: str, voice: str | None, speed: float, clauses: bool
    ) -> None:
        voice = voice or self.voice
        if clauses:
            first = not run.queued()
            run.add_clauses(sentence, lambda into: self._clauses(into, sentence, src, tgt, voice, speed, first, run))
            return
        tr = _started(self._translating().translate(sentence, src, tgt))
        run.add(sentence, tr, _started(self.speaker.speak(tr, tgt, voice, speed)))

    async def _clauses(
        self, into: Clauses, sentence: str, src: str, tgt: str, voice: str | None, speed: float, first: bool, run: Run
    ) -> None:
        """Streams one sentence's translation; each clause goes to the speaker as soon as it is complete.

        The run's later sentences start decoding once the first audio is out: decoded side by side from the
        start, they would share the cores with the first clause's decoding and speaking, which the listener
        waits for (on 2 cores, the clause's speech took 2x as long with them).
        """
        if not first:
            await run.first_heard.wait()
        buffer = spoken = ""
        stream = self._translating().translate_stream(sentence, src, tgt)
        try:
            async for item in stream:
                if isinstance(item, str):
                    buffer += item
                    done, buffer = complete_clauses(buffer, tgt)
                    phrase = first and not done and not spoken
                    if phrase:  # the run's first audio: from its first phrase
                        done, buffer = first_phrase(buffer, tgt)
                    for clause in done:
                        spoken += clause
                        speech = _started(self.speaker.speak(clause.strip(), tgt, voice, speed))
                        into.clause(clause, speech, joins_next=phrase)
                    continue
                if isinstance(item, BaseException):
                    raise item
                final: TranslationResult = item
                rest = _rest(final.text, spoken, buffer) if spoken else final.text
                if rest.strip():
                    into.clause(rest, _started(self.speaker.speak(rest.strip(), tgt, voice, speed)), final)
                elif not spoken:
                    run.first_heard.set()  # nothing to speak: no first audio will come from this sentence
                into.end(final)
                return
            raise InvalidRequest("the translator's stream ended without its result")  # a stage bug, said clearly
        except Exception as exc:
            into.end(exc)
            run.first_heard.set()
        finally:
            await _stop(stream)

    def speech_translate(
        self,
        text: str,
        source_lang: str | None = None,
        target_lang: str | None = None,
        voice: str | None = None,
        speed: float = 1.0,
        clauses: bool = False,
    ) -> Run:
        """Every sentence translated and spoken, all in flight at once; pieces in order. ``clauses``: each
        sentence's translation streams and is spoken clause by clause (first audio sooner)."""
        src, tgt = self.langs(source_lang, target_lang)
        run = Run(self.timeout_s, tgt, text)
        for sentence in self.sentences(text, src):
            self._start(run, sentence, src, tgt, voice, speed, clauses)
        run.end()
        return run

    def speak(
        self, text: str, lang: str | None = None, voice: str | None = None, speed: float = 1.0, clauses: bool = False
    ) -> Run:
        """Speech of text already in the target language, sentence by sentence (``clauses``: clause by
        clause, the first sentence's first phrase apart, so a long sentence's start is heard before the rest
        is spoken)."""
        tgt = normalize_lang(lang or self.target_lang)
        run = Run(self.timeout_s, tgt, text)
        for n, sentence in enumerate(self.sentences(text, tgt)):
            if not clauses:
                run.add(sentence, None, _started(self.speaker.speak(sentence, tgt, voice or self.voice, speed)))
                continue
            parts, _ = complete_clauses(sentence, tgt, flush=True)
            phrase, rest = first_phrase(parts[0], tgt) if n == 0 else ([], "")
            if phrase:  # the first audio from the first phrase, as when translating
                parts[:1] = [*phrase, rest]
            speak = functools.partial(
                self._spoken, parts=parts, joined=bool(phrase), lang=tgt, voice=voice, speed=speed
            )
            run.add_clauses(sentence, speak)
        run.end()
        return run

    async def _spoken(
        self, into: Clauses, *, parts: list[str], joined: bool, lang: str, voice: str | None, speed: float
    ) -> None:
        """Speaks ``parts`` of one sentence (``joined``: the first is a phrase the second goes on from)."""
        for i, part in enumerate(parts):
            speech = _started(self.speaker.speak(part.strip(), lang, voice or self.voice, speed))
            into.clause(part, speech, joins_next=joined and i == 0)
        into.end(None)

    def translate(self, text: str, source_lang: str | None = None, target_lang: str | None = None) -> Run:
        """Every sentence translated at once, nothing spoken; ``await run.text()`` joins them."""
        src, tgt = self.langs(source_lang, target_lang)
        translator = self._translating()
        run = Run(self.timeout_s, tgt, text)
        for sentence in self.sentences(text, src):
            run.add(sentence, _started(translator.translate(sentence, src, tgt)), None)
        run.end()
        return run

    def live(
        self,
        source_lang: str | None = None,
        target_lang: str | None = None,
        voice: str | None = None,
        clauses: bool = True,
    ) -> Live:
        """A session fed text as it arrives (live captions): each finished sentence starts at once, and is
        spoken clause by clause unless ``clauses`` is False."""
        return Live(self, *self.langs(source_lang, target_lang), voice, clauses)

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

    def __init__(
        self, pipeline: Pipeline, source_lang: str, target_lang: str, voice: str | None, clauses: bool
    ) -> None:
        self.pipeline = pipeline
        self.langs = (source_lang, target_lang)
        self.voice = voice
        self.clauses = clauses
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
            self.pipeline._start(self.run, sentence, *self.langs, self.voice, 1.0, self.clauses)
        self.count += len(done)
        return len(done)

    def end(self) -> None:
        self.feed("", flush=True)
        self.run.end()
