"""espeak-ng formant synthesis: many languages, tiny and fast; kanji are not read well.

espeak-ng runs as a subprocess with an argument list (never a shell). The text goes in on
stdin, so nothing in it can become a flag, and SSML interpretation (``-m``) stays off, so
markup is read out as text. The WAV comes back on stdout.

Where the program is not installed, the ``libespeak-ng`` shipped in the ``espeakng-loader``
wheel (extra ``espeak``) is called through ctypes instead: same voices, same data-only text.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from backends.audio import decode_wav
from backends.base import BackendOptions, Speaker, missing_modules, safe_name
from backends.errors import BackendTimeout, BackendUnavailable, InvalidRequest
from backends.languages import LANGUAGES
from backends.text import engine_text

#: ISO 639-1 -> espeak-ng voice; codes not listed are espeak voice names already.
ESPEAK_LANG = {"en": "en-us", "zh": "cmn"}
#: espeak-ng's own words-per-minute range and default
WPM_DEFAULT, WPM_MIN, WPM_MAX = 175, 80, 450
INSTALL_HINT = (
    "apt-get install espeak-ng (Debian/Ubuntu) or brew install espeak-ng (macOS), "
    "or pip install 'hayaku[espeak]' for the library build"
)


def find_binary() -> str | None:
    """espeak-ng on PATH (or HAYAKU_ESPEAK, for a build elsewhere), else None."""
    explicit = os.environ.get("HAYAKU_ESPEAK")
    if explicit:
        return explicit if os.path.isfile(explicit) and os.access(explicit, os.X_OK) else None
    return shutil.which("espeak-ng")


class EspeakOptions(BackendOptions):
    pitch: int = Field(50, ge=0, le=99, description="Base pitch, 0 to 99 (espeak-ng -p).")
    amplitude: int = Field(100, ge=0, le=200, description="Loudness, 0 to 200 (espeak-ng -a).")
    word_gap: int = Field(0, ge=0, le=100, description="Extra pause between words in units of 10 ms (espeak-ng -g).")
    timeout_s: float = Field(30.0, gt=0, le=600, description="Seconds one synthesis may take before it is killed.")
    engine: Literal["auto", "program", "library"] = Field(
        "auto",
        description=(
            "program: the espeak-ng executable as a subprocess; library: libespeak-ng from the espeakng-loader "
            "package via ctypes; auto: the program if installed, else the library."
        ),
    )


class EspeakSpeaker(Speaker):
    """espeak-ng as a subprocess; voices are espeak-ng variants applied to each language's voice."""

    name = "espeak"
    Options = EspeakOptions
    requires = ()
    default_voice = "default"
    languages = tuple(LANGUAGES)
    _variants: ClassVar[dict[str, tuple[str, ...]]] = {}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._binary: str | None = None
        self._library: _Library | None = None
        super().__init__(*args, **kwargs)

    @classmethod
    def unavailable_reason(cls, model: str | None = None, options: Any = None) -> str | None:
        """Needs the espeak-ng program or the espeakng-loader package's library."""
        if find_binary() is None and missing_modules("espeakng_loader"):
            where = " (HAYAKU_ESPEAK does not name an executable)" if os.environ.get("HAYAKU_ESPEAK") else ""
            return f"espeak needs the espeak-ng program or library{where}: {INSTALL_HINT}"
        if model is not None:
            return f"espeak takes no model (got {model!r}); choose a voice variant with voice:"
        return None

    def _engine(self) -> str:
        opts = self.options
        assert isinstance(opts, EspeakOptions)
        if opts.engine != "auto":
            return opts.engine
        return "program" if find_binary() is not None else "library"

    def list_voices(self) -> tuple[str, ...]:
        """'default' plus the espeak-ng voice variants installed (f3, klatt, m1, whisper, ...)."""
        if self._engine() == "library":
            key = "library"
            if key not in self._variants and not missing_modules("espeakng_loader"):
                import espeakng_loader

                vdir = Path(espeakng_loader.get_data_path()) / "voices" / "!v"
                names = [p.name for p in vdir.iterdir() if p.is_file()] if vdir.is_dir() else []
                self._variants[key] = (self.default_voice, *_plain_names(names))
        else:
            key = self._binary or find_binary() or ""
            if key and key not in self._variants:
                self._variants[key] = (self.default_voice, *_list_variants(key))
        return self._variants.get(key, (self.default_voice,))

    def _load(self) -> None:
        if self._engine() == "library":
            if missing_modules("espeakng_loader"):
                raise BackendUnavailable(f"espeak engine 'library' needs espeakng-loader: {INSTALL_HINT}")
            self._library = _Library.get()
            return
        self._binary = find_binary()
        if self._binary is None:
            raise BackendUnavailable(f"espeak engine 'program' needs the espeak-ng program: {INSTALL_HINT}")

    def _wpm(self, speed: float) -> int:
        return round(min(WPM_MAX, max(WPM_MIN, WPM_DEFAULT * speed)))

    def _voice_name(self, lang: str, voice: str) -> str:
        espeak_voice = ESPEAK_LANG.get(lang, lang)
        if voice != self.default_voice:
            espeak_voice += "+" + safe_name(voice, "voice")
        return espeak_voice

    def command(self, lang: str, voice: str, speed: float) -> list[str]:
        """The argument list for one synthesis; the text itself is never part of it."""
        opts = self.options
        assert isinstance(opts, EspeakOptions)
        assert self._binary is not None
        return [
            self._binary,
            "-b",
            "1",
            "-v",
            self._voice_name(lang, voice),
            "-s",
            str(self._wpm(speed)),
            "-p",
            str(opts.pitch),
            "-a",
            str(opts.amplitude),
            "-g",
            str(opts.word_gap),
            "--stdin",
            "--stdout",
        ]

    def _synthesize(self, text: str, lang: str, voice: str, speed: float) -> tuple[np.ndarray, int]:
        opts = self.options
        assert isinstance(opts, EspeakOptions)
        if self._library is not None:
            audio = self._library.synth(
                engine_text(text),
                self._voice_name(lang, voice),
                self._wpm(speed),
                opts.pitch,
                opts.amplitude,
                opts.word_gap,
            )
            return audio, self._library.rate
        cmd = self.command(lang, voice, speed)
        try:
            proc = subprocess.run(
                cmd, input=engine_text(text).encode("utf-8"), capture_output=True, timeout=opts.timeout_s, check=False
            )
        except subprocess.TimeoutExpired:
            raise BackendTimeout(f"espeak-ng took more than timeout_s={opts.timeout_s} s") from None
        if proc.returncode != 0 or not proc.stdout.startswith(b"RIFF"):
            err = proc.stderr.decode("utf-8", "replace").strip()[:300]
            raise RuntimeError(f"espeak-ng failed (exit {proc.returncode}) for voice {cmd[4]!r}: {err}")
        return decode_wav(proc.stdout)


