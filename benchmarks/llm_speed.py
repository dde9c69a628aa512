"""Where the time of the offline default translator goes, against the memory-bandwidth floor.

    python -m benchmarks.llm_speed [--rounds 9]

The llm backend (bundled Qwen2.5-1.5B, CTranslate2 int8, cached few-shot prefix) on the
latency sentence, interleaved with its levers (threads, the Han-suppression list, fewer
examples, compute types), plus two probes of the same loaded model: generation stopped after
1 token (prefill of the user's text + one step) and after 2, which split a request into
prefill and per-token decode. The floor per generated token is the bytes a step reads
(every layer's weights + the output projection, int8) over the read bandwidth measured in
the same run (benchmarks.original.read_bandwidth_gbs).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from benchmarks.common import interleave, markdown_table, write_result

SENTENCE = "Hello, how are you today?"
BASE: dict[str, Any] = {"runtime": "ctranslate2", "compute_type": "int8", "threads": 2}
#: each loads its own copy of the model (1.7 GB); threads were measured in results/llm-threads.md
LEVERS: dict[str, dict[str, Any]] = {
    "default (int8, 2 threads, 4 examples, Han suppression)": {},
    "no Han suppression": {"japanese_kanji_only": False},
    "2 examples": {"few_shot": 2},
}


def params_per_step(config: dict[str, Any]) -> tuple[int, int]:
    """(parameters a decode step reads, of which the output projection) for a Qwen2-style config."""
    d, ffn, layers, vocab = (config[k] for k in ("hidden_size", "intermediate_size", "num_hidden_layers", "vocab_size"))
    kv = d // config["num_attention_heads"] * config["num_key_value_heads"]
    attention = d * d + d + 2 * (d * kv + kv) + d * d  # q (bias), k, v (bias), o
    per_layer = attention + 3 * d * ffn + 2 * d
    return layers * per_layer + d + vocab * d, vocab * d


def probe(tr: Any, max_length: int) -> Any:
    """Generation of the latency sentence stopped after ``max_length`` tokens, on ``tr``'s model."""
    tok = tr._tokenizer
    prefix = tr.prefix_ids("en", "ja")
    rest = tr.prompt_ids(SENTENCE, "en", "ja")[len(prefix) :]
    supp = [[t] for t in tok.convert_ids_to_tokens(tr.suppressed_ids())]
    static = tok.convert_ids_to_tokens(prefix)
    return lambda: tr._runtime.generate_batch(
        [tok.convert_ids_to_tokens(rest)], max_length=max_length, sampling_topk=1, include_prompt_in_result=False,
        end_token=tr._end_ids, static_prompt=static, suppress_sequences=supp,
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.llm_speed", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--rounds", type=int, default=9, help="interleaved rounds (default 9)")
    ns = p.parse_args(argv)

    from backends import bundled
    from backends.registry import create_translator
    from benchmarks.original import read_bandwidth_gbs

    loaded: dict[str, Any] = {}
    for label, extra in LEVERS.items():
        print(f"load {label} ...", file=sys.stderr, flush=True)
        tr = create_translator("llm", options={**BASE, **extra})
        tr.load()
        loaded[label] = tr
    base = loaded[next(iter(LEVERS))]
    result = base.translate([SENTENCE])[0]
    calls = {k: (lambda t=t: t.translate([SENTENCE])) for k, t in loaded.items()}
    calls.update({"probe: stop after 1 token": probe(base, 1), "probe: stop after 2 tokens": probe(base, 2)})
    load_before = os.getloadavg()[0]
    bw_before = read_bandwidth_gbs()
    series = interleave(calls, rounds=ns.rounds)
    bandwidth = max(bw_before, read_bandwidth_gbs())
    load_after = os.getloadavg()[0]
    n_prefix = len(base.prefix_ids("en", "ja"))
    n_user = len(base.prompt_ids(SENTENCE, "en", "ja")) - n_prefix
    for t in loaded.values():
        t.close()

    config = json.loads((bundled.qwen_hf() / "config.json").read_text())
    n_step, n_head = params_per_step(config)
    floor_ms = n_step / (bandwidth * 1e9) * 1000.0  # int8: one byte per parameter
    tokens = int(result.output_tokens or 0) + 1  # + the end-of-turn token, which is generated too
    med = {k: s.median() for k, s in series.items()}
    one, two = med["probe: stop after 1 token"], med["probe: stop after 2 tokens"]
    per_token = two - one
    default = med[next(iter(LEVERS))]
    rows = [[k, v, f"{v / default:.2f}x", series[k].pct(95)] for k, v in med.items()]
    md = markdown_table(["setting", "median ms", "vs default", "p95 ms"], rows)
    decode = per_token * (tokens - 1)
    notes = (
        f"Output {result.text!r}: {tokens} generated tokens (with the end of turn); the user's text is "
        f"{n_user} prompt tokens after the cached {n_prefix}-token prefix. {ns.rounds} interleaved rounds after "
        f"one warm-up; 1-minute load average {load_before:.1f} before and {load_after:.1f} after the run (a shared "
        "machine: absolute times are noisy, ratios less so).\n\n"
        f"Split of the default: prefill + first token {one:.0f} ms; each further token {per_token:.0f} ms "
        f"(stop-after-2 minus stop-after-1), so {tokens - 1} more tokens = {decode:.0f} ms; the rest "
        f"({default - one - decode:.0f} ms) is tokenizing, prompt building and cleaning.\n\n"
        f"Floor: a decode step reads {n_step / 1e9:.2f}B parameters ({n_head / 1e6:.0f}M of them the output "
        f"projection), one byte each in int8, at {bandwidth:.1f} GB/s read bandwidth (measured in this run, "
        f"before {bw_before:.1f}) = {floor_ms:.0f} ms per token; {tokens} tokens = {tokens * floor_ms:.0f} ms before "
        f"any prefill. Measured per token: {per_token:.0f} ms = {per_token / floor_ms:.1f}x the floor."
    )
    print(md + "\n\n" + notes)
    data = {"medians_ms": med, "tokens": tokens, "bandwidth_gbs": [bw_before, bandwidth], "params_per_step": n_step,
            "floor_ms_per_token": floor_ms, "per_token_ms": per_token, "prefill_plus_first_ms": one}  # fmt: skip
    path = write_result("llm-speed", "Offline default translator: where the time goes", md, notes, data=data)
    print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
