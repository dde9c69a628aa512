"""``transformers``: HF seq2seq MT models (NLLB/M2M100, Marian, T5) run by torch.

Precision and device are options of this one backend, not separate backends: float32,
bfloat16, float16; cpu, cuda, mps; int8 dynamic quantization of the Linear layers (CPU);
torch.compile. A single input is encoded without padding; several inputs are batched by
similar length so padding wastes little, and come back in input order.

Speed levers besides precision: ``output_vocab`` scores only the target language's tokens
(a sliced output projection whose scores are scattered back into the full vocabulary, so
every id, processor and the decoder's own inputs stay in the model's id space);
``loop: greedy`` decodes with hayaku's own greedy loop (``backends.decoding``) over the
model's forward and its key/value cache instead of ``generate()``; ``threads``.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import inspect
from collections.abc import Iterator
from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from backends.errors import BackendUnavailable
from backends.hf_seq2seq import LengthOptions, Seq2SeqTranslator, length_sorted_batches
from backends.vocab import FULL, OutputVocabOptions


class TransformersOptions(LengthOptions, OutputVocabOptions):
    device: Literal["auto", "cpu", "cuda", "mps"] = Field(
        "auto", description="Where the model runs; auto picks cuda, then mps, then cpu."
    )
    dtype: Literal["float32", "bfloat16", "float16"] = Field(
        "float32", description="Weight and activation precision; float16 needs cuda or mps."
    )
    num_beams: int = Field(1, ge=1, le=16, description="Beam width; 1 is greedy decoding (fastest).")
    quantize: Literal["none", "int8"] = Field(
        "none", description="int8: torch dynamic quantization of Linear layers (CPU, float32 only)."
    )
    compile: bool = Field(False, description="Wrap the model's forward in torch.compile (slow first call).")
    compile_backend: Literal["inductor", "aot_eager", "eager"] = Field(
        "inductor", description="torch.compile backend; inductor needs a C compiler on CPU."
    )
    batch_size: int = Field(16, ge=1, le=512, description="Most texts per generate() call.")
    loop: Literal["generate", "greedy"] = Field(
        "generate",
        description="generate: transformers' generate(); greedy: hayaku's greedy loop over the model's forward "
        "and key/value cache, with less work per token (num_beams 1 only). Both pick the same tokens.",
    )
    threads: int = Field(
        0,
        ge=0,
        le=256,
        description="torch CPU threads while this backend translates (torch's setting is process-wide, so it is "
        "set for each call and restored after); 0 keeps torch's (in a Ray replica: OMP_NUM_THREADS, often 1).",
    )

    @model_validator(mode="after")
    def _consistent(self) -> TransformersOptions:
        if self.loop == "greedy" and self.num_beams != 1:
            raise ValueError(f"loop 'greedy' decodes with num_beams 1, not {self.num_beams}; use loop 'generate'")
        if self.min_new_tokens > self.max_new_tokens:
            raise ValueError(
                f"min_new_tokens {self.min_new_tokens!r} is larger than max_new_tokens {self.max_new_tokens!r}"
            )
        if self.dtype == "float16" and self.device == "cpu":
            raise ValueError("dtype 'float16' does not run on device 'cpu'; use bfloat16 or float32 there")
        if self.quantize == "int8":
            if self.device in ("cuda", "mps"):
                raise ValueError(
                    f"quantize 'int8' is torch dynamic quantization, which runs on cpu only, not {self.device!r}; "
                    "use dtype bfloat16/float16 on GPUs, or the ctranslate2 backend with compute_type int8_float16"
                )
            if self.dtype != "float32":
                raise ValueError(f"quantize 'int8' needs dtype 'float32' (got {self.dtype!r})")
        return self


class TransformersTranslator(Seq2SeqTranslator):
    """HF seq2seq MT model on torch; see ``TransformersOptions`` for the knobs."""

    name = "transformers"
    Options = TransformersOptions
    requires = ("torch", "transformers", "sentencepiece")
    extra = "torch"
    #: how tests/unit/test_translator_contract.py exercises this backend (fixture, options).
    #: float32 only: the tiny models' init_std=1.0 amplifies rounding, so in bfloat16 or int8
    #: (whose dynamic activation scale spans the whole batch) a padded batch can pick other
    #: tokens than one text alone. test_translator_agreement.py covers those precisions.
    contract_cases: ClassVar[tuple[tuple[str | None, dict[str, Any]], ...]] = (
        ("tiny_marian", {"max_new_tokens": 12}),
        ("tiny_nllb", {"max_new_tokens": 12}),
    )

    model_obj: Any = None
    device: str = "cpu"
    #: the float output projection, kept to slice per target language (output_vocab)
    _head_weight: Any = None
    _full_head: Any = None
    _heads: dict[str, Any] | None = None

    def _opts(self) -> TransformersOptions:
        assert isinstance(self.options, TransformersOptions)
        return self.options

    def _pick_device(self, torch: Any) -> str:
        want = self._opts().device
        cuda = torch.cuda.is_available()
        mps = bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()
        if want == "auto":
            return "cuda" if cuda else "mps" if mps else "cpu"
        if want == "cuda" and not cuda:
            built = torch.version.cuda
            why = (
                f"torch {torch.__version__} has CUDA {built} but sees no GPU"
                if built
                else f"torch {torch.__version__} is a CPU-only build"
            )
            raise BackendUnavailable(
                f"device 'cuda' requested but CUDA is not available: {why}; use device: cpu or auto"
            )
        if want == "mps" and not mps:
            raise BackendUnavailable(
                "device 'mps' requested but Metal (MPS) is not available: it needs macOS on Apple silicon; "
                "use device: cpu or auto"
            )
        return want

    def _load(self) -> None:
        import torch
        from transformers import AutoModelForSeq2SeqLM

        opts = self._opts()
        info = self.info
        tok = self.load_tokenizer()
        device = self._pick_device(torch)
        if device == "cpu" and opts.dtype == "float16":
            raise BackendUnavailable(
                "dtype 'float16' needs cuda or mps, and device 'auto' found neither here; use bfloat16 or float32"
            )
        if opts.quantize == "int8" and device != "cpu":
            raise BackendUnavailable(
                f"quantize 'int8' runs on cpu only and device 'auto' chose {device!r}; set device: cpu"
            )
        try:
            model = AutoModelForSeq2SeqLM.from_pretrained(str(info.path), dtype=getattr(torch, opts.dtype))
        except Exception as exc:
            raise BackendUnavailable(f"cannot load model {info.spec!r} from {info.path}: {exc}") from exc
        model = model.to(device).eval()
        self._heads = {}
        head_weight = model.get_output_embeddings().weight.detach()
        if opts.quantize == "int8":
            # quantize_dynamic is deprecated in favour of torchao, yet it is the one int8 path
            # that ships with torch itself and needs no extra package.
            model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
            if getattr(model.config, "tie_word_embeddings", False):
                # the (float) input embeddings of the quantized copy hold the same rows
                head_weight = model.get_input_embeddings().weight.detach()
        if opts.output_vocab != FULL:
            # sliced per target language on first use, from the float weights (an untied
            # quantized model keeps its float projection for that)
            self._head_weight = head_weight
        if opts.compile:
            # Decoder steps call forward(); the encoder runs once per request and stays eager.
            model.forward = torch.compile(model.forward, backend=opts.compile_backend, dynamic=True)
        gen = copy.deepcopy(model.generation_config)
        gen.do_sample = False
        gen.num_beams = opts.num_beams
        gen.num_return_sequences = 1
        gen.max_new_tokens = None
        gen.min_new_tokens = None
        # The target language goes in as decoder prefix (the same tokens the other runtimes
        # get), and hitting max_new_tokens should not force an EOS other runtimes lack.
        gen.forced_bos_token_id = None
        gen.forced_eos_token_id = None
        gen.suppress_tokens = tok.suppressed_ids()
        gen.pad_token_id = tok.pad_id
        gen.eos_token_id = tok.eos_id
        gen.decoder_start_token_id = tok.decoder_start_id
        for sampling_only in ("temperature", "top_p", "top_k"):
            if hasattr(gen, sampling_only):
                setattr(gen, sampling_only, None)
        # generate() fills every unset (None) field from model.generation_config, so the
        # cleaned config must be the model's own for the None values above to stick.
        model.generation_config = gen
        self._gen = gen
        self._torch = torch
        self.model_obj = model
        self._full_head = model.get_output_embeddings()
        self.device = device

    def _use_head(self, target_lang: str) -> None:
        """Puts the output projection for ``target_lang`` in place: full, or sliced (``output_vocab``)."""
        opts = self._opts()
        model, tok = self.model_obj, self.tokenizer
        assert tok is not None and self._heads is not None
        head = self._full_head
        if opts.output_vocab != FULL:
            if target_lang not in self._heads:
                ids = tok.output_ids(opts.output_vocab, target_lang, int(self._head_weight.shape[0]))
                self._heads[target_lang] = self._full_head if ids is None else self._sliced_head(ids)
            head = self._heads[target_lang]
        if model.get_output_embeddings() is not head:
            model.set_output_embeddings(head)

    def _sliced_head(self, ids: list[int]) -> Any:
        torch = self._torch
        head = _restricted_head_class(torch)(self._head_weight, ids)
        if self._opts().quantize == "int8":
            head = torch.ao.quantization.quantize_dynamic(head, {torch.nn.Linear}, dtype=torch.qint8)
        return head.to(self.device).eval()

    @contextlib.contextmanager
    def _threads(self) -> Iterator[None]:
        n = self._opts().threads
        torch = self._torch
        before = torch.get_num_threads()
        if n and n != before:
            torch.set_num_threads(n)
        try:
            yield
        finally:
            if n and n != before:
                torch.set_num_threads(before)

    def generate_ids(self, texts: list[str], source_lang: str, target_lang: str) -> list[list[int]]:
        """Generated ids per text: the target prefix (NLLB/M2M100 language token), then the
        translation, without decoder start or EOS. For agreement tests across runtimes."""
        self._ensure_loaded()
        tok = self.tokenizer
        assert tok is not None
        opts = self._opts()
        torch = self._torch
        prefix = tok.target_prefix_ids(target_lang)
        start = [tok.decoder_start_id, *prefix]
        gen = copy.copy(self._gen)
        max_new = tok.max_new_tokens(opts.max_new_tokens, len(prefix))
        # Lengths as totals over the decoder input (start + prefix), which is what
        # max_length means for encoder-decoders; max_new_tokens would warn against it.
        gen.max_length = len(start) + max_new
        gen.min_length = len(start) + min(opts.min_new_tokens, max_new)
        sources = [tok.source_ids(t, source_lang, target_lang) for t in texts]
        results: list[list[int]] = [[] for _ in texts]
        self._use_head(target_lang)
        for batch in length_sorted_batches([len(s) for s in sources], opts.batch_size):
            longest = max(len(sources[i]) for i in batch)
            ids = [sources[i] + [tok.pad_id] * (longest - len(sources[i])) for i in batch]
            mask = [[1] * len(sources[i]) + [0] * (longest - len(sources[i])) for i in batch]
            input_ids = torch.tensor(ids, device=self.device)
            attention_mask = torch.tensor(mask, device=self.device)
            with torch.inference_mode(), self._threads():
                if opts.loop == "greedy":
                    rows = self._greedy(input_ids, attention_mask, len(batch), prefix, max_new)
                else:
                    out = self.model_obj.generate(
                        input_ids=input_ids,
                        attention_mask=attention_mask,
                        decoder_input_ids=torch.tensor([start] * len(batch), device=self.device),
                        generation_config=gen,
                    )
                    rows = [tok.strip_output(row, len(start)) for row in out.tolist()]
            for row, i in zip(rows, batch, strict=True):
                results[i] = prefix + row
        return results

    def _greedy(self, input_ids: Any, attention_mask: Any, batch: int, prefix: list[int], max_new: int) -> list[Any]:
        """``decoding.greedy_decode`` over the model's forward: the encoder once, then one decoder
        step per token on the key/value cache (the same choices as greedy ``generate()``)."""
        import numpy as np

        from backends.decoding import greedy_decode, start_tokens

        torch, model, tok = self._torch, self.model_obj, self.tokenizer
        assert tok is not None
        encoded = model.get_encoder()(input_ids=input_ids, attention_mask=attention_mask)
        # transformers 5 renamed past_key_values to cache (argument and output)
        key = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
        cache: Any = None

        def step(tokens: np.ndarray) -> np.ndarray:
            nonlocal cache
            new = tokens if cache is None else tokens[:, -1:]
            out = model(
                encoder_outputs=encoded,
                attention_mask=attention_mask,
                decoder_input_ids=torch.from_numpy(new).to(self.device),
                use_cache=True,
                **{key: cache},
            )
            cache = getattr(out, key)
            return out.logits[:, -1].float().cpu().numpy()

        prompt = start_tokens(batch, tok.decoder_start_id, prefix)
        rows = greedy_decode(
            step,
            prompt,
            max_new,
            tok.eos_id,
            tok.pad_id,
            tok.suppressed_ids(),
            min_new_tokens=min(self._opts().min_new_tokens, max_new),
        )
        return [tok.strip_output(row, prompt.shape[1]) for row in rows.tolist()]

    def health(self) -> dict[str, Any]:
        """Liveness plus where and how the model runs."""
        report = super().health()
        if self.loaded:
            opts = self._opts()
            report.update(device=self.device, dtype=opts.dtype, quantize=opts.quantize)
        return report

    def close(self) -> None:
        """Drops the model (and frees GPU memory when it was on cuda)."""
        if self.model_obj is not None and self.device == "cuda":
            self.model_obj = None
            self._torch.cuda.empty_cache()
        self.model_obj = None
        self._full_head = self._head_weight = None
        self._heads = {}
        super().close()


@functools.cache
def _restricted_head_class(torch: Any) -> Any:
    """The module class of a sliced output projection (defined lazily: torch is imported in load())."""

    class RestrictedHead(torch.nn.Module):  # type: ignore[name-defined, misc]
        """Scores only ``ids`` (a Linear over those rows) and scatters them into a full-size
        row of -inf, so callers see the model's usual vocabulary."""

        def __init__(self, weight: Any, ids: list[int]) -> None:
            super().__init__()
            self.vocab_size = int(weight.shape[0])
            self.register_buffer("ids", torch.tensor(ids, dtype=torch.long, device=weight.device))
            self.proj = torch.nn.Linear(weight.shape[1], len(ids), bias=False, dtype=weight.dtype, device=weight.device)
            with torch.no_grad():
                self.proj.weight.copy_(weight[self.ids])

        def forward(self, hidden: Any) -> Any:
            scores = self.proj(hidden)
            out = scores.new_full((*scores.shape[:-1], self.vocab_size), float("-inf"))
            return out.index_copy_(-1, self.ids, scores)

    return RestrictedHead
