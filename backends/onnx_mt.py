"""``onnx``: an HF seq2seq MT model (NLLB/M2M100, Marian) on ONNX Runtime.

hayaku exports the model itself (``torch.onnx.export``; optimum pins an old transformers)
into two graphs, cached under ``HAYAKU_HOME/onnx``:

- ``encoder.onnx``: source ids and mask -> the cross-attention keys/values of every decoder
  layer (computed once per request, as transformers does);
- ``decoder.onnx``: one decoder step with a self-attention key/value cache: the newest token,
  the cached keys/values (length 0 on the first step) -> next-token logits and the grown cache.

Greedy decoding runs in numpy (``backends.decoding``) over the two sessions.
"""

from __future__ import annotations

import json
import platform
import time
import warnings
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from backends import store
from backends.base import DEFAULT_MAX_CHARS
from backends.decoding import GreedyOptions, GreedyTranslator
from backends.errors import BackendUnavailable

#: bump when the exported graphs change, so old cache entries are not reused
EXPORT_FORMAT = "hayaku-onnx-2"
OPSET = 17


class OnnxOptions(GreedyOptions):
    provider: Literal["cpu", "cuda", "coreml"] = Field(
        "cpu",
        description="ONNX Runtime execution provider: cpu, cuda (needs onnxruntime-gpu) or coreml (macOS only); "
        "nodes a provider cannot run fall back to the CPU provider.",
    )
    batch_size: int = Field(8, ge=1, le=256, description="Texts encoded and decoded together (length-sorted).")
    intra_op_threads: int = Field(0, ge=0, le=256, description="Threads inside one operator; 0 lets ORT choose.")
    inter_op_threads: int = Field(0, ge=0, le=256, description="Threads across operators; 0 lets ORT choose.")
    graph_optimization: Literal["disable", "basic", "extended", "all"] = Field(
        "all", description="ONNX Runtime graph optimisation level: disable, basic, extended or all."
    )


def _decoder_layout(model: Any) -> dict[str, int]:
    cfg = model.config
    heads = int(cfg.decoder_attention_heads)
    return {
        "layers": int(cfg.decoder_layers),
        "heads": heads,
        "head_dim": int(cfg.d_model) // heads,
        "d_model": int(cfg.d_model),
    }


def load_float32_model(path: Path) -> Any:
    """The HF model in float32 with eager attention: the variant that traces without surprises."""
    import torch
    from transformers import AutoModelForSeq2SeqLM

    model = AutoModelForSeq2SeqLM.from_pretrained(str(path), dtype=torch.float32, attn_implementation="eager")
    return model.eval()


