"""What every runtime of an HF seq2seq MT model shares, independent of the runtime.

How a request becomes source token ids (NLLB source code, T5 prefix) and a target prefix
(the NLLB/M2M100 target-language token that must be the first generated token), and how
generated ids become text. The ``transformers``, ``ctranslate2``, ``onnx`` and ``coreml``
backends all build on this, so the four of them tokenize identically and their outputs
can be compared token for token.

Which family a folder is and which languages it translates is read by ``backends.seq2seq_model``
(JSON only); the tokenizer (``Seq2SeqTokenizer``)
imports transformers when it is built, inside a backend's ``load()``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, ClassVar

from pydantic import Field, field_validator

from backends import model_spec, store
from backends.base import DEFAULT_MAX_CHARS, BackendOptions, Translator
from backends.errors import BackendUnavailable, InvalidRequest
from backends.languages import LANGUAGES, language_name, normalize_lang
from backends.seq2seq_model import FAMILIES, NO_MODEL_MESSAGE, ModelInfo, inspect_model


class Seq2SeqTokenizer:
    """The HF tokenizer of a model folder, with the family's language conventions.

    Builds source ids (NLLB/M2M100 source code, T5 task prefix), the target prefix (the
    target-language token NLLB/M2M100 must generate first; empty for Marian/T5), and
    decodes generated ids. Not thread-safe: NLLB tokenizers keep the source language as state.
    """

    def __init__(self, info: ModelInfo) -> None:
        try:
            from transformers import AutoTokenizer
        except ImportError as exc:
            raise BackendUnavailable(
                f"transformers is needed for the tokenizer: pip install 'hayaku[torch]' ({exc})"
            ) from None
        self.info = info
        try:
            self.tok: Any = AutoTokenizer.from_pretrained(str(info.path))
        except Exception as exc:
            raise BackendUnavailable(
                f"cannot load the tokenizer of model {info.spec!r} from {info.path}: {exc}"
            ) from exc
        cfg = info.config
        self.eos_id = int(self._first(cfg.get("eos_token_id"), self.tok.eos_token_id))
        self.pad_id = int(self._first(cfg.get("pad_token_id"), self.tok.pad_token_id, self.eos_id))
        self.decoder_start_id = int(self._first(cfg.get("decoder_start_token_id"), self.pad_id))
        self._src: str | None = None
        self._allowed: dict[tuple[str, str, int], list[int] | None] = {}

    @staticmethod
    def _first(*values: Any) -> Any:
        for v in values:
            if isinstance(v, list) and v:
                v = v[0]
            if v is not None:
                return v
        raise BackendUnavailable("model config has no eos/pad token ids")

    def lang_token(self, iso: str) -> str | None:
        """The token that names ``iso`` for this family ('jpn_Jpan', '__ja__'), or None."""
        if self.info.family == "nllb":
            return LANGUAGES[iso][1]
        if self.info.family == "m2m100":
            return f"__{iso}__"
        return None

    def lang_token_id(self, iso: str) -> int | None:
        token = self.lang_token(iso)
        if token is None:
            return None
        tid = self.tok.convert_tokens_to_ids(token)
        if tid is None or tid == self.tok.unk_token_id:
            raise InvalidRequest(
                f"model {self.info.spec!r} has no language token {token!r} for {iso!r}; "
                f"supported: {', '.join(sorted(self.info.languages))}"
            )
        return int(tid)

    def languages_in_vocab(self) -> set[str]:
        """ISO codes whose language token really is in the loaded vocabulary."""
        if self.info.family not in ("nllb", "m2m100"):
            return set(self.info.languages)
        vocab = self.tok.get_vocab()
        return {iso for iso in self.info.languages if self.lang_token(iso) in vocab}

    def source_ids(self, text: str, src: str, tgt: str) -> list[int]:
        """Encoder input ids with the family's special tokens; too long -> InvalidRequest."""
        fam = self.info.family
        if fam in ("nllb", "m2m100"):
            code = self.lang_token(src) if fam == "nllb" else src
            if self._src != code:
                self.tok.src_lang = code
                self._src = code
        elif fam == "t5":
            text = f"translate {language_name(src)} to {language_name(tgt)}: {text}"
        ids = list(self.tok(text, add_special_tokens=True)["input_ids"])
        if len(ids) > self.info.max_source_tokens:
            raise InvalidRequest(
                f"text is {len(ids)} tokens; model {self.info.spec!r} reads at most {self.info.max_source_tokens}. "
                "Split it into sentences (backends.text.split_sentences) or send shorter texts",
                status=413,
            )
        return ids

    def target_prefix_ids(self, tgt: str) -> list[int]:
        """Tokens the decoder must produce first: [target language token] for NLLB/M2M100."""
        tid = self.lang_token_id(tgt)
        return [] if tid is None else [tid]

    def suppressed_ids(self) -> list[int]:
        """Ids never to generate. <pad> would shift M2M100's position ids (HF skips pads
        when numbering positions, CTranslate2 does not), and Marian drops it altogether."""
        return [self.pad_id]

    def output_ids(self, spec: str, target_lang: str, vocab_size: int) -> list[int] | None:
        """Ids the decoder may choose for ``target_lang`` under the ``output_vocab`` option
        (``backends.vocab``); None for the full vocabulary. Built once per language.

        ``vocab_size`` is the model's output size, which may exceed the tokenizer's: ids the
        tokenizer cannot name are left out of ``target``.
        """
        from backends.vocab import TARGET, allowed_ids

        key = (spec, target_lang, vocab_size)
        if key not in self._allowed:
            named = list(self.tok.convert_ids_to_tokens(list(range(min(vocab_size, len(self.tok))))))
            unk = self.tok.unk_token_id
            required = [self.eos_id, *self.target_prefix_ids(target_lang), *([unk] if unk is not None else [])]
            excluded = self.suppressed_ids()
            if spec == TARGET:  # other languages' codes (NLLB's fra_Latn ...) are special tokens
                excluded = [*excluded, *(getattr(self.tok, "all_special_ids", None) or [])]
            self._allowed[key] = allowed_ids(spec, target_lang, vocab_size, enumerate(named), required, excluded)
        return self._allowed[key]

    def max_new_tokens(self, wanted: int, prefix_len: int) -> int:
        """``wanted`` capped so prefix + output + EOS fit the decoder's positions."""
        return max(1, min(wanted, self.info.max_target_tokens - prefix_len - 2))

    def strip_output(self, ids: Sequence[int], prefix_len: int) -> list[int]:
        """Generated ids after the decoder start/prefix, cut at the first EOS or pad."""
        out = []
        for i in list(ids)[prefix_len:]:
            if i in (self.eos_id, self.pad_id):
                break
            out.append(int(i))
        return out

    def decode(self, ids: Sequence[int]) -> str:
        """Text of generated ids (special tokens and language codes removed)."""
        return str(self.tok.decode(list(ids), skip_special_tokens=True)).strip()

    def ids_to_tokens(self, ids: Sequence[int]) -> list[str]:
        return [str(t) for t in self.tok.convert_ids_to_tokens(list(ids))]

    def tokens_to_ids(self, tokens: Sequence[str]) -> list[int]:
        return [int(i) for i in self.tok.convert_tokens_to_ids(list(tokens))]


