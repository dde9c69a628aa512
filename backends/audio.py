"""The one place where audio is encoded and decoded.

WAV and raw PCM are written with the standard library; MP3 (LAME), Ogg Opus and FLAC through
libsndfile (``soundfile``, a core dependency); AAC (ADTS) through FFmpeg's encoder in PyAV, an
optional extra (``hayaku[aac]``): without it an AAC request is a 422 that says how to get it.
An ``Encoder`` writes one track as it arrives, so a streamed response and a whole file come out
of the same encoder.
"""

from __future__ import annotations

import io
import struct
import wave
from typing import Any

import numpy as np

from backends.base import missing_modules
from backends.errors import InvalidRequest
from backends.types import SpeechResult, to_int16

#: every format, in the order OpenAI's speech API lists them
FORMATS = ("mp3", "opus", "aac", "flac", "wav", "pcm")
MEDIA_TYPES = {
    "mp3": "audio/mpeg",
    "opus": "audio/ogg",
    "aac": "audio/aac",
    "flac": "audio/flac",
    "wav": "audio/wav",
    "pcm": "audio/pcm",
}
#: formats that can be sent while the audio is still being made; FLAC's header holds the stream's length
STREAMABLE = ("mp3", "opus", "aac", "wav", "pcm")
#: sample rates each codec takes; other rates are resampled to the next one up
CODEC_RATES = {
    "mp3": (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000),
    "opus": (8000, 12000, 16000, 24000, 48000),
    "aac": (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 64000, 88200, 96000),
}
_SOUNDFILE = {"mp3": ("MP3", "MPEG_LAYER_III"), "opus": ("OGG", "OPUS"), "flac": ("FLAC", "PCM_16")}
#: LAME's scale (0 best .. 1 smallest): about 84 kbit/s for 16-24 kHz speech
MP3_COMPRESSION = 0.5
#: libsndfile's SFC_SET_OGG_PAGE_LATENCY_MS (sndfile.h), which soundfile does not wrap: without it an Ogg
#: page (and so a streamed chunk) waits for about a second of audio
_SFC_SET_OGG_PAGE_LATENCY_MS = 0x1302
OGG_PAGE_LATENCY_MS = 50.0


def check_format(fmt: str, stream: bool = False) -> str:
    """``fmt`` when this machine can encode it (as a stream if ``stream``), else a 422 that says what can."""
    if fmt not in FORMATS:
        raise InvalidRequest(f"unsupported audio format {fmt!r}; supported formats: {', '.join(FORMATS)}")
    if stream and fmt not in STREAMABLE:
        raise InvalidRequest(
            f"{fmt} cannot be streamed (its header holds the length); streamed formats: {', '.join(STREAMABLE)}"
        )
    if fmt == "aac" and missing_modules("av"):
        here = ", ".join(f for f in FORMATS if f != "aac")
        raise InvalidRequest(
            f"aac needs PyAV, which is not installed here: pip install 'hayaku[aac]'; formats here: {here}"
        )
    return fmt


def codec_rate(fmt: str, rate: int) -> int:
    """The rate ``fmt`` is written at for audio made at ``rate``: the same, or the next the codec takes."""
    rates = CODEC_RATES.get(fmt)
    if rates is None or rate in rates:
        return int(rate)
    return next((r for r in rates if r >= rate), rates[-1])


def resample(pcm: np.ndarray, rate: int, to_rate: int) -> np.ndarray:
    """int16 samples at ``rate`` as int16 at ``to_rate`` (linear interpolation: enough for speech)."""
    if rate == to_rate or not len(pcm):
        return pcm
    n = max(1, round(len(pcm) * to_rate / rate))
    x = np.linspace(0, len(pcm) - 1, n)
    return np.interp(x, np.arange(len(pcm)), pcm.astype(np.float32)).astype(np.int16)


def concat(results: list[SpeechResult], gap_s: float = 0.0, rate: int | None = None) -> tuple[np.ndarray, int]:
    """Joins sentence audio into one int16 track with silence between pieces, at ``rate`` (default: the
    first piece's); pieces at another rate (a fallback speaker served them) are resampled, not refused."""
    if not results:
        return np.zeros(0, dtype=np.int16), rate or 24000
    rate = rate or results[0].sample_rate
    return np.concatenate([joined(r, rate, i == 0, gap_s) for i, r in enumerate(results)]), rate


