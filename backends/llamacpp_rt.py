"""llama.cpp as the ``llm`` backend's runtime: a GGUF file served by llama.cpp's own server engine.

Why ``xllamacpp``: it is a maintained binding (the llama.cpp engine of Xinference, released with
llama.cpp) with prebuilt CPU wheels on PyPI, and it exposes llama.cpp's C++ server loop, not only
the model: parallel slots with continuous batching (concurrent requests share each decode step's
weight reads), a per-slot prompt cache (the KV state of the fixed few-shot prefix is reused, only
the user's text is prefilled), logit biases and a thread-safe request API. ``llama-cpp-python``
has no Linux wheel (it compiles llama.cpp at install time) and serves one sequence at a time;
the side-by-side figures are in benchmarks/results/llamacpp-bindings.md.

The engine also listens on a random loopback port (llama.cpp's HTTP routes); hayaku uses it
only for ``/tokenize`` and ``/apply-template``, which the Python API does not expose.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, NoReturn

from backends.errors import BackendUnavailable, InvalidRequest
from backends.gguf_meta import check_whole

_CONTROL = 3  # llama.cpp token type of special tokens such as <|im_end|>


def _byte_decoder() -> dict[str, int]:
    """GPT-2 byte-level BPE spells every byte as a printable character; this maps them back."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars = {b: b for b in printable}
    for n, b in enumerate(b for b in range(256) if b not in chars):
        chars[b] = 256 + n
    return {chr(c): b for b, c in chars.items()}


def vocab_pieces(meta: dict[str, Any]) -> list[tuple[int, str]]:
    """(id, text) of every ordinary token of a byte-level BPE GGUF vocabulary.

    A piece that is only part of a UTF-8 character decodes to U+FFFD, so it is never taken for a
    Han character (it may begin a Japanese one too).
    """
    tokens: list[str] = meta.get("tokenizer.ggml.tokens") or []
    types: list[int] = meta.get("tokenizer.ggml.token_type") or [1] * len(tokens)
    if meta.get("tokenizer.ggml.model") != "gpt2":
        return [(i, t.replace("▁", " ")) for i, t in enumerate(tokens) if types[i] != _CONTROL]
    dec = _byte_decoder()
    out = []
    for i, tok in enumerate(tokens):
        if types[i] == _CONTROL:
            continue
        raw = bytes(dec.get(ch, 0x3F) for ch in tok)
        out.append((i, raw.decode("utf-8", errors="replace")))
    return out


def gpu_visible() -> bool:
    """True when the installed llama.cpp build sees a GPU (CPU wheels never do)."""
    import xllamacpp

    try:
        devices = xllamacpp.get_device_info()
    except Exception:
        return False
    return any("gpu" in str(d.get("type", "")).lower() for d in devices)


def greedy_params(path: Path, threads: int, parallel: int, context: int, device: str = "cpu") -> Any:
    """llama.cpp server parameters for ``path``: greedy, ``parallel`` slots of ``context`` tokens each, quiet."""
    import xllamacpp

    p = xllamacpp.CommonParams()
    p.model.path = str(path)
    p.n_parallel = parallel
    p.n_ctx = context * parallel  # llama.cpp splits the context evenly between slots
    p.cpuparams.n_threads = p.cpuparams_batch.n_threads = threads
    p.n_gpu_layers = 999 if device == "cuda" else 0
    p.warmup = False  # the replica warms up with a real request, which also fills a slot's cache
    p.verbosity = 0
    p.sampling.temp = 0.0
    p.sampling.top_k = 1
    return p


class Bans:
    """Token ids the engine must never choose, as llama.cpp logit-bias entries serialized once: Python's JSON
    encoder took ~0.3 ms per 1000 of them (~10 ms for the non-Japanese Han) in every request's path."""

    __slots__ = ("entries", "ids")

    def __init__(self, ids: Iterable[int]) -> None:
        self.ids = tuple(ids)
        self.entries = ",".join(f"[{i},false]" for i in self.ids)

    def __len__(self) -> int:
        return len(self.ids)


