"""The original pipeline's table, measured on this machine, against the memory-bandwidth floor.

    python -m benchmarks.original [--rounds 5] [--tokens 24]

Runs the original pipeline's steps and the speed levers (benchmarks.translate: output-vocabulary
restriction, hayaku's greedy loop, threads, torch.compile) on the random
NLLB-200-distilled-600M-shaped model (forced output length), all interleaved in one run, then
lists the steps: float32 beam 3 (baseline) -> bfloat16 greedy -> int8 -> CTranslate2 int8 ->
the fastest setting measured, with speedups vs the baseline and vs bfloat16 greedy, and ms per
token. In the same run it measures the machine's read bandwidth (numpy max/dot over a large
array, one thread per core) and gives the floor per generated token: decoder weights plus the
output projection rows a step scores, read once per step, at 4 / 2 / 1 bytes per parameter,
divided by that bandwidth.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

#: table steps: (label in benchmarks.translate, bytes per weight for the floor)
STEPS = [
    ("transformers float32 beam 3 (baseline)", 4),
    ("transformers bfloat16 greedy", 2),
    ("transformers int8 dynamic greedy", 1),
    ("ctranslate2 int8 greedy", 1),
]
BYTES = {"float32": 4, "bfloat16": 2, "int8": 1}


def read_bandwidth_gbs(gib: float = 1.0, threads: int | None = None, repeats: int = 5) -> float:
    """Best read bandwidth in GB/s: ``threads`` numpy reads (max, dot) of disjoint slices of a ``gib`` GiB array."""
    threads = threads or os.cpu_count() or 1
    data = np.ones(int(gib * 2**30) // 4, dtype=np.float32)
    parts = np.array_split(data, threads)
    best = 0.0
    # numpy releases the GIL in these, so threads read in parallel; np.sum's pairwise float
    # summation is compute-bound here (about 0.6x of max/dot), so the best of two plain readers is taken
    readers = (np.max, lambda x: np.dot(x, x))
    with ThreadPoolExecutor(threads) as pool:
        for reader in readers:
            for _ in range(repeats + 1):
                start = time.perf_counter()
                list(pool.map(reader, parts))
                best = max(best, data.nbytes / (time.perf_counter() - start) / 1e9)
    return best


def params_per_step(config: dict[str, Any], output_rows: int | None = None) -> int:
    """Parameters a decoder step reads: every decoder layer (self- and cross-attention, FFN, norms)
    plus the output projection (``output_rows`` of it when restricted), from an M2M100/NLLB config."""
    d, ffn, layers = config["d_model"], config["decoder_ffn_dim"], config["decoder_layers"]
    vocab = output_rows or config["vocab_size"]
    attention = 4 * (d * d + d)  # q, k, v, out with biases
    per_layer = 2 * attention + (d * ffn + ffn) + (ffn * d + d) + 3 * 2 * d  # 3 layer norms
    return layers * per_layer + 2 * d + vocab * d  # final norm, output projection (no bias)


def build_rows(rows: list[dict[str, Any]], config: dict[str, Any], bandwidth_gbs: float) -> list[dict[str, Any]]:
    """The original table from benchmarks.translate rows: the fixed steps, then the best measured."""
    by_label = {r["setting"]: r for r in rows}
    measured = [r for r in rows if "median_ms" in r and not r.get("errors")]
    out = []

    def floor_ms(nbytes: int, r: dict[str, Any] | None = None) -> float:
        n_params = params_per_step(config, (r or {}).get("output_rows"))
        return n_params * nbytes / (bandwidth_gbs * 1e9) * 1000.0

    def nbytes_of(r: dict[str, Any]) -> int:
        opts = r.get("options", {})
        if opts.get("quantize") == "int8" or "int8" in str(opts.get("compute_type", "")):
            return 1
        return BYTES.get(str(opts.get("dtype") or opts.get("compute_type") or "float32"), 4)

    for label, nbytes in STEPS:
        r = by_label.get(label)
        out.append({"step": label, "row": r, "floor_ms_per_token": floor_ms(nbytes)})
    if measured:
        best = min(measured, key=lambda r: r["median_ms"])
        out.append(
            {
                "step": f"best found: {best['setting']}",
                "row": best,
                "floor_ms_per_token": floor_ms(nbytes_of(best), best),
            }
        )
    return out


def settings(tokens: int) -> list[Any]:
    """The original steps (from benchmarks.translate) and the speed levers, for one interleaved run."""
    from benchmarks import translate

    steps = {label for label, _ in STEPS}
    return [s for s in translate.seq2seq_settings(tokens) if s.label in steps] + translate.lever_settings(tokens)


def chart(table: list[dict[str, Any]], path: Path) -> Path:
    """Bar chart of median ms per setting (log scale), the floor marked per bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [t for t in table if t["row"] and "median_ms" in t["row"]]
    fig, ax = plt.subplots(figsize=(9, 4))
    names = [textwrap.fill(t["step"], 22) for t in ok]
    ax.bar(range(len(ok)), [t["row"]["ms_per_token"] for t in ok], color="tab:blue", label="measured ms/token")
    ax.scatter(range(len(ok)), [t["floor_ms_per_token"] for t in ok], color="tab:red", marker="_", s=400,
               label="bandwidth floor", zorder=3)  # fmt: skip
    ax.set_xticks(range(len(ok)), names, fontsize=7)
    ax.set_yscale("log")
    ax.set_ylabel("ms per generated token")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.original", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    p.add_argument("--tokens", type=int, default=24, help="forced output tokens (default 24)")
    p.add_argument("--gib", type=float, default=1.0, help="array size of the bandwidth measurement (default 1 GiB)")
    ns = p.parse_args(argv)

    from benchmarks import translate
    from benchmarks.common import RESULTS, markdown_table, write_result
    from benchmarks.models import nllb600m_random

    model = nllb600m_random()
    config = json.loads((Path(model) / "config.json").read_text())
    n_params = params_per_step(config)
    load_before = os.getloadavg()[0]
    bw_before = read_bandwidth_gbs(ns.gib)
    print(f"read bandwidth {bw_before:.1f} GB/s", file=sys.stderr)
    rows = translate.run(settings(ns.tokens), str(model), ns.rounds, [translate.SENTENCE])
    bw_after = read_bandwidth_gbs(ns.gib)
    load_after = os.getloadavg()[0]
    bandwidth = max(bw_before, bw_after)
    table = build_rows(rows, config, bandwidth)
    bf16 = next((r for r in rows if r["setting"] == STEPS[1][0] and "median_ms" in r), None)

    def vs_bf16(r: dict[str, Any]) -> str:
        return f"{bf16['median_ms'] / r['median_ms']:.2f}x" if bf16 else "-"

    md_rows = []
    for t in table:
        r = t["row"]
        if not r or "median_ms" not in r:
            why = (r or {}).get("skipped", "not measured")
            md_rows.append([t["step"], "-", "-", "-", "-", t["floor_ms_per_token"], "-", f"skipped: {why[:60]}"])
            continue
        x_floor = f"{r['ms_per_token'] / t['floor_ms_per_token']:.1f}x"
        md_rows.append([t["step"], r["median_ms"], f"{r['speedup']:.2f}x", vs_bf16(r), r["ms_per_token"],
                        t["floor_ms_per_token"], x_floor, ""])  # fmt: skip
    headers = ["step", "median ms", "vs baseline", "vs bfloat16 greedy", "ms/token", "floor ms/token", "x floor",
               "note"]  # fmt: skip
    md = markdown_table(headers, md_rows)
    floor_rows = {None: "full", translate.LEVER_VOCAB: f"{translate.LEVER_VOCAB // 1000}k"}
    all_rows = markdown_table(
        ["setting", "median ms", "p95 ms", "ms/token", "vs baseline", "vs bfloat16", "first call s", "output rows"],
        [[r["setting"], r["median_ms"], r["p95_ms"], r["ms_per_token"], f"{r['speedup']:.2f}x", vs_bf16(r),
          r.get("first_call_ms", 0) / 1000, floor_rows.get(r.get("output_rows"), r.get("output_rows"))]
         for r in rows if "median_ms" in r]
        + [[r["setting"], *["-"] * 6, f"skipped: {r['skipped'][:80]}"] for r in rows if "skipped" in r],
    )  # fmt: skip
    print(md)
    RESULTS.mkdir(parents=True, exist_ok=True)
    png = chart(table, RESULTS / "original-table.png")
    base = next((r for r in rows if r["setting"] == STEPS[0][0] and "median_ms" in r), None)
    limit = ""
    if base:
        best_floor = params_per_step(config, translate.LEVER_VOCAB) / (bandwidth * 1e9) * 1000.0
        limit = (
            f"\n\nWhat the floor allows: {ns.tokens} tokens x {best_floor:.1f} ms (int8, {translate.LEVER_VOCAB} "
            f"output rows; {params_per_step(config) / (bandwidth * 1e9) * 1000.0:.1f} ms with all of them) = "
            f"{ns.tokens * best_floor:.0f} ms, so the most any setting could be faster than the "
            f"{base['median_ms']:.0f} ms baseline here is {base['median_ms'] / (ns.tokens * best_floor):.1f}x "
            "(encoder and per-step overheads come on top)."
        )
    notes = (
        f"Model: random weights, exact facebook/nllb-200-distilled-600M architecture, forced to {ns.tokens} "
        f"output tokens; input {translate.SENTENCE!r}; batch 1; {ns.rounds} interleaved rounds after one "
        f"warm-up; {os.cpu_count()} cores (1-minute load average {load_before:.1f} before and {load_after:.1f} "
        "after the run: the machine is shared, so absolute times are noisy and the ratios are the result). "
        f"Floor: {n_params / 1e6:.0f}M parameters read per decoder step "
        f"(decoder layers + output projection; with {translate.LEVER_VOCAB} output rows "
        f"{params_per_step(config, translate.LEVER_VOCAB) / 1e6:.0f}M) / read bandwidth {bandwidth:.1f} GB/s "
        f"(numpy max/dot over a large array, {os.cpu_count()} threads, best of 5, "
        f"before {bw_before:.1f} and after {bw_after:.1f} GB/s the run), "
        f"at 4/2/1 bytes per parameter for float32/bfloat16/int8. Beam 3 reads the weights once per step "
        f"for all beams, so its floor is the float32 one. Output rows: the restriction levers score "
        f"{translate.LEVER_VOCAB} of the 256206 vocabulary rows per step (a stand-in for a target-language "
        f"subset, see benchmarks/translate.py). First call: the untimed first translation (torch.compile "
        f"compiles there). Chart: {png.name}.{limit}\n\nAll settings measured:\n\n{all_rows}"
    )
    data = {"bandwidth_gbs": [bw_before, bw_after], "params_per_step": n_params, "rows": rows,
            "load_average": [load_before, load_after]}  # fmt: skip
    path = write_result("original-table", "The original pipeline's table, on this machine", md, notes, data=data)
    print(f"wrote {path} and {png}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
