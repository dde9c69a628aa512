"""Core contracts: registry, options validation, text splitting, audio encoding, pipeline."""

from __future__ import annotations

import re

import numpy as np
import pytest

from backends import InvalidRequest, create_speaker, create_translator
from backends.audio import decode_wav, encode, rms
from backends.registry import SPEAKERS, TRANSLATORS, status
from backends.text import complete_clauses, first_phrase, split_sentences
from graph.pipeline import local_pipeline


def test_unknown_backend_lists_valid_names() -> None:
    with pytest.raises(InvalidRequest) as exc:
        create_translator("nope")
    msg = str(exc.value)
    assert "'nope'" in msg
    for name in TRANSLATORS:
        assert name in msg


def test_bad_option_quotes_value_and_lists_valid_options() -> None:
    with pytest.raises(InvalidRequest) as exc:
        create_speaker("tone", options={"frequency": "loud"})
    assert "'loud'" in str(exc.value) and "frequency" in str(exc.value)
    with pytest.raises(InvalidRequest) as exc:
        create_speaker("tone", options={"volume": 3})
    assert "unknown option" in str(exc.value) and "sample_rate" in str(exc.value)


def test_status_has_every_backend_with_reason() -> None:
    rows = status()
    names = {(r["role"], r["name"]) for r in rows}
    assert names == {("translator", n) for n in TRANSLATORS} | {("speaker", n) for n in SPEAKERS}
    for r in rows:
        # available exactly when there is no reason; every backend module imports (its runtime loads in load())
        assert r["available"] is (r["reason"] == ""), r
        assert not r["reason"].startswith("import failed"), r
        # a reason says what is missing here: a platform, a package or program (how to install it), a model
        assert r["available"] or re.search(
            r"only on \w+|pip install|apt(-get)? install|not on PATH|\bmodel\b", r["reason"]
        ), r
    # the synthetic backends need nothing: they run everywhere
    assert {(r["role"], r["name"]) for r in rows if r["synthetic"]} == {("translator", "echo"), ("speaker", "tone")}
    assert all(r["available"] for r in rows if r["synthetic"])


@pytest.mark.parametrize(
    "text,expected",
    [
        ("Hello. How are you today? I am fine!", ["Hello.", "How are you today?", "I am fine!"]),
        (
            "Mr. Smith paid $3.50 at 5 p.m. today. Then he left.",
            ["Mr. Smith paid $3.50 at 5 p.m. today.", "Then he left."],
        ),
        ("No punctuation at all", ["No punctuation at all"]),
        ("  ", []),
    ],
)
def test_split_english(text: str, expected: list[str]) -> None:
    assert split_sentences(text, "en") == expected


def test_split_japanese_and_chinese() -> None:
    assert split_sentences("こんにちは。お元気ですか？「はい」と言った。", "ja") == [
        "こんにちは。",
        "お元気ですか？",
        "「はい」と言った。",
    ]
    assert split_sentences("你好。你好吗？", "zh") == ["你好。", "你好吗？"]


@pytest.mark.parametrize(
    ("buffer", "phrase"),
    [
        ("私の妹は病院で", "私の妹は"),  # a topic particle after a noun, the next noun begun
        ("私は肉を食べ", "私は肉を"),  # 私は alone is too short: the next phrase end
        ("夜9時にスーパー", "夜9時に"),
        ("東京駅には新幹線", "東京駅には"),  # a two-character particle
        ("私の妹は", None),  # nothing after は yet: it may still become a longer word
        ("会議では", None),
        ("今日は頭痛です", None),  # 今日は is shorter than MIN_PHRASE, nothing else ends
        ("あなたはいつから起床", None),  # after hiragana, は may belong to the word
        ("申し訳ありませんが", None),
        ("Good morning and", None),
    ],
)
def test_first_phrase_ends_at_a_particle_between_nouns(buffer: str, phrase: str | None) -> None:
    done, rest = first_phrase(buffer, "ja")
    assert done == ([phrase] if phrase else []) and "".join(done) + rest == buffer
    assert first_phrase(buffer, "zh") == ([], buffer)  # Japanese phrases only


