"""HTTP load against a running hayaku graph: a bounded load client and the Load benchmark.

    hayaku bench load                     # echo + tone graphs, batch 1 vs 8, concurrency 1/4/16
    hayaku bench load --real marian       # a tiny random Marian translator (transformers backend)
    hayaku bench load --real llm          # the prepared Qwen llm backend (about 1 s a request)

The client (``run_load``) is what the reliability suite and the cluster benchmark reuse:
``concurrency`` workers share one keep-alive ``httpx.AsyncClient`` and send ``payloads``
(cycled) until ``max_requests`` have been started or ``max_seconds`` have passed, whichever
comes first; every request ends as a ``Record`` (a transport error is status 0), so a load
run never raises because the server misbehaved. It talks to loopback addresses only: load
is for a graph on this machine (or one port-forwarded to it), never someone else's server.

The benchmark starts one Ray on 127.0.0.1 with two copies of the same graph side by side
(``translator.batch.max_batch_size`` 1 and 8, on route prefixes ``/b1`` and ``/b8``) and
runs the concurrency levels A B A B interleaved (``--rounds``), so noise lands on both alike.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import os
import statistics
import sys
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from benchmarks.common import RESULTS, Sample, Series, machine, markdown_table, write_result

#: how much of an error body a record keeps (the JSON error's type and message)
ERROR_CHARS = 300


def _ms(x: float) -> float | None:
    """Rounded milliseconds; None where there was nothing to measure (keeps the JSON valid)."""
    return None if x != x else round(x, 3)


@dataclass
class Record:
    """One request's outcome. ``status`` 0 means no HTTP answer (connect error, timeout)."""

    ok: bool
    status: int
    latency_ms: float
    error: str | None
    start_s: float
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class LoadResult:
    """Every request of one load run, in completion order, with the run's bounds."""

    records: list[Record]
    concurrency: int
    wall_s: float
    path: str = ""

    def summary(self) -> dict[str, Any]:
        """Counts, throughput (successful requests per second of wall time) and latency percentiles of successes."""
        series = Series(self.path, [Sample(r.latency_ms, ok=r.ok) for r in self.records])
        failed = Counter(str(r.status) for r in self.records if not r.ok)
        ok = len(series.ok_ms)
        return {
            "requests": len(self.records),
            "ok": ok,
            "concurrency": self.concurrency,
            "wall_s": round(self.wall_s, 3),
            "throughput_rps": round(ok / self.wall_s, 3) if self.wall_s > 0 else 0.0,
            "p50_ms": _ms(series.pct(50)),
            "p95_ms": _ms(series.pct(95)),
            "p99_ms": _ms(series.pct(99)),
            "max_ms": _ms(max((r.latency_ms for r in self.records), default=float("nan"))),
            "errors_by_status": dict(sorted(failed.items())),
        }

    def records_json(self) -> list[dict[str, Any]]:
        """Records as plain dicts (for a report's raw data)."""
        return [asdict(r) for r in self.records]

    def errors(self, limit: int = 5) -> list[str]:
        """The first distinct error messages (for a report's notes)."""
        seen: list[str] = []
        for r in self.records:
            if r.error and r.error not in seen:
                seen.append(r.error)
                if len(seen) == limit:
                    break
        return seen


def check_loopback(base_url: str) -> None:
    """Raises ValueError unless ``base_url`` is an http(s) URL on a loopback address."""
    parts = urlsplit(base_url)
    host = parts.hostname or ""
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"base_url {base_url!r}: expected http://127.0.0.1:<port>")
    if host == "localhost":
        return
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(f"base_url {base_url!r}: load is only sent to loopback (127.0.0.1, ::1, localhost)")


def _error_text(status: int, body: bytes) -> str:
    text = body[:ERROR_CHARS].decode("utf-8", "replace")
    try:
        err = json.loads(body).get("error")
        if isinstance(err, dict):
            text = f"{err.get('type')}: {err.get('message')}"
    except (ValueError, AttributeError):
        pass
    return f"HTTP {status} {text}"[:ERROR_CHARS]


