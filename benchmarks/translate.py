"""Times each available translator setting on the same inputs, interleaved; prints a table.

    python -m benchmarks.translate                      # NLLB-600M-sized random model, 24 forced tokens
    python -m benchmarks.translate --source bundled     # the real offline default (Qwen 1.5B, llm backend)
    python -m benchmarks.translate --model ./my-marian  # any local seq2seq folder

With ``--source random`` a randomly initialised model with the exact
facebook/nllb-200-distilled-600M architecture is built once (no hub) and every setting
is forced to generate exactly ``--tokens`` tokens, so each backend is measured at the
original pipeline's model size: speed does not depend on weight values.
"""

from __future__ import annotations

import argparse
import functools
import gc
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backends.errors import HayakuError
from backends.registry import create_translator, translator_class
from benchmarks.common import bar_chart, interleave, markdown_table, rss_mb, write_result

SENTENCE = "Hello, how are you today?"


@dataclass
class Setting:
    label: str
    backend: str
    options: dict[str, Any] = field(default_factory=dict)
    baseline: bool = False
    #: output-layer rows scored per step when ``output_vocab`` restricts them (for the floor)
    output_rows: int | None = None


def seq2seq_settings(tokens: int | None) -> list[Setting]:
    """The original pipeline's steps, then the other runtimes; forced length when ``tokens``."""
    tf_force = {"min_new_tokens": tokens, "max_new_tokens": tokens} if tokens else {}
    ct2_force = {"min_decoding_length": tokens, "max_decoding_length": tokens} if tokens else {}
    ort_force = {"min_new_tokens": tokens, "max_new_tokens": tokens} if tokens else {}
    return [
        Setting(
            "transformers float32 beam 3 (baseline)",
            "transformers",
            {"dtype": "float32", "num_beams": 3, **tf_force},
            baseline=True,
        ),
        Setting("transformers bfloat16 greedy", "transformers", {"dtype": "bfloat16", "num_beams": 1, **tf_force}),
        Setting("transformers float32 greedy", "transformers", {"dtype": "float32", "num_beams": 1, **tf_force}),
        Setting(
            "transformers int8 dynamic greedy",
            "transformers",
            {"dtype": "float32", "quantize": "int8", "num_beams": 1, **tf_force},
        ),
        Setting("ctranslate2 float32 greedy", "ctranslate2", {"compute_type": "float32", "beam_size": 1, **ct2_force}),
        Setting("ctranslate2 int8 greedy", "ctranslate2", {"compute_type": "int8", "beam_size": 1, **ct2_force}),
        Setting("onnx float32 greedy", "onnx", {**ort_force}),
    ]


#: output-vocabulary size of the restriction levers on the random model: the size the issue's
#: reference point used. The random model's tokenizer is tiny, so ``output_vocab: target``
#: would keep a few hundred ids; a file of this many ids stands in for a real target-language
#: subset (its real size depends on the real tokenizer, which is not on this machine).
LEVER_VOCAB = 20_000


def restricted_vocab_file(size: int = LEVER_VOCAB) -> Path:
    """A file of ``size`` token ids (0..size-1) for the ``output_vocab`` levers, under HAYAKU_HOME."""
    from backends import store

    path = store.home() / "bench" / f"output-vocab-{size}.txt"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(" ".join(map(str, range(size))) + "\n")
    return path


def lever_settings(tokens: int | None, vocab_file: Path | None = None) -> list[Setting]:
    """The speed levers on top of the int8 settings: output-vocabulary restriction (CTranslate2
    vmap, sliced torch projection), hayaku's greedy loop, thread counts, torch.compile.
    (Each torch setting holds its own 1.7 GB model, so thread counts are measured on CTranslate2.)

    With ``tokens`` (the random model) the restriction is ``restricted_vocab_file()``;
    without, ``output_vocab: target`` (a real model's tokenizer names its tokens).
    """
    tf = {"dtype": "float32", "quantize": "int8", "num_beams": 1}
    tf.update({"min_new_tokens": tokens, "max_new_tokens": tokens} if tokens else {})
    ct2: dict[str, Any] = {"compute_type": "int8", "beam_size": 1}
    ct2.update({"min_decoding_length": tokens, "max_decoding_length": tokens} if tokens else {})
    if tokens:
        vocab, rows = str(vocab_file or restricted_vocab_file()), (None if vocab_file else LEVER_VOCAB)
    else:
        vocab, rows = "target", None
    tag = str(rows) if rows else ("file" if tokens else "target")
    return [
        Setting(f"ctranslate2 int8 greedy + vmap {tag}", "ctranslate2", {**ct2, "output_vocab": vocab},
                output_rows=rows),
        Setting("ctranslate2 int8 greedy, 1 thread", "ctranslate2", {**ct2, "intra_threads": 1}),
        Setting("ctranslate2 int8 greedy, 2 threads", "ctranslate2", {**ct2, "intra_threads": 2}),
        Setting(f"transformers int8 greedy + sliced head {tag}", "transformers",
                {**tf, "output_vocab": vocab}, output_rows=rows),
        Setting("transformers int8 greedy + hayaku loop", "transformers", {**tf, "loop": "greedy"}),
        Setting(f"transformers int8 greedy + hayaku loop + sliced head {tag}", "transformers",
                {**tf, "loop": "greedy", "output_vocab": vocab}, output_rows=rows),
        Setting("transformers int8 greedy + torch.compile", "transformers", {**tf, "compile": True}),
    ]  # fmt: skip


