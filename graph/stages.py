"""A stage's backend, built in one place for the served graph and the CLI alike, and run as an async stage.

``build_translator`` / ``build_speaker`` turn a stage config into a loaded, warmed-up backend (a
fallback chain when the stage lists fallbacks or an attempt timeout). ``TranslateStage`` and
``SpeakStage`` run one on an event loop: blocking backends in a worker thread, one call at a time
(speech engines are not all thread-safe; a translator groups the requests that queue meanwhile into
one batched call, per language pair), so the loop keeps taking requests. The orchestrator
(graph.pipeline) drives these directly in-process; a Ray Serve replica wraps the same objects.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from backends import registry
from backends.base import Backend, Speaker, Translator
from backends.errors import BadOutput, HayakuError
from backends.fallback import FallbackSpeaker, FallbackTranslator, garbage_translations
from backends.types import SpeechResult, TranslationResult
from graph.config import DEFAULT_ATTEMPT_TIMEOUT_S, BatchConfig, SpeakerStage, TranslatorStage

B = TypeVar("B", bound=Backend)

log = logging.getLogger("hayaku.stages")

TRANSLATOR_WARMUP = "Hello."
#: one short sentence per language, spoken once at start so the first request is not the slow one
SPEAKER_WARMUP = {"ja": "こんにちは。", "zh": "你好。", "ko": "안녕하세요."}


class Translating(Protocol):
    """What the orchestrator calls to translate: in-process, or a Ray Serve handle's adapter.

    The result may be an expected HayakuError returned as a value (a replica answers errors
    as data so Ray does not log them as crashes); the orchestrator raises it.
    """

    def translate(self, text: str, source_lang: str, target_lang: str) -> Awaitable[Any]: ...

    def translate_stream(self, text: str, source_lang: str, target_lang: str) -> AsyncIterator[Any]:
        """The translation's text pieces (str) as they are decoded, then its TranslationResult (or error)."""
        ...


class Speaking(Protocol):
    """What the orchestrator calls to speak. ``item`` is a text, or a translation not yet awaited
    (so a Ray speaker starts the moment the translation exists, without a hop through the ingress)."""

    def speak(self, item: Any, lang: str, voice: str | None, speed: float) -> Awaitable[Any]: ...


def _build(
    stage: TranslatorStage | SpeakerStage,
    role: str,
    create: Callable[[Any], B],
    probe: Callable[[B], Any],
    chain: Callable[..., B],
) -> B:
    """The stage's backend, loaded and warmed up with ``probe`` (one tiny real call); blocking."""
    members = [create(stage), *(create(fb) for fb in stage.fallbacks)]
    try:
        return _load(members, stage, role, probe, chain)
    except BaseException:
        for m in members:  # a runtime started for a stage that cannot serve must not outlive it
            m.close()
        raise


def _load(
    members: list[B],
    stage: TranslatorStage | SpeakerStage,
    role: str,
    probe: Callable[[B], Any],
    chain: Callable[..., B],
) -> B:
    timeout = stage.attempt_timeout_s
    if len(members) == 1 and timeout is None:
        backend = members[0]
        backend.load()
        try:
            probe(backend)
        except HayakuError as exc:
            if backend.health().get("ok"):
                raise
            # It says itself that it is unhealthy (an injected fault): serve its errors, as /healthz reports.
            log.warning("%s %s failed its warm-up and reports itself unhealthy: %s", role, backend.name, exc)
        return backend
    built = chain(
        members,
        probe=probe,
        attempt_timeout_s=timeout if timeout is not None else DEFAULT_ATTEMPT_TIMEOUT_S,
        probe_interval_s=stage.probe_interval_s,
        where=role,
    )
    built.load()  # loads and probes every backend of the chain
    return built


def translator_stage(stage: TranslatorStage | dict[str, Any]) -> TranslatorStage:
    return stage if isinstance(stage, TranslatorStage) else TranslatorStage.model_validate(stage)