def export_onnx(model_path: Path, out: Path) -> dict[str, Any]:
    """Exports ``encoder.onnx`` and ``decoder.onnx`` of the model folder into ``out``.

    Returns the layout (layers, heads, head_dim, d_model) that the runtime needs to build
    the empty first-step cache; it is also written to ``out/layout.json``.
    """
    import torch
    from transformers.cache_utils import EncoderDecoderCache

    model = load_float32_model(model_path)
    layout = _decoder_layout(model)
    n_layers, d_model = layout["layers"], layout["d_model"]
    encoder, decoder = model.get_encoder(), model.get_decoder()
    bias = getattr(model, "final_logits_bias", None)

    class Encoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder, self.decoder = encoder, decoder
            # torch.onnx.export restores the wrapper's training flag on every submodule
            # afterwards; a wrapper left in training mode would switch dropout on.
            self.eval()

        def forward(self, input_ids: Any, attention_mask: Any) -> tuple[Any, ...]:
            hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            b, s, _ = hidden.shape
            outs = []
            for layer in self.decoder.layers:
                attn = layer.encoder_attn
                outs.append(attn.k_proj(hidden).view(b, s, -1, attn.head_dim).transpose(1, 2))
                outs.append(attn.v_proj(hidden).view(b, s, -1, attn.head_dim).transpose(1, 2))
            return tuple(outs)

    class DecoderStep(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.decoder, self.lm_head = decoder, model.lm_head
            self.eval()

        def forward(self, input_ids: Any, encoder_attention_mask: Any, *kv: Any) -> tuple[Any, ...]:
            cache = EncoderDecoderCache([tuple(kv[4 * i : 4 * i + 4]) for i in range(n_layers)])
            # Only the shape of the encoder states is read: the cross keys/values come from the cache.
            shape_only = encoder_attention_mask[:, :, None].to(torch.float32).expand(-1, -1, d_model)
            out = self.decoder(
                input_ids=input_ids,
                encoder_hidden_states=shape_only,
                encoder_attention_mask=encoder_attention_mask,
                cache=cache,
                use_cache=True,
            )
            logits = self.lm_head(out.last_hidden_state[:, -1])
            if bias is not None:
                logits = logits + bias
            present = []
            layers: list[Any] = list(cache.self_attention_cache.layers)
            for layer in layers:
                present += [layer.keys, layer.values]
            return (logits, *present)

    # Example inputs with a padded row and a non-empty cache, so that the traced graph keeps
    # the padding mask and the cache concatenation (at run time the first cache is empty).
    batch, src_len, past_len = 2, 5, 2
    ids = torch.full((batch, src_len), 5, dtype=torch.long)
    mask = torch.ones(batch, src_len, dtype=torch.long)
    mask[1, 3:] = 0
    heads, head_dim = layout["heads"], layout["head_dim"]
    cross_names = [f"cross_{kv}_{i}" for i in range(n_layers) for kv in ("key", "value")]
    out.mkdir(parents=True, exist_ok=True)
    with torch.no_grad(), warnings.catch_warnings():
        # the traced branches are the ones these example inputs exercise; the warnings say so at length
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        cross = Encoder()(ids, mask)
        torch.onnx.export(
            Encoder(),
            (ids, mask),
            str(out / "encoder.onnx"),
            input_names=["input_ids", "attention_mask"],
            output_names=cross_names,
            dynamic_axes={
                "input_ids": {0: "batch", 1: "src"},
                "attention_mask": {0: "batch", 1: "src"},
                **{n: {0: "batch", 2: "src"} for n in cross_names},
            },
            opset_version=OPSET,
            dynamo=False,
        )
        kv_names: list[str] = []
        kv_inputs: list[Any] = []
        for i in range(n_layers):
            kv_names += [f"past_key_{i}", f"past_value_{i}", f"cross_key_{i}", f"cross_value_{i}"]
            kv_inputs += [
                torch.randn(batch, heads, past_len, head_dim),
                torch.randn(batch, heads, past_len, head_dim),
                cross[2 * i],
                cross[2 * i + 1],
            ]
        present_names = [f"present_{kv}_{i}" for i in range(n_layers) for kv in ("key", "value")]
        dynamic: dict[str, dict[int, str]] = {
            "input_ids": {0: "batch"},
            "encoder_attention_mask": {0: "batch", 1: "src"},
            "logits": {0: "batch"},
        }
        for n in kv_names:
            dynamic[n] = {0: "batch", 2: "past" if n.startswith("past") else "src"}
        for n in present_names:
            dynamic[n] = {0: "batch", 2: "past_plus_one"}
        torch.onnx.export(
            DecoderStep(),
            (ids[:, :1], mask, *kv_inputs),
            str(out / "decoder.onnx"),
            input_names=["input_ids", "encoder_attention_mask", *kv_names],
            output_names=["logits", *present_names],
            dynamic_axes=dynamic,
            opset_version=OPSET,
            dynamo=False,
        )
    (out / "layout.json").write_text(json.dumps(layout))
    return layout


def providers_for(provider: str) -> list[str]:
    """ORT provider names for the option value; BackendUnavailable says how to get a missing one."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    if provider == "cpu":
        return ["CPUExecutionProvider"]
    if provider == "coreml":
        if platform.system() != "Darwin":
            raise BackendUnavailable(
                f"provider 'coreml': the CoreML execution provider runs only on macOS (this is {platform.system()}); "
                "use provider cpu or cuda here"
            )
        if "CoreMLExecutionProvider" not in available:
            raise BackendUnavailable(
                f"provider 'coreml': this onnxruntime has no CoreMLExecutionProvider (it has {', '.join(available)}); "
                "pip install onnxruntime (the macOS wheels include it)"
            )
        return ["CoreMLExecutionProvider", "CPUExecutionProvider"]
    if "CUDAExecutionProvider" not in available:
        raise BackendUnavailable(
            f"provider 'cuda': this onnxruntime has no CUDAExecutionProvider (it has {', '.join(available)}); "
            "pip uninstall onnxruntime && pip install onnxruntime-gpu, on a machine with an NVIDIA GPU"
        )
    return ["CUDAExecutionProvider", "CPUExecutionProvider"]


class OnnxTranslator(GreedyTranslator):
    """HF seq2seq MT model exported once to ONNX and decoded greedily over ONNX Runtime."""

    name: ClassVar[str] = "onnx"
    Options: ClassVar[type[OnnxOptions]] = OnnxOptions  # type: ignore[assignment]
    requires: ClassVar[tuple[str, ...]] = ("onnxruntime", "onnx", "torch", "transformers")
    extra: ClassVar[str | None] = "onnx"

    options: OnnxOptions

    def __init__(self, model: str | None = None, options: Any = None, max_chars: int = DEFAULT_MAX_CHARS) -> None:
        super().__init__(model, options, max_chars=max_chars)
        self._encoder: Any = None
        self._decoder: Any = None
        self._layout: dict[str, int] = {}
        #: seconds the export took in this process; None when the cached export was reused
        self.export_s: float | None = None

    def export_dir(self) -> Path:
        """The cache folder of this model's export (it may not be built yet)."""
        info = self.info
        return store.cache_dir("onnx", info.spec, info.revision, str(info.path), EXPORT_FORMAT, OPSET)

    def ensure_exported(self) -> Path:
        """Exports the model unless a complete export is cached; returns its folder."""
        target = self.export_dir()
        if not store.is_built(target):
            store.progress(f"exporting {self.info.spec} to ONNX -> {target}")
            start = time.perf_counter()
            with store.building(target) as tmp:
                export_onnx(self.info.path, tmp)
            self.export_s = time.perf_counter() - start
            store.progress(f"ONNX export done in {self.export_s:.1f} s")
        return target

    def _load(self) -> None:
        providers = providers_for(self.options.provider)  # before any export: a bad provider fails fast
        import onnxruntime as ort

        self.load_tokenizer()
        folder = self.ensure_exported()
        self._layout = json.loads((folder / "layout.json").read_text())
        so = ort.SessionOptions()
        so.intra_op_num_threads = self.options.intra_op_threads
        so.inter_op_num_threads = self.options.inter_op_threads
        levels = {
            "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }
        so.graph_optimization_level = levels[self.options.graph_optimization]
        self._encoder = ort.InferenceSession(str(folder / "encoder.onnx"), so, providers=providers)
        self._decoder = ort.InferenceSession(str(folder / "decoder.onnx"), so, providers=providers)

    def close(self) -> None:
        self._encoder = self._decoder = None
        super().close()

    def health(self) -> dict[str, Any]:
        report = super().health()
        if self._decoder is not None:
            report["providers"] = self._decoder.get_providers()
        return report

    def _generate_batch(self, source_ids: list[list[int]], prefix: list[int]) -> list[list[int]]:
        tok = self.tokenizer
        assert tok is not None
        n = len(source_ids)
        longest = max(len(s) for s in source_ids)
        input_ids = np.full((n, longest), tok.pad_id, dtype=np.int64)
        mask = np.zeros((n, longest), dtype=np.int64)
        for row, s in enumerate(source_ids):
            input_ids[row, : len(s)] = s
            mask[row, : len(s)] = 1
        cross = self._encoder.run(None, {"input_ids": input_ids, "attention_mask": mask})
        return self.decode_greedy(_CachedStep(self._decoder, self._layout, cross, mask), n, prefix)


class _CachedStep:
    """Feeds the decoder the tokens it has not seen yet, one per run, keeping the cache."""

    def __init__(self, session: Any, layout: dict[str, int], cross: list[np.ndarray], mask: np.ndarray) -> None:
        self.session = session
        self.layers = layout["layers"]
        batch = mask.shape[0]
        empty = np.zeros((batch, layout["heads"], 0, layout["head_dim"]), dtype=np.float32)
        self.past = [empty] * (2 * self.layers)
        self.feed: dict[str, np.ndarray] = {"encoder_attention_mask": mask}
        for i in range(self.layers):
            self.feed[f"cross_key_{i}"] = cross[2 * i]
            self.feed[f"cross_value_{i}"] = cross[2 * i + 1]
        self.seen = 0

    def __call__(self, tokens: np.ndarray) -> np.ndarray:
        logits: np.ndarray | None = None
        while self.seen < tokens.shape[1]:
            feed = dict(self.feed)
            feed["input_ids"] = tokens[:, self.seen : self.seen + 1]
            for i in range(self.layers):
                feed[f"past_key_{i}"] = self.past[2 * i]
                feed[f"past_value_{i}"] = self.past[2 * i + 1]
            logits, *self.past = self.session.run(None, feed)
            self.seen += 1
        assert logits is not None
        return logits
