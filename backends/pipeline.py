"""The whole text -> sentences -> translation -> speech pipeline in one process (no Ray)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from backends import audio
from backends.base import Speaker, Translator
from backends.text import check_text, split_sentences
from backends.types import SpeechResult, TranslationResult


@dataclass
class SpeechTranslation:
    """Translation and speech of one request, with per-stage timings in ms."""

    source_text: str
    translation: str
    sentences: list[TranslationResult]
    speech: list[SpeechResult]
    samples: np.ndarray
    sample_rate: int
    timings_ms: dict[str, float] = field(default_factory=dict)

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.sample_rate if self.sample_rate else 0.0

    def wav(self) -> bytes:
        return audio.encode(self.samples, self.sample_rate, "wav")

    def encode(self, fmt: str = "wav") -> bytes:
        return audio.encode(self.samples, self.sample_rate, fmt)

    def summary(self) -> dict[str, Any]:
        first = self.sentences[0] if self.sentences else None
        sp = self.speech[0] if self.speech else None
        return {
            "translation": self.translation,
            "sentences": len(self.sentences),
            "translator": first.backend if first else None,
            "speaker": sp.backend if sp else None,
            "voice": sp.voice if sp else None,
            "sample_rate": self.sample_rate,
            "duration_s": round(self.duration_s, 3),
            "timings_ms": {k: round(v, 2) for k, v in self.timings_ms.items()},
        }


def join_translation(parts: list[str], target_lang: str) -> str:
    sep = "" if target_lang in ("ja", "zh", "th") else " "
    return sep.join(p.strip() for p in parts)


class SpeechTranslator:
    """Runs a translator and a speaker on text, sentence by sentence."""

    def __init__(
        self,
        translator: Translator,
        speaker: Speaker,
        source_lang: str = "en",
        target_lang: str = "ja",
        voice: str | None = None,
        gap_s: float = 0.12,
    ) -> None:
        self.translator = translator
        self.speaker = speaker
        self.source_lang = source_lang
        self.target_lang = target_lang
        self.voice = voice
        self.gap_s = gap_s

    def load(self) -> None:
        self.translator.load()
        self.speaker.load()

    def sentences(self, text: str) -> list[str]:
        return split_sentences(check_text(text, self.translator.max_chars), self.source_lang)

    def stream(self, text: str, voice: str | None = None, speed: float = 1.0) -> Iterator[SpeechResult]:
        """Yields each sentence's speech as soon as it is ready, in order."""
        for sentence in self.sentences(text):
            tr = self.translator.translate([sentence], self.source_lang, self.target_lang)[0]
            yield self.speaker.synthesize(tr.text, self.target_lang, voice or self.voice, speed)

    def run(self, text: str, voice: str | None = None, speed: float = 1.0) -> SpeechTranslation:
        """Translates all sentences in one batch, then speaks each one."""
        t0 = time.perf_counter()
        sentences = self.sentences(text)
        t1 = time.perf_counter()
        translated = self.translator.translate(sentences, self.source_lang, self.target_lang)
        t2 = time.perf_counter()
        speech = [
            self.speaker.synthesize(tr.text, self.target_lang, voice or self.voice, speed)
            for tr in translated
            if tr.text.strip()
        ]
        t3 = time.perf_counter()
        samples, rate = audio.concat(speech, self.gap_s)
        t4 = time.perf_counter()
        return SpeechTranslation(
            source_text=text,
            translation=join_translation([t.text for t in translated], self.target_lang),
            sentences=translated,
            speech=speech,
            samples=samples,
            sample_rate=rate,
            timings_ms={
                "split": (t1 - t0) * 1000,
                "translate": (t2 - t1) * 1000,
                "synthesize": (t3 - t2) * 1000,
                "encode": (t4 - t3) * 1000,
                "total": (t4 - t0) * 1000,
            },
        )
