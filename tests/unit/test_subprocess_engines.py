"""External engines (espeak-ng program or library, macOS say) take hostile text only as data.

Never as flags, shell or markup.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from backends import InvalidRequest, Speaker, create_speaker
from backends.audio import decode_wav, encode_result, rms
from backends.base import missing_modules
from backends.espeak_tts import EspeakSpeaker, find_binary
from backends.registry import speaker_class

ENGINES = {
    "espeak-program": ("espeak", {"engine": "program"}),
    "espeak-library": ("espeak", {"engine": "library"}),
    "say": ("say", {}),
}


@pytest.fixture(scope="module", params=list(ENGINES))
def engine(request: pytest.FixtureRequest) -> Iterator[Speaker]:
    name, options = ENGINES[request.param]
    reason = speaker_class(name).unavailable_reason(None)
    if reason:
        pytest.skip(f"{name} unavailable here: {reason}")
    if request.param == "espeak-program" and find_binary() is None:
        pytest.skip("the espeak-ng program is not installed: apt-get install espeak-ng")
    if request.param == "espeak-library" and missing_modules("espeakng_loader"):
        pytest.skip("espeakng-loader is not installed: pip install 'hayaku[espeak]'")
    speaker = create_speaker(name, options=options)
    speaker.load()
    yield speaker
    speaker.close()


def _hostile(marker: Path) -> list[str]:
    return [
        "-v",
        "--help",
        "--version",
        "-w /tmp/hayaku-should-not-exist.wav hello",
        f"--compile=ja {marker}",
        f"$(touch {marker})",
        f"`touch {marker}`",
        f"hello; touch {marker}",
        f"hello && touch {marker} | cat > {marker}",
        "\"double\" 'single' quotes \\ backslash",
        "first line\n--stdout\nthird line -m",
        "\x1b[31mred\x1b[0m bell\x07 tab\t end\x7f",
        "-こんにちは、お元気ですか？",
    ]


def test_hostile_text_is_spoken_as_data(engine: Speaker, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    before = set(os.listdir(tmp_path)) | set(os.listdir("/tmp"))
    for text in _hostile(marker):
        lang = "ja" if "こんにちは" in text else "en"
        result = engine.synthesize(text, lang=lang)
        # A flag taking effect would print help/version text (not WAV) or write a file instead of stdout.
        samples, rate = decode_wav(encode_result(result))
        assert rate == result.sample_rate
        assert rms(samples) > 0.01, f"silence for {text!r}"
        assert result.duration_s > 0.25, f"{result.duration_s:.2f} s for {text!r}"
        assert result.text == text
    assert not marker.exists()
    assert not Path("/tmp/hayaku-should-not-exist.wav").exists()
    after = set(os.listdir(tmp_path)) | set(os.listdir("/tmp"))
    assert not {n for n in after - before if "pwned" in n or "hayaku-should" in n}


def test_version_text_is_not_a_version_request(engine: Speaker) -> None:
    # "--version" as text is spoken (about a second), not answered with a version string.
    r = engine.synthesize("--version", lang="en")
    assert r.duration_s > 0.3 and rms(r.audio) > 0.01


def test_ssml_like_markup_is_read_not_interpreted(engine: Speaker) -> None:
    plain = engine.synthesize("hi", lang="en")
    marked = engine.synthesize('<speak><prosody rate="x-slow">hi</prosody></speak>', lang="en")
    # Interpreted, the markup would leave just "hi" (slowed); read as text it is many more words.
    assert marked.duration_s > 2.0 * plain.duration_s, (marked.duration_s, plain.duration_s)
    brk = engine.synthesize('hi <break time="10s"/> hi', lang="en")
    assert brk.duration_s < 8.0, f"a 10 s SSML break was honoured ({brk.duration_s:.1f} s)"


def test_nul_is_rejected_with_a_clear_error(engine: Speaker) -> None:
    with pytest.raises(InvalidRequest) as exc:
        engine.synthesize("hello\x00 --help", lang="en")
    assert "NUL" in str(exc.value) and exc.value.status == 400


def test_control_characters_do_not_change_the_words(engine: Speaker) -> None:
    clean = engine.synthesize("hello world", lang="en")
    noisy = engine.synthesize("hello\x1b\x07\x08 world", lang="en")
    assert abs(noisy.duration_s - clean.duration_s) < 0.5 * clean.duration_s


def test_espeak_argument_list_never_contains_the_text() -> None:
    if find_binary() is None:
        pytest.skip("the espeak-ng program is not installed: apt-get install espeak-ng")
    speaker = EspeakSpeaker(voice="f3", options={"engine": "program"})
    speaker.load()
    cmd = speaker.command("ja", "f3", 1.0)
    assert "--stdin" in cmd and "--stdout" in cmd
    assert "-m" not in cmd, "SSML interpretation must stay off"
    assert cmd[cmd.index("-v") + 1] == "ja+f3"

    def wpm(speed: float) -> int:
        c = speaker.command("en", "default", speed)
        return int(c[c.index("-s") + 1])

    # Speed maps to words per minute, clamped to espeak-ng's range.
    assert (wpm(1.0), wpm(2.0), wpm(0.25)) == (175, 350, 80)


def test_espeak_program_and_library_agree() -> None:
    if find_binary() is None or missing_modules("espeakng_loader"):
        pytest.skip("needs both the espeak-ng program (apt-get install espeak-ng) and espeakng-loader")
    text = "こんにちは、お元気ですか？"
    a = create_speaker("espeak", options={"engine": "program"}).synthesize(text, voice="f3")
    b = create_speaker("espeak", options={"engine": "library"}).synthesize(text, voice="f3")
    assert a.sample_rate == b.sample_rate
    # Different espeak-ng builds (Debian 1.51, wheel 1.52) may differ slightly; the length is close.
    assert abs(a.duration_s - b.duration_s) < 0.2 * a.duration_s


def test_say_embedded_commands_are_read_as_text() -> None:
    reason = speaker_class("say").unavailable_reason(None)
    if reason:
        pytest.skip(f"say unavailable here: {reason}")
    speaker = create_speaker("say")
    plain = speaker.synthesize("hi", lang="en")
    silenced = speaker.synthesize("[[slnc 5000]] hi", lang="en")
    assert silenced.duration_s < plain.duration_s + 4.0, "say honoured an embedded [[slnc]] command"


@pytest.mark.parametrize("depth", [pytest.param("quick"), pytest.param("long", marks=pytest.mark.slow)])
def test_any_text_reaches_the_engine_only_as_data(engine: Speaker, depth: str) -> None:
    # Random text of every plane, markup, flags and controls: audio of that text, or a clear 400; nothing
    # on disk changes (the strategies include "-w /tmp/x.wav"), and no output is a help or version text.
    from hypothesis import strategies as st

    from benchmarks.hostile import DASH_TEXT, SURROGATE_TEXT, TEXT, budget, check

    written = Path("/tmp/x.wav")
    existed = written.exists()

    def prop(text: str) -> None:
        try:
            result = engine.synthesize(text, lang="en")
        except InvalidRequest as exc:
            assert exc.status == 400 and ("NUL" in str(exc) or "surrogate" in str(exc) or not text.strip())
            return
        samples, rate = decode_wav(encode_result(result))
        assert rate == result.sample_rate and len(samples) > 0
        assert result.text == text
        assert existed or not written.exists(), f"{text!r} made the engine write {written}"

    name = f"text.engine.{engine.name}.{engine.options.model_dump().get('engine', 'program')}"
    check(name, st.one_of(TEXT, DASH_TEXT, SURROGATE_TEXT), prop, budget(20, depth))
