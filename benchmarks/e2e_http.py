"""End to end over HTTP: ``serve run <config>``, then sequential warm requests text -> WAV.

    python -m benchmarks.e2e_http [--config configs/fast.yaml] [--requests 10]

Starts Ray Serve's own ``serve run`` on a copy of the config that listens on a free loopback
port (a Ray of its own), waits for ``/healthz``, sends two untimed warm-up requests, then
``--requests`` sequential ``POST /v1/speech-translate`` with the latency sentence, each
checked to be a decodable WAV with sound. Reports p50/p95 of the client-side latency, the
stage timings the ingress reports (``X-Hayaku-Timings``), and what ``GET /v1/graph`` says the
graph runs and why (after ``hayaku tune``: "tuned on <date>: <row>"). Stops with SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SENTENCE = "Hello, how are you today?"


def _short_corpus_sentences(n: int) -> list[str]:
    """The first ``n`` English sentences of the project corpus under 60 characters."""
    from benchmarks.quality import CORPUS_DIR

    rows = (line.split("\t")[1] for line in (CORPUS_DIR / "en-ja.tsv").read_text().splitlines()[1:])
    return [t for t in rows if 0 < len(t) < 60][:n]


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)  # `serve run` ignores SIGINT for a while
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def _overload(base: str, texts: list[str], connections: int, seconds: float, deadline_s: float) -> dict[str, Any]:
    """What ``wrk -c N -d S`` shows: every connection sends again as soon as its answer arrives (no back-off)."""
    from benchmarks.common import Sample, Series, markdown_table
    from benchmarks.load import load

    print(f"overload: {connections} connections for {seconds:.0f} s ...", file=sys.stderr, flush=True)
    payloads = [{"text": t, "format": "wav"} for t in texts]
    # wrk runs on another machine or costs next to nothing; a Python client answering ~150 503s a
    # second would take a core from the 2-core server it measures, so it yields the CPU instead
    # (its own scheduling delay can only make the latencies it records longer, not shorter)
    os.nice(19)
    # the client's timeout sits past the server's deadline, so a late answer is seen, not cut off
    res = load(base, "/v1/speech-translate", payloads, connections, max_requests=10**9, max_seconds=seconds,
               timeout_s=max(deadline_s, 30.0) * 2)  # fmt: skip
    by_status: dict[int, Series] = {}
    for r in res.records:
        by_status.setdefault(r.status, Series(str(r.status))).samples.append(Sample(r.latency_ms))
    rows = [
        [str(code) if code else "no answer", len(ser.samples), len(ser.samples) / res.wall_s, ser.pct(50),
         ser.pct(99), max(ser.ok_ms)]
        for code, ser in sorted(by_status.items())
    ]  # fmt: skip
    table = markdown_table(["status", "answers", "per s", "p50 ms", "p99 ms", "max ms"], rows)
    ok = by_status[200].ok_ms if 200 in by_status else []
    within = sum(1 for x in ok if x <= deadline_s * 1000) if deadline_s else len(ok)
    notes = (
        f"Overload (what `wrk -c {connections} -d {seconds:.0f}s` does): {connections} connections, each sending the "
        f"next short corpus sentence as soon as its answer arrived, for {res.wall_s:.0f} s. {len(ok)} answers 200 "
        f"({within} within the {deadline_s:.0f} s request deadline); other statuses: "
        f"{ {k: len(v.samples) for k, v in by_status.items() if k != 200} }; first errors: {res.errors(3)}."
    )
    # the raw data keeps every 200's latency; the thousands of refusals only as the table's figures
    by_status_data = {code: dict(zip(("answers", "per_s", "p50_ms", "p99_ms", "max_ms"), row[1:], strict=True))
                      for code, row in zip(sorted(by_status), rows, strict=True)}  # fmt: skip
    return {"table": table, "notes": notes, "summary": res.summary(), "by_status": by_status_data, "ok_ms": ok}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.e2e_http", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--config", type=Path, default=Path("configs/fast.yaml"), help="Serve YAML (default fast.yaml)")
    p.add_argument("--requests", type=int, default=10, help="timed sequential requests (default 10)")
    p.add_argument("--text", default=SENTENCE, help=f"the English text (default {SENTENCE!r})")
    p.add_argument(
        "--corpus",
        action="store_true",
        help="a different short corpus sentence per request (none seen before) instead of --text",
    )
    p.add_argument(
        "--load",
        type=int,
        default=0,
        metavar="N",
        help="then a wrk-style overload phase: N connections, each sending the next request as soon as one ends",
    )
    p.add_argument("--load-seconds", type=float, default=60.0, help="length of the --load phase (default 60)")
    p.add_argument("--start-timeout-s", type=float, default=600.0, help="wait this long for /healthz")
    p.add_argument("--name", default="e2e-http", help="results/<name>.md (default e2e-http)")
    ns = p.parse_args(argv)

    import httpx
    import yaml

    from backends.audio import decode_wav, rms
    from benchmarks.common import markdown_table, write_result
    from benchmarks.load import free_port
    from benchmarks.reliability import serve_run, wait_healthy

    port = free_port()
    cfg = yaml.safe_load(ns.config.read_text())
    cfg["http_options"] = {**(cfg.get("http_options") or {}), "host": "127.0.0.1", "port": port}
    tmp = Path(tempfile.mkdtemp(prefix="hayaku-e2e-"))
    config, log = tmp / ns.config.name, tmp / "serve.log"
    config.write_text(yaml.safe_dump(cfg, sort_keys=False))
    limits = (cfg["applications"][0].get("args") or {}).get("limits") or {}
    deadline_s = float(limits.get("request_timeout_s", 0))
    base = f"http://127.0.0.1:{port}"
    print(f"serve run {config} (log {log}) ...", file=sys.stderr, flush=True)
    proc = serve_run(config, log, hayaku=False)
    ms: list[float] = []
    overload: dict[str, Any] | None = None
    stages: list[dict[str, Any]] = []
    audio_s = 0.0
    try:
        started = time.monotonic()
        wait_healthy(proc, base, log, ns.start_timeout_s)
        print(f"healthy after {time.monotonic() - started:.0f} s", file=sys.stderr)
        with httpx.Client(base_url=base, timeout=120, trust_env=False) as client:
            graph = client.get("/v1/graph").json()
            texts = _short_corpus_sentences(2 + ns.requests) if ns.corpus else [ns.text]
            for i in range(2 + ns.requests):
                body = {"text": texts[i % len(texts)], "format": "wav"}
                start = time.perf_counter()
                r = client.post("/v1/speech-translate", json=body)
                elapsed = (time.perf_counter() - start) * 1000.0
                if r.status_code != 200:
                    raise RuntimeError(f"request {i}: HTTP {r.status_code}: {r.text[:300]}")
                samples, rate = decode_wav(r.content)
                if not len(samples) or rms(samples) <= 0:
                    raise RuntimeError(f"request {i}: the WAV is silent")
                if i >= 2:
                    ms.append(elapsed)
                    stages.append(json.loads(r.headers.get("X-Hayaku-Timings", "{}")))
                    audio_s = len(samples) / rate
                    print(f"  request {i - 1}/{ns.requests}: {elapsed:.0f} ms", file=sys.stderr)
        if ns.load:
            overload = _overload(base, _short_corpus_sentences(200), ns.load, ns.load_seconds, deadline_s)
    finally:
        _stop(proc)

    xs = sorted(ms)
    p50, p95 = statistics.median(xs), xs[min(len(xs) - 1, round(0.95 * (len(xs) - 1)))]
    keys = sorted({k for s in stages for k, v in s.items() if isinstance(v, (int, float))})
    stage_rows = [[k, statistics.median(float(s[k]) for s in stages if k in s)] for k in keys]
    md = markdown_table(["measure", "ms"], [["p50 end to end (client)", p50], ["p95", p95], *stage_rows])
    t, s = graph.get("translator", {}), graph.get("speaker", {})
    what = "a different short corpus sentence each" if ns.corpus else repr(ns.text)
    notes = (
        f"Config {ns.config} (served by Ray Serve's `serve run` on a free loopback port); {ns.requests} sequential "
        f"requests after 2 warm-up ones; text {what} -> WAV ({audio_s:.2f} s of speech). Stage rows: "
        f"medians of the ingress's X-Hayaku-Timings.\n\n"
        f"GET /v1/graph: translator {t.get('backend')} {t.get('options')} ({t.get('reason')}); "
        f"speaker {s.get('backend')} voice={s.get('voice')} ({s.get('reason')})."
    )
    data = {"ms": ms, "stages": stages, "graph": graph, "p50_ms": p50, "p95_ms": p95}
    if overload:
        md += "\n\n" + overload.pop("table")
        notes += "\n\n" + overload.pop("notes")
        data["overload"] = overload
    print(md + "\n\n" + notes)
    path = write_result(ns.name, "End to end over HTTP, warm", md, notes, data=data)
    print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
