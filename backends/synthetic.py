"""Deterministic, near-zero-cost backends for tests and for measuring framework overhead.

Plainly named and marked ``synthetic`` so ``auto`` never picks them.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from backends.base import BackendOptions, Speaker, Translator


class EchoOptions(BackendOptions):
    prefix: str = Field("", description="Text put before each echoed input (shows option changes live).")
    uppercase: bool = Field(False, description="Upper-case the echoed text.")


class EchoTranslator(Translator):
    """Returns its input (optionally prefixed): measures everything but the model."""

    name = "echo"
    Options = EchoOptions
    synthetic = True
    blocking = False

    def _translate(self, texts: list[str], source_lang: str, target_lang: str) -> list[tuple[str, int | None]]:
        opts = self.options
        assert isinstance(opts, EchoOptions)
        out: list[tuple[str, int | None]] = []
        for t in texts:
            s = opts.prefix + (t.upper() if opts.uppercase else t)
            out.append((s, len(s.split())))
        return out


class ToneOptions(BackendOptions):
    sample_rate: int = Field(24000, ge=8000, le=48000, description="Output sample rate in Hz.")
    frequency: float = Field(440.0, gt=20, lt=8000, description="Tone frequency in Hz.")
    seconds_per_char: float = Field(0.06, gt=0, le=1, description="Audio length per input character.")


class ToneSpeaker(Speaker):
    """A sine tone whose length follows the text: real audio, no model."""

    name = "tone"
    Options = ToneOptions
    synthetic = True
    blocking = False  # numpy over at most max_chars * seconds_per_char of audio
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
        return (0.3 * wave).astype(np.float32), opts.sample_rate
