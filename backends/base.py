"""The two roles every backend plays one of: ``Translator`` and ``Speaker``.

A backend is a plain Python class: construct it (cheap, validates options), ``load()``
(heavy imports and model loading), use it, ``close()``. Subclasses implement one
abstract method (``_translate`` or ``_synthesize``); validation, timing and result
records live here so every backend behaves the same at its edges.
"""

from __future__ import annotations

import asyncio
import importlib.util
import platform
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from backends.errors import BackendUnavailable, BadOutput, InvalidRequest
from backends.languages import normalize_lang
from backends.text import check_text
from backends.types import SpeechResult, TranslationResult

DEFAULT_MAX_CHARS = 5000
#: the voice names of OpenAI's speech API: clients built on it send one of these, "alloy" most often
OPENAI_VOICES = ("alloy", "ash", "ballad", "coral", "echo", "fable", "nova", "onyx", "sage", "shimmer", "verse")
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")


class BackendOptions(BaseModel):
    """Base of every backend's ``Options``: unknown keys are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())


def short_repr(value: Any, limit: int = 100) -> str:
    """``repr(value)`` for an error message: at most ``limit`` characters, and it never raises
    (an int past Python's 4300-digit limit, a value nested too deep or containing itself)."""
    try:
        text = repr(value)
    except Exception:  # ValueError (huge int), RecursionError (deep nesting)
        text = f"<a {type(value).__name__} too large to show>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def format_validation_error(err: ValidationError, prefix: str = "options") -> str:
    """Turns a pydantic error into one line per bad field, quoting the value given."""
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in (prefix, *e["loc"]) if p != "")
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown option"
        lines.append(f"{loc}: {msg} (got {short_repr(e.get('input'))})")
    return "; ".join(lines)


def parse_options(cls: type[BackendOptions], raw: Any, where: str = "options") -> BackendOptions:
    if isinstance(raw, cls):
        return raw
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise InvalidRequest(f"{where} must be a mapping, got {short_repr(raw)}")
    try:
        return cls(**raw)
    except ValidationError as err:
        valid = ", ".join(cls.model_fields) or "(none)"
        raise InvalidRequest(f"{format_validation_error(err, where)}. Valid options: {valid}") from None


def safe_name(value: str, what: str) -> str:
    """Voice and model names are plain names: no path separators, no leading dot or dash."""
    # fullmatch: with match, "$" would also accept a name that ends in a newline
    if not isinstance(value, str) or not _SAFE_NAME.fullmatch(value):
        raise InvalidRequest(f"invalid {what} {value!r}: use letters, digits, '_', '-' or '.', not a path")
    return value


def missing_modules(*modules: str) -> list[str]:
    """Import names among ``modules`` that are not installed, found without importing them."""
    missing = []
    for mod in modules:
        try:
            if importlib.util.find_spec(mod) is None:
                missing.append(mod)
        except (ImportError, ValueError):
            missing.append(mod)
    return missing