def _list_variants(binary: str) -> tuple[str, ...]:
    """Variant file names from ``espeak-ng --voices=variant`` (the column that reads ``!v/NAME``)."""
    try:
        out = subprocess.run([binary, "--voices=variant"], capture_output=True, timeout=10, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ()
    lines = out.decode("utf-8", "replace").splitlines()
    files = []
    if not lines or "File" not in lines[0]:
        return ()
    # Columns are fixed-width and file names may contain spaces: slice by the header's positions.
    start = lines[0].index("File")
    end = lines[0].find("Other Languages")
    for line in lines[1:]:
        field = (line[start:end] if end > start else line[start:]).strip()
        if field.startswith("!v/"):
            files.append(field[3:])
    return _plain_names(files)


def _plain_names(names: list[str]) -> tuple[str, ...]:
    out = set()
    for name in names:
        # skipped: names espeak allows but that are not plain names, e.g. "Mr serious"
        with contextlib.suppress(InvalidRequest):
            out.add(safe_name(name, "voice"))
    return tuple(sorted(out))


class _Library:
    """libespeak-ng (from espeakng-loader) through ctypes.

    The library keeps one global voice, parameter set and callback per process, so there
    is one instance, used under a lock. Text goes in as a UTF-8 buffer without the SSML flag.
    """

    _instance: ClassVar[_Library | None] = None
    _create_lock: ClassVar[threading.Lock] = threading.Lock()
    # enum values from espeak-ng's speak_lib.h
    _SYNCHRONOUS, _DONT_EXIT, _POS_CHARACTER = 2, 0x8000, 1
    _CHARS_UTF8, _ENDPAUSE = 0x1, 0x1000
    _RATE, _VOLUME, _PITCH, _WORDGAP = 1, 2, 3, 7

    @classmethod
    def get(cls) -> _Library:
        with cls._create_lock:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance

    def __init__(self) -> None:
        import ctypes

        import espeakng_loader

        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_Synth.argtypes = [
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]
        # The path is the folder that contains espeak-ng-data; DONT_EXIT keeps a data error from killing us.
        root = str(Path(espeakng_loader.get_data_path()).parent).encode()
        rate = lib.espeak_Initialize(self._SYNCHRONOUS, 0, root, self._DONT_EXIT)
        if rate <= 0:
            raise BackendUnavailable(f"libespeak-ng failed to initialise with data at {root.decode()!r}")
        self._pieces: list[np.ndarray] = []

        def on_audio(wav: Any, n: int, events: Any) -> int:
            if n > 0:
                self._pieces.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
            return 0

        callback_type = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)
        self._callback = callback_type(on_audio)  # referenced for as long as the library may call it
        lib.espeak_SetSynthCallback(self._callback)
        self.lib, self.rate, self.lock = lib, int(rate), threading.Lock()

    def synth(self, text: str, voice: str, wpm: int, pitch: int, amplitude: int, word_gap: int) -> np.ndarray:
        """int16 samples of ``text`` spoken by ``voice`` (e.g. ``ja+f3``)."""
        with self.lock:
            if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
                raise InvalidRequest(f"libespeak-ng has no voice {voice!r}")
            for param, value in (
                (self._RATE, wpm),
                (self._PITCH, pitch),
                (self._VOLUME, amplitude),
                (self._WORDGAP, word_gap),
            ):
                self.lib.espeak_SetParameter(param, value, 0)
            self._pieces = []
            buf = text.encode("utf-8") + b"\0"
            err = self.lib.espeak_Synth(
                buf, len(buf), 0, self._POS_CHARACTER, 0, self._CHARS_UTF8 | self._ENDPAUSE, None, None
            )
            self.lib.espeak_Synchronize()
            pieces, self._pieces = self._pieces, []
        if err != 0:
            raise RuntimeError(f"libespeak-ng failed (error {err}) for voice {voice!r}")
        return np.concatenate(pieces) if pieces else np.zeros(0, np.int16)
