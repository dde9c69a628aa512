"""One contract for every registered speaker: available ones must pass, unavailable ones are skipped with the reason.

A skip names the platform, package or model this machine lacks (the speaker's own
``unavailable_reason()``). A speaker module that does not import, or a ``load()`` that raises
although ``unavailable_reason()`` said the speaker can run here, fails.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pytest

from backends import BackendUnavailable, InvalidRequest, Speaker, SpeechResult, create_speaker
from backends.audio import decode_wav, encode_result, rms
from backends.registry import SPEAKERS, speaker_class

#: the sample rate each speaker produces with default options (a new speaker must declare its own here)
DECLARED_RATE = {"kokoro": 24000, "openjtalk": 48000, "espeak": 22050, "say": 22050, "xtts": 24000, "tone": 24000}
#: speakers whose synthesis takes tens of seconds on a CPU
HEAVY = {"xtts"}
TEXT = {"ja": "こんにちは、お元気ですか？", "en": "Hello, how are you today?"}
#: plausible seconds of speech per character, by language (Japanese characters are mostly one mora)
PER_CHAR_S = {"ja": (0.05, 0.5), "en": (0.02, 0.25)}
#: what a reason for skipping must name: a platform ("runs only on Darwin"), a package or program (an
#: install command) or a model
MISSING = re.compile(r"only on \w+|pip install|apt(-get)? install|brew install|not on PATH|\bmodel\b")
TRAVERSAL = ["../etc/passwd", "/etc/passwd", "..", "voices/../../x", ".hidden", "-v", "a b", "C:\\x", "x\x00y"]


@dataclass
class Loaded:
    speaker: Speaker
    lang: str
    normal: SpeechResult
    fast: SpeechResult


def _params() -> list[object]:
    return [pytest.param(n, marks=pytest.mark.slow) if n in HEAVY else n for n in SPEAKERS]


@pytest.fixture(scope="module", params=_params())
def loaded(request: pytest.FixtureRequest) -> Iterator[Loaded]:
    name = request.param
    reason = speaker_class(name).unavailable_reason(None)  # a module that does not import fails here
    if reason:
        if not MISSING.search(reason):
            pytest.fail(f"{name} says it cannot run here, naming no missing platform, package or model: {reason!r}")
        pytest.skip(f"{name} unavailable here: {reason}")
    speaker = create_speaker(name)
    try:
        speaker.load()
    except BackendUnavailable as exc:  # unavailable_reason() said it can run here: load() must keep that promise
        pytest.fail(f"{name} said it can run here (unavailable_reason() is None), but load() raised: {exc}")
    lang = "ja" if not speaker.languages or "ja" in speaker.languages else "en"
    normal = speaker.synthesize(TEXT[lang], lang=lang)
    fast = speaker.synthesize(TEXT[lang], lang=lang, speed=2.0)
    yield Loaded(speaker, lang, normal, fast)
    speaker.close()


def test_every_speaker_declares_its_rate() -> None:
    assert set(SPEAKERS) <= set(DECLARED_RATE), (
        f"add the new speakers to DECLARED_RATE: {set(SPEAKERS) - set(DECLARED_RATE)}"
    )


def test_health_ok_after_load(loaded: Loaded) -> None:
    health = loaded.speaker.health()
    assert health["ok"] is True and health["backend"] == loaded.speaker.name


def test_audio_is_speech_shaped(loaded: Loaded) -> None:
    r = loaded.normal
    assert r.backend == loaded.speaker.name and r.voice and r.lang == loaded.lang
    assert r.audio.dtype in (np.float32, np.int16) and r.audio.ndim == 1
    x = r.float32()
    assert np.all(np.isfinite(x)) and np.max(np.abs(x)) <= 1.0
    samples, rate = decode_wav(encode_result(r))
    assert rate == r.sample_rate == DECLARED_RATE[loaded.speaker.name]
    assert len(samples) == len(r.audio)
    assert rms(samples) > 0.01, f"{r.backend} produced near-silence (rms {rms(samples):.4f})"
    lo, hi = PER_CHAR_S[loaded.lang]
    n = len(TEXT[loaded.lang])
    assert lo * n <= len(samples) / rate <= hi * n, f"{len(samples) / rate:.2f} s for {n} characters"
    assert r.timings_ms["synthesize"] >= 0.0


def test_faster_speed_gives_shorter_audio(loaded: Loaded) -> None:
    assert loaded.fast.duration_s < 0.85 * loaded.normal.duration_s, (loaded.fast.duration_s, loaded.normal.duration_s)
    assert rms(loaded.fast.audio) > 0.01


def test_unknown_voice_lists_valid_voices(loaded: Loaded) -> None:
    valid = loaded.speaker.list_voices()
    with pytest.raises(InvalidRequest) as exc:
        loaded.speaker.synthesize(TEXT[loaded.lang], lang=loaded.lang, voice="no_such_voice_42")
    msg = str(exc.value)
    assert "'no_such_voice_42'" in msg
    assert valid and any(v in msg for v in valid), msg


def test_default_voice_is_listed(loaded: Loaded) -> None:
    assert loaded.normal.voice in loaded.speaker.list_voices()


@pytest.mark.parametrize("text", ["", "   ", "\n\t "])
def test_empty_text_is_rejected(loaded: Loaded, text: str) -> None:
    with pytest.raises(InvalidRequest) as exc:
        loaded.speaker.synthesize(text, lang=loaded.lang)
    assert exc.value.status == 400


@pytest.mark.parametrize("voice", TRAVERSAL)
def test_path_like_voice_names_are_rejected(loaded: Loaded, voice: str) -> None:
    with pytest.raises(InvalidRequest) as exc:
        loaded.speaker.synthesize(TEXT[loaded.lang], lang=loaded.lang, voice=voice)
    assert "voice" in str(exc.value)


def test_unsupported_language_is_rejected(loaded: Loaded) -> None:
    if not loaded.speaker.languages or "xx" in loaded.speaker.languages:
        pytest.skip(f"{loaded.speaker.name} accepts any language")
    with pytest.raises(InvalidRequest):
        loaded.speaker.synthesize("hello", lang="xx")
    other = next((c for c in ("en", "fr", "de", "ko") if c not in loaded.speaker.languages), None)
    if other is not None:
        with pytest.raises(InvalidRequest) as exc:
            loaded.speaker.synthesize("hello", lang=other)
        assert repr(other) in str(exc.value) and "ja" in str(exc.value)


@pytest.mark.parametrize("name", list(SPEAKERS))
def test_text_over_max_chars_is_413(name: str) -> None:
    # Checked before loading, so it holds for unavailable speakers too.
    speaker = create_speaker(name, max_chars=12)
    with pytest.raises(InvalidRequest) as exc:
        speaker.synthesize("あ" * 13)
    assert exc.value.status == 413 and "max_chars=12" in str(exc.value)
    assert not speaker.loaded


@pytest.mark.parametrize("name", list(SPEAKERS))
def test_path_like_voice_rejected_at_construction(name: str) -> None:
    for voice in TRAVERSAL:
        with pytest.raises(InvalidRequest):
            create_speaker(name, voice=voice)


@pytest.mark.parametrize("name", list(SPEAKERS))
def test_unknown_option_is_rejected(name: str) -> None:
    with pytest.raises(InvalidRequest) as exc:
        create_speaker(name, options={"no_such_option": 1})
    assert "no_such_option" in str(exc.value) and "unknown option" in str(exc.value)


@pytest.mark.parametrize("name", list(SPEAKERS))
def test_options_have_descriptions(name: str) -> None:
    for field, info in speaker_class(name).Options.model_fields.items():
        assert info.description, f"{name} option {field!r} has no description"


@pytest.mark.parametrize("name", list(SPEAKERS))
def test_unavailable_reason_names_a_fix(name: str) -> None:
    reason = speaker_class(name).unavailable_reason(None)
    if reason is None:
        pytest.skip(f"{name} is available here")
    assert MISSING.search(reason), f"{name}: the reason names no missing platform, package or model: {reason}"