async def _one(client: Any, path: str, payload: Any, t_run: float) -> Record:
    """Sends one request (POST JSON, or GET when ``payload`` is None); never raises."""
    start = time.perf_counter()
    try:
        if payload is None:
            resp = await client.get(path)
        else:
            resp = await client.post(path, json=payload)
        body = resp.content
        ms = (time.perf_counter() - start) * 1000
        ok = 200 <= resp.status_code < 300
        return Record(
            ok,
            resp.status_code,
            ms,
            None if ok else _error_text(resp.status_code, body),
            start - t_run,
            {k.lower(): v for k, v in resp.headers.items()},
        )
    except Exception as exc:  # httpx errors, timeouts, anything: a load run records them instead of dying
        return Record(
            False, 0, (time.perf_counter() - start) * 1000, f"{type(exc).__name__}: {exc}"[:ERROR_CHARS], start - t_run
        )


async def run_load(
    base_url: str,
    path: str,
    payloads: Sequence[Any],
    concurrency: int,
    *,
    max_requests: int,
    max_seconds: float,
    timeout_s: float = 30.0,
    headers: Mapping[str, str] | None = None,
) -> LoadResult:
    """Sends ``payloads`` (cycled; a None payload is a GET) to ``base_url + path`` from ``concurrency`` workers.

    Stops starting requests after ``max_requests`` or ``max_seconds``; each request has
    ``timeout_s``, so the run ends within about ``max_seconds + timeout_s``. Raises
    ValueError only for bad arguments (a non-loopback URL, no payloads, bounds < 1).
    """
    import httpx

    check_loopback(base_url)
    if not payloads:
        raise ValueError("payloads: give at least one request body (or None for a GET)")
    if concurrency < 1 or max_requests < 1 or max_seconds <= 0:
        raise ValueError(
            f"concurrency={concurrency}, max_requests={max_requests}, max_seconds={max_seconds}: each must be positive"
        )
    records: list[Record] = []
    started = 0
    t_run = time.perf_counter()
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(
        base_url=base_url.rstrip("/"),
        timeout=timeout_s,
        limits=limits,
        headers=dict(headers or {}),
        trust_env=False,  # a proxy from the environment must not see loopback load
    ) as client:

        async def worker() -> None:
            nonlocal started
            while started < max_requests and time.perf_counter() - t_run < max_seconds:
                payload = payloads[started % len(payloads)]
                started += 1
                records.append(await _one(client, path, payload, t_run))

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return LoadResult(records, concurrency, time.perf_counter() - t_run, path)


def load(base_url: str, path: str, payloads: Sequence[Any], concurrency: int, **kw: Any) -> LoadResult:
    """``run_load`` from synchronous code (a test, a benchmark's main)."""
    return asyncio.run(run_load(base_url, path, payloads, concurrency, **kw))


# -- the Load benchmark ---------------------------------------------------------------------

SENTENCES = [
    "Hello, how are you today?",
    "Where is the nearest train station?",
    "I would like to book a table for two at seven.",
    "Could you send me the report by Friday?",
    "The weather is lovely this morning.",
    "How much does this cost?",
    "Please call me when you arrive at the airport.",
    "Thank you very much for your help.",
]
LEVELS = (1, 4, 16)
BATCHES = (1, 8)


