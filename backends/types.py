"""Result records. An HTTP response, a benchmark row and an A/B record are the same record."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np


def to_int16(samples: np.ndarray) -> np.ndarray:
    """Mono samples (float32 in [-1, 1] or int16) as int16."""
    return samples if samples.dtype == np.int16 else (np.clip(samples, -1.0, 1.0) * 32767.0).astype(np.int16)


@dataclass
class TranslationResult:
    """One translated text with the backend, options and timings that produced it."""

    text: str
    source_text: str
    source_lang: str
    target_lang: str
    backend: str
    model: str | None
    options: dict[str, Any]
    timings_ms: dict[str, float] = field(default_factory=dict)
    output_tokens: int | None = None
    #: set when a fallback served: ``{"backend": <primary>, "reason": <why the primary did not>}``
    fallback_from: dict[str, str] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SpeechResult:
    """PCM audio (float32 in [-1, 1] or int16), with what produced it and how fast."""

    audio: np.ndarray
    sample_rate: int
    text: str
    lang: str
    voice: str
    backend: str
    options: dict[str, Any]
    timings_ms: dict[str, float] = field(default_factory=dict)
    #: set when a fallback served: ``{"backend": <primary>, "reason": <why the primary did not>}``
    fallback_from: dict[str, str] | None = None

    def __post_init__(self) -> None:
        audio = np.asarray(self.audio)
        if audio.ndim != 1:
            audio = audio.reshape(-1)
        if audio.dtype not in (np.float32, np.int16):
            audio = audio.astype(np.float32)
        self.audio = audio

    @property
    def duration_s(self) -> float:
        return float(len(self.audio)) / float(self.sample_rate) if self.sample_rate else 0.0

    def float32(self) -> np.ndarray:
        if self.audio.dtype == np.int16:
            return self.audio.astype(np.float32) / 32768.0
        return self.audio

    def int16(self) -> np.ndarray:
        return to_int16(self.audio)