class Backend(ABC):  # noqa: B024 - abstract through its two role subclasses
    """Lifecycle shared by translators and speakers."""

    name: ClassVar[str] = ""
    Options: ClassVar[type[BackendOptions]] = BackendOptions
    #: import names this backend needs, and the extra that installs them
    requires: ClassVar[tuple[str, ...]] = ()
    extra: ClassVar[str | None] = None
    #: ``platform.system()`` values this backend runs on; empty means any
    platforms: ClassVar[tuple[str, ...]] = ()
    #: test/benchmark backends that ``auto`` never chooses
    synthetic: ClassVar[bool] = False
    #: False for backends whose calls take microseconds without I/O: servers may call them on the
    #: event loop instead of paying a worker-thread hop per request
    blocking: bool = True  # a class default; an instance may set its own from its options
    #: True for backends that are safe to call from many threads at once and batch concurrent calls
    #: themselves (llama.cpp's slots): servers then call them per request, neither queueing nor
    #: batching, so a short sentence never waits for a long one
    concurrent: bool = False

    def __init__(self, model: str | None = None, options: Any = None) -> None:
        self.model = model
        self.options = parse_options(self.Options, options)
        self.loaded = False
        self.load_ms: float | None = None

    @classmethod
    def unavailable_reason(cls, model: str | None = None, options: Any = None) -> str | None:
        """Why this backend cannot run here with ``options`` (cheap: no heavy imports), or None."""
        if cls.platforms and platform.system() not in cls.platforms:
            return f"{cls.name} runs only on {', '.join(cls.platforms)} (this is {platform.system()})"
        missing = missing_modules(*cls.requires)
        if missing:
            hint = f"pip install 'hayaku[{cls.extra}]'" if cls.extra else f"pip install {' '.join(missing)}"
            return f"{cls.name} needs {', '.join(missing)}: {hint}"
        return cls.model_unavailable_reason(model)

    @classmethod
    def model_unavailable_reason(cls, model: str | None) -> str | None:
        """Hook for backends whose model files may be missing."""
        return None

    def require_available(self) -> None:
        reason = self.unavailable_reason(self.model, self.options.model_dump())
        if reason:
            raise BackendUnavailable(reason)

    def load(self) -> None:
        """Imports the runtime and loads the model; raises BackendUnavailable with the fix."""
        if self.loaded:
            return
        self.require_available()
        start = time.perf_counter()
        self._load()
        self.load_ms = (time.perf_counter() - start) * 1000.0
        self.loaded = True

    def _load(self) -> None:  # noqa: B027 - optional hook, most backends override it
        """Backend-specific loading; heavy imports go here."""

    def health(self) -> dict[str, Any]:
        """Cheap liveness report; deployments turn ``ok: False`` into a failed check."""
        return {"ok": self.loaded, "backend": self.name, "model": self.model}

    def close(self) -> None:
        """Releases the model; the backend may be loaded again afterwards."""
        self.loaded = False

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "model": self.model, "options": self.options.model_dump()}

    def _ensure_loaded(self) -> None:
        if not self.loaded:
            self.load()


