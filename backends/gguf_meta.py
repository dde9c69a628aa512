"""Reads a GGUF file's header: its key/value metadata, and whether the file is whole.

The ``gguf`` package's reader parses every tensor descriptor and array into numpy views, which
took 50 s for the bundled Qwen's 152k-token vocabulary on a 2-core machine; what hayaku needs
(the vocabulary, the chat template, a truncation check) is a plain sequential read of the header
and takes well under a second.

Format (little-endian): ``GGUF``, version u32, tensor count u64, kv count u64, then each kv as
(string key, u32 type, value), then each tensor as (string name, u32 n_dims, n_dims x u64 dims,
u32 ggml type, u64 offset), then padding to ``general.alignment`` and the tensor data.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any, BinaryIO

from backends.errors import BackendUnavailable

MAGIC = b"GGUF"
_SCALARS: dict[int, str] = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_STRING, _ARRAY = 8, 9
DEFAULT_ALIGNMENT = 32

#: ggml tensor types: (elements per block, bytes per block); the ones quantised GGUF files use
_BLOCKS: dict[int, tuple[int, int]] = {
    0: (1, 4),  # F32
    1: (1, 2),  # F16
    2: (32, 18),  # Q4_0
    3: (32, 20),  # Q4_1
    6: (32, 22),  # Q5_0
    7: (32, 24),  # Q5_1
    8: (32, 34),  # Q8_0
    10: (256, 84),  # Q2_K
    11: (256, 110),  # Q3_K
    12: (256, 144),  # Q4_K
    13: (256, 176),  # Q5_K
    14: (256, 210),  # Q6_K
    15: (256, 292),  # Q8_K
    30: (1, 2),  # BF16
}


class _Reader:
    def __init__(self, f: BinaryIO) -> None:
        self.f = f

    def take(self, fmt: str) -> Any:
        size = struct.calcsize("<" + fmt)
        data = self.f.read(size)
        if len(data) != size:
            raise EOFError
        return struct.unpack("<" + fmt, data)[0]

    def string(self) -> str:
        n = self.take("Q")
        data = self.f.read(n)
        if len(data) != n:
            raise EOFError
        return data.decode("utf-8", errors="replace")

    def value(self, kind: int) -> Any:
        if kind == _STRING:
            return self.string()
        if kind == _ARRAY:
            item, count = self.take("I"), self.take("Q")
            return [self.value(item) for _ in range(count)]
        if kind not in _SCALARS:
            raise ValueError(f"unknown GGUF value type {kind}")
        return self.take(_SCALARS[kind])


def read_header(path: Path) -> tuple[dict[str, Any], dict[str, int], int]:
    """The metadata of the GGUF file at ``path``, its tensors' sizes in bytes, and the size the file
    must have at least.

    Raises BackendUnavailable naming the file for anything that is not a whole GGUF file.
    """
    try:
        with open(path, "rb") as f:
            if f.read(4) != MAGIC:
                raise BackendUnavailable(f"{path} is not a GGUF file (it does not start with 'GGUF')")
            r = _Reader(f)
            version, n_tensors, n_kv = r.take("I"), r.take("Q"), r.take("Q")
            if version < 2:
                raise BackendUnavailable(f"{path} is GGUF version {version}; llama.cpp reads version 2 and later")
            meta: dict[str, Any] = {}
            for _ in range(n_kv):
                key = r.string()
                meta[key] = r.value(r.take("I"))
            end = 0
            sizes: dict[str, int] = {}
            for _ in range(n_tensors):
                name = r.string()
                dims = [r.take("Q") for _ in range(r.take("I"))]
                kind, offset = r.take("I"), r.take("Q")
                per_block, block_bytes = _BLOCKS.get(kind, (1, 0))
                count = 1
                for d in dims:
                    count *= d
                sizes[name] = count // per_block * block_bytes
                end = max(end, offset + sizes[name])
            align = int(meta.get("general.alignment", DEFAULT_ALIGNMENT))
            data_start = -(-f.tell() // align) * align
    except EOFError:
        raise BackendUnavailable(f"{path} ends inside its GGUF header: a truncated or partial file") from None
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise BackendUnavailable(f"cannot read GGUF file {path}: {exc}") from None
    return meta, sizes, data_start + end


def check_whole(path: Path) -> dict[str, Any]:
    """The metadata of ``path``, after checking that the file holds all its tensor data."""
    meta, _, needed = read_header(path)
    size = path.stat().st_size
    if size < needed:
        raise BackendUnavailable(
            f"{path} is truncated: {size} bytes where its tensors need {needed}; copy or join the file again"
        )
    return meta


def decode_step_bytes(path: Path) -> int:
    """Bytes of weights a decode step reads: every tensor but the token embedding (one row of it is read)."""
    _, sizes, _ = read_header(path)
    return sum(v for k, v in sizes.items() if k != "token_embd.weight")
