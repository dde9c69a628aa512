"""Measurement helpers shared by every benchmark.

Settings are run interleaved (A B C A B C ...) so that machine noise lands on all of
them alike; we report medians and ratios from that one run, never a lone absolute time.
"""

from __future__ import annotations

import json
import platform
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass
class Sample:
    """One timed call: how long, whether it worked, and what it returned (for checks)."""

    ms: float
    ok: bool = True
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Series:
    name: str
    samples: list[Sample] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def ok_ms(self) -> list[float]:
        return [s.ms for s in self.samples if s.ok]

    @property
    def errors(self) -> int:
        return sum(1 for s in self.samples if not s.ok)

    def median(self) -> float:
        xs = self.ok_ms
        return statistics.median(xs) if xs else float("nan")

    def pct(self, q: float) -> float:
        xs = sorted(self.ok_ms)
        if not xs:
            return float("nan")
        k = min(len(xs) - 1, max(0, round(q / 100.0 * (len(xs) - 1))))
        return xs[k]


def timed(fn: Callable[[], Any]) -> Sample:
    """Runs ``fn`` once; an exception becomes a failed sample, not a crash of the benchmark."""
    start = time.perf_counter()
    try:
        out = fn()
    except Exception as exc:  # recorded as data: one bad setting must not end the run
        return Sample((time.perf_counter() - start) * 1000.0, ok=False, error=f"{type(exc).__name__}: {exc}")
    ms = (time.perf_counter() - start) * 1000.0
    return Sample(ms, extra=out if isinstance(out, dict) else {})


def interleave(
    settings: Mapping[str, Callable[[], Any]], rounds: int, warmup: int = 1, progress: bool = True
) -> dict[str, Series]:
    """Runs every setting once per round, in rotating order, after ``warmup`` untimed rounds."""
    names = list(settings)
    for _ in range(warmup):
        for n in names:
            timed(settings[n])
    series = {n: Series(n) for n in names}
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for n in order:
            series[n].samples.append(timed(settings[n]))
        if progress and (sys.stderr.isatty() or (r + 1) % max(1, rounds // 10) == 0 or r + 1 == rounds):
            print(f"\r  round {r + 1}/{rounds}", end="", file=sys.stderr, flush=True)
    if progress:
        print(file=sys.stderr)
    return series


def machine() -> str:
    """One line naming the machine, for every table's header."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import os

    system = f"{platform.system()} {platform.release()}"
    return f"{cpu}, {os.cpu_count()} cores, {system}, Python {platform.python_version()}"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 10 else f"{v:.1f}"
        return str(v)

    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(out)


def rss_mb() -> float:
    """This process's resident memory in MiB (nan without psutil)."""
    try:
        import psutil

        return float(psutil.Process().memory_info().rss) / 2**20
    except ImportError:
        return float("nan")


def bar_chart(name: str, labels: Sequence[str], series: dict[str, Sequence[float]], ylabel: str,
              log: bool = False) -> Path:  # fmt: skip
    """results/<name>.png: grouped horizontal bars, one group per label, one bar per series."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    RESULTS.mkdir(parents=True, exist_ok=True)
    n, k = len(labels), max(1, len(series))
    height = 0.8 / k
    fig, ax = plt.subplots(figsize=(9, 1.2 + 0.28 * n * k))
    for i, (what, values) in enumerate(series.items()):
        ax.barh([j + (i - (k - 1) / 2) * height for j in range(n)], values, height=height, label=what)
    ax.set_yticks(range(n), list(labels), fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel(ylabel)
    if log:
        ax.set_xscale("log")
    if k > 1:
        ax.legend(fontsize=8)
    fig.tight_layout()
    path = RESULTS / f"{name}.png"
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def write_result(name: str, title: str, table: str, notes: str = "", data: Any = None) -> Path:
    """Writes results/<name>.md (and .json with the raw figures)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    md = f"# {title}\n\nMeasured {stamp} on {machine()}.\n\n{table}\n"
    if notes:
        md += f"\n{notes.strip()}\n"
    path = RESULTS / f"{name}.md"
    path.write_text(md)
    if data is not None:
        (RESULTS / f"{name}.json").write_text(json.dumps(data, indent=1, default=str))
    return path