def _graphs(real: str | None, work_ms: float, models_dir: Path) -> tuple[dict[str, Any], str]:
    """The graph args (without batch) for the chosen translator, and a one-line description."""
    speaker: dict[str, Any] = {"backend": "tone", "voice": "sine"}
    if real is None:
        options: dict[str, Any] = {"prefix": ""}
        if work_ms > 0:
            options["work_ms"] = work_ms
        desc = "echo translator" + (f" with work_ms={work_ms:g} per backend call" if work_ms > 0 else "")
        return {"translator": {"backend": "echo", "options": options}, "speaker": speaker}, desc
    if real == "marian":
        from benchmarks.models import build_tiny_marian

        folder = build_tiny_marian(models_dir / "tiny_marian")
        tr = {"backend": "transformers", "model": str(folder), "options": {"device": "cpu"}}
        return {"translator": tr, "speaker": speaker}, "tiny random Marian (d_model 32), transformers float32 CPU"
    if real == "llm":
        # the options `auto` gives it on CPU: Ray pins OMP_NUM_THREADS=1 in replicas, so threads are explicit
        cores = os.cpu_count() or 1
        options = {"runtime": "ctranslate2", "compute_type": "int8", "threads": cores}
        tr = {"backend": "llm", "options": options}
        return {
            "translator": tr,
            "speaker": speaker,
        }, f"llm backend (bundled Qwen 1.5B, CTranslate2 int8, {cores} threads)"
    raise SystemExit(f"--real {real!r}: choose marian or llm")


