"""The ``llm`` translator's llama.cpp runtime: the GGUF file in llama.cpp's server engine
(``backends.llamacpp_rt``), one request per text, decoded together in the engine's parallel slots.

``LlamaCppRuntime`` is a part of ``backends.llm_mt.LLMTranslator`` (the prompt, options and cleaning live
there), as ``backends.llm_hf.HFRuntimes`` is for CTranslate2 and transformers: loading the file, keeping
every slot's cached prompt prefix filled, and each text's request (examples chosen for it, the token
limit, the banned Han tokens and the Latin-letter grammar).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from backends import bundled, store
from backends.errors import BackendUnavailable, InvalidRequest
from backends.llamacpp_rt import Bans
from backends.llm_options import LLMOptions
from backends.llm_text import clean_translation, latin_grammar

#: tokens the chat template adds around the user's text beyond the fixed prefix, with a margin for
#: BPE merging differently across the boundary
TEMPLATE_SLACK = 8


class LlamaCppRuntime:
    """Loading a GGUF file into llama.cpp and translating with it, for ``LLMTranslator``."""

    options: Any
    _runtime: Any
    _device: str
    _model_path: Path | None
    _lock: threading.Lock
    _fill_lock: threading.Lock
    _filled: set[tuple[str, str]]
    _overhead: dict[tuple[str, str], int]
    _bias: Bans | None

    # LLMTranslator's prompt and limits
    messages: Callable[..., list[dict[str, str]]]
    _chat: Callable[[str, str, str, list[tuple[str, str]]], list[dict[str, str]]]
    text_examples: Callable[[str, str, str], list[tuple[str, str]]]
    length_bound: Callable[[int], int]
    suppressed_ids: Callable[[], list[int]]

    def _load_llamacpp(self, spec: str, opts: LLMOptions) -> None:
        from backends.llamacpp_rt import LlamaCppEngine, gpu_visible

        if bundled.is_bundled_qwen(spec):
            path = bundled.qwen_gguf()
        else:
            found = gguf_path(spec)
            if found is None:
                raise BackendUnavailable(gguf_missing(spec))
            path = found
        device = opts.device
        if device == "auto":
            device = "cuda" if gpu_visible() else "cpu"
        elif device == "cuda" and not gpu_visible():
            raise BackendUnavailable(
                "device 'cuda' was asked for but llama.cpp sees no GPU (a CPU build of xllamacpp?)"
            )
        engine = LlamaCppEngine(path, opts.threads, opts.parallel, opts.context, device)
        engine.load()
        self._runtime = engine
        self._device = device
        self._model_path = path

    def _translate_llamacpp(self, texts: list[str], src: str, tgt: str) -> list[tuple[str, int | None]]:
        """Each text is its own llama.cpp request; the engine decodes them together in its slots."""
        opts = self.options
        assert isinstance(opts, LLMOptions)
        self._fill_slots(src, tgt)
        if len(texts) == 1:
            return [self._one_llamacpp(texts[0], src, tgt)]
        with ThreadPoolExecutor(min(len(texts), opts.parallel)) as pool:
            return list(pool.map(lambda t: self._one_llamacpp(t, src, tgt), texts))

    def _fill_slots(self, src: str, tgt: str) -> None:
        """Prefills the pair's fixed prompt prefix in every slot, once (the replica's warm-up pays for it).

        Each llama.cpp slot caches only the prompt it last ran, and neither the server's RAM cache
        nor a unified KV cache copies a prefix into another slot (measured: 4 concurrent requests
        on cold slots each prefilled all 160 prompt tokens, 18 s on 2 cores), so without this the
        first requests that run side by side would each pay for the whole prefix.
        """
        opts = self.options
        assert isinstance(opts, LLMOptions)
        if (src, tgt) in self._filled:  # every call after the first: no lock taken
            return
        with self._fill_lock:
            if (src, tgt) in self._filled or not opts.prompt_cache or opts.parallel == 1:
                return
            chat = self.messages(".", src, tgt, retrieved=False)
            with ThreadPoolExecutor(opts.parallel) as pool:
                list(pool.map(lambda _: self._runtime.chat(chat, 1), range(opts.parallel)))
            self._filled.add((src, tgt))

    def _prompt_overhead(self, src: str, tgt: str) -> int:
        """Prompt tokens besides the user's text: system prompt, examples and template markers."""
        key = (src, tgt)
        if key not in self._overhead:
            engine = self._runtime
            self._overhead[key] = len(engine.tokenize(engine.render(self.messages("", src, tgt, retrieved=False))))
        return self._overhead[key] + TEMPLATE_SLACK

    def _logit_bias(self) -> Bans:
        """The suppressed ids as llama.cpp bans, built once."""
        with self._lock:  # not by every concurrent first caller
            if self._bias is None:
                self._bias = Bans(self.suppressed_ids())
        return self._bias

    def _one_llamacpp(self, text: str, src: str, tgt: str) -> tuple[str, int | None]:
        messages, limit, bias, extra = self._llamacpp_request(text, src, tgt)
        result = self._runtime.chat(messages, limit, bias, **extra)
        raw = result["choices"][0]["message"]["content"] or ""
        return clean_translation(raw, tgt, text), result.get("usage", {}).get("completion_tokens")

    def streams_text(self) -> bool:
        opts = self.options
        assert isinstance(opts, LLMOptions)
        return opts.runtime == "llama.cpp"

    def _translate_stream(
        self, text: str, source_lang: str, target_lang: str, emit: Callable[[str], bool | None]
    ) -> tuple[str, int | None]:
        self._fill_slots(source_lang, target_lang)
        messages, limit, bias, extra = self._llamacpp_request(text, source_lang, target_lang)
        raw, tokens = self._runtime.chat_stream(messages, limit, emit, bias, **extra)
        return clean_translation(raw, target_lang, text), tokens

    def _llamacpp_request(
        self, text: str, src: str, tgt: str
    ) -> tuple[list[dict[str, str]], int, Bans | None, dict[str, Any]]:
        """(messages, token limit, banned tokens, extra body fields) of one text's llama.cpp request."""
        opts = self.options
        assert isinstance(opts, LLMOptions)
        engine = self._runtime
        n_in = len(engine.tokenize(text))
        limit = self.length_bound(n_in)
        chosen = self.text_examples(text, src, tgt)
        # the examples chosen for this text come on top of the fixed prefix: two turns each
        shown = sum(len(engine.tokenize(turn)) + TEMPLATE_SLACK for pair in chosen for turn in pair)
        needed = self._prompt_overhead(src, tgt) + shown + n_in + limit
        if needed > opts.context:
            raise InvalidRequest(
                f"text of {n_in} tokens needs {needed} tokens of context with the prompt and its translation;"
                f" the model's context is {opts.context} (options.context): split the text",
                status=413,
            )
        bias = self._logit_bias() if opts.japanese_kanji_only and tgt == "ja" else None
        extra: dict[str, Any] = {"cache_prompt": opts.prompt_cache}
        if opts.no_latin and tgt == "ja":
            extra["grammar"] = latin_grammar(text)
        if opts.repetition_penalty != 1.0:
            extra["repeat_penalty"] = opts.repetition_penalty
        return self._chat(text, src, tgt, chosen), limit, bias, extra


def gguf_path(spec: str) -> Path | None:
    """The GGUF file a model spec names: a .gguf file, or the one .gguf file in a folder; else None."""
    path = store.existing_path(spec)
    return find_gguf(path) if path is not None else None


def gguf_missing(spec: str) -> str:
    """Why a model spec cannot run on llama.cpp (no GGUF file found for it)."""
    return (
        f"model {spec!r} is not a .gguf file or a folder with one: runtime llama.cpp reads GGUF files"
        f" (use the bundled {bundled.QWEN_NAME!r}, a path to a .gguf file, or runtime ctranslate2)"
    )


def find_gguf(path: Path) -> Path | None:
    """``path`` if it is a .gguf file, the one .gguf file in it if it is a folder, else None."""
    try:
        if path.is_file():
            return path if path.suffix == ".gguf" else None
        found = sorted(path.glob("*.gguf")) if path.is_dir() else []
    except OSError:
        return None
    return found[0] if len(found) == 1 else None
