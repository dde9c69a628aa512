"""The offline default translator (llm backend, llama.cpp runtime) in-process: latency and concurrency.

    python -m benchmarks.llamacpp_speed [--rounds 7] [--parallel 4]

Interleaved, on one loaded backend: the latency sentence alone; four short everyday sentences one
after another; the same four sent at once from four threads (what concurrent HTTP requests do: the
llama.cpp slots decode them together). The ratio of the last two is the concurrency gain; the
time to the first of the concurrent four finishing shows that no request waits for the whole batch.
Read bandwidth is measured in the same run, with the per-token floor of the bundled GGUF.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from typing import Any

from benchmarks.common import Sample, interleave, machine, markdown_table, write_result

SENTENCE = "Hello, how are you today?"
FOUR = ["Good morning.", "The train leaves at nine.", "Have a nice trip.", "Where is the station?"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--parallel", type=int, default=4, help="llama.cpp slots (option parallel)")
    ap.add_argument("--threads", type=int, default=2)
    ns = ap.parse_args(argv)

    from backends.gguf_meta import decode_step_bytes
    from backends.llm_mt import LLMTranslator
    from benchmarks.original import read_bandwidth_gbs

    bandwidth = read_bandwidth_gbs()
    tr = LLMTranslator(None, {"runtime": "llama.cpp", "threads": ns.threads, "parallel": ns.parallel})
    start = time.perf_counter()
    tr.load()
    load_s = time.perf_counter() - start
    assert tr._model_path is not None
    step_bytes = decode_step_bytes(tr._model_path)

    def one() -> dict[str, Any]:
        r = tr.translate([SENTENCE])[0]
        return {"text": r.text, "tokens": r.output_tokens}

    def sequential() -> dict[str, Any]:
        return {"texts": [tr.translate([t])[0].text for t in FOUR]}

    def concurrent() -> dict[str, Any]:
        t0 = time.perf_counter()
        done: list[float] = []
        out: dict[int, str] = {}

        def call(i: int) -> None:
            out[i] = tr.translate([FOUR[i]])[0].text
            done.append((time.perf_counter() - t0) * 1000)

        threads = [threading.Thread(target=call, args=(i,)) for i in range(len(FOUR))]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        return {"first_ms": min(done), "texts": [out[i] for i in range(len(FOUR))]}

    series = interleave({"latency sentence": one, "4 sequential": sequential, "4 concurrent": concurrent}, ns.rounds)
    bandwidth = max(bandwidth, read_bandwidth_gbs())
    floor_ms = step_bytes / (bandwidth * 1e9) * 1000
    single, seq, conc = (series[k] for k in ("latency sentence", "4 sequential", "4 concurrent"))
    first = sorted(s.extra["first_ms"] for s in conc.samples if s.ok)
    rows = [
        ["latency sentence", single.median(), single.pct(95), ""],
        ["4 short sentences, one after another", seq.median(), seq.pct(95), "1.00x"],
        ["the same 4 at once (4 threads)", conc.median(), conc.pct(95), f"{conc.median() / seq.median():.2f}x"],
        ["  first of the concurrent 4 done", first[len(first) // 2], first[-1], ""],
    ]
    table = markdown_table(["request", "median ms", "p95 ms", "vs sequential"], rows)
    sample: Sample = single.samples[-1]
    notes = (
        f"Machine: {machine()}; read bandwidth {bandwidth:.1f} GB/s (measured in this run). Bundled Qwen2.5-Coder-1.5B "
        f"Q4_K_M GGUF, llama.cpp through xllamacpp, {ns.threads} threads, {ns.parallel} slots, model loaded in "
        f"{load_s:.1f} s. {ns.rounds} interleaved rounds after a warm-up. {SENTENCE!r} -> {sample.extra.get('text')!r} "
        f"({sample.extra.get('tokens')} tokens with the end of turn). Decode floor: {step_bytes / 1e6:.0f} MB per step "
        f"/ {bandwidth:.1f} GB/s = {floor_ms:.1f} ms per token. Concurrent outputs equal the sequential ones: "
        f"{conc.samples[-1].extra.get('texts') == seq.samples[-1].extra.get('texts')}."
    )
    path = write_result("llamacpp-speed", "Offline default translator: llama.cpp latency and concurrency", table, notes)
    print(table + "\n\n" + notes + f"\n\nwritten to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
