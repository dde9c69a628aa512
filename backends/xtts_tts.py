"""Coqui XTTS v2 via ``coqui-tts`` (extra ``xtts``): multilingual, voice cloning, 24 kHz.

Needs the XTTS v2 model folder (config.json, model.pth, vocab.json, speakers_xtts.pth;
Coqui Public Model Licence) given as ``model:`` or ``HAYAKU_XTTS_DIR``: nothing is
downloaded. Voices are the built-in speakers (spaces written as '_', e.g. ``Ana_Florence``)
or reference recordings ``<name>.wav`` in a voices folder.
"""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from backends import store
from backends.base import BackendOptions, Speaker, missing_modules, safe_name
from backends.errors import BackendUnavailable, InvalidRequest

SAMPLE_RATE = 24000
MODEL_FILES = ("config.json", "model.pth", "vocab.json", "speakers_xtts.pth")
#: ISO 639-1 -> XTTS language code
XTTS_LANG = {
    "en": "en",
    "es": "es",
    "fr": "fr",
    "de": "de",
    "it": "it",
    "pt": "pt",
    "pl": "pl",
    "tr": "tr",
    "ru": "ru",
    "nl": "nl",
    "ar": "ar",
    "zh": "zh-cn",
    "ko": "ko",
    "ja": "ja",
    "hi": "hi",
}
INSTALL_HINT = (
    "pip install torch==2.9.1 'torchaudio==2.9.*' 'hayaku[xtts]' (coqui-tts needs a torch/torchaudio "
    "2.9 pair; current torchaudio wheels fail against CPU torch 2.13)"
)


def model_dir(model: str | None) -> Path | None:
    """The XTTS v2 folder: ``model:`` if given, else HAYAKU_XTTS_DIR, else None."""
    spec = model or os.environ.get("HAYAKU_XTTS_DIR")
    return (store.local_path(spec) or Path(spec)) if spec else None


class XTTSOptions(BackendOptions):
    device: Literal["auto", "cpu", "cuda", "mps"] = Field(
        "auto", description="Where the model runs; auto picks cuda, then mps, then cpu."
    )
    voices_dir: str | None = Field(
        None,
        description=(
            "Folder of reference recordings <name>.wav usable as voices (default: <model>/voices if it exists)."
        ),
    )
    temperature: float = Field(0.75, gt=0.0, le=2.0, description="Sampling temperature of the GPT decoder.")
    repetition_penalty: float = Field(10.0, ge=1.0, le=50.0, description="Penalty on repeated audio tokens.")
    top_k: int = Field(50, ge=1, le=1000, description="Top-k sampling of audio tokens.")
    top_p: float = Field(0.85, gt=0.0, le=1.0, description="Nucleus sampling of audio tokens.")
    split_sentences: bool = Field(True, description="Let XTTS split long text into sentences itself.")
    seed: int | None = Field(None, description="Seed for torch sampling, for repeatable audio (None: random).")