class LlamaCppEngine:
    """One GGUF model in llama.cpp's server engine; every method is safe to call from many threads."""

    def __init__(self, path: Path, threads: int, parallel: int, context: int, device: str = "cpu") -> None:
        self.path = path
        self.threads = threads or max(1, os.cpu_count() or 1)
        self.parallel = parallel
        self.context = context  # tokens per slot
        self.device = device
        self.meta: dict[str, Any] = {}
        self._server: Any = None

    def load(self) -> None:
        """Checks the file (whole, GGUF) and starts the engine; BackendUnavailable with the fix."""
        try:
            import xllamacpp
        except ImportError:
            raise BackendUnavailable("llm runtime llama.cpp needs xllamacpp: pip install 'hayaku[llm]'") from None
        if not self.path.is_file():
            raise BackendUnavailable(f"GGUF file {self.path} does not exist")
        self.meta = check_whole(self.path)
        p = greedy_params(self.path, self.threads, self.parallel, self.context, self.device)
        try:
            self._server = xllamacpp.Server(p)
        except Exception as exc:  # llama.cpp reports a bad file as a generic runtime error
            raise BackendUnavailable(f"llama.cpp could not load {self.path}: {exc}") from None
        self._address = self._server.listening_address

    def close(self) -> None:
        self._server = None

    def _http(self, route: str, body: dict[str, Any]) -> Any:
        req = urllib.request.Request(
            self._address + route, data=json.dumps(body).encode(), headers={"content-type": "application/json"}
        )
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return json.loads(resp.read())
        except (urllib.error.URLError, OSError) as exc:
            raise BackendUnavailable(f"llama.cpp engine did not answer {route}: {exc}") from None

    def tokenize(self, text: str) -> list[int]:
        """Token ids of ``text`` with the model's own tokenizer (special tokens as text)."""
        return list(self._http("/tokenize", {"content": text})["tokens"])

    def render(self, messages: list[dict[str, str]]) -> str:
        """The prompt the model's chat template makes of ``messages``, up to the assistant's turn."""
        return str(self._http("/apply-template", {"messages": messages})["prompt"])

    def chat(
        self, messages: list[dict[str, str]], max_tokens: int, bans: Bans | None = None, **extra: Any
    ) -> dict[str, Any]:
        """One greedy chat completion; blocks the calling thread while the engine batches it with others."""
        answers: list[str] = []
        self._server.handle_chat_completions(_body(messages, max_tokens, bans, extra), answers.append)
        result = json.loads(answers[0]) if answers else None
        if not isinstance(result, dict) or "choices" not in result:
            _raise(result.get("error") if isinstance(result, dict) else result)
        return result

    def chat_stream(
        self,
        messages: list[dict[str, str]],
        max_tokens: int,
        on_text: Callable[[str], bool | None],
        bans: Bans | None = None,
        **extra: Any,
    ) -> tuple[str, int | None]:
        """``chat`` decoded token by token: ``on_text`` gets each new piece of the answer as it exists
        (from the engine's thread) and stops the decoding by returning True. Returns (answer, tokens)."""
        body = _body(messages, max_tokens, bans, {**extra, "stream": True, "stream_options": {"include_usage": True}})
        parts: list[str] = []
        usage: dict[str, Any] = {}
        errors: list[Any] = []

        def chunk(text: str) -> bool:
            data = json.loads(text)
            if not isinstance(data, dict) or "error" in data:
                errors.append(data.get("error") if isinstance(data, dict) else data)
                return True
            usage.update(data.get("usage") or {})
            for choice in data.get("choices") or []:
                piece = (choice.get("delta") or {}).get("content")
                if piece:
                    parts.append(piece)
                    if on_text(piece):
                        return True
            return False

        self._server.handle_chat_completions(body, chunk)
        if errors:
            _raise(errors[0])
        return "".join(parts), usage.get("completion_tokens")


def _body(messages: list[dict[str, str]], max_tokens: int, bans: Bans | None, extra: dict[str, Any]) -> str:
    """The request as JSON text (the bans' entries spliced in as they are)."""
    body: dict[str, Any] = {
        "messages": messages,
        "max_tokens": max_tokens,
        "temperature": 0.0,
        "top_k": 1,
        "cache_prompt": True,
        **extra,
    }
    text = json.dumps(body)
    return f'{text[:-1]},"logit_bias":[{bans.entries}]}}' if bans else text


def _raise(error: Any) -> NoReturn:
    message = error.get("message") if isinstance(error, dict) else str(error)
    if isinstance(error, dict) and error.get("type") == "exceed_context_size_error":
        raise InvalidRequest(f"text too long for the model's context: {message}", status=413)
    raise BackendUnavailable(f"llama.cpp failed: {message}")
