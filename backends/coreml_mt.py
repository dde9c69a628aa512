"""``coreml``: an HF seq2seq MT model (NLLB/M2M100, Marian) converted to Core ML.

Conversion (``torch.jit.trace`` -> ``coremltools.convert``, ML program) works on any OS and
is cached under ``HAYAKU_HOME/coreml`` as ``encoder.mlpackage`` and ``decoder.mlpackage``;
``CoreMLTranslator(model).convert()`` builds them, e.g. on Linux in CI. Prediction needs
the Core ML framework, so ``load()`` refuses anywhere but macOS before doing any work.

The decoder is converted without a key/value cache: each step re-reads the whole target
prefix (flexible length), which keeps the graph free of zero-length tensors that Core ML
does not allow. Greedy decoding is ``backends.decoding``'s, shared with ``onnx``.
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
from backends.base import DEFAULT_MAX_CHARS, missing_modules
from backends.decoding import GreedyOptions, GreedyTranslator
from backends.errors import BackendUnavailable, InvalidRequest

#: bump when the converted graphs change, so old cache entries are not reused
CONVERT_FORMAT = "hayaku-coreml-1"

COMPUTE_UNITS = {
    "all": "ALL",
    "cpu_only": "CPU_ONLY",
    "cpu_and_gpu": "CPU_AND_GPU",
    "cpu_and_ne": "CPU_AND_NE",
}


class CoreMLOptions(GreedyOptions):
    compute_units: Literal["all", "cpu_only", "cpu_and_gpu", "cpu_and_ne"] = Field(
        "all", description="Core ML compute units: all, cpu_only, cpu_and_gpu or cpu_and_ne (Neural Engine)."
    )
    precision: Literal["float16", "float32"] = Field(
        "float16", description="Compute precision of the converted ML program (float16 suits the GPU and ANE)."
    )
    max_source_tokens: int = Field(
        256, ge=8, le=4096, description="Longest source (tokens) the converted encoder accepts; part of the cache key."
    )


def register_torch_ops() -> None:
    """Adds converters coremltools lacks for ops transformers 5 emits (idempotent).

    ``Tensor.new_ones`` comes from transformers' mask functions (``and_masks``).
    """
    from coremltools.converters.mil import Builder as mb
    from coremltools.converters.mil.frontend.torch.ops import _get_inputs
    from coremltools.converters.mil.frontend.torch.torch_op_registry import _TORCH_OPS_REGISTRY, register_torch_op
    from coremltools.converters.mil.frontend.torch.utils import NUM_TO_NUMPY_DTYPE

    if "new_ones" in _TORCH_OPS_REGISTRY:
        return

    def new_ones(context: Any, node: Any) -> None:
        inputs = _get_inputs(context, node)
        shape = inputs[1]
        dtype = inputs[2] if len(inputs) > 2 else None
        np_dtype = NUM_TO_NUMPY_DTYPE[int(dtype.val)] if dtype is not None and dtype.val is not None else np.float32
        if isinstance(shape, list) and all(getattr(v, "val", None) is not None for v in shape):
            shape = [int(v.val) for v in shape]
        elif not isinstance(shape, list) and shape.val is not None:
            shape = [int(v) for v in np.atleast_1d(shape.val)] if np.ndim(shape.val) else []
        if isinstance(shape, list) and all(isinstance(v, int) for v in shape):
            context.add(mb.const(val=np.ones(shape, dtype=np_dtype), name=node.name))
            return
        if isinstance(shape, list):  # a dynamic size arrives as a list of scalars
            shape = mb.concat(values=shape, axis=0)
        mil_dtype = {np.bool_: "bool", np.int32: "int32", np.int64: "int32"}.get(np_dtype, "fp32")
        context.add(mb.cast(x=mb.fill(shape=shape, value=1.0), dtype=mil_dtype, name=node.name))

    register_torch_op(new_ones)


def convert_coreml(model_path: Path, out: Path, precision: str = "float16", max_source_tokens: int = 256) -> Path:
    """Converts the model folder into ``out/encoder.mlpackage`` and ``out/decoder.mlpackage``.

    Works on any OS (no prediction happens). Batch size is 1: one text at a time, no padding.
    """
    import coremltools as ct
    import torch

    from backends.onnx_mt import load_float32_model

    register_torch_ops()
    model = load_float32_model(model_path)
    encoder, decoder = model.get_encoder(), model.get_decoder()
    bias = getattr(model, "final_logits_bias", None)
    cfg = model.config
    d_model = int(cfg.d_model)
    positions = int(getattr(cfg, "max_position_embeddings", 512) or 512)
    max_src = min(max_source_tokens, positions)
    max_tgt = positions - 2  # room for the decoder start and EOS, as Seq2SeqTokenizer.max_new_tokens leaves

    class Encoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = encoder
            self.eval()

        def forward(self, input_ids: Any) -> Any:
            return self.encoder(input_ids=input_ids).last_hidden_state

    class Decoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.decoder, self.lm_head = decoder, model.lm_head
            self.eval()

        def forward(self, decoder_input_ids: Any, encoder_hidden_states: Any) -> Any:
            hidden = self.decoder(
                input_ids=decoder_input_ids, encoder_hidden_states=encoder_hidden_states, use_cache=False
            ).last_hidden_state
            logits = self.lm_head(hidden[:, -1])
            return logits if bias is None else logits + bias

    ids = torch.full((1, 7), 5, dtype=torch.long)
    with torch.no_grad(), warnings.catch_warnings():
        # the traced branches are the ones these example inputs exercise; the warnings say so at length
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        traced_encoder = torch.jit.trace(Encoder(), (ids,))
        hidden = Encoder()(ids)
        traced_decoder = torch.jit.trace(Decoder(), (ids[:, :3], hidden))
    src = ct.RangeDim(1, max_src, default=7)
    tgt = ct.RangeDim(1, max_tgt, default=3)
    common: dict[str, Any] = {
        "convert_to": "mlprogram",
        "minimum_deployment_target": ct.target.macOS13,
        "compute_precision": ct.precision.FLOAT16 if precision == "float16" else ct.precision.FLOAT32,
    }
    out.mkdir(parents=True, exist_ok=True)
    enc_ml = ct.convert(
        traced_encoder,
        inputs=[ct.TensorType("input_ids", shape=(1, src), dtype=np.int32)],
        outputs=[ct.TensorType("encoder_hidden_states")],
        **common,
    )
    enc_ml.save(str(out / "encoder.mlpackage"))
    dec_ml = ct.convert(
        traced_decoder,
        inputs=[
            ct.TensorType("decoder_input_ids", shape=(1, tgt), dtype=np.int32),
            ct.TensorType("encoder_hidden_states", shape=(1, src, d_model), dtype=np.float32),
        ],
        outputs=[ct.TensorType("logits")],
        **common,
    )
    dec_ml.save(str(out / "decoder.mlpackage"))
    (out / "layout.json").write_text(json.dumps({"max_source_tokens": max_src, "max_target_tokens": max_tgt}))
    return out


class CoreMLTranslator(GreedyTranslator):
    """HF seq2seq MT model converted once to Core ML; predicts on macOS, converts anywhere."""

    name: ClassVar[str] = "coreml"
    Options: ClassVar[type[CoreMLOptions]] = CoreMLOptions  # type: ignore[assignment]
    requires: ClassVar[tuple[str, ...]] = ("coremltools", "torch", "transformers")
    extra: ClassVar[str | None] = "coreml"

    options: CoreMLOptions

    def __init__(self, model: str | None = None, options: Any = None, max_chars: int = DEFAULT_MAX_CHARS) -> None:
        super().__init__(model, options, max_chars=max_chars)
        self._encoder: Any = None
        self._decoder: Any = None
        self._max_source = 0
        #: seconds the conversion took in this process; None when the cached one was reused
        self.convert_s: float | None = None

    @classmethod
    def unavailable_reason(cls, model: str | None = None, options: Any = None) -> str | None:
        system = platform.system()
        if system != "Darwin":
            return (
                f"Core ML predicts only on macOS (this is {system}); the conversion runs anywhere: "
                "CoreMLTranslator(model).convert() builds the cached .mlpackage files"
            )
        return super().unavailable_reason(model, options)

    def convert_dir(self) -> Path:
        """The cache folder of this model's conversion (it may not be built yet)."""
        info, opts = self.info, self.options
        return store.cache_dir(
            "coreml", info.spec, info.revision, str(info.path), CONVERT_FORMAT, opts.precision, opts.max_source_tokens
        )

    def convert(self) -> Path:
        """Converts the model unless a complete conversion is cached; returns its folder. Any OS."""
        missing = missing_modules(*self.requires)
        if missing:
            raise BackendUnavailable(f"coreml conversion needs {', '.join(missing)}: pip install 'hayaku[coreml]'")
        target = self.convert_dir()
        if not store.is_built(target):
            store.progress(f"converting {self.info.spec} to Core ML ({self.options.precision}) -> {target}")
            start = time.perf_counter()
            with store.building(target) as tmp:
                convert_coreml(self.info.path, tmp, self.options.precision, self.options.max_source_tokens)
            self.convert_s = time.perf_counter() - start
            store.progress(f"Core ML conversion done in {self.convert_s:.1f} s")
        return target

    def _load(self) -> None:
        # load() has already refused other systems (unavailable_reason); this guards direct calls.
        if platform.system() != "Darwin":
            raise BackendUnavailable(str(self.unavailable_reason(self.model)))
        import coremltools as ct

        self.load_tokenizer()
        folder = self.convert()
        self._max_source = int(json.loads((folder / "layout.json").read_text())["max_source_tokens"])
        units = getattr(ct.ComputeUnit, COMPUTE_UNITS[self.options.compute_units])
        self._encoder = ct.models.MLModel(str(folder / "encoder.mlpackage"), compute_units=units)
        self._decoder = ct.models.MLModel(str(folder / "decoder.mlpackage"), compute_units=units)

    def close(self) -> None:
        self._encoder = self._decoder = None
        super().close()

    def _generate_batch(self, source_ids: list[list[int]], prefix: list[int]) -> list[list[int]]:
        (ids,) = source_ids  # batch_size() is 1: the converted graphs take one text, unpadded
        if len(ids) > self._max_source:
            raise InvalidRequest(
                f"text is {len(ids)} tokens; the Core ML encoder was converted for at most {self._max_source} "
                "(options.max_source_tokens)",
                status=413,
            )
        hidden = self._encoder.predict({"input_ids": np.asarray([ids], dtype=np.int32)})["encoder_hidden_states"]
        hidden = np.asarray(hidden, dtype=np.float32)

        def step(tokens: np.ndarray) -> np.ndarray:
            out = self._decoder.predict({"decoder_input_ids": tokens.astype(np.int32), "encoder_hidden_states": hidden})
            return np.asarray(out["logits"], dtype=np.float32)

        return self.decode_greedy(step, 1, prefix)