class XTTSSpeaker(Speaker):
    """XTTS v2: built-in speakers or a reference wav per voice name."""

    name = "xtts"
    Options = XTTSOptions
    requires = ("TTS", "torch", "torchaudio")
    extra = "xtts"
    default_voice = "Ana_Florence"
    languages = tuple(XTTS_LANG)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._model: Any = None
        self._config: Any = None
        self._builtin: dict[str, Any] = {}  # API name -> {"gpt_cond_latent", "speaker_embedding"}
        self._cloned: dict[str, tuple[Any, Any]] = {}
        self._device = "cpu"
        self._rate = SAMPLE_RATE
        self._lock = threading.Lock()

    @classmethod
    def unavailable_reason(cls, model: str | None = None, options: Any = None) -> str | None:
        """Says what to install (coqui-tts with torch/torchaudio 2.9) or which model files are missing."""
        missing = missing_modules(*cls.requires)
        if missing:
            return f"xtts needs {', '.join(missing)} (coqui-tts): {INSTALL_HINT}"
        return cls.model_unavailable_reason(model)

    @classmethod
    def model_unavailable_reason(cls, model: str | None) -> str | None:
        folder = model_dir(model)
        if folder is None:
            return (
                "xtts needs the XTTS v2 model files (Coqui Public Model Licence): set model: /path/to/XTTS-v2 or "
                f"HAYAKU_XTTS_DIR to a folder with {', '.join(MODEL_FILES)} (e.g. a copy of the coqui/XTTS-v2 "
                "hub repository)"
            )
        if store.existing_path(str(folder)) is None or not folder.is_dir():
            return f"xtts model folder {str(folder)!r} does not exist; it must hold {', '.join(MODEL_FILES)}"
        absent = [f for f in MODEL_FILES if not (folder / f).is_file()]
        if absent:
            return f"xtts model folder {str(folder)!r} lacks {', '.join(absent)}"
        return None

    def _voices_dir(self) -> Path | None:
        opts = self.options
        assert isinstance(opts, XTTSOptions)
        if opts.voices_dir:
            return Path(opts.voices_dir).expanduser()
        folder = model_dir(self.model)
        return folder / "voices" if folder is not None and (folder / "voices").is_dir() else None

    def list_voices(self) -> tuple[str, ...]:
        """Built-in speakers (known once loaded) and the reference wavs in the voices folder."""
        names = set(self._builtin)
        vdir = self._voices_dir()
        if vdir is not None and vdir.is_dir():
            for wav in vdir.glob("*.wav"):
                # skipped: files whose stem is not a plain name
                with contextlib.suppress(InvalidRequest):
                    names.add(safe_name(wav.stem, "voice"))
        return tuple(sorted(names))

    def check_voice(self, voice: str) -> str:
        """Built-in speaker names are only known once the model is loaded; until then, names are checked as names."""
        if not self.loaded:
            return safe_name(voice, "voice")
        return super().check_voice(voice)

    def _load(self) -> None:
        import torch
        from TTS.tts.configs.xtts_config import XttsConfig
        from TTS.tts.models.xtts import Xtts

        opts = self.options
        assert isinstance(opts, XTTSOptions)
        folder = model_dir(self.model)
        assert folder is not None
        device = opts.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
        elif device == "cuda" and not torch.cuda.is_available():
            raise BackendUnavailable("xtts device 'cuda' requested but torch sees no CUDA device; use device: cpu")
        config = XttsConfig()
        config.load_json(str(folder / "config.json"))
        model = Xtts.init_from_config(config)
        model.load_checkpoint(config, checkpoint_dir=str(folder), eval=True, use_deepspeed=False)
        model.to(device)
        speakers = torch.load(str(folder / "speakers_xtts.pth"), map_location=device, weights_only=True)
        self._builtin = {k.replace(" ", "_"): v for k, v in speakers.items()}
        self._model, self._config, self._device = model, config, device
        self._rate = int(getattr(getattr(config, "audio", None), "output_sample_rate", SAMPLE_RATE))

    def close(self) -> None:
        """Drops the model and cached voice latents."""
        self._model = None
        self._builtin, self._cloned = {}, {}
        super().close()

    def _latents(self, voice: str) -> tuple[Any, Any]:
        if voice in self._builtin:
            s = self._builtin[voice]
            return s["gpt_cond_latent"], s["speaker_embedding"]
        if voice not in self._cloned:
            vdir = self._voices_dir()
            wav = vdir / f"{safe_name(voice, 'voice')}.wav" if vdir is not None else None
            if wav is None or not wav.is_file():
                raise InvalidRequest(f"unknown voice {voice!r} for xtts; valid voices: {', '.join(self.list_voices())}")
            self._cloned[voice] = self._model.get_conditioning_latents(audio_path=[str(wav)])
        return self._cloned[voice]

    def _synthesize(self, text: str, lang: str, voice: str, speed: float) -> tuple[np.ndarray, int]:
        import torch

        opts = self.options
        assert isinstance(opts, XTTSOptions)
        with self._lock:
            gpt_cond_latent, speaker_embedding = self._latents(voice)
            if opts.seed is not None:
                torch.manual_seed(opts.seed)
            with torch.inference_mode():
                out = self._model.inference(
                    text,
                    XTTS_LANG[lang],
                    gpt_cond_latent,
                    speaker_embedding,
                    temperature=opts.temperature,
                    repetition_penalty=opts.repetition_penalty,
                    top_k=opts.top_k,
                    top_p=opts.top_p,
                    speed=speed,
                    enable_text_splitting=opts.split_sentences,
                )
        wav = out["wav"]
        if isinstance(wav, torch.Tensor):
            wav = wav.detach().cpu().numpy()
        return np.asarray(wav, dtype=np.float32).reshape(-1), self._rate
