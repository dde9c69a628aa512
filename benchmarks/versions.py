"""Two versions of the code, one benchmark, interleaved: did a change add latency?

    git worktree add /tmp/before <commit>
    python -m benchmarks.versions --before /tmp/before --rounds 3 overhead --requests 150
    python -m benchmarks.versions --before /tmp/before --rounds 3 stream --synthetic --rounds 8 --ab-requests 50

Runs ``python -m benchmarks.<name> <args>`` from each source tree in turn (before, after, after, before,
... so drift lands on both), each tree on its own ``PYTHONPATH``, and reads the result JSON the benchmark
writes in its tree. Per figure: the median over rounds of each version and the ratio after / before.
Result files of this tree that the runs overwrite are put back. Give ``--after`` a worktree of the change
to go on editing this one meanwhile. Writes ``results/versions-<name>.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.common import machine, markdown_table, write_result

HERE = Path(__file__).resolve().parents[1]


def _overhead(data: Any) -> dict[str, float]:
    # the in-process row's label names the class each version runs in-process
    return {
        f"{'in-process' if row['variant'].startswith('in-process') else row['variant']}: p50 ms": float(row["p50"])
        for row in data
    }


def _stream(data: Any) -> dict[str, float]:
    med = statistics.median
    return {
        "whole WAV: p50 ms": med(data["whole_ms"]),
        "streamed NDJSON: first audio p50 ms": med(data["first_audio_ms"]),
        "streamed NDJSON: total p50 ms": med(data["streamed_total_ms"]),
    }


#: benchmark -> (the result files it writes under benchmarks/results, its figures from the JSON)
BENCHMARKS: dict[str, tuple[tuple[str, ...], Callable[[Any], dict[str, float]]]] = {
    "overhead": (("overhead",), _overhead),
    "stream": (("stream", "ab-split"), _stream),
}


def _run(tree: Path, name: str, args: list[str]) -> dict[str, float]:
    files, figures = BENCHMARKS[name]
    env = {**os.environ, "PYTHONPATH": str(tree)}
    subprocess.run([sys.executable, "-m", f"benchmarks.{name}", *args], cwd=tree, env=env, check=True)
    data = json.loads((tree / "benchmarks" / "results" / f"{files[0]}.json").read_text(encoding="utf-8"))
    return figures(data)


def _kept(name: str) -> dict[Path, bytes]:
    """This tree's result files the benchmark will overwrite, to put back afterwards."""
    out: dict[Path, bytes] = {}
    for stem in BENCHMARKS[name][0]:
        for ext in ("md", "json", "png"):
            path = HERE / "benchmarks" / "results" / f"{stem}.{ext}"
            if path.exists():
                out[path] = path.read_bytes()
    return out


def summary(runs: dict[str, list[dict[str, float]]]) -> str:
    """Per figure: the median of each version's runs, and the median over rounds of after / before."""
    rows = []
    for fig in runs["after"][0]:
        before = [run.get(fig) for run in runs["before"]]
        after = [run.get(fig) for run in runs["after"]]
        paired = [a / b for a, b in zip(after, before, strict=True) if a is not None and b]
        rows.append(
            [
                fig,
                round(statistics.median(b for b in before if b is not None), 2),
                round(statistics.median(a for a in after if a is not None), 2),
                f"{statistics.median(paired):.3f}",
                ", ".join(f"{r:.2f}" for r in paired),
            ]
        )
    headers = ["figure", "before (median of runs)", "after", "after / before (median of rounds)", "per round"]
    return markdown_table(headers, rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.versions", description=__doc__.split("\n\n")[0])
    p.add_argument("--before", required=True, type=Path, help="the other source tree (e.g. a git worktree)")
    p.add_argument("--after", type=Path, default=HERE, help="the changed source tree (default: this one)")
    p.add_argument("--rounds", type=int, default=3, help="runs of each version, interleaved (default 3)")
    p.add_argument("benchmark", choices=sorted(BENCHMARKS))
    p.add_argument("args", nargs=argparse.REMAINDER, help="arguments for the benchmark")
    ns = p.parse_args(argv)
    trees = {"before": ns.before.resolve(), "after": ns.after.resolve()}
    from benchmarks.original import read_bandwidth_gbs

    bandwidth = read_bandwidth_gbs()
    kept = _kept(ns.benchmark)
    runs: dict[str, list[dict[str, float]]] = {"before": [], "after": []}
    try:
        for r in range(ns.rounds):
            for label in ("before", "after") if r % 2 == 0 else ("after", "before"):
                print(f"[versions] round {r + 1}/{ns.rounds}: {label}", file=sys.stderr, flush=True)
                runs[label].append(_run(trees[label], ns.benchmark, ns.args))
    finally:
        for path, data in kept.items():
            path.write_bytes(data)
    table = summary(runs)
    notes = (
        f"`python -m benchmarks.versions --before {ns.before} --after {ns.after} --rounds {ns.rounds} {ns.benchmark} "
        f"{' '.join(ns.args)}`: before = {trees['before']}, after = {trees['after']}; runs interleaved "
        f"(before, after, after, before, ...). Machine: {machine()}, read bandwidth {bandwidth:.1f} GB/s. "
        "Each round's two runs are neighbours in time: the paired ratio of a round cancels drift between rounds "
        "(this machine's speed moves by tens of percent from one minute to the next), the medians of runs do not."
    )
    path = write_result(f"versions-{ns.benchmark}", f"Before and after: {ns.benchmark}", table, notes, runs)
    print(table)
    print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