def joined(result: SpeechResult, rate: int, first: bool, gap_s: float) -> np.ndarray:
    """One sentence's samples as they join a track or stream at ``rate``: after the gap every sentence
    but the first has."""
    pcm = at_rate(result, rate)
    return pcm if first or gap_s <= 0 else np.concatenate([silence(rate, gap_s), pcm])


#: what is left of a trimmed edge's silence: the breath between a phrase and the rest of its sentence
KEEP_SILENCE_S = 0.05


def trim_silence(pcm: np.ndarray, rate: int, start: bool, end: bool) -> np.ndarray:
    """int16 ``pcm`` without the silence at its start and/or end, but ``KEEP_SILENCE_S`` of it; silence is
    below 2% of the peak. Audio that is all silence is left as it is."""
    if not (start or end) or not len(pcm):
        return pcm
    level = np.abs(pcm.astype(np.int32))
    loud = np.flatnonzero(level > max(int(level.max()) // 50, 1))
    if not len(loud):
        return pcm
    keep = int(rate * KEEP_SILENCE_S)
    first = max(0, loud[0] - keep) if start else 0
    last = min(len(pcm), loud[-1] + 1 + keep) if end else len(pcm)
    return pcm[first:last]


def silence(rate: int, seconds: float) -> np.ndarray:
    return np.zeros(int(rate * seconds), dtype=np.int16)


def at_rate(result: SpeechResult, rate: int) -> np.ndarray:
    """The result's samples as int16 at ``rate``."""
    return resample(result.int16(), result.sample_rate, rate)


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


class _Sink:
    """The file an encoder library writes to. Bytes already taken (sent to a client) stay as they were:
    a rewrite of them at close (MP3's tag frame, FLAC's length) only reaches a file taken whole."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.pos = 0
        self.taken = 0

    def write(self, b: Any) -> int:
        chunk = bytes(b)
        self.data[self.pos : self.pos + len(chunk)] = chunk
        self.pos += len(chunk)
        return len(chunk)

    def seek(self, offset: int, whence: int = 0) -> int:
        self.pos = offset if whence == 0 else self.pos + offset if whence == 1 else len(self.data) + offset
        return self.pos

    def tell(self) -> int:
        return self.pos

    def read(self, size: int = -1) -> bytes:
        return b""  # encoders here never read back

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        out = bytes(self.data[self.taken :])
        self.taken = len(self.data)
        return out


class Encoder:
    """Encodes one mono track as it arrives: ``write`` returns the bytes ready so far (a stream sends
    them at once; they may be empty while the codec fills a frame), ``close`` the rest.

    ``stream=False`` keeps everything until ``close``, so a whole file gets the header its encoder
    completes at the end (WAV sizes, MP3's tag frame, FLAC's length); a stream's header says
    "length unknown" instead, as live encoders write it.
    """

    def __init__(self, fmt: str, sample_rate: int, stream: bool = True) -> None:
        self.fmt = check_format(fmt, stream)
        self.in_rate = int(sample_rate)
        self.rate = codec_rate(fmt, self.in_rate)
        self.stream = stream
        self._sink = _Sink()
        self._pcm: list[np.ndarray] = []
        self._started = False
        self._file: Any = None
        self._av: tuple[Any, Any] | None = None
        if fmt in _SOUNDFILE:
            self._open_soundfile()
        elif fmt == "aac":
            self._open_av()

    def _open_soundfile(self) -> None:
        import soundfile as sf

        major, subtype = _SOUNDFILE[self.fmt]
        # Constant bit rate: a stream has no tag frame, and decoders that estimate an MP3's length
        # from its first frame (libsndfile's own) read a variable-rate stream short.
        extra = {"bitrate_mode": "CONSTANT", "compression_level": MP3_COMPRESSION} if self.fmt == "mp3" else {}
        self._file = sf.SoundFile(
            self._sink, "w", samplerate=self.rate, channels=1, format=major, subtype=subtype, **extra
        )
        if self.fmt == "opus" and self.stream:
            latency = sf._ffi.new("double*", OGG_PAGE_LATENCY_MS)
            # An older libsndfile refuses the command: pages then come every second or so, still valid.
            sf._snd.sf_command(self._file._file, _SFC_SET_OGG_PAGE_LATENCY_MS, latency, sf._ffi.sizeof("double"))

    def _open_av(self) -> None:
        import av

        # flush_packets: each encoded packet reaches the sink at once, not when FFmpeg's buffer fills
        container = av.open(self._sink, mode="w", format="adts", options={"flush_packets": "1"})
        stream = container.add_stream("aac", rate=self.rate, layout="mono")
        self._av = (container, stream)

    def write(self, samples: np.ndarray) -> bytes:
        """Adds samples (float32 or int16, at the rate given at construction); returns what is ready to send."""
        pcm = resample(to_int16(np.asarray(samples).reshape(-1)), self.in_rate, self.rate)
        if self.fmt in ("wav", "pcm"):
            return self._write_raw(pcm)
        if self._file is not None:
            self._file.write(pcm)
        elif self._av is not None:
            self._encode_av(pcm)
        return self._sink.take() if self.stream else b""

    def _write_raw(self, pcm: np.ndarray) -> bytes:
        if not self.stream:
            self._pcm.append(pcm)
            return b""
        head = wav_stream_header(self.rate) if self.fmt == "wav" and not self._started else b""
        self._started = True
        return head + pcm_bytes(pcm)

    def _encode_av(self, pcm: np.ndarray | None) -> None:
        import av

        assert self._av is not None
        container, stream = self._av
        frame = None
        if pcm is not None and len(pcm):
            frame = av.AudioFrame.from_ndarray(pcm[None, :], format="s16", layout="mono")
            frame.sample_rate = self.rate
        elif pcm is not None:
            return
        for packet in stream.encode(frame):
            container.mux(packet)

    def close(self) -> bytes:
        """Finishes the track; returns the bytes not yet returned (for ``stream=False``, the whole file)."""
        if self.fmt in ("wav", "pcm"):
            if self.stream:
                return b"" if self._started or self.fmt == "pcm" else wav_stream_header(self.rate)
            return _raw_file(self.fmt, np.concatenate(self._pcm or [silence(self.rate, 0)]), self.rate)
        if self._file is not None:
            self._file.close()
        elif self._av is not None:
            self._encode_av(None)
            self._av[0].close()
        return self._sink.take()


def _raw_file(fmt: str, pcm: np.ndarray, rate: int) -> bytes:
    if fmt == "pcm":
        return pcm_bytes(pcm)
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(int(rate))
        w.writeframes(pcm_bytes(pcm))
    return buf.getvalue()


def encode(samples: np.ndarray, sample_rate: int, fmt: str = "wav") -> bytes:
    """Encodes mono samples (float32 or int16) as one file of ``fmt`` (see FORMATS)."""
    enc = Encoder(fmt, sample_rate, stream=False)
    return enc.write(samples) + enc.close()


def encode_result(result: SpeechResult, fmt: str = "wav") -> bytes:
    return encode(result.audio, result.sample_rate, fmt)


def decode(data: bytes, fmt: str, pcm_rate: int = 24000) -> tuple[np.ndarray, int]:
    """Decodes a file of ``fmt`` to mono float32 samples and their rate (raw ``pcm`` is at ``pcm_rate``)."""
    check_format(fmt)
    if fmt == "pcm":
        return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0, pcm_rate
    if fmt == "aac":
        import av

        with av.open(io.BytesIO(data), mode="r") as container:
            frames = [f.to_ndarray() for f in container.decode(audio=0)]
            rate = container.streams.audio[0].sample_rate
        return (np.concatenate(frames, axis=1).mean(axis=0) if frames else np.zeros(0)).astype(np.float32), rate
    import soundfile as sf

    samples, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    return samples.mean(axis=1), int(rate)


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