def _deploy(base: dict[str, Any], batch: int, name: str) -> None:
    from ray import serve

    from deployments.app import graph_app
    from graph.auto import resolve_graph

    args = json.loads(json.dumps(base))
    args["translator"]["batch"] = {"max_batch_size": batch, "batch_wait_timeout_s": 0.0}
    args["limits"] = {"request_timeout_s": 120}
    no_cpu = {"ray_actor_options": {"num_cpus": 0}}
    over: dict[str, dict[str, Any]] = {
        "Ingress": no_cpu,
        "Translator": {**no_cpu, "max_ongoing_requests": 64},
        "Speaker": no_cpu,
    }
    serve.run(graph_app(resolve_graph(args), over), name=name, route_prefix=f"/{name}")


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (for a Serve proxy of one's own)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _chart(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for i, batch in enumerate(sorted({r["batch"] for r in rows})):
        sel = [r for r in rows if r["batch"] == batch]
        xs = [r["concurrency"] for r in sel]
        color = f"C{i}"
        ax1.plot(xs, [r["throughput_rps"] for r in sel], marker="o", color=color, label=f"max_batch_size {batch}")
        ax2.plot(xs, [r["p50_ms"] for r in sel], marker="o", color=color, label=f"p50, batch {batch}")
        ax2.plot(xs, [r["p99_ms"] for r in sel], marker="x", linestyle="--", color=color, label=f"p99, batch {batch}")
    ax1.set(xscale="log", xlabel="concurrency", ylabel="requests/s", title="throughput")
    ax2.set(xscale="log", yscale="log", xlabel="concurrency", ylabel="ms", title="latency")
    for ax in (ax1, ax2):
        ax.set_xticks(LEVELS, [str(c) for c in LEVELS])
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    """``hayaku bench load``: throughput and latency at concurrency 1/4/16, translator batch 1 vs 8."""
    p = argparse.ArgumentParser(
        prog="hayaku bench load", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--real", choices=["marian", "llm"], help="a real translator instead of echo")
    p.add_argument(
        "--work-ms",
        type=float,
        default=0.0,
        help="echo only: CPU-busy ms per backend call (a compute-bound stand-in for a model)",
    )
    p.add_argument("--path", default="/v1/translate", help="route to load (default /v1/translate)")
    p.add_argument("--requests", type=int, default=200, help="requests per level and round (default 200)")
    p.add_argument("--seconds", type=float, default=20.0, help="time bound per level and round (default 20)")
    p.add_argument("--rounds", type=int, default=2, help="interleaved rounds (A B A B), default 2")
    p.add_argument("--levels", default=",".join(map(str, LEVELS)), help="concurrency levels (default 1,4,16)")
    p.add_argument("--name", help="result name under benchmarks/results/ (default load[-real])")
    p.add_argument("--models-dir", default="artifacts/bench-models", help="where tiny models are built")
    ns = p.parse_args(argv)
    levels = [int(x) for x in ns.levels.split(",")]
    name = ns.name or ("load" if ns.real is None else f"load-{ns.real}")

    import ray
    from ray import serve

    base, desc = _graphs(ns.real, ns.work_ms, Path(ns.models_dir))
    port = free_port()
    print(f"starting Ray and two graphs ({desc}; batch {BATCHES}) on 127.0.0.1:{port} ...", file=sys.stderr)
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        for b in BATCHES:
            _deploy(base, b, f"b{b}")
        url = f"http://127.0.0.1:{port}"
        payloads = [{"text": s} for s in SENTENCES]
        for b in BATCHES:  # warm both graphs (first requests pay lazy imports and connection setup)
            load(url, f"/b{b}{ns.path}", payloads, 2, max_requests=8, max_seconds=60, timeout_s=120)
        runs: dict[tuple[int, int], list[LoadResult]] = {}
        order = [(c, b) for c in levels for b in BATCHES]
        for r in range(ns.rounds):
            seq = order if r % 2 == 0 else [(c, b) for c in levels for b in reversed(BATCHES)]
            for c, b in seq:
                res = load(
                    url, f"/b{b}{ns.path}", payloads, c, max_requests=ns.requests, max_seconds=ns.seconds, timeout_s=120
                )
                runs.setdefault((c, b), []).append(res)
                s = res.summary()
                print(
                    f"  round {r + 1}/{ns.rounds} concurrency {c:>2} batch {b}: {s['requests']} requests, "
                    f"{s['throughput_rps']:.1f}/s, p50 {s['p50_ms']:.1f} ms, errors {s['errors_by_status']}",
                    file=sys.stderr,
                )
    finally:
        serve.shutdown()
        ray.shutdown()

    rows = []
    for (c, b), results in sorted(runs.items()):
        merged = LoadResult([rec for res in results for rec in res.records], c, sum(r.wall_s for r in results), ns.path)
        s = merged.summary()
        s["throughput_rps"] = round(statistics.median(r.summary()["throughput_rps"] for r in results), 3)
        rows.append({"concurrency": c, "batch": b, **s, "errors": merged.errors(3)})
    by = {(r["concurrency"], r["batch"]): r for r in rows}
    table = markdown_table(
        [
            "concurrency",
            "max_batch_size",
            "requests",
            "ok",
            "throughput req/s",
            "p50 ms",
            "p95 ms",
            "p99 ms",
            "errors",
            "throughput vs batch 1",
        ],
        [
            [
                r["concurrency"],
                r["batch"],
                r["requests"],
                r["ok"],
                r["throughput_rps"],
                r["p50_ms"],
                r["p95_ms"],
                r["p99_ms"],
                sum(r["errors_by_status"].values()) or 0,
                f"{r['throughput_rps'] / by[(r['concurrency'], 1)]['throughput_rps']:.2f}x"
                if by.get((r["concurrency"], 1), {}).get("throughput_rps")
                else "-",
            ]
            for r in rows
        ],
    )
    notes = (
        f"`hayaku bench load {' '.join(argv if argv is not None else sys.argv[1:])}`: {desc}, tone speaker, "
        f"`POST {ns.path}`, {len(SENTENCES)} sentences cycled; HTTP/1.1 keep-alive over loopback, one Ray "
        f"(2 CPUs), one replica per stage. Bounded at {ns.requests} requests or {ns.seconds:g} s per level; "
        f"{ns.rounds} interleaved rounds; throughput is the median over rounds, percentiles over all successful "
        "requests. The client runs on the same 2 cores as the graph."
    )
    data = {"machine": machine(), "translator": desc, "path": ns.path, "rows": rows}
    md = write_result(name, f"HTTP load: {desc}", table, notes, data)
    _chart(rows, RESULTS / f"{name}.png", f"hayaku HTTP load ({desc}), {machine()}")
    print(md.read_text())
    print(f"wrote {md} and {RESULTS / (name + '.png')}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
