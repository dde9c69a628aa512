"""``ctranslate2``: the same HF seq2seq MT model, converted once to CTranslate2 and run there.

The conversion (``ctranslate2.converters.TransformersConverter``) is cached under
``HAYAKU_HOME/ct2`` keyed by model, revision and quantization, and built atomically, so a
killed conversion never leaves a half-written model behind. Tokenization is the shared
HF tokenizer (``backends.hf_seq2seq``), so token ids match the ``transformers`` backend.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from backends import store
from backends.errors import BackendUnavailable
from backends.hf_seq2seq import Seq2SeqOptions, Seq2SeqTranslator

ComputeType = Literal[
    "int8", "int8_float16", "int8_float32", "int8_bfloat16", "int16", "float16", "bfloat16", "float32"
]


class CTranslate2Options(Seq2SeqOptions):
    compute_type: ComputeType = Field(
        "int8", description="Weight/compute precision; the model is converted (and cached) at this quantization."
    )
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="cpu, cuda, or auto (cuda when present).")
    beam_size: int = Field(1, ge=1, le=16, description="Beam width; 1 is greedy decoding (fastest).")
    max_decoding_length: int = Field(
        256, ge=1, le=4096, description="Most tokens generated per text (not counting the target language token)."
    )
    min_decoding_length: int = Field(
        0,
        ge=0,
        le=4096,
        description="Fewest tokens generated per text; benchmarks set it equal to max_decoding_length "
        "to force a fixed output length.",
    )
    inter_threads: int = Field(1, ge=1, le=64, description="Batches translated in parallel (one worker each).")
    intra_threads: int = Field(0, ge=0, le=256, description="Threads per worker; 0 lets CTranslate2 choose.")
    max_batch_size: int = Field(
        16, ge=1, le=1024, description="Most texts per batch; larger requests are length-sorted into batches."
    )

    @model_validator(mode="after")
    def _consistent(self) -> CTranslate2Options:
        if self.min_decoding_length > self.max_decoding_length:
            raise ValueError(
                f"min_decoding_length {self.min_decoding_length!r} is larger than "
                f"max_decoding_length {self.max_decoding_length!r}"
            )
        return self


class CTranslate2Translator(Seq2SeqTranslator):
    """HF seq2seq MT model on CTranslate2; see ``CTranslate2Options``."""

    name = "ctranslate2"
    Options = CTranslate2Options
    # torch and transformers read the HF checkpoint during the one-time conversion
    requires = ("ctranslate2", "transformers", "torch", "sentencepiece")
    extra = "ct2"
    #: how tests/unit/test_translator_contract.py exercises this backend (fixture, options)
    contract_cases: ClassVar[tuple[tuple[str | None, dict[str, Any]], ...]] = (
        ("tiny_marian", {"max_decoding_length": 12}),
        ("tiny_nllb", {"max_decoding_length": 12, "compute_type": "float32"}),
    )

    translator: Any = None
    device: str = "cpu"
    model_dir: Path | None = None

    def _opts(self) -> CTranslate2Options:
        assert isinstance(self.options, CTranslate2Options)
        return self.options

    def converted_dir(self) -> Path:
        """Cache folder of this model's conversion at this quantization."""
        ref = self.model_ref()
        key = str(ref.path) if ref.kind == "local" else ref.spec
        return store.cache_dir("ct2", key, ref.revision, self._opts().compute_type)

    def convert(self) -> Path:
        """Converts the HF model once; later calls (and processes) reuse the cached folder."""
        target = self.converted_dir()
        if store.is_built(target):
            return target
        from ctranslate2.converters import TransformersConverter

        info = self.info
        store.progress(f"converting {info.spec} to CTranslate2 ({self._opts().compute_type}) -> {target}")
        try:
            with store.building(target) as tmp:
                TransformersConverter(str(info.path)).convert(
                    str(tmp), quantization=self._opts().compute_type, force=True
                )
        except Exception as exc:
            raise BackendUnavailable(f"CTranslate2 conversion of model {info.spec!r} failed: {exc}") from exc
        return target

    def _pick_device(self, ct2: Any) -> str:
        want = self._opts().device
        gpus = ct2.get_cuda_device_count()
        if want == "auto":
            return "cuda" if gpus > 0 else "cpu"
        if want == "cuda" and gpus == 0:
            raise BackendUnavailable(
                f"device 'cuda' requested but CTranslate2 {ct2.__version__} sees no CUDA device; use device: cpu"
            )
        return want

    def _load(self) -> None:
        import ctranslate2

        opts = self._opts()
        self.load_tokenizer()
        device = self._pick_device(ctranslate2)
        supported = sorted(ctranslate2.get_supported_compute_types(device))
        if opts.compute_type not in supported:
            raise BackendUnavailable(
                f"compute_type {opts.compute_type!r} is not supported on {device} here; "
                f"supported: {', '.join(supported)}"
            )
        self.model_dir = self.convert()
        try:
            self.translator = ctranslate2.Translator(
                str(self.model_dir),
                device=device,
                compute_type=opts.compute_type,
                inter_threads=opts.inter_threads,
                intra_threads=opts.intra_threads,
            )
        except Exception as exc:
            raise BackendUnavailable(f"CTranslate2 cannot load {self.model_dir}: {exc}") from exc
        self.device = device

    def generate_ids(self, texts: list[str], source_lang: str, target_lang: str) -> list[list[int]]:
        """Generated ids per text: target prefix (NLLB/M2M100 language token), then the
        translation, without EOS. Same convention as ``TransformersTranslator.generate_ids``."""
        self._ensure_loaded()
        tok = self.tokenizer
        assert tok is not None
        opts = self._opts()
        prefix = tok.target_prefix_ids(target_lang)
        prefix_tokens = tok.ids_to_tokens(prefix)
        sources = [tok.ids_to_tokens(tok.source_ids(t, source_lang, target_lang)) for t in texts]
        max_new = tok.max_new_tokens(opts.max_decoding_length, len(prefix))
        kwargs: dict[str, Any] = {}
        if prefix_tokens:
            kwargs["target_prefix"] = [prefix_tokens] * len(texts)
        # Marian's <pad> is not in the converted vocabulary at all; elsewhere it must not be
        # generated (see Seq2SeqTokenizer.suppressed_ids).
        if tok.info.family != "marian":
            kwargs["suppress_sequences"] = [[t] for t in tok.ids_to_tokens(tok.suppressed_ids())]
        results = self.translator.translate_batch(
            sources,
            beam_size=opts.beam_size,
            max_decoding_length=len(prefix) + max_new,
            min_decoding_length=len(prefix) + min(opts.min_decoding_length, max_new),
            max_batch_size=opts.max_batch_size,
            **kwargs,
        )
        out = []
        for r in results:
            ids = tok.tokens_to_ids(r.hypotheses[0])
            out.append(prefix + tok.strip_output(ids, len(prefix)))
        return out

    def health(self) -> dict[str, Any]:
        """Liveness plus device, compute type and the converted model's folder."""
        report = super().health()
        if self.loaded:
            report.update(device=self.device, compute_type=self._opts().compute_type, converted=str(self.model_dir))
        return report

    def close(self) -> None:
        """Releases the CTranslate2 model (the cached conversion stays)."""
        self.translator = None
        super().close()
