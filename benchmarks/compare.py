"""``hayaku compare A.yaml B.yaml``: offline A/B of two graphs on the same corpus sentences.

    hayaku compare configs/cpu.yaml configs/fast.yaml --limit 20 --rounds 2

Both graphs run in this process (no Ray): each YAML's args are resolved as the server
would (``backend: auto`` included) and built into the same Pipeline the server runs (graph.pipeline). Every corpus
sentence goes through A and B back to back, alternating which goes first (A B, B A, ...),
so drift lands on both. Reports per-stage latency (translate, synthesize, total: p50/p95),
the ratio B/A of the medians with a paired bootstrap 95% interval, the chrF of each graph's
translations against the corpus references and their delta (B - A), and writes
``results/compare-<a>-<b>.md`` plus a boxplot PNG.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from graph.abtest import median_ratio_ci

STAGES = ("translate", "synthesize", "total")


def graph_from_config(path: Path) -> Any:
    """The first application of a Serve YAML, resolved here as the server would."""
    from graph.auto import resolve_graph
    from graph.yaml_files import load_app_args

    return resolve_graph(load_app_args(path)[0].args, where=str(path))


def run_ab(pipes: dict[str, Any], texts: Sequence[str], rounds: int, progress: bool = True) -> dict[str, Any]:
    """Each text through every pipeline, alternating order; per label: stage ms lists and first-round outputs."""
    labels = list(pipes)
    out: dict[str, Any] = {k: {"ms": {s: [] for s in STAGES}, "outputs": []} for k in labels}
    for k in labels:  # untimed warm-up: lazily built state (prompt caches, phonemizers)
        pipes[k].run_sync(texts[0])
    step = 0
    for r in range(rounds):
        for i, text in enumerate(texts):
            order = labels if step % 2 == 0 else labels[::-1]
            step += 1
            for k in order:
                res = pipes[k].run_sync(text)
                for s in STAGES:
                    out[k]["ms"][s].append(res.timings_ms[s])
                if r == 0:
                    out[k]["outputs"].append(res.translation)
            if progress and (sys.stderr.isatty() or i + 1 == len(texts)):
                print(f"\r  round {r + 1}/{rounds}: {i + 1}/{len(texts)}", end="", file=sys.stderr, flush=True)
        if progress:
            print(file=sys.stderr)
    return out


def summarize(runs: dict[str, Any], refs: Sequence[str], a: str, b: str) -> dict[str, Any]:
    """Per-stage p50/p95 of both, the B/A ratio with its interval, and chrF of each (and the delta)."""
    from benchmarks.quality import chrf

    stages = {}
    for s in STAGES:
        xa, xb = runs[a]["ms"][s], runs[b]["ms"][s]
        ratio, lo, hi = median_ratio_ci(xb, xa, paired=True) or (math.nan, math.nan, math.nan)  # B/A
        stages[s] = {
            a: {"p50": float(np.median(xa)), "p95": float(np.percentile(xa, 95))},
            b: {"p50": float(np.median(xb)), "p95": float(np.percentile(xb, 95))},
            "ratio": ratio,
            "ci": [lo, hi],
        }
    ca, cb = chrf(runs[a]["outputs"], refs), chrf(runs[b]["outputs"], refs)
    return {"stages": stages, "chrf": {a: ca, b: cb}, "chrf_delta": cb - ca, "n": len(runs[a]["ms"]["total"])}


def chart(runs: dict[str, Any], a: str, b: str, path: Path) -> Path:
    """Boxplots of each stage's ms, A next to B."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(STAGES), figsize=(4 * len(STAGES), 4))
    for ax, s in zip(axes, STAGES, strict=True):
        ax.boxplot([runs[a]["ms"][s], runs[b]["ms"][s]], tick_labels=["A", "B"])
        ax.set_title(s)
        ax.set_ylabel("ms")
    fig.suptitle(f"A = {a}   B = {b}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def report(summary: dict[str, Any], a: str, b: str) -> str:
    """The markdown table of ``summarize``'s result."""
    from benchmarks.common import markdown_table

    rows = []
    for s, st in summary["stages"].items():
        lo, hi = st["ci"]
        rows.append(
            [s, st[a]["p50"], st[a]["p95"], st[b]["p50"], st[b]["p95"], f"{st['ratio']:.3f} [{lo:.3f}, {hi:.3f}]"]
        )
    headers = ["stage", "A p50 ms", "A p95 ms", "B p50 ms", "B p95 ms", "B/A median (95% CI)"]
    ch = summary["chrf"]
    return (
        markdown_table(headers, rows)
        + f"\n\nchrF vs corpus references: A {ch[a]:.2f}, B {ch[b]:.2f}, delta (B - A) {summary['chrf_delta']:+.2f}"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="hayaku compare", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("a", help="Serve YAML A, e.g. configs/cpu.yaml")
    p.add_argument("b", help="Serve YAML B, e.g. configs/fast.yaml")
    p.add_argument("--limit", type=int, default=20, help="corpus sentences (default 20; 0: all)")
    p.add_argument("--rounds", type=int, default=1, help="passes over the sentences (default 1)")
    p.add_argument("--name", help="results/<name>.md and .png (default compare-<a>-<b>)")
    ns = p.parse_args(argv)

    from benchmarks.common import RESULTS, write_result
    from benchmarks.quality import load_corpus

    a, b = Path(ns.a), Path(ns.b)
    la, lb = f"A:{a.stem}", f"B:{b.stem}"
    if la == lb:
        raise SystemExit("compare needs two configs")
    pipes = {}
    for label, path in ((la, a), (lb, b)):
        resolved = graph_from_config(path)
        print(f"{label} ({path}):\n{resolved.summary()}\nloading ...", file=sys.stderr, flush=True)
        pipes[label] = resolved.pipeline()
    pairs = load_corpus("en-ja", ns.limit or None)
    runs = run_ab(pipes, [q.source for q in pairs], ns.rounds)
    summary = summarize(runs, [q.reference for q in pairs], la, lb)
    md = report(summary, la, lb)
    print(md)
    name = ns.name or f"compare-{a.stem}-{b.stem}"
    RESULTS.mkdir(parents=True, exist_ok=True)
    png = chart(runs, la, lb, RESULTS / f"{name}.png")
    notes = (
        f"A = {a}, B = {b}. {len(pairs)} corpus sentences x {ns.rounds} rounds, A and B back to back per "
        "sentence, alternating which goes first; in-process (no Ray). Interval: paired bootstrap, 2000 "
        f"resamples, seed 0. Chart: {png.name}."
    )
    path = write_result(name, "Offline A/B of two graphs", md, notes, data={"a": str(a), "b": str(b), **summary})
    print(f"wrote {path} and {png}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
