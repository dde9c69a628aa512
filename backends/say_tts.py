"""macOS ``say`` (Kyoko for Japanese by default): the system voices, macOS only.

``say`` runs as a subprocess with an argument list (never a shell). The text is written
to a temporary file passed with ``-f``, so it can never be read as a flag, and the audio
comes back as 16-bit little-endian WAV written to a second temporary file.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pydantic import Field

from backends.audio import decode_wav
from backends.base import BackendOptions, Speaker, safe_name
from backends.errors import BackendTimeout, BackendUnavailable, InvalidRequest
from backends.text import engine_text

#: a voice per language that ships with macOS
DEFAULT_VOICES = {
    "ja": "Kyoko",
    "en": "Samantha",
    "zh": "Tingting",
    "ko": "Yuna",
    "fr": "Thomas",
    "de": "Anna",
    "es": "Monica",
    "it": "Alice",
    "pt": "Luciana",
    "ru": "Milena",
    "ar": "Maged",
    "hi": "Lekha",
    "th": "Kanya",
    "id": "Damayanti",
    "nl": "Xander",
    "pl": "Zosia",
    "tr": "Yelda",
    "sv": "Alva",
}
#: ``say`` speaks about 175-200 words per minute by default; speed 1.0 maps to this
RATE_DEFAULT = 185
# `say -v ?` lines: "Kyoko               ja_JP    # こんにちは、私の名前はKyokoです。"
_VOICE_LINE = re.compile(r"^(?P<name>.+?)\s+(?P<locale>[a-z]{2,3}[_-][A-Za-z0-9_-]+)\s+#")
# say reads "[[rate 300]]"-style embedded commands anywhere in its input; there is no flag to
# turn them off, so the brackets are split apart and read as text.
_EMBEDDED = re.compile(r"\[\[|\]\]")


class SayOptions(BackendOptions):
    sample_rate: int = Field(22050, ge=8000, le=48000, description="Output sample rate in Hz (say --data-format).")
    timeout_s: float = Field(60.0, gt=0, le=600, description="Seconds one synthesis may take before it is killed.")


class SaySpeaker(Speaker):
    """The macOS ``say`` command; voice names use '_' where macOS has spaces (``Bad_News``)."""

    name = "say"
    Options = SayOptions
    platforms = ("Darwin",)
    default_voice = "Kyoko"
    # Kyoko and Otoya are macOS's Japanese voices; where Otoya is not installed these take the configured voice.
    openai_voices: ClassVar[dict[str, str]] = dict.fromkeys(
        ("ash", "ballad", "echo", "fable", "onyx", "verse"), "Otoya"
    )
    languages = tuple(DEFAULT_VOICES)
    _installed: ClassVar[dict[str, str] | None] = None  # API name -> locale

    @classmethod
    def unavailable_reason(cls, model: str | None = None, options: Any = None) -> str | None:
        """Needs macOS and its ``say`` program."""
        reason = super().unavailable_reason(model, options)
        if reason is None and shutil.which("say") is None:
            reason = "say: the macOS `say` program is not on PATH"
        if reason is None and model is not None:
            reason = f"say takes no model (got {model!r}); choose a voice with voice: (e.g. Kyoko)"
        return reason

    def list_voices(self) -> tuple[str, ...]:
        """Voices installed on this Mac (from ``say -v ?``); on other systems, the usual defaults."""
        installed = self._installed_voices()
        return tuple(sorted(installed)) if installed else tuple(sorted(set(DEFAULT_VOICES.values())))

    @classmethod
    def _installed_voices(cls) -> dict[str, str]:
        if cls._installed is None:
            found: dict[str, str] = {}
            say = shutil.which("say")
            if say is not None:
                try:
                    out = subprocess.run([say, "-v", "?"], capture_output=True, timeout=10, check=False).stdout
                except (OSError, subprocess.TimeoutExpired):
                    out = b""
                for line in out.decode("utf-8", "replace").splitlines():
                    m = _VOICE_LINE.match(line)
                    if m:
                        api_name = m["name"].strip().replace(" ", "_")
                        # skipped: names not addressable as plain names (e.g. with parentheses)
                        with contextlib.suppress(InvalidRequest):
                            found[safe_name(api_name, "voice")] = m["locale"]
            cls._installed = found
        return cls._installed

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._say: str | None = None

    def _load(self) -> None:
        self._say = shutil.which("say")
        if self._say is None:
            raise BackendUnavailable("say: the macOS `say` program is not on PATH")

    def _synthesize(self, text: str, lang: str, voice: str, speed: float) -> tuple[np.ndarray, int]:
        opts = self.options
        assert isinstance(opts, SayOptions)
        assert self._say is not None
        # Kyoko is the default for Japanese; other languages get their own macOS voice.
        if voice == self.default_voice and lang != "ja" and self.voice is None:
            voice = DEFAULT_VOICES.get(lang, voice)
        say_voice = safe_name(voice, "voice").replace("_", " ")
        rate = round(RATE_DEFAULT * speed)
        spoken = _EMBEDDED.sub(lambda m: m.group(0)[0] + " " + m.group(0)[1], engine_text(text))
        with tempfile.TemporaryDirectory(prefix="hayaku-say-") as tmp:
            src, dst = Path(tmp) / "text.txt", Path(tmp) / "speech.wav"
            src.write_text(spoken, encoding="utf-8")
            cmd = [
                self._say,
                "-v",
                say_voice,
                "-r",
                str(rate),
                "-f",
                str(src),
                "-o",
                str(dst),
                "--file-format=WAVE",
                f"--data-format=LEI16@{opts.sample_rate}",
            ]
            try:
                proc = subprocess.run(cmd, capture_output=True, timeout=opts.timeout_s, check=False)
            except subprocess.TimeoutExpired:
                raise BackendTimeout(f"say took more than timeout_s={opts.timeout_s} s") from None
            if proc.returncode != 0 or not dst.is_file():
                err = proc.stderr.decode("utf-8", "replace").strip()[:300]
                raise RuntimeError(f"say failed (exit {proc.returncode}) with voice {say_voice!r}: {err}")
            return decode_wav(dst.read_bytes())