def speaker_stage(stage: SpeakerStage | dict[str, Any]) -> SpeakerStage:
    return stage if isinstance(stage, SpeakerStage) else SpeakerStage.model_validate(stage)


def build_translator(
    stage: TranslatorStage | dict[str, Any], max_chars: int, source_lang: str, target_lang: str
) -> Translator:
    """Builds, loads and warms up (one short request) the stage's translator or fallback chain; blocking."""

    def create(s: Any) -> Translator:
        return registry.create_translator(s.backend, s.model, s.options, max_chars=max_chars)

    def probe(backend: Translator) -> Any:
        return backend.translate([TRANSLATOR_WARMUP], source_lang, target_lang)

    return _build(translator_stage(stage), "translator", create, probe, FallbackTranslator)


def build_speaker(stage: SpeakerStage | dict[str, Any], max_chars: int, lang: str) -> Speaker:
    """Builds, loads and warms up the stage's speaker or fallback chain; blocking."""

    def create(s: Any) -> Speaker:
        return registry.create_speaker(
            s.backend, s.model, s.options, voice=s.voice, max_chars=max_chars, voice_map=s.voices
        )

    def probe(backend: Speaker) -> Any:
        warm = lang if not backend.languages or lang in backend.languages else backend.languages[0]
        return backend.synthesize(SPEAKER_WARMUP.get(warm, "Hello."), warm)

    return _build(speaker_stage(stage), "speaker", create, probe, FallbackSpeaker)


class _Stage(Generic[B]):
    """Holds one loaded backend; ``swap`` replaces it once no call runs on the old one."""

    def __init__(self, backend: B) -> None:
        self.backend = backend
        self._lock = asyncio.Lock()  # one backend call at a time (except for concurrent backends)
        self._outside: dict[int, int] = {}  # id(backend) -> calls running on it outside the lock

    async def swap(self, backend: B) -> B:
        """Puts ``backend`` in place and returns the old one, idle, for the caller to close."""
        async with self._lock:
            old, self.backend = self.backend, backend
        while self._outside.get(id(old)):
            await asyncio.sleep(0.05)
        return old

    async def _outside_lock(self, backend: B, call: Callable[[], Any]) -> Any:
        """A call on a backend that takes concurrent calls itself, in a thread of its own."""
        key = id(backend)
        self._outside[key] = self._outside.get(key, 0) + 1
        try:
            return await asyncio.to_thread(call)
        finally:
            self._outside[key] -= 1
            if not self._outside[key]:
                del self._outside[key]


@dataclass
class _Queued:
    text: str
    src: str
    tgt: str
    done: asyncio.Future[TranslationResult]


