"""The ``llm`` translator's Hugging Face runtimes: CTranslate2 (``ctranslate2.Generator`` on a converted,
cached folder) and transformers (``AutoModelForCausalLM``), with the tokenizer they share.

``HFRuntimes`` is a part of ``backends.llm_mt.LLMTranslator`` (the prompt, options and cleaning live
there): loading a model folder into ``self._runtime``/``self._tokenizer`` and greedy generation from
prompt token ids, so that module holds what every runtime shares (llama.cpp's path: ``backends.llm_llamacpp``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from backends import bundled, model_spec
from backends.errors import BackendUnavailable
from backends.llm_convert import TOKENIZER_SUBDIR, convert_to_ct2, ct2_storage_quantization, is_ct2_folder
from backends.llm_options import LLMOptions

#: chat-template end-of-turn markers of the common instruct families
END_OF_TURN_TOKENS = ("<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|end|>", "<end_of_turn>", "</s>")


class HFRuntimes:
    """Loading and greedy generation on CTranslate2 and transformers, for ``LLMTranslator``."""

    model: str | None
    options: Any
    _tokenizer: Any
    _runtime: Any
    _end_ids: list[int]
    _device: str
    _model_path: Path | None
    _suppress_seqs: tuple[list[int], list[list[str]]] | None

    def _hf_folder(self, spec: str) -> Path:
        if bundled.is_bundled_qwen(spec):
            return bundled.qwen_hf()
        return model_spec.resolve(spec).path

    def _load_tokenizer(self, folder: Path) -> Any:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(str(folder))
        if not getattr(tok, "chat_template", None):
            raise BackendUnavailable(
                f"model {self.model!r} has no chat template in {folder}; the llm backend needs an instruct "
                "(chat) model. For plain seq2seq MT models use the transformers or ctranslate2 backend"
            )
        tok.padding_side = "left"
        return tok

    def _load_ct2(self, spec: str, opts: LLMOptions) -> None:
        import ctranslate2

        storage = ct2_storage_quantization(opts.compute_type)
        if bundled.is_bundled_qwen(spec):
            folder = bundled.qwen_ct2(storage)
        else:
            ref = model_spec.resolve(spec)
            folder = ref.path if is_ct2_folder(ref.path) else convert_to_ct2(ref, storage)
        device = opts.device
        if device == "auto":
            device = "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
        elif device == "cuda" and ctranslate2.get_cuda_device_count() == 0:
            raise BackendUnavailable("device 'cuda' was asked for but CTranslate2 sees no CUDA GPU; use device: cpu")
        tok_folder = folder / TOKENIZER_SUBDIR
        if not (tok_folder / "tokenizer_config.json").is_file():
            # a CTranslate2 folder converted elsewhere, tokenizer files copied beside the weights
            tok_folder = folder
        if not (tok_folder / "tokenizer_config.json").is_file():
            raise BackendUnavailable(
                f"CTranslate2 folder {folder} has no tokenizer; copy the model's tokenizer files "
                f"(tokenizer.json, tokenizer_config.json) into {folder / TOKENIZER_SUBDIR}"
            )
        self._tokenizer = self._load_tokenizer(tok_folder)
        self._runtime = ctranslate2.Generator(
            str(folder), device=device, compute_type=opts.compute_type, intra_threads=opts.threads
        )
        self._device = device
        self._model_path = tok_folder

    def _load_transformers(self, spec: str, opts: LLMOptions) -> None:
        import torch
        from transformers import AutoModelForCausalLM

        folder = self._hf_folder(spec)
        device = opts.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        elif device == "cuda" and not torch.cuda.is_available():
            raise BackendUnavailable("device 'cuda' was asked for but torch sees no CUDA GPU; use device: cpu")
        if opts.threads:
            torch.set_num_threads(opts.threads)
        self._tokenizer = self._load_tokenizer(folder)
        model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=getattr(torch, opts.dtype))
        model.to(torch.device(device)).eval()  # type: ignore[arg-type]
        self._runtime = model
        self._device = device
        self._model_path = folder

    def _generate_ct2(
        self, prompts: list[list[int]], max_new: int, suppress: list[int], prefix: list[int]
    ) -> list[list[int]]:
        opts = self.options
        assert isinstance(opts, LLMOptions)
        tok = self._tokenizer
        static: list[str] | None = None
        # A text that merges with the prefix when tokenised (rare: BPE across the boundary)
        # cannot share the cached state; the whole batch then goes without it.
        if prefix and all(len(p) > len(prefix) and p[: len(prefix)] == prefix for p in prompts):
            static = tok.convert_ids_to_tokens(prefix)
            prompts = [p[len(prefix) :] for p in prompts]
        seqs: list[list[str]] | None = None
        if suppress:
            if self._suppress_seqs is None or self._suppress_seqs[0] is not suppress:
                self._suppress_seqs = (suppress, [[t] for t in tok.convert_ids_to_tokens(suppress)])
            seqs = self._suppress_seqs[1]
        results = self._runtime.generate_batch(
            [tok.convert_ids_to_tokens(p) for p in prompts],
            max_length=max_new,
            sampling_topk=1,
            beam_size=1,
            include_prompt_in_result=False,
            end_token=self._end_ids or None,
            static_prompt=static,
            suppress_sequences=seqs,
            repetition_penalty=opts.repetition_penalty,
            no_repeat_ngram_size=opts.no_repeat_ngram_size,
        )
        return [self._until_end(list(r.sequences_ids[0])) for r in results]

    def _generate_transformers(self, prompts: list[list[int]], max_new: int, suppress: list[int]) -> list[list[int]]:
        import torch

        opts = self.options
        assert isinstance(opts, LLMOptions)
        tok = self._tokenizer
        pad_id = tok.pad_token_id if tok.pad_token_id is not None else (self._end_ids or [0])[0]
        width = max(len(p) for p in prompts)
        # Left padding keeps every prompt's last token at the same position; a single
        # prompt gets none.
        input_ids = torch.tensor([[pad_id] * (width - len(p)) + p for p in prompts], device=self._device)
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=self._device)
        extra: dict[str, Any] = {}
        if suppress:
            extra["suppress_tokens"] = suppress
        if opts.repetition_penalty != 1.0:
            extra["repetition_penalty"] = opts.repetition_penalty
        if opts.no_repeat_ngram_size:
            extra["no_repeat_ngram_size"] = opts.no_repeat_ngram_size
        with torch.inference_mode():
            out = self._runtime.generate(
                input_ids=input_ids,
                attention_mask=mask,
                max_new_tokens=max_new,
                do_sample=False,
                num_beams=1,
                eos_token_id=self._end_ids or None,
                pad_token_id=pad_id,
                **extra,
            )
        return [self._until_end(row[width:].tolist()) for row in out]

    def _until_end(self, ids: list[int]) -> list[int]:
        for i, t in enumerate(ids):
            if t in self._end_ids:
                return ids[:i]
        return ids


def end_of_turn_ids(tokenizer: Any, folder: Path | None = None) -> list[int]:
    """Token ids that end the assistant's turn: EOS, the generation config's, and known markers."""
    ids: list[int] = []

    def add(value: Any) -> None:
        if isinstance(value, int) and value >= 0 and value not in ids:
            ids.append(value)

    add(tokenizer.eos_token_id)
    if folder is not None and (folder / "generation_config.json").is_file():
        import json

        eos = json.loads((folder / "generation_config.json").read_text()).get("eos_token_id")
        for value in eos if isinstance(eos, list) else [eos]:
            add(value)
    vocab = tokenizer.get_vocab()
    for token in END_OF_TURN_TOKENS:
        if token in vocab:
            add(vocab[token])
    return ids
