"""Every audio format through its real encoder and back through a real decoder (libsndfile, FFmpeg),
whole and streamed; OpenAI voice names as aliases of each speaker's voices."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from backends import InvalidRequest, audio, create_speaker
from backends.base import OPENAI_VOICES
from backends.registry import SPEAKERS, speaker_class
from graph.config import ConfigError, parse_args

#: encoder delay and padding a decoder may keep (MP3's tag frame, AAC's priming), in seconds
CODEC_SLACK_S = 0.12


def _tone(rate: int, seconds: float) -> np.ndarray:
    t = np.arange(int(rate * seconds), dtype=np.float32) / rate
    return (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


def _needs(fmt: str) -> None:
    try:
        audio.check_format(fmt)
    except InvalidRequest as exc:
        pytest.skip(str(exc))


@pytest.mark.parametrize("fmt", audio.FORMATS)
@pytest.mark.parametrize("rate", [16000, 22050, 24000, 48000])
def test_whole_file_decodes_to_the_same_audio(fmt: str, rate: int) -> None:
    _needs(fmt)
    x = _tone(rate, 1.5)
    data = audio.encode(x, rate, fmt)
    y, got_rate = audio.decode(data, fmt, pcm_rate=rate)
    assert got_rate == audio.codec_rate(fmt, rate)
    assert abs(len(y) / got_rate - 1.5) < CODEC_SLACK_S, (fmt, rate, len(y) / got_rate)
    assert abs(audio.rms(y) - audio.rms(x)) < 0.03  # 0.3 amplitude sine: rms 0.212


@pytest.mark.parametrize("fmt", audio.STREAMABLE)
def test_stream_sends_while_encoding_and_decodes_whole(fmt: str) -> None:
    _needs(fmt)
    rate = 24000
    enc = audio.Encoder(fmt, rate)
    parts = [enc.write(_tone(rate, 1.0)) for _ in range(3)]
    parts.append(enc.close())
    # every sentence's audio leaves the encoder as it is written, not at close
    assert all(parts[:3]), [len(p) for p in parts]
    y, got_rate = audio.decode(b"".join(parts), fmt, pcm_rate=rate)
    assert abs(len(y) / got_rate - 3.0) < CODEC_SLACK_S, (fmt, len(y) / got_rate)
    assert audio.rms(y) > 0.15


def test_formats_that_cannot_be_made_say_what_can() -> None:
    with pytest.raises(InvalidRequest, match="supported formats: mp3, opus, aac, flac, wav, pcm") as err:
        audio.check_format("ogg")
    assert err.value.status == 422
    with pytest.raises(InvalidRequest, match=r"flac cannot be streamed.*streamed formats: mp3, opus, aac, wav, pcm"):
        audio.Encoder("flac", 24000)


def test_aac_without_pyav_is_a_clear_422() -> None:
    # A fresh interpreter where `av` cannot be imported: what a machine without hayaku[aac] sees.
    code = (
        "import sys; sys.modules['av'] = None\n"
        "from backends import audio\n"
        "from backends.errors import InvalidRequest\n"
        "try:\n    audio.check_format('aac')\nexcept InvalidRequest as e:\n    print(e.status, e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.startswith("422 aac needs PyAV") and "pip install 'hayaku[aac]'" in out, out
    assert "formats here: mp3, opus, flac, wav, pcm" in out


# -- voices: OpenAI names are aliases ------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(SPEAKERS))
def test_every_speaker_maps_every_openai_voice_to_one_of_its_own(name: str) -> None:
    cls = speaker_class(name)
    if cls.unavailable_reason(None) and not cls.voices:
        pytest.skip(f"{name} lists its voices only where it runs: {cls.unavailable_reason(None)}")
    speaker = create_speaker(name)
    aliases = speaker.voice_aliases()
    assert set(OPENAI_VOICES) <= set(aliases)
    valid = speaker.list_voices()
    for openai_name in OPENAI_VOICES:
        assert speaker.check_voice(openai_name) == aliases[openai_name]
        assert not valid or aliases[openai_name] in valid, (name, openai_name, aliases[openai_name])
    assert set(cls.openai_voices) <= set(OPENAI_VOICES), "openai_voices lists only OpenAI's names"


def test_kokoro_defaults_and_a_configured_mapping() -> None:
    kokoro = create_speaker("kokoro", voice="jf_nezumi")
    assert kokoro.check_voice("onyx") == "jm_kumo" and kokoro.check_voice("nova") == "jf_gongitsune"
    assert kokoro.check_voice("alloy") == "jf_nezumi"  # left to the configured voice
    mapped = create_speaker("kokoro", voice_map={"alloy": "jf_tebukuro", "narrator": "jm_kumo"})
    assert mapped.check_voice("alloy") == "jf_tebukuro" and mapped.check_voice("narrator") == "jm_kumo"
    assert mapped.check_voice("jf_alpha") == "jf_alpha"


def test_unknown_voice_lists_voices_and_aliases() -> None:
    tone = create_speaker("tone", voice_map={"robot": "square"})
    with pytest.raises(InvalidRequest) as err:
        tone.check_voice("bogus")
    message = str(err.value)
    assert "valid voices: sine, square" in message
    assert "alloy, ash, ballad, coral, echo, fable, nova, onyx, sage, shimmer, verse, robot" in message
    with pytest.raises(InvalidRequest, match=r"voices\.alloy: unknown voice 'triangle' for tone"):
        create_speaker("tone", voice_map={"alloy": "triangle"})


def test_config_voices_mapping_is_checked_with_its_yaml_path() -> None:
    ok = parse_args({"translator": {"backend": "echo"}, "speaker": {"backend": "tone", "voices": {"onyx": "square"}}})
    assert ok.speaker.voices == {"onyx": "square"}
    bad = {"translator": {"backend": "echo"}, "speaker": {"backend": "tone", "voices": {"onyx": "triangle"}}}
    with pytest.raises(ConfigError, match=r"^args\.speaker\.voices\.onyx: unknown voice 'triangle'"):
        parse_args(bad)
    bad["speaker"]["voices"] = {"../x": "sine"}
    with pytest.raises(ConfigError, match=r"invalid voice alias '\.\./x'"):
        parse_args(bad)