class TranslateStage(_Stage[Translator]):
    """A translator on an event loop: requests that queue while a call runs share the next call."""

    def __init__(self, backend: Translator, batch: BatchConfig | None = None) -> None:
        super().__init__(backend)
        self.batch = batch or BatchConfig.model_validate({})
        self._queue: list[_Queued] = []
        self._runner: asyncio.Task[None] | None = None

    async def translate(self, text: str, source_lang: str, target_lang: str) -> TranslationResult:
        """One text's translation; raises HayakuError (bad request, backend unavailable, empty output)."""
        backend = self.backend
        # Validated alone first, so one bad request fails by itself instead of failing its batch.
        src, tgt = backend.validate_request([text], source_lang, target_lang)
        if backend.concurrent:
            (result,) = await self._outside_lock(backend, lambda: backend.translate([text], src, tgt))
            return _checked(result)
        done: asyncio.Future[TranslationResult] = asyncio.get_running_loop().create_future()
        self._queue.append(_Queued(text, src, tgt, done))
        if self._runner is None or self._runner.done():
            self._runner = asyncio.create_task(self._drain())
        return await done

    async def translate_stream(self, text: str, source_lang: str, target_lang: str) -> AsyncIterator[Any]:
        """The translation's pieces (str) as the backend decodes them, then its TranslationResult; a backend
        that cannot stream gives only the result. Closing the iterator early stops the decoding."""
        backend = self.backend
        if not backend.streams_text():
            yield await self.translate(text, source_lang, target_lang)
            return
        src, tgt = backend.validate_request([text], source_lang, target_lang)
        loop = asyncio.get_running_loop()
        pieces: asyncio.Queue[str] = asyncio.Queue()
        stop = threading.Event()

        def emit(piece: str) -> bool:
            loop.call_soon_threadsafe(pieces.put_nowait, piece)
            return stop.is_set()

        def decode() -> TranslationResult:
            return backend.translate_stream(text, src, tgt, emit)

        if backend.concurrent:
            call = asyncio.ensure_future(self._outside_lock(backend, decode))
        else:
            call = asyncio.ensure_future(self._locked(decode))
        try:
            while not call.done() or not pieces.empty():
                get = asyncio.ensure_future(pieces.get())
                await asyncio.wait({get, call}, return_when=asyncio.FIRST_COMPLETED)
                if get.done():
                    yield get.result()
                else:
                    get.cancel()
            # the engine's thread queued every piece before it returned: they were all read above
            yield _checked(call.result())
        finally:
            stop.set()  # a consumer that left stops the decoding at its next token

    async def _locked(self, call: Callable[[], Any]) -> Any:
        async with self._lock:
            return await asyncio.to_thread(call)

    async def _drain(self) -> None:
        while self._queue:
            if self.batch.batch_wait_timeout_s and len(self._queue) < self.batch.max_batch_size:
                await asyncio.sleep(self.batch.batch_wait_timeout_s)
            items = [q for q in self._queue[: self.batch.max_batch_size] if not q.done.done()]
            del self._queue[: self.batch.max_batch_size]
            if items:
                await self._run(items)

    async def _run(self, items: list[_Queued]) -> None:
        """One backend call per language pair; each waiting request gets its result or the error."""
        groups: dict[tuple[str, str], list[_Queued]] = {}
        for q in items:
            groups.setdefault((q.src, q.tgt), []).append(q)
        async with self._lock:
            backend = self.backend  # a swap mid-batch must not mix two backends in one call
            for (src, tgt), group in groups.items():
                texts = [q.text for q in group]
                try:
                    results: list[Any] = await backend.atranslate(texts, src, tgt)
                except HayakuError as exc:
                    results = [exc] * len(group)
                except BaseException as exc:  # a bug: every waiting request fails with it, the loop lives on
                    for q in group:
                        if not q.done.done():
                            q.done.set_exception(exc)
                    if isinstance(exc, asyncio.CancelledError):
                        raise
                    continue
                for q, r in zip(group, results, strict=True):
                    if q.done.done():  # its caller left
                        continue
                    if isinstance(r, HayakuError):
                        q.done.set_exception(r)
                    else:
                        try:
                            q.done.set_result(_checked(r))
                        except BadOutput as exc:
                            q.done.set_exception(exc)


def _checked(result: TranslationResult) -> TranslationResult:
    """A chain already refused garbage; a single backend's empty answer is a 503, not a 200."""
    why = garbage_translations([result])
    if why:
        raise BadOutput(f"{result.backend} returned {why}")
    return result


class SpeakStage(_Stage[Speaker]):
    """A speaker on an event loop, one call at a time."""

    async def speak(self, item: Any, lang: str, voice: str | None = None, speed: float = 1.0) -> SpeechResult | None:
        """Speaks a text, or a translation (awaited first if pending); None for an empty translation.

        A translation that is an error (raised, or returned as a value) is raised here.
        """
        if isinstance(item, Awaitable):
            item = await item
        if isinstance(item, BaseException):
            raise item
        if isinstance(item, TranslationResult):
            if not item.text.strip():
                return None
            item = item.text
        async with self._lock:
            return await self.backend.asynthesize(item, lang, voice, speed)
