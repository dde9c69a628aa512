"""What a run produces (graph.run): its pieces, how their audio joins into one track or stream (the gap
between sentences, the pause after a clause's comma, nothing between a phrase and the rest of its
sentence), and the whole results of a speech-translation and a translation."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from backends import audio
from backends.types import SpeechResult, TranslationResult

#: silence between spoken sentences
GAP_S = 0.12
#: silence after a clause that ends at a comma (、, ，): the pause a reader makes there
CLAUSE_PAUSE_S = 0.08
_COMMAS = ("、", "，", ",")


def clause_gap(previous: str) -> float:
    """The silence before a clause, after the ``previous`` clause of its sentence."""
    return CLAUSE_PAUSE_S if previous.rstrip().endswith(_COMMAS) else 0.0


def join_translation(parts: list[str], target_lang: str) -> str:
    sep = "" if target_lang in ("ja", "zh", "th") else " "
    return sep.join(p.strip() for p in parts)


@dataclass
class Piece:
    """One spoken piece of a run (a sentence, or a clause of one) with when it was ready.

    ``translation`` is the sentence's whole record on the piece that completes it (None on a sentence's
    earlier clauses, and when only speaking); ``speech`` is None when there was nothing to speak.
    """

    index: int
    source: str
    translation: TranslationResult | None
    speech: SpeechResult | None
    since_start_ms: float
    #: from the sentence's start (a live session's sentences start when they are complete) to ready
    ms: float
    sentence: int = 0
    clause: int = 0
    #: the clause's text, when the piece is a clause of a streamed translation
    clause_text: str | None = None
    #: silence before this piece's audio when pieces are joined
    gap_s: float = 0.0
    #: the sentence goes on right after this piece (a first phrase): no silence between the two
    joins_next: bool = False
    #: the piece before this one goes on in it
    after_phrase: bool = False

    def joint_speech(self) -> SpeechResult:
        """The speech, cut at a joint with a phrase: a speaker pads each call with silence (Open JTalk ~0.3 s
        each end), so a phrase and the rest of its sentence would be heard ~0.6 s apart, where the whole
        sentence has no pause."""
        sp = self.speech
        assert sp is not None
        if not (self.after_phrase or self.joins_next):
            return sp
        cut = audio.trim_silence(sp.int16(), sp.sample_rate, start=self.after_phrase, end=self.joins_next)
        return replace(sp, audio=cut)

    @property
    def text(self) -> str:
        """What was spoken: the clause, the translation, or the source when nothing was translated."""
        if self.clause_text is not None:
            return self.clause_text
        return self.translation.text if self.translation is not None else self.source


class Joiner:
    """Pieces' audio as one track or stream at ``rate``: each piece after its gap (between sentences, and the
    pause after a clause's comma), none before the first spoken one. Every route joins pieces with it."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self.spoken = 0

    def samples(self, p: Piece) -> np.ndarray:
        out = audio.joined(p.joint_speech(), self.rate, self.spoken == 0, p.gap_s)
        self.spoken += 1
        return out

    def pcm(self, p: Piece) -> bytes:
        return audio.pcm_bytes(self.samples(p))


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
    #: each sentence's translation record
    sentences: list[TranslationResult] = field(default_factory=list)

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


@dataclass
class TextTranslation:
    """A translation without speech (``POST /v1/translate``)."""

    translation: str
    sentences: list[TranslationResult]
    timings_ms: dict[str, float]
    fallbacks: list[str]