class Translator(Backend):
    """Translates texts. Implement ``_translate``; call ``translate``."""

    #: language pairs the model can do, as ISO codes; None means "ask the model"
    def __init__(self, model: str | None = None, options: Any = None, max_chars: int = DEFAULT_MAX_CHARS):
        super().__init__(model, options)
        self.max_chars = max_chars

    def supported_languages(self) -> set[str] | None:
        """ISO 639-1 codes this backend/model translates between, or None if unknown."""
        return None

    def validate_request(self, texts: Sequence[str], source_lang: str, target_lang: str) -> tuple[str, str]:
        if isinstance(texts, str):
            raise InvalidRequest("translate() takes a list of texts, not a single string")
        if not texts:
            raise InvalidRequest("no texts to translate")
        for i, t in enumerate(texts):
            check_text(t, self.max_chars, f"text {i}")
        src, tgt = normalize_lang(source_lang), normalize_lang(target_lang)
        langs = self.supported_languages()
        if langs is not None:
            for role, code in (("source_lang", src), ("target_lang", tgt)):
                if code not in langs:
                    raise InvalidRequest(
                        f"{role} {code!r} is not supported by {self.name} model {self.model!r}; "
                        f"supported: {', '.join(sorted(langs))}"
                    )
        if src == tgt:
            raise InvalidRequest(f"source_lang and target_lang are both {src!r}; nothing to translate")
        return src, tgt

    async def atranslate(
        self, texts: Sequence[str], source_lang: str = "en", target_lang: str = "ja"
    ) -> list[TranslationResult]:
        """``translate`` for an event loop: a blocking backend runs in a worker thread."""
        if self.blocking:
            return await asyncio.to_thread(self.translate, texts, source_lang, target_lang)
        return self.translate(texts, source_lang, target_lang)

    def translate(
        self, texts: Sequence[str], source_lang: str = "en", target_lang: str = "ja"
    ) -> list[TranslationResult]:
        """Translates each text; results keep input order and carry timings and options."""
        src, tgt = self.validate_request(texts, source_lang, target_lang)
        self._ensure_loaded()
        start = time.perf_counter()
        outputs = self._translate(list(texts), src, tgt)
        total = (time.perf_counter() - start) * 1000.0
        if len(outputs) != len(texts):
            raise BadOutput(f"{self.name} returned {len(outputs)} outputs for {len(texts)} inputs")
        return [self._record(text, out, src, tgt, total, len(texts)) for text, out in zip(texts, outputs, strict=True)]

    def streams_text(self) -> bool:
        """True when ``translate_stream`` hands the translation over token by token (else in one piece)."""
        return False

    def translate_stream(
        self, text: str, source_lang: str, target_lang: str, emit: Callable[[str], bool | None]
    ) -> TranslationResult:
        """Translates one text, handing the translation to ``emit`` piece by piece as it is decoded (in one
        piece where the backend cannot stream); returns the record ``translate`` would. ``emit`` returning
        True stops the decoding (its consumer left). The pieces are the raw decoded text: the record's
        ``text`` is the cleaned whole, which may differ from their concatenation."""
        if not self.streams_text():
            result = self.translate([text], source_lang, target_lang)[0]
            emit(result.text)
            return result
        src, tgt = self.validate_request([text], source_lang, target_lang)
        self._ensure_loaded()
        start = time.perf_counter()
        out = self._translate_stream(text, src, tgt, emit)
        return self._record(text, out, src, tgt, (time.perf_counter() - start) * 1000.0, 1)

    def _translate_stream(
        self, text: str, source_lang: str, target_lang: str, emit: Callable[[str], bool | None]
    ) -> tuple[str, int | None]:
        raise NotImplementedError(f"{self.name} does not stream")  # only called where streams_text() says so

    def _record(
        self, text: str, out: tuple[str, int | None], src: str, tgt: str, ms: float, batch: int
    ) -> TranslationResult:
        return TranslationResult(
            text=out[0],
            source_text=text,
            source_lang=src,
            target_lang=tgt,
            backend=self.name,
            model=self.model,
            options=self.options.model_dump(),
            timings_ms={"translate": ms, "batch_size": float(batch)},
            output_tokens=out[1],
        )

    @abstractmethod
    def _translate(self, texts: list[str], source_lang: str, target_lang: str) -> list[tuple[str, int | None]]:
        """Returns (translation, generated token count or None) per input, same order."""


