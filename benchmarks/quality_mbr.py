"""Reranking sampled translations (MBR with chrF) against greedy decoding: is it a quality lever here?

    python -m benchmarks.quality_mbr                           # test part, 6 candidates, temperature 0.4
    python -m benchmarks.quality_mbr --corpus en-ja --limit 60 --temperature 0.7

For each corpus sentence the default ``llm`` setting (llama.cpp, default options: its prompt, Han
bans and Latin-letter grammar) decodes greedily, then samples ``--candidates`` - 1 more translations
at once in its parallel slots (top-k 40, top-p 0.95, a seed each). MBR keeps the candidate with the
highest summed sentence chrF against the other candidates; the oracle keeps the one closest to the
reference: an upper bound for any reranker of the same candidates, not a setting anyone could run.
Reported: corpus chrF of greedy, MBR and oracle, and the median time of greedy alone and of greedy
plus the samples (what one MBR request costs).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from benchmarks.common import machine, markdown_table, write_result
from benchmarks.quality import TEST_CORPUS, chrf, load_corpus


def mbr_pick(candidates: list[str]) -> str:
    """The candidate with the highest summed sentence chrF against the others (the first on a tie)."""
    from sacrebleu.metrics import CHRF

    metric = CHRF()
    gain = [
        sum(metric.sentence_score(c, [o]).score for j, o in enumerate(candidates) if j != i)
        for i, c in enumerate(candidates)
    ]
    return candidates[max(range(len(candidates)), key=gain.__getitem__)]


def oracle_pick(candidates: list[str], reference: str) -> str:
    """The candidate with the highest sentence chrF against the reference."""
    from sacrebleu.metrics import CHRF

    metric = CHRF()
    return max(candidates, key=lambda c: metric.sentence_score(c, [reference]).score)


def candidates(tr: Any, text: str, n: int, temperature: float) -> tuple[list[str], float, float]:
    """(greedy then n - 1 sampled translations, greedy seconds, greedy + sampling seconds)."""
    from backends.llm_text import clean_translation

    messages, limit, bans, extra = tr._llamacpp_request(text, "en", "ja")

    def one(seed: int) -> str:
        sampling = {"temperature": temperature, "top_k": 40, "top_p": 0.95, "seed": seed} if seed else {}
        answer = tr._runtime.chat(messages, limit, bans, **extra, **sampling)
        return clean_translation(answer["choices"][0]["message"]["content"] or "", "ja", text)

    start = time.perf_counter()
    greedy = one(0)
    greedy_s = time.perf_counter() - start
    with ThreadPoolExecutor(max(1, n - 1)) as pool:  # the engine decodes them together in its slots
        sampled = list(pool.map(one, range(1, n)))
    return [greedy, *sampled], greedy_s, time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", default=TEST_CORPUS, help="benchmarks/corpus/<name>.tsv (default: the test part)")
    ap.add_argument("--limit", type=int, default=None, help="only the first N sentences")
    ap.add_argument("--candidates", type=int, default=6, help="translations per sentence, greedy included")
    ap.add_argument("--temperature", type=float, default=0.4, help="sampling temperature of the others")
    ap.add_argument("--name", default="quality-mbr", help="results/<name>.md and .json")
    ns = ap.parse_args(argv)
    if ns.candidates < 2:
        ap.error("--candidates: at least 2 (greedy and one sample)")
    if not 0 < ns.temperature <= 2:
        ap.error("--temperature: in (0, 2]")

    from backends.llm_mt import LLMTranslator
    from benchmarks.original import read_bandwidth_gbs

    pairs = load_corpus(ns.corpus, ns.limit)
    bandwidth = read_bandwidth_gbs()
    tr = LLMTranslator(None, {"threads": 2, "parallel": max(4, ns.candidates - 1)})
    tr.load()
    tr.translate(["Hello."], "en", "ja")  # fills every slot's cached prefix
    picks: dict[str, list[str]] = {"greedy": [], "MBR": [], "oracle": []}
    greedy_ms, all_ms, pool = [], [], []
    for i, pair in enumerate(pairs):
        print(f"  sentence {i + 1}/{len(pairs)}", file=sys.stderr, flush=True)
        cands, g_s, a_s = candidates(tr, pair.source, ns.candidates, ns.temperature)
        picks["greedy"].append(cands[0])
        picks["MBR"].append(mbr_pick(cands))
        picks["oracle"].append(oracle_pick(cands, pair.reference))
        greedy_ms.append(g_s * 1000)
        all_ms.append(a_s * 1000)
        pool.append(cands)
    refs = [p.reference for p in pairs]
    base = statistics.median(greedy_ms)
    rows = [
        ["greedy (the default)", round(chrf(picks["greedy"], refs), 1), round(base), "1.00x"],
        [f"MBR of {ns.candidates} (chrF)", round(chrf(picks["MBR"], refs), 1), round(statistics.median(all_ms)),
         f"{statistics.median(all_ms) / base:.2f}x"],
        [f"oracle of {ns.candidates} (bound, not a setting)", round(chrf(picks["oracle"], refs), 1), "", ""],
    ]  # fmt: skip
    md = markdown_table(["pick", "chrF", "median ms", "vs greedy"], rows)
    changed = sum(a != b for a, b in zip(picks["greedy"], picks["MBR"], strict=True))
    notes = (
        f"Machine: {machine()}; read bandwidth {bandwidth:.1f} GB/s (measured in this run). Corpus "
        f"benchmarks/corpus/{ns.corpus}.tsv, {len(pairs)} sentences, one at a time; greedy, then "
        f"{ns.candidates - 1} samples at temperature {ns.temperature:g} decoded together in the engine's slots. "
        f"MBR picked another translation than greedy for {changed} of {len(pairs)}."
    )
    print(md + "\n\n" + notes)
    write_result(ns.name, "Reranking sampled translations (MBR with chrF)", md, notes,
                 data={"sources": [p.source for p in pairs], "references": refs, "candidates": pool,
                       "greedy_ms": greedy_ms, "all_ms": all_ms, "bandwidth_gbs": bandwidth})  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
