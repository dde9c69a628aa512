"""The one place where audio is encoded (WAV, raw PCM, FLAC) and decoded."""

from __future__ import annotations

import io
import struct
import wave

import numpy as np

from backends.errors import InvalidRequest
from backends.types import SpeechResult

FORMATS = ("wav", "pcm", "flac")
MEDIA_TYPES = {"wav": "audio/wav", "pcm": "audio/pcm", "flac": "audio/flac"}


def concat(results: list[SpeechResult], gap_s: float = 0.0) -> tuple[np.ndarray, int]:
    """Joins sentence audio into one int16 track at the first piece's rate, with silence between pieces.

    Pieces at another rate (a fallback speaker served them) are resampled, not refused.
    """
    if not results:
        return np.zeros(0, dtype=np.int16), 24000
    rate = results[0].sample_rate
    gap = silence(rate, gap_s)
    parts: list[np.ndarray] = []
    for i, r in enumerate(results):
        if i and len(gap):
            parts.append(gap)
        parts.append(at_rate(r, rate))
    return np.concatenate(parts), rate


def silence(rate: int, seconds: float) -> np.ndarray:
    return np.zeros(int(rate * seconds), dtype=np.int16)


def at_rate(result: SpeechResult, rate: int) -> np.ndarray:
    """The result's samples as int16 at ``rate`` (linear interpolation when the rates differ)."""
    pcm = result.int16()
    if result.sample_rate == rate or not len(pcm):
        return pcm
    n = max(1, round(len(pcm) * rate / result.sample_rate))
    x = np.linspace(0, len(pcm) - 1, n)
    return np.interp(x, np.arange(len(pcm)), pcm.astype(np.float32)).astype(np.int16)


def pcm_bytes(samples: np.ndarray) -> bytes:
    """int16 samples as raw s16le bytes (the body of a streamed WAV or audio/pcm response)."""
    return samples.astype("<i2").tobytes()


def wav_stream_header(sample_rate: int) -> bytes:
    """A mono 16-bit WAV header for a stream of unknown length (sizes 0xFFFFFFFF, as live encoders write)."""
    unknown = 0xFFFFFFFF
    fmt = struct.pack("<HHIIHH", 1, 1, int(sample_rate), int(sample_rate) * 2, 2, 16)
    return (
        b"RIFF"
        + struct.pack("<I", unknown)
        + b"WAVEfmt "
        + struct.pack("<I", 16)
        + fmt
        + b"data"
        + struct.pack("<I", unknown)
    )


def encode(samples: np.ndarray, sample_rate: int, fmt: str = "wav") -> bytes:
    """Encodes mono samples (float32 or int16) as wav, pcm (s16le) or flac bytes."""
    if fmt not in FORMATS:
        raise InvalidRequest(f"unsupported audio format {fmt!r}; valid formats: {', '.join(FORMATS)}")
    pcm = samples if samples.dtype == np.int16 else (np.clip(samples, -1, 1) * 32767).astype(np.int16)
    if fmt == "pcm":
        return pcm.astype("<i2").tobytes()
    if fmt == "wav":
        buf = io.BytesIO()
        with wave.open(buf, "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(int(sample_rate))
            w.writeframes(pcm.astype("<i2").tobytes())
        return buf.getvalue()
    import soundfile as sf  # flac needs libsndfile; wav and pcm do not

    buf = io.BytesIO()
    sf.write(buf, pcm, int(sample_rate), format="FLAC", subtype="PCM_16")
    return buf.getvalue()


def encode_result(result: SpeechResult, fmt: str = "wav") -> bytes:
    return encode(result.audio, result.sample_rate, fmt)


def decode_wav(data: bytes) -> tuple[np.ndarray, int]:
    """Decodes a mono 16-bit WAV to float32 samples and its sample rate."""
    with wave.open(io.BytesIO(data), "rb") as w:
        if w.getsampwidth() != 2:
            raise ValueError(f"expected 16-bit WAV, got {8 * w.getsampwidth()}-bit")
        frames = w.readframes(w.getnframes())
        rate = w.getframerate()
        channels = w.getnchannels()
    samples = np.frombuffer(frames, dtype="<i2").astype(np.float32) / 32768.0
    if channels > 1:
        samples = samples.reshape(-1, channels).mean(axis=1)
    return samples, rate


def rms(samples: np.ndarray) -> float:
    x = samples.astype(np.float32)
    if samples.dtype == np.int16:
        x = x / 32768.0
    return float(np.sqrt(np.mean(np.square(x)))) if len(x) else 0.0
