"""``ctranslate2``: the same HF seq2seq MT model, converted once to CTranslate2 and run there.

The conversion (``ctranslate2.converters.TransformersConverter``) is cached under
``HAYAKU_HOME/ct2`` keyed by model, revision and quantization, and built atomically, so a
killed conversion never leaves a half-written model behind. Tokenization is the shared
HF tokenizer (``backends.hf_seq2seq``), so token ids match the ``transformers`` backend.

``output_vocab`` (``backends.vocab``) becomes CTranslate2's vocabulary map: a ``vmap.txt``
whose always-included line lists the target language's tokens, so each step scores only
those rows of the output layer (``use_vmap``). CTranslate2 reads the map from the model
folder, so each target language gets a small folder of links to the converted model plus
its own map, and its own loaded model (made at the first request for that language).
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from backends import store
from backends.errors import BackendUnavailable
from backends.hf_seq2seq import Seq2SeqOptions, Seq2SeqTranslator
from backends.vocab import FULL, OutputVocabOptions

ComputeType = Literal[
    "int8", "int8_float16", "int8_float32", "int8_bfloat16", "int16", "float16", "bfloat16", "float32"
]


class CTranslate2Options(Seq2SeqOptions, OutputVocabOptions):
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
    #: target language -> (loaded model with that language's vocabulary map, or None: use ``translator``)
    _by_target: dict[str, Any] | None = None

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
        self.device = device
        self._by_target = {}
        self._vocab_lock = threading.Lock()
        if opts.output_vocab == FULL:
            self.translator = self._open(self.model_dir)

    def _open(self, folder: Path) -> Any:
        import ctranslate2

        opts = self._opts()
        try:
            return ctranslate2.Translator(
                str(folder),
                device=self.device,
                compute_type=opts.compute_type,
                inter_threads=opts.inter_threads,
                intra_threads=opts.intra_threads,
            )
        except Exception as exc:
            raise BackendUnavailable(f"CTranslate2 cannot load {folder}: {exc}") from exc

    def vocabulary(self) -> list[str]:
        """The converted model's target vocabulary (CTranslate2's own token strings, by id)."""
        assert self.model_dir is not None
        for name in ("target_vocabulary", "shared_vocabulary"):
            for ext in ("json", "txt"):
                path = self.model_dir / f"{name}.{ext}"
                if path.is_file():
                    text = path.read_text(encoding="utf-8")
                    return list(json.loads(text)) if ext == "json" else text.split("\n")[:-1]
        raise BackendUnavailable(f"{self.model_dir} has no vocabulary file")

    def vmap_dir(self, target_lang: str) -> Path | None:
        """A folder with the converted model (links) and a vocabulary map for ``target_lang``;
        None when ``output_vocab`` keeps the full vocabulary for it."""
        tok, opts = self.tokenizer, self._opts()
        assert tok is not None and self.model_dir is not None
        vocab = self.vocabulary()
        ids = tok.output_ids(opts.output_vocab, target_lang, len(vocab))
        if ids is None:
            return None
        target = store.cache_dir("ct2-vmap", str(self.model_dir), opts.output_vocab, target_lang, ids)
        if store.is_built(target):
            return target
        with store.building(target) as tmp:
            for item in self.model_dir.iterdir():
                if not item.name.startswith("."):
                    (tmp / item.name).symlink_to(item.resolve())
            # an empty source n-gram: these candidates are always included
            (tmp / "vmap.txt").write_text("\t" + " ".join(vocab[i] for i in ids) + "\n", encoding="utf-8")
        return target

    def _translator_for(self, target_lang: str) -> tuple[Any, bool]:
        """(loaded model, use_vmap) for requests into ``target_lang``."""
        assert self._by_target is not None and self.model_dir is not None
        if self._opts().output_vocab == FULL:
            return self.translator, False
        with self._vocab_lock:
            if target_lang not in self._by_target:
                folder = self.vmap_dir(target_lang)
                if folder is None:
                    self.translator = self.translator or self._open(self.model_dir)
                    self._by_target[target_lang] = None
                else:
                    self._by_target[target_lang] = self._open(folder)
            found = self._by_target[target_lang]
        return (self.translator, False) if found is None else (found, True)

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
        translator, use_vmap = self._translator_for(target_lang)
        results = translator.translate_batch(
            sources,
            use_vmap=use_vmap,
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
        self._by_target = {}
        super().close()