class Seq2SeqOptions(BackendOptions):
    """Options every seq2seq runtime shares."""

    languages: tuple[str, str] | None = Field(
        None,
        description="Source and target ISO codes of a Marian model whose folder does not name them "
        "(e.g. [en, ja]); for NLLB/M2M100 a subset of the model's languages to allow.",
    )

    @field_validator("languages")
    @classmethod
    def _known_codes(cls, value: tuple[str, str] | None) -> tuple[str, str] | None:
        if value is None:
            return None
        try:
            return (normalize_lang(value[0]), normalize_lang(value[1]))
        except InvalidRequest as exc:
            raise ValueError(str(exc)) from None


class LengthOptions(Seq2SeqOptions):
    """Output-length options of the runtimes that count new tokens (transformers, onnx, coreml)."""

    max_new_tokens: int = Field(256, ge=1, le=4096, description="Most tokens generated per text.")
    min_new_tokens: int = Field(
        0,
        ge=0,
        le=4096,
        description="Fewest tokens generated per text; benchmarks set it equal to max_new_tokens "
        "to force a fixed output length.",
    )


class Seq2SeqTranslator(Translator):
    """Base of the runtimes of HF seq2seq MT models: model resolution, languages, pairs.

    Subclasses set ``name``/``Options`` and implement ``_load`` and ``generate_ids``; the model
    folder's family and languages are known before loading (JSON only), so a bad language
    pair is refused without loading any weights.
    """

    families: ClassVar[tuple[str, ...]] = FAMILIES

    def __init__(self, model: str | None = None, options: Any = None, max_chars: int = DEFAULT_MAX_CHARS) -> None:
        super().__init__(model, options, max_chars=max_chars)
        self._ref: store.ModelRef | None = None
        self._info: ModelInfo | None = None
        self.tokenizer: Seq2SeqTokenizer | None = None

    @classmethod
    def model_unavailable_reason(cls, model: str | None) -> str | None:
        return model_spec.unavailable_reason(model)

    def model_ref(self) -> store.ModelRef:
        """The resolved model (bundled, local or hub); a hub id fails fast when offline."""
        if self._ref is None:
            if self.model is None:
                raise InvalidRequest(NO_MODEL_MESSAGE.format(name=self.name))
            self._ref = model_spec.resolve(self.model)
        return self._ref

    @property
    def info(self) -> ModelInfo:
        """Family, languages and limits of the model folder (JSON only, cached)."""
        if self._info is None:
            opts_langs = getattr(self.options, "languages", None)
            info = inspect_model(self.model_ref(), opts_langs)
            if info.family not in self.families:
                raise InvalidRequest(
                    f"{self.name} does not run {info.family} models; it runs: {', '.join(self.families)}"
                )
            self._info = info
        return self._info

    def load_tokenizer(self) -> Seq2SeqTokenizer:
        """Loads the tokenizer and narrows the languages to those really in its vocabulary."""
        tok = Seq2SeqTokenizer(self.info)
        real = tok.languages_in_vocab()
        if real != set(self.info.languages):
            self._info = dataclasses.replace(self.info, languages=frozenset(real))
            tok.info = self._info
        self.tokenizer = tok
        return tok

    def supported_languages(self) -> set[str] | None:
        return set(self.info.languages)

    def validate_request(self, texts: Sequence[str], source_lang: str, target_lang: str) -> tuple[str, str]:
        src, tgt = super().validate_request(texts, source_lang, target_lang)
        self.info.check_pair(src, tgt)
        return src, tgt

    def generate_ids(self, texts: list[str], source_lang: str, target_lang: str) -> list[list[int]]:
        """Generated ids per text: the target prefix (NLLB/M2M100 language token), then the
        translation, without decoder start or EOS. The same record for every runtime, so
        agreement tests compare runtimes token for token."""
        raise NotImplementedError

    def _translate(self, texts: list[str], source_lang: str, target_lang: str) -> list[tuple[str, int | None]]:
        tok = self.tokenizer
        assert tok is not None
        n_prefix = len(tok.target_prefix_ids(target_lang))
        out: list[tuple[str, int | None]] = []
        for ids in self.generate_ids(texts, source_lang, target_lang):
            new = ids[n_prefix:]
            out.append((tok.decode(new), len(new)))
        return out

    def health(self) -> dict[str, Any]:
        report = super().health()
        if self._info is not None:
            report["family"] = self._info.family
        return report

    def close(self) -> None:
        self.tokenizer = None
        super().close()


def length_sorted_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar length, so padding wastes little compute."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    return [order[i : i + batch_size] for i in range(0, len(order), max(1, batch_size))]
