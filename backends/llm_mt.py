"""``llm``: an instruct decoder-only model prompted to translate.

The prompt is a system prompt plus the user's text, formatted by the tokenizer's own chat
template; decoding is greedy and stops at the end of the assistant's turn. Chat models add
labels, quotes, romanisations and notes around a translation, so the raw output goes
through ``clean_translation`` before it is returned.

Speed: the prompt's fixed prefix (system prompt and examples) is the same for every text of
a language pair, so CTranslate2 keeps the model state after it (``static_prompt``) and each
call only runs the user's text through the model; the output length is bounded by the input's.
Quality: a few example translations are shown before the text (free once the prefix is
cached), and for Japanese targets tokens of Han characters that Japanese does not use
(simplified-Chinese forms such as 过 or 场) or of other scripts (Cyrillic, Hangul) are never generated.

Three runtimes share the prompt and the cleaning: ``llama.cpp`` (the GGUF file itself, in
llama.cpp's server engine: parallel slots, a per-slot prompt cache; see ``backends.llamacpp_rt``),
``ctranslate2`` (``ctranslate2.Generator`` on a converted folder, cached) and ``transformers``
(``AutoModelForCausalLM``). The default model is the bundled offline Qwen2.5-Coder-1.5B-Instruct;
any local folder or hub id of a causal LM with a chat template works too (a ``.gguf`` file for
llama.cpp). The runtimes load and generate in ``backends.llm_llamacpp`` (llama.cpp) and ``backends.llm_hf``
(CTranslate2, transformers).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from backends import bundled, model_spec
from backends.base import Translator, missing_modules
from backends.errors import InvalidRequest
from backends.languages import language_name
from backends.llamacpp_rt import Bans
from backends.llm_hf import HFRuntimes, end_of_turn_ids
from backends.llm_llamacpp import LlamaCppRuntime, gguf_missing, gguf_path
from backends.llm_options import LLMOptions
from backends.llm_text import (
    clean_translation,
    non_japanese_han_token_ids,
    non_japanese_ids,
)
from backends.memory import Memory, memory_from_tsv
from backends.memory import bundled as bundled_memory

DEFAULT_MODEL = bundled.QWEN_NAME

#: chosen on the project corpus (benchmarks/quality.py, 40 sentences, CTranslate2 int8 with the
#: examples below): chrF 29.5, vs 27.1 for "Translate the user's {source} text into {target}.
#: Output only the translation." and 28.3 for a "natural, polite" variant; the examples show
#: the format, so the prompt need not describe it
DEFAULT_SYSTEM_PROMPT = "Translate {source} to {target}."

#: example translations shown before the text, as earlier turns of the chat; written for the
#: project and deliberately absent from the quality corpus (benchmarks/corpus)
FEW_SHOT: dict[tuple[str, str], tuple[tuple[str, str], ...]] = {
    ("en", "ja"): (
        ("Is there a convenience store near the hotel?", "ホテルの近くにコンビニはありますか？"),
        ("I'm allergic to eggs, so I can't eat this cake.", "卵アレルギーなので、このケーキは食べられません。"),
        ("Please send me the updated schedule by tomorrow.", "明日までに最新のスケジュールを送ってください。"),
        ("We arrived at the airport an hour early.", "私たちは一時間早く空港に着きました。"),
    ),
}

#: import names each runtime needs (the bundled model's transformers/CTranslate2 folders are
#: built from its GGUF file, which needs gguf and torch too: ``bundled.qwen_unavailable``)
RUNTIME_MODULES: dict[str, tuple[str, ...]] = {
    "llama.cpp": ("xllamacpp",),
    "ctranslate2": ("ctranslate2", "transformers"),
    "transformers": ("transformers", "torch"),
}


class LLMTranslator(HFRuntimes, LlamaCppRuntime, Translator):
    """Translation by prompting a chat model; greedy, stops at the end of its turn."""

    name = "llm"
    Options = LLMOptions
    extra = "llm"

    def __init__(self, model: str | None = None, options: Any = None, **kw: Any) -> None:
        super().__init__(model or DEFAULT_MODEL, options, **kw)
        self.concurrent = self.options.model_dump()["runtime"] == "llama.cpp"
        self._tokenizer: Any = None
        self._runtime: Any = None
        self._end_ids: list[int] = []
        self._device = "cpu"
        self._model_path: Path | None = None
        self._suppressed: list[int] | None = None
        # the suppressed ids as CTranslate2 token sequences, converted once (about 13k for Qwen)
        self._suppress_seqs: tuple[list[int], list[list[str]]] | None = None
        self._prefixes: dict[tuple[str, str], list[int]] = {}
        self._bias: Bans | None = None
        self._overhead: dict[tuple[str, str], int] = {}
        # tokenizers and torch generate are not safe to drive from several threads at once
        self._lock = threading.Lock()
        self._fill_lock = threading.Lock()
        self._dictionary: Any = None  # backends.dictionary.Dictionary, loaded with the model when hints > 0
        self._filled: set[tuple[str, str]] = set()  # language pairs whose prefix every llama.cpp slot holds

    @classmethod
    def unavailable_reason(cls, model: str | None = None, options: Any = None) -> str | None:
        """Why the chosen runtime (default llama.cpp) or the model cannot run here, or None."""
        try:
            parsed = LLMOptions.model_validate(options or {})
        except Exception:  # bad options are reported by the constructor, with the value
            parsed = LLMOptions.model_validate({})
        runtime = parsed.runtime
        missing = missing_modules(*RUNTIME_MODULES[runtime])
        if missing:
            return f"llm runtime {runtime} needs {', '.join(missing)}: pip install 'hayaku[llm]'"
        if parsed.hints:
            from backends import dictionary

            reason = dictionary.unavailable_reason()
            if reason:
                return f"option hints: {reason}"
        spec = model or DEFAULT_MODEL
        if bundled.is_bundled_qwen(spec):
            return bundled.qwen_unavailable(gguf_only=runtime == "llama.cpp")
        if runtime == "llama.cpp":
            return None if gguf_path(spec) else gguf_missing(spec)
        return model_spec.unavailable_reason(spec)

    # -- loading -------------------------------------------------------------------------

    def _load(self) -> None:
        opts = self.options
        assert isinstance(opts, LLMOptions)
        spec = self.model or DEFAULT_MODEL
        if opts.hints:
            from backends.dictionary import Dictionary

            self._dictionary = Dictionary.load()
        if opts.runtime == "llama.cpp":
            self._load_llamacpp(spec, opts)
            return
        if opts.runtime == "ctranslate2":
            self._load_ct2(spec, opts)
        else:
            self._load_transformers(spec, opts)
        self._end_ids = end_of_turn_ids(self._tokenizer, self._model_path)

    def close(self) -> None:
        """Drops the model and tokenizer; ``load()`` brings them back."""
        if hasattr(self._runtime, "close"):
            self._runtime.close()
        self._runtime = None
        self._tokenizer = None
        self._suppressed = None
        self._bias = None
        self._overhead = {}
        self._suppress_seqs = None
        self._prefixes = {}
        self._filled = set()
        super().close()

    def health(self) -> dict[str, Any]:
        h = super().health()
        h.update(runtime=self.options.model_dump()["runtime"], device=self._device)
        return h

    # -- translating ---------------------------------------------------------------------

    def system_prompt(self, source_lang: str, target_lang: str) -> str:
        """The system prompt for a language pair, with language names filled in."""
        opts = self.options
        assert isinstance(opts, LLMOptions)
        template = opts.system_prompt or DEFAULT_SYSTEM_PROMPT
        # str.replace, not str.format: a user's prompt may contain other braces
        return template.replace("{source}", language_name(source_lang)).replace("{target}", language_name(target_lang))

    def messages(self, text: str, source_lang: str, target_lang: str, retrieved: bool = True) -> list[dict[str, str]]:
        """The chat: system prompt, the pair's fixed example turns (``few_shot``), the examples retrieved for
        ``text`` (``retrieve``; after the fixed ones, so the cached prefix stays the same), then ``text``."""
        chosen = self.text_examples(text, source_lang, target_lang) if retrieved else []
        return self._chat(text, source_lang, target_lang, chosen)

    def _chat(
        self, text: str, source_lang: str, target_lang: str, chosen: list[tuple[str, str]]
    ) -> list[dict[str, str]]:
        opts = self.options
        assert isinstance(opts, LLMOptions)
        chat = [{"role": "system", "content": self.system_prompt(source_lang, target_lang)}]
        examples = [*FEW_SHOT.get((source_lang, target_lang), ())[: opts.few_shot], *chosen]
        for src, tgt in examples:
            chat += [{"role": "user", "content": src}, {"role": "assistant", "content": tgt}]
        return [*chat, {"role": "user", "content": text}]

    def text_examples(self, text: str, source_lang: str, target_lang: str) -> list[tuple[str, str]]:
        """The example pairs chosen for ``text``: memory pairs (``retrieve``), then noun hints (``hints``)."""
        opts = self.options
        assert isinstance(opts, LLMOptions)
        examples = self.memory(source_lang, target_lang).nearest(text, opts.retrieve) if opts.retrieve else []
        if opts.hints and self._dictionary is not None and (source_lang, target_lang) == ("en", "ja"):
            examples += self._dictionary.hints(text, opts.hints)
        return examples

    def memory(self, source_lang: str, target_lang: str) -> Memory:
        """The translation memory ``retrieve`` picks from; BackendUnavailable when the pair has none."""
        opts = self.options
        assert isinstance(opts, LLMOptions)
        if opts.memory:
            return memory_from_tsv(Path(opts.memory).expanduser(), source_lang, target_lang)
        found = bundled_memory(source_lang, target_lang)
        if found is None:
            raise InvalidRequest(
                f"no translation memory for {source_lang}->{target_lang} is bundled: give options.memory a TSV file"
                " or set options.retrieve to 0"
            )
        return found

    def prompt_ids(self, text: str, source_lang: str, target_lang: str) -> list[int]:
        """Token ids of the chat-formatted prompt, ending where the assistant's answer starts."""
        prompt = self._tokenizer.apply_chat_template(
            self.messages(text, source_lang, target_lang), add_generation_prompt=True, tokenize=False
        )
        ids = self._tokenizer(prompt, add_special_tokens=False)["input_ids"]
        return list(ids)

    def prefix_ids(self, source_lang: str, target_lang: str) -> list[int]:
        """Token ids every prompt of the pair starts with: all of it up to the user's text."""
        key = (source_lang, target_lang)
        if key not in self._prefixes:
            marker = "\x00HAYAKU-TEXT\x00"
            prompt = self._tokenizer.apply_chat_template(
                self.messages(marker, source_lang, target_lang, retrieved=False),
                add_generation_prompt=True,
                tokenize=False,
            )
            head = prompt[: prompt.index(marker)]
            self._prefixes[key] = list(self._tokenizer(head, add_special_tokens=False)["input_ids"])
        return self._prefixes[key]

    def suppressed_ids(self) -> list[int]:
        """Vocabulary ids of tokens with Han characters that Japanese does not use (built once)."""
        if self._suppressed is None:
            if self._tokenizer is not None:
                self._suppressed = non_japanese_han_token_ids(self._tokenizer)
            else:
                from backends.llamacpp_rt import vocab_pieces

                self._suppressed = non_japanese_ids(vocab_pieces(self._runtime.meta))
        return self._suppressed

    def length_bound(self, input_tokens: int) -> int:
        """Most tokens to generate for an input of ``input_tokens``: ``max_length_ratio`` x it + 16, capped."""
        opts = self.options
        assert isinstance(opts, LLMOptions)
        if not opts.max_length_ratio:
            return opts.max_new_tokens
        return min(opts.max_new_tokens, int(opts.max_length_ratio * input_tokens) + 16)

    def max_new_tokens(self, texts: list[str]) -> int:
        """The generation bound for a batch: the bound of its longest input."""
        return self.length_bound(max(len(self._tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts))

    def _translate(self, texts: list[str], source_lang: str, target_lang: str) -> list[tuple[str, int | None]]:
        opts = self.options
        assert isinstance(opts, LLMOptions)
        if opts.runtime == "llama.cpp":
            return self._translate_llamacpp(texts, source_lang, target_lang)
        with self._lock:
            prompts = [self.prompt_ids(t, source_lang, target_lang) for t in texts]
            limit = self.max_new_tokens(texts)
            suppress = self.suppressed_ids() if opts.japanese_kanji_only and target_lang == "ja" else []
            if opts.runtime == "ctranslate2":
                prefix = self.prefix_ids(source_lang, target_lang) if opts.prompt_cache else []
                generated = self._generate_ct2(prompts, limit, suppress, prefix)
            else:
                generated = self._generate_transformers(prompts, limit, suppress)
            out: list[tuple[str, int | None]] = []
            for text, ids in zip(texts, generated, strict=True):
                raw = self._tokenizer.decode(ids, skip_special_tokens=True)
                out.append((clean_translation(raw, target_lang, text), len(ids)))
            return out