def llm_settings() -> list[Setting]:
    return [
        Setting("llm transformers bfloat16", "llm", {"runtime": "transformers", "dtype": "bfloat16"}),
        Setting(
            "llm transformers float32 (baseline)", "llm", {"runtime": "transformers", "dtype": "float32"}, baseline=True
        ),
        Setting("llm ctranslate2 int8", "llm", {"runtime": "ctranslate2", "compute_type": "int8"}),
    ]


def run(settings: list[Setting], model: str | None, rounds: int, texts: list[str]) -> list[dict[str, Any]]:
    loaded: dict[str, Any] = {}
    info: dict[str, dict[str, Any]] = {}
    for s in settings:
        reason = translator_class(s.backend).unavailable_reason(model)
        if reason:
            print(f"skip {s.label}: {reason}", file=sys.stderr)
            info[s.label] = {"skipped": reason}
            continue
        print(f"load {s.label} ...", file=sys.stderr, flush=True)
        before = rss_mb()
        try:
            tr = create_translator(s.backend, model=model, options=s.options)
            tr.load()
            first = time.perf_counter()
            out = tr.translate(texts)
            first_ms = (time.perf_counter() - first) * 1000.0
        except (HayakuError, RuntimeError, ValueError) as exc:
            print(f"skip {s.label}: {exc}", file=sys.stderr)
            info[s.label] = {"skipped": str(exc)}
            continue
        loaded[s.label] = tr
        info[s.label] = {
            "load_ms": tr.load_ms,
            "first_call_ms": first_ms,
            "rss_mb": rss_mb() - before,
            "tokens": sum(r.output_tokens or 0 for r in out),
            "sample": out[0].text[:60],
        }
    series = interleave({k: functools.partial(tr.translate, texts) for k, tr in loaded.items()}, rounds=rounds)
    base = next((s.label for s in settings if s.baseline and s.label in series), None)
    base_ms = series[base].median() if base else float("nan")
    rows = []
    for s in settings:
        row: dict[str, Any] = {"setting": s.label, "backend": s.backend, "options": s.options, **info[s.label]}
        if s.output_rows:
            row["output_rows"] = s.output_rows
        if s.label in series:
            ser = series[s.label]
            tokens = info[s.label]["tokens"] or 1
            row.update(
                median_ms=ser.median(),
                p95_ms=ser.pct(95),
                ms_per_token=ser.median() / tokens,
                speedup=base_ms / ser.median() if base else float("nan"),
                errors=ser.errors,
            )
        rows.append(row)
    for tr in loaded.values():
        tr.close()
    gc.collect()
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="hayaku bench translate", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--source",
        choices=["random", "bundled", "model"],
        default="random",
        help="random NLLB-600M-sized model (default), the bundled LLM, or --model",
    )
    p.add_argument("--model", help="a local model folder or hub id (implies --source model)")
    p.add_argument("--tokens", type=int, default=24, help="forced output length for --source random (default 24)")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    p.add_argument("--only", action="append", help="run only settings whose label contains this (repeatable)")
    p.add_argument("--levers", action="store_true", help="also the speed levers (vmap, sliced head, loop, threads)")
    p.add_argument("--name", default=None, help="results/<name>.md (default translate-<source>)")
    ns = p.parse_args(argv)
    source = "model" if ns.model else ns.source
    if source == "random":
        from benchmarks.models import nllb600m_random

        model: str | None = str(nllb600m_random())
        settings = seq2seq_settings(ns.tokens) + (lever_settings(ns.tokens) if ns.levers else [])
    elif source == "bundled":
        model, settings = "qwen2.5-coder-1.5b-instruct", llm_settings()
    else:
        model, settings = ns.model, seq2seq_settings(None)
    if ns.only:
        settings = [s for s in settings if any(o in s.label for o in ns.only)]
    rows = run(settings, model, ns.rounds, [SENTENCE])
    headers = ["setting", "median ms", "p95 ms", "ms/token", "speedup vs baseline", "load s", "RSS MB"]
    table_rows = []
    for r in rows:
        if "median_ms" not in r:
            table_rows.append([r["setting"], "-", "-", "-", "-", "-", f"skipped: {r.get('skipped', '')[:80]}"])
            continue
        table_rows.append(
            [
                r["setting"],
                r["median_ms"],
                r["p95_ms"],
                r["ms_per_token"],
                f"{r['speedup']:.2f}x",
                (r["load_ms"] or 0) / 1000,
                r["rss_mb"],
            ]
        )
    table = markdown_table(headers, table_rows)
    print(table)
    forced = f", forced to {ns.tokens} output tokens" if source == "random" else ""
    name = ns.name or f"translate-{source}"
    notes = (
        f"Model: {model}{forced}. Input: {SENTENCE!r}. {ns.rounds} interleaved rounds after one warm-up; "
        f"threads: {os.cpu_count()} cores. Chart: {name}.png."
    )
    path = write_result(name, "Translation backends, one interleaved run", table, notes, data=rows)
    done = [r for r in rows if "median_ms" in r]
    png = bar_chart(name, [r["setting"] for r in done], {"median ms": [r["median_ms"] for r in done]},
                    "median ms per translation (log scale)", log=True)  # fmt: skip
    print(f"wrote {path} and {png}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