def test_clauses_split_at_commas_with_a_minimum_length_and_text_without_one_waits_for_the_end() -> None:
    assert complete_clauses("こんにちは、今日は", "ja") == (["こんにちは、"], "今日は")
    assert complete_clauses("はい、そうです", "ja") == ([], "はい、そうです")  # はい、 alone would stutter
    assert complete_clauses("句読点のない文", "ja") == ([], "句読点のない文")
    assert complete_clauses("句読点のない文", "ja", flush=True) == (["句読点のない文"], "")
    assert complete_clauses("Well, it is fine, I think", "en") == (["Well, it is fine,"], " I think")


def test_split_caps_long_sentences() -> None:
    parts = split_sentences("word " * 300, "en", max_len=100)
    assert all(len(p) <= 100 for p in parts) and len(parts) >= 15


@pytest.mark.parametrize("fmt", ["wav", "pcm", "flac"])
def test_audio_formats_roundtrip(fmt: str) -> None:
    x = (0.5 * np.sin(np.arange(2400) / 5)).astype(np.float32)
    data = encode(x, 24000, fmt)
    if fmt == "wav":
        y, rate = decode_wav(data)
        assert rate == 24000 and len(y) == 2400
        assert np.max(np.abs(y - x)) < 1e-3
    elif fmt == "pcm":
        assert len(data) == 4800
    else:
        import io

        import soundfile as sf

        y, rate = sf.read(io.BytesIO(data), dtype="float32")
        assert rate == 24000 and np.max(np.abs(y - x)) < 1e-3


def test_unknown_audio_format() -> None:
    with pytest.raises(InvalidRequest, match="'ogg'; supported formats: mp3, opus, aac, flac, wav, pcm"):
        encode(np.zeros(10, np.float32), 24000, "ogg")


def test_pipeline_echo_tone() -> None:
    st = local_pipeline(create_translator("echo", options={"prefix": "JA:"}), create_speaker("tone"))
    out = st.run_sync("Hello there. How are you?")
    assert out.translation == "JA:Hello there.JA:How are you?"
    assert len(out.speech) == 2 and out.sample_rate == 24000
    samples, rate = decode_wav(out.wav())
    assert rate == 24000 and rms(samples) > 0.1
    assert set(out.timings_ms) >= {"translate", "synthesize", "total"}


@pytest.mark.parametrize("text", ["", "   \n\t"])
def test_pipeline_rejects_empty(text: str) -> None:
    st = local_pipeline(create_translator("echo"), create_speaker("tone"))
    with pytest.raises(InvalidRequest) as exc:
        st.run_sync(text)
    assert exc.value.status == 400


def test_limits_and_languages() -> None:
    tr = create_translator("echo", max_chars=10)
    with pytest.raises(InvalidRequest) as exc:
        tr.translate(["x" * 11])
    assert exc.value.status == 413 and "max_chars=10" in str(exc.value)
    with pytest.raises(InvalidRequest, match="'xx'"):
        tr.translate(["hi"], "en", "xx")
    assert tr.translate(["hi"], "en", "jpn_Jpan")[0].target_lang == "ja"


@pytest.mark.parametrize("voice", ["../../etc/passwd", "/abs/path", "-rf", "a b", "x\x00y"])
def test_voice_names_cannot_be_paths_or_flags(voice: str) -> None:
    with pytest.raises(InvalidRequest):
        create_speaker("tone", voice=voice)
    with pytest.raises(InvalidRequest):
        create_speaker("tone").synthesize("hello", voice=voice)


def test_unknown_voice_lists_valid() -> None:
    with pytest.raises(InvalidRequest, match="sine"):
        create_speaker("tone").synthesize("hi", voice="alto")
