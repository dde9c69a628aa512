"""Open JTalk HTS speech via ``pyopenjtalk-plus``: Japanese, very fast, 48 kHz.

The text frontend (dictionary, readings, accents) is pyopenjtalk's global instance; the
waveform engine is an ``HTSEngine`` this backend owns, so a custom ``.htsvoice`` given as
``model:`` does not change the voice of anything else in the process.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from backends import store
from backends.base import BackendOptions, Speaker, missing_modules
from backends.errors import BackendUnavailable, InvalidRequest
from backends.text import engine_text


class OpenJTalkOptions(BackendOptions):
    half_tone: float = Field(
        0.0, ge=-24.0, le=24.0, description="Pitch shift in semitones added to the voice's F0 (0 keeps it)."
    )
    sudachi_yomi: bool = Field(
        True,
        description=(
            "Correct readings of kanji with several readings (e.g. 風, 方) with Sudachi; needs sudachidict_core."
        ),
    )
    normalize: Literal["None", "NFC", "NFKC"] = Field(
        "None", description="Unicode normalisation of the input; NFKC also folds half-width kana and full-width ASCII."
    )


class OpenJTalkSpeaker(Speaker):
    """pyopenjtalk-plus with its bundled HTS voice mei_normal, or a local .htsvoice file as ``model``."""

    name = "openjtalk"
    Options = OpenJTalkOptions
    requires = ("pyopenjtalk", "sudachipy")
    extra = "openjtalk"
    voices = ("mei_normal",)
    default_voice = "mei_normal"
    languages = ("ja",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._engine: Any = None
        self._pyopenjtalk: Any = None
        self._rate = 48000
        # HTSEngine keeps speed/pitch as engine state between set_* and synthesize.
        self._lock = threading.Lock()

    @classmethod
    def model_unavailable_reason(cls, model: str | None) -> str | None:
        if model is not None:
            path = store.existing_path(model)
            if path is None or path.suffix != ".htsvoice" or not path.is_file():
                return (
                    f"openjtalk model {model!r} is not an existing .htsvoice file; leave model unset for the "
                    "bundled mei_normal voice or give the path of an HTS voice file"
                )
        return None

    def list_voices(self) -> tuple[str, ...]:
        """The bundled voice, or the stem of the .htsvoice file given as model."""
        if self.model:
            return (Path(self.model).stem,)
        return self.voices

    def _load(self) -> None:
        import pyopenjtalk
        from pyopenjtalk.htsengine import HTSEngine

        opts = self.options
        assert isinstance(opts, OpenJTalkOptions)
        if opts.sudachi_yomi and missing_modules("sudachidict_core"):
            raise BackendUnavailable(
                "openjtalk with sudachi_yomi needs sudachidict_core: pip install 'hayaku[openjtalk]' "
                "(or set options: {sudachi_yomi: false})"
            )
        voice = str(Path(self.model).expanduser()).encode() if self.model else pyopenjtalk.DEFAULT_HTS_VOICE
        self._engine = HTSEngine(voice)
        self._rate = int(self._engine.get_sampling_frequency())
        self._pyopenjtalk = pyopenjtalk

    def close(self) -> None:
        """Frees the HTS voice."""
        if self._engine is not None:
            self._engine.clear()
        self._engine = None
        super().close()

    def _synthesize(self, text: str, lang: str, voice: str, speed: float) -> tuple[np.ndarray, int]:
        opts = self.options
        assert isinstance(opts, OpenJTalkOptions)
        # Open JTalk is C: a NUL would silently cut the text short.
        labels = self._pyopenjtalk.extract_fullcontext(
            engine_text(text), use_sudachi_kanji_yomi=opts.sudachi_yomi, normalize_mode=opts.normalize
        )
        # Label lists of only silence (punctuation, symbols) give no waveform.
        if len(labels) <= 2:
            raise InvalidRequest(f"nothing to pronounce in {text[:80]!r}: Open JTalk found no Japanese phonemes")
        with self._lock:
            self._engine.set_speed(speed)
            self._engine.add_half_tone(opts.half_tone)
            wave = self._engine.synthesize(labels)
        # HTS returns float64 on the int16 scale.
        audio = np.clip(np.asarray(wave, dtype=np.float64) / 32768.0, -1.0, 1.0).astype(np.float32)
        return audio, self._rate
