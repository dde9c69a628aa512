"""Greedy decoding in numpy over any encoder-decoder runtime that returns next-token logits.

The ``onnx`` and ``coreml`` translators share this loop (and ``GreedyTranslator``, the
request -> batches -> ids -> text part around it); each brings a ``step`` callable
that maps the tokens so far to the logits of the next token (with a key/value cache, or by
re-running the decoder on the whole prefix). Its choices mirror ``transformers``' greedy
``generate()``: first index on ties, suppressed ids never chosen, finished rows padded.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Sequence
from typing import ClassVar

import numpy as np
from pydantic import Field, field_validator, model_validator

from backends.hf_seq2seq import LengthOptions, Seq2SeqTranslator, length_sorted_batches

#: (batch, tokens so far) int64 -> (batch, vocab) logits of the next token
DecoderStep = Callable[[np.ndarray], np.ndarray]


def start_tokens(batch: int, decoder_start_id: int, prefix: Sequence[int]) -> np.ndarray:
    """The decoder's first input for every row: the start id, then the forced prefix."""
    row = np.array([decoder_start_id, *prefix], dtype=np.int64)
    return np.tile(row, (batch, 1))


def greedy_decode(
    step: DecoderStep,
    prompt: np.ndarray,
    max_new_tokens: int,
    eos_id: int,
    pad_id: int,
    suppress_ids: Sequence[int] = (),
    min_new_tokens: int = 0,
) -> np.ndarray:
    """Extends ``prompt`` (batch, P) by up to ``max_new_tokens`` greedy tokens per row.

    Stops when every row has produced ``eos_id``; rows that finished early are padded with
    ``pad_id``. EOS is not chosen before ``min_new_tokens`` tokens (benchmarks set it to
    ``max_new_tokens`` to force the output length of random weights, as transformers'
    ``min_new_tokens`` does).
    """
    tokens = np.asarray(prompt, dtype=np.int64)
    banned = sorted({int(i) for i in suppress_ids})
    finished = np.zeros(tokens.shape[0], dtype=bool)
    for index in range(max_new_tokens):
        logits = np.array(step(tokens), dtype=np.float32)  # a copy: the runtime may own the buffer
        if banned:
            logits[:, banned] = -np.inf
        if index < min_new_tokens:
            logits[:, eos_id] = -np.inf
        nxt = np.argmax(logits, axis=-1).astype(np.int64)
        nxt = np.where(finished, pad_id, nxt)
        tokens = np.concatenate([tokens, nxt[:, None]], axis=1)
        finished |= nxt == eos_id
        if finished.all():
            break
    return tokens


class GreedyOptions(LengthOptions):
    """Decoding options of the runtimes that decode with ``greedy_decode``."""

    num_beams: int = Field(1, ge=1, description="Beam width; this runtime decodes greedily, so only 1.")

    @field_validator("num_beams")
    @classmethod
    def _greedy_only(cls, value: int) -> int:
        if value != 1:
            raise ValueError(
                f"num_beams={value}: this backend decodes greedily (num_beams 1); "
                "for beam search use the transformers or ctranslate2 backend"
            )
        return value

    @model_validator(mode="after")
    def _lengths(self) -> GreedyOptions:
        if self.min_new_tokens > self.max_new_tokens:
            raise ValueError(
                f"min_new_tokens {self.min_new_tokens!r} is larger than max_new_tokens {self.max_new_tokens!r}"
            )
        return self


class GreedyTranslator(Seq2SeqTranslator):
    """A seq2seq translator whose runtime gives next-token logits: batching, prefix, text.

    Subclasses implement ``_generate_batch``, usually as ``greedy_decode`` over their own step.
    """

    families: ClassVar[tuple[str, ...]] = ("nllb", "m2m100", "marian")
    options: GreedyOptions

    def batch_size(self) -> int:
        """Most texts decoded together."""
        return int(getattr(self.options, "batch_size", 1))

    def generate_ids(self, texts: list[str], source_lang: str, target_lang: str) -> list[list[int]]:
        """Generated ids per text: the target prefix (NLLB/M2M100 language token), then the
        translation, without decoder start or EOS; the same record as the transformers backend's."""
        self._ensure_loaded()
        tok = self.tokenizer
        assert tok is not None
        sources = [tok.source_ids(t, source_lang, target_lang) for t in texts]
        prefix = tok.target_prefix_ids(target_lang)
        results: list[list[int]] = [[] for _ in texts]
        for batch in length_sorted_batches([len(s) for s in sources], self.batch_size()):
            for index, out in zip(batch, self._generate_batch([sources[i] for i in batch], prefix), strict=True):
                results[index] = prefix + out
        return results

    def decode_greedy(self, step: DecoderStep, batch: int, prefix: list[int]) -> list[list[int]]:
        """Runs ``greedy_decode`` with this model's tokens and options; ids after the prefix."""
        tok = self.tokenizer
        assert tok is not None
        prompt = start_tokens(batch, tok.decoder_start_id, prefix)
        max_new = tok.max_new_tokens(self.options.max_new_tokens, len(prefix))
        tokens = greedy_decode(
            step,
            prompt,
            max_new,
            tok.eos_id,
            tok.pad_id,
            tok.suppressed_ids(),
            min_new_tokens=min(self.options.min_new_tokens, max_new),
        )
        return [tok.strip_output(row, prompt.shape[1]) for row in tokens.tolist()]

    @abstractmethod
    def _generate_batch(self, source_ids: list[list[int]], prefix: list[int]) -> list[list[int]]:
        """Output ids after the prefix, without EOS, for each source of one batch."""
