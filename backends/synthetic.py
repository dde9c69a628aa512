"""Deterministic, near-zero-cost backends for tests and for measuring framework overhead.

Plainly named and marked ``synthetic`` so ``auto`` never picks them. Both take the same
fault-injection options (``fault``, ``fault_every``, ``fault_for_s``, ``hang_s``, ``work_ms``)
so reliability and fallback tests can make a real backend raise, hang, return garbage or
burn CPU on demand. Once a fault has struck, ``health()`` says ``ok: False`` for as long as
faults can still strike (for ever, or until ``fault_for_s`` after load has passed).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from typing import Any, Literal

import numpy as np
from pydantic import Field, SerializerFunctionWrapHandler, model_serializer

from backends.base import Backend, BackendOptions, Speaker, Translator
from backends.errors import BackendUnavailable

FaultKind = Literal["none", "raise", "hang", "garbage"]


class InjectedFault(BackendUnavailable):
    """A failure that a synthetic backend raised on purpose (``fault: raise``); HTTP 503."""

    kind = "injected_fault"


class FaultOptions(BackendOptions):
    """Fault injection, shared by every synthetic backend."""

    fault: FaultKind = Field(
        "none",
        description="Misbehave on purpose: 'raise' (InjectedFault), 'hang' (block for hang_s), "
        "'garbage' (echo returns '', tone returns NaN samples), 'none'.",
    )
    fault_every: int = Field(1, ge=1, le=1_000_000, description="Every Nth call faults (1: every call).")
    fault_for_s: float | None = Field(
        None,
        gt=0,
        le=86_400,
        description="Fault only during the first N seconds after load, healthy afterwards (recovery tests); "
        "None: for ever.",
    )
    hang_s: float = Field(600.0, ge=0, le=86_400, description="How long a 'hang' fault blocks the call, in seconds.")
    work_ms: float = Field(
        0.0,
        ge=0,
        le=60_000,
        description="CPU time burnt per call (this thread's CPU clock): a compute-bound stand-in for load benchmarks.",
    )

    @model_serializer(mode="wrap")
    def _without_idle_faults(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # Results and /v1/graph carry a backend's options: fault settings appear only when in use.
        data: dict[str, Any] = handler(self)
        if self.fault == "none":
            for key in ("fault", "fault_every", "fault_for_s", "hang_s"):
                data.pop(key, None)
        for knob in ("work_ms", "stream_ms"):  # the echo's stream_ms too: shown only when set
            if data.get(knob) == 0:
                data.pop(knob, None)
        return data


class FaultInjector:
    """Decides per call whether a synthetic backend misbehaves; counts calls from ``load()``."""

    def __init__(self, options: FaultOptions, name: str) -> None:
        self.options = options
        self.name = name
        self._lock = threading.Lock()  # calls may come from several worker threads
        self.calls = 0
        self.loaded_at = time.monotonic()
        self.struck = False

    @property
    def blocking(self) -> bool:
        """A hang or CPU burn must run off the event loop, or it would freeze the replica."""
        return self.options.fault == "hang" or self.options.work_ms > 0

    def reset(self) -> None:
        with self._lock:
            self.calls = 0
            self.loaded_at = time.monotonic()
            self.struck = False

    def active(self) -> bool:
        """True while the configured fault can still strike."""
        opts = self.options
        if opts.fault == "none":
            return False
        return opts.fault_for_s is None or time.monotonic() - self.loaded_at < opts.fault_for_s

    def begin_call(self) -> bool:
        """Burns ``work_ms``, then raises or hangs if this call faults; True means: return garbage."""
        opts = self.options
        if opts.work_ms > 0:
            _burn_cpu(opts.work_ms / 1000.0)
        with self._lock:
            self.calls += 1
            n = self.calls
        if not self.active() or n % opts.fault_every:
            return False
        self.struck = True
        if opts.fault == "raise":
            raise InjectedFault(f"{self.name}: injected fault (fault: raise) on call {n}")
        if opts.fault == "hang":
            time.sleep(opts.hang_s)
            return False
        return opts.fault == "garbage"

    def health(self) -> dict[str, Any]:
        """ok: False once a fault has struck, for as long as faults can still strike (fault_for_s)."""
        if not (self.struck and self.active()):
            return {}
        return {"ok": False, "reason": f"injected fault active (fault: {self.options.fault})", "calls": self.calls}


def _burn_cpu(seconds: float) -> None:
    # Counted in this thread's CPU time, so a call is a fixed amount of compute that takes longer
    # when cores are contended, like a model call. numpy ufuncs release the GIL, so the
    # replica's event loop thread keeps running meanwhile.
    buf = np.linspace(0.0, 1.0, 4096, dtype=np.float64)
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        np.sin(buf, out=buf)


class _FaultInjectable(Backend):
    """Gives a synthetic backend its FaultInjector: health, blocking and the fault clock follow the options."""

    faults: FaultInjector

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        assert isinstance(self.options, FaultOptions)
        self.faults = FaultInjector(self.options, self.name)
        self.blocking = self.faults.blocking

    def _load(self) -> None:
        self.faults.reset()

    def health(self) -> dict[str, Any]:
        return {**super().health(), **self.faults.health()} if self.loaded else super().health()


class EchoOptions(FaultOptions):
    prefix: str = Field("", description="Text put before each echoed input (shows option changes live).")
    uppercase: bool = Field(False, description="Upper-case the echoed text.")
    stream_ms: float = Field(
        0.0,
        ge=0,
        le=10_000,
        description="Stream the echo word by word (translate_stream; character by character for text without"
        " spaces, as Japanese), one piece per stream_ms, as a decoding translator does; 0 gives it in one piece.",
    )


class EchoTranslator(_FaultInjectable, Translator):
    """Returns its input (optionally prefixed): measures everything but the model."""

    name = "echo"
    Options = EchoOptions
    synthetic = True
    blocking = False  # unless its fault options hang or burn CPU (see _FaultInjectable)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        assert isinstance(self.options, EchoOptions)
        self.blocking = self.blocking or self.options.stream_ms > 0

    def _translate(self, texts: list[str], source_lang: str, target_lang: str) -> list[tuple[str, int | None]]:
        opts = self.options
        assert isinstance(opts, EchoOptions)
        if self.faults.begin_call():
            return [("", 0) for _ in texts]
        out: list[tuple[str, int | None]] = []
        for t in texts:
            s = opts.prefix + (t.upper() if opts.uppercase else t)
            out.append((s, len(s.split())))
        return out

    def streams_text(self) -> bool:
        assert isinstance(self.options, EchoOptions)
        return self.options.stream_ms > 0

    def _translate_stream(
        self, text: str, source_lang: str, target_lang: str, emit: Callable[[str], bool | None]
    ) -> tuple[str, int | None]:
        assert isinstance(self.options, EchoOptions)
        whole, n = self._translate([text], source_lang, target_lang)[0]
        words = re.findall(r"\S+\s*", whole) if " " in whole.strip() else list(whole)
        for i, word in enumerate(words):
            time.sleep(self.options.stream_ms / 1000)
            if emit(word):  # the consumer left: stop decoding, as a model would
                return "".join(words[: i + 1]), i + 1
        return whole, n


class ToneOptions(FaultOptions):
    sample_rate: int = Field(24000, ge=8000, le=48000, description="Output sample rate in Hz.")
    frequency: float = Field(440.0, gt=20, lt=8000, description="Tone frequency in Hz.")
    seconds_per_char: float = Field(0.06, gt=0, le=1, description="Audio length per input character.")


class ToneSpeaker(_FaultInjectable, Speaker):
    """A sine tone whose length follows the text: real audio, no model."""

    name = "tone"
    Options = ToneOptions
    synthetic = True
    blocking = False  # numpy over at most max_chars * seconds_per_char of audio; see _FaultInjectable
    voices = ("sine", "square")
    default_voice = "sine"
    languages = ()  # any language

    def _synthesize(self, text: str, lang: str, voice: str, speed: float) -> tuple[np.ndarray, int]:
        opts = self.options
        assert isinstance(opts, ToneOptions)
        n = max(1, int(opts.sample_rate * opts.seconds_per_char * len(text) / speed))
        t = np.arange(n, dtype=np.float32) / opts.sample_rate
        wave = np.sin(2 * np.pi * opts.frequency * t)
        if voice == "square":
            wave = np.sign(wave)
        if self.faults.begin_call():
            wave[:] = np.nan
        return (0.3 * wave).astype(np.float32), opts.sample_rate