class Speaker(Backend):
    """Synthesises speech. Implement ``_synthesize``; call ``synthesize``.

    A voice is one of ``list_voices()`` or an alias of one: each OpenAI voice name is an alias (the
    backend's ``openai_voices`` says which voice it stands for; names it leaves out take the
    configured voice), and a stage's ``voices:`` mapping adds aliases or overrides them.
    """

    voices: ClassVar[tuple[str, ...]] = ()
    default_voice: ClassVar[str] = ""
    languages: ClassVar[tuple[str, ...]] = ("ja",)
    #: which of this backend's voices an OpenAI voice name stands for by default
    openai_voices: ClassVar[dict[str, str]] = {}

    def __init__(
        self,
        model: str | None = None,
        options: Any = None,
        voice: str | None = None,
        max_chars: int = DEFAULT_MAX_CHARS,
        voice_map: dict[str, str] | None = None,
    ):
        super().__init__(model, options)
        self.voice: str | None = None
        self.voice_map: dict[str, str] = {}
        for alias, target in (voice_map or {}).items():
            safe_name(alias, "voice alias")
            try:
                self.voice_map[alias] = self._own_voice(target)
            except InvalidRequest as exc:
                raise InvalidRequest(f"voices.{alias}: {exc}") from None
        self.voice = self.check_voice(voice) if voice else None
        self.max_chars = max_chars

    def list_voices(self) -> tuple[str, ...]:
        """Voice names this speaker accepts (may depend on what is installed)."""
        return self.voices

    def voice_aliases(self) -> dict[str, str]:
        """Every alias (the OpenAI voice names, then the configured ``voices:``) and the voice it stands for."""
        valid = self.list_voices()
        configured = self.voice or self.default_voice
        out = {}
        for name in OPENAI_VOICES:
            target = self.openai_voices.get(name, configured)
            out[name] = target if not valid or target in valid else configured
        return {**out, **self.voice_map}

    def _own_voice(self, voice: str) -> str:
        safe_name(voice, "voice")
        valid = self.list_voices()
        if valid and voice not in valid:
            raise InvalidRequest(f"unknown voice {voice!r} for {self.name}; valid voices: {', '.join(valid)}")
        return voice

    def check_voice(self, voice: str) -> str:
        """The voice ``voice`` names (itself, or the one its alias stands for); InvalidRequest listing both kinds."""
        safe_name(voice, "voice")
        aliases = self.voice_aliases()
        if voice in self.voice_map or (voice not in self.list_voices() and voice in aliases):
            return aliases[voice]
        try:
            return self._own_voice(voice)
        except InvalidRequest as exc:
            raise InvalidRequest(f"{exc}; or an alias of one: {', '.join(aliases)}") from None

    def knows_voice(self, voice: str) -> bool:
        """Whether ``voice`` is one of this speaker's voices or aliases (a fallback speaks it only then)."""
        return voice in self.list_voices() or voice in self.voice_aliases()

    async def asynthesize(
        self, text: str, lang: str = "ja", voice: str | None = None, speed: float = 1.0
    ) -> SpeechResult:
        """``synthesize`` for an event loop: a blocking backend runs in a worker thread."""
        if self.blocking:
            return await asyncio.to_thread(self.synthesize, text, lang, voice, speed)
        return self.synthesize(text, lang, voice, speed)

    def synthesize(self, text: str, lang: str = "ja", voice: str | None = None, speed: float = 1.0) -> SpeechResult:
        """Speaks ``text``; returns PCM with its sample rate, duration and timings."""
        check_text(text, self.max_chars, "text to speak")
        lang = normalize_lang(lang)
        if self.languages and lang not in self.languages:
            raise InvalidRequest(f"{self.name} does not speak {lang!r}; it speaks: {', '.join(self.languages)}")
        chosen = self.check_voice(voice) if voice else (self.voice or self.default_voice)
        if not isinstance(speed, (int, float)) or not (0.25 <= float(speed) <= 4.0):
            raise InvalidRequest(f"speed {speed!r} is out of range; use 0.25 to 4.0")
        self._ensure_loaded()
        start = time.perf_counter()
        audio, rate = self._synthesize(text, lang, chosen, float(speed))
        elapsed = (time.perf_counter() - start) * 1000.0
        audio = np.asarray(audio).reshape(-1)
        if audio.dtype != np.int16:
            audio = audio.astype(np.float32)
            if not np.all(np.isfinite(audio)):
                raise BadOutput(f"{self.name} produced non-finite audio for {len(text)} characters")
        if len(audio) == 0:
            raise BadOutput(f"{self.name} produced no audio for {len(text)} characters")
        return SpeechResult(
            audio=audio,
            sample_rate=int(rate),
            text=text,
            lang=lang,
            voice=chosen,
            backend=self.name,
            options=self.options.model_dump(),
            timings_ms={"synthesize": elapsed},
        )

    @abstractmethod
    def _synthesize(self, text: str, lang: str, voice: str, speed: float) -> tuple[np.ndarray, int]:
        """Returns mono samples (float32 in [-1, 1] or int16) and their sample rate."""
