"""CTranslate2's process-wide CPU levers: ``CT2_USE_MKL`` and ``CT2_FORCE_CPU_ISA``.

    python -m benchmarks.ct2_levers [--rounds 3] [--calls 5] [--llm]

CTranslate2 reads both variables once, when it starts, so each variant runs in a process of its
own; the variants take turns round by round (A B C D A B C D ...) so noise lands on all alike.
Each process loads the NLLB-600M-shaped random model (int8, greedy, forced to 24 output tokens,
the seq2seq runtime's shape) and, with ``--llm``, the bundled Qwen through the CTranslate2
runtime (needs ``hayaku models prepare --all-runtimes``), times ``--calls`` translations and
reports the median. By default CTranslate2 uses MKL on Intel CPUs and oneDNN elsewhere; the ISA
it dispatches to is the best the CPU has.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

from benchmarks.common import machine, markdown_table, write_result

VARIANTS: dict[str, dict[str, str]] = {
    "default": {},
    "CT2_USE_MKL=0": {"CT2_USE_MKL": "0"},
    "CT2_USE_MKL=1": {"CT2_USE_MKL": "1"},
    "CT2_FORCE_CPU_ISA=AVX2": {"CT2_FORCE_CPU_ISA": "AVX2"},
    "CT2_FORCE_CPU_ISA=AVX512": {"CT2_FORCE_CPU_ISA": "AVX512"},
}
TEXT = "Hello, how are you today?"


def _child(calls: int, llm: bool) -> None:
    """Runs in the variant's process: one JSON line of median ms per model."""
    from backends.registry import create_translator
    from benchmarks.models import nllb600m_random

    out: dict[str, float] = {}
    forced = {"compute_type": "int8", "beam_size": 1, "min_decoding_length": 24, "max_decoding_length": 24}
    models: list[tuple[str, str, str | None, dict[str, Any]]] = [
        ("nllb-600m-shape ct2 int8", "ctranslate2", str(nllb600m_random()), forced)
    ]
    if llm:
        models.append(("qwen 1.5B llm ct2 int8", "llm", None, {"runtime": "ctranslate2", "compute_type": "int8"}))
    for label, backend, model, options in models:
        tr = create_translator(backend, model=model, options=options)
        tr.load()
        tr.translate([TEXT])
        ms = []
        for _ in range(calls):
            start = time.perf_counter()
            tr.translate([TEXT])
            ms.append((time.perf_counter() - start) * 1000)
        out[label] = statistics.median(ms)
        tr.close()
    print(json.dumps(out))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--calls", type=int, default=5, help="timed translations per process and model")
    ap.add_argument("--llm", action="store_true", help="also the bundled Qwen through CTranslate2 int8")
    ap.add_argument("--timeout", type=float, default=180, help="seconds a variant's process may take (default 180)")
    ap.add_argument("--name", default="ct2-levers", help="results/<name>.md and .json (default ct2-levers)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ns = ap.parse_args(argv)
    if ns.child:
        _child(ns.calls, ns.llm)
        return 0

    from benchmarks.original import read_bandwidth_gbs

    bandwidth = read_bandwidth_gbs()
    results: dict[str, dict[str, list[float]]] = {v: {} for v in VARIANTS}
    failed: dict[str, str] = {}
    cmd = [sys.executable, "-m", "benchmarks.ct2_levers", "--child", "--calls", str(ns.calls)] + ["--llm"] * ns.llm
    for r in range(ns.rounds):
        for name, env in VARIANTS.items():
            print(f"  round {r + 1}/{ns.rounds}: {name}", file=sys.stderr, flush=True)
            if name in failed:
                continue
            try:
                done = subprocess.run(
                    cmd, env={**os.environ, **env}, capture_output=True, text=True, check=False, timeout=ns.timeout
                )
            except subprocess.TimeoutExpired:  # MKL on AMD CPUs: one call took 105 s instead of 1.8 s
                failed[name] = f"over {ns.timeout:.0f} s per process"
                print(f"  {name}: {failed[name]}", file=sys.stderr, flush=True)
                continue
            if done.returncode != 0:  # e.g. an ISA this CPU lacks: the variant's row says so
                failed[name] = done.stderr.strip().splitlines()[-1][:120] if done.stderr.strip() else "failed"
                print(f"  {name} failed: {failed[name]}", file=sys.stderr, flush=True)
                continue
            for label, ms in json.loads(done.stdout.strip().splitlines()[-1]).items():
                results[name].setdefault(label, []).append(ms)
    labels = list(results["default"])
    rows = []
    for name in VARIANTS:
        row: list[object] = [name]
        if not results[name]:
            rows.append(row + [f"failed: {failed.get(name, '')}", "-"] * len(labels))
            continue
        for label in labels:
            med, base = statistics.median(results[name][label]), statistics.median(results["default"][label])
            row += [med, f"{med / base:.2f}x"]
        rows.append(row)
    md = markdown_table(["variant", *[h for lb in labels for h in (f"{lb} ms", "vs default")]], rows)
    import ctranslate2

    notes = (
        f"Machine: {machine()}; read bandwidth {bandwidth:.1f} GB/s (measured in this run). ctranslate2 "
        f"{ctranslate2.__version__}. Each cell: median over {ns.rounds} processes of each one's median of {ns.calls} "
        f"calls of {TEXT!r}, variants interleaved round by round."
    )
    print(md + "\n\n" + notes)
    write_result(ns.name, "CTranslate2 CPU levers (CT2_USE_MKL, CT2_FORCE_CPU_ISA)", md, notes, data=results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
