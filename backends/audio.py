"""The one place where audio is encoded (WAV, raw PCM, FLAC) and decoded."""

from __future__ import annotations

import io
import wave

import numpy as np

from backends.errors import InvalidRequest
from backends.types import SpeechResult

FORMATS = ("wav", "pcm", "flac")
MEDIA_TYPES = {"wav": "audio/wav", "pcm": "audio/pcm", "flac": "audio/flac"}


def concat(results: list[SpeechResult], gap_s: float = 0.0) -> tuple[np.ndarray, int]:
    """Joins sentence audio into one int16 track, with optional silence between pieces."""
    if not results:
        return np.zeros(0, dtype=np.int16), 24000
    rate = results[0].sample_rate
    gap = np.zeros(int(rate * gap_s), dtype=np.int16)
    parts: list[np.ndarray] = []
    for i, r in enumerate(results):
        if r.sample_rate != rate:
            raise ValueError(f"cannot join {r.sample_rate} Hz audio to {rate} Hz audio")
        if i and len(gap):
            parts.append(gap)
        parts.append(r.int16())
    return np.concatenate(parts), rate


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
