"""Reliability: a bounded soak, fault injections and a drain check against real graphs, and the report.

    hayaku bench reliability                 # soak + faults + drain (about 5 minutes), writes the report
    hayaku bench reliability --soak-seconds 600 --soak-requests 50000   # a longer soak

Everything runs on loopback with the synthetic ``echo`` translator and ``tone`` speaker
(their fault options make them slow, raise, hang or return garbage on demand):

- soak: concurrency ramps to 32 over a mix of routes, bounded by request count and time;
  every answer must be a 2xx or an explicit 503 with Retry-After, and the resident memory of
  every replica process (ingress, translator, speaker) is sampled over the run and must stay
  flat within ``RSS_BOUND`` after warm-up;
- back-pressure: with a slow translator and ``limits.max_inflight``, extra requests get 503 +
  Retry-After at once;
- replica loss: the translator's and then the speaker's replica process is SIGKILLed mid-load;
  every request in flight gets an answer (200 or 503), and the time until /healthz is 200 and
  requests succeed again is measured;
- backend faults without a fallback: a stage that raises or hangs gives a JSON 503 within the
  deadline; garbage (an empty translation, NaN audio) must not come back as a 200;
- drain: SIGTERM on ``serve run`` while requests are in flight; they must complete.

The report also takes in ``hostile-input.json`` (property tests: inputs tried, failures) and
``cluster.json`` (node loss) from benchmarks/results/ when they exist. The pytest suite runs the
same functions with short bounds (tests/integration/test_reliability.py,
tests/e2e/test_reliability_drain.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.common import RESULTS, machine, markdown_table, write_result
from benchmarks.load import LoadResult, Record, free_port, load, run_load

TEXT = "Hello, how are you today?"
MIB = 1024 * 1024
#: a replica's RSS may grow this much from the warm first quarter of a soak to its last quarter:
#: the larger of an absolute and a relative bound (allocator arenas and Ray's own buffers settle)
RSS_BOUND = (32 * MIB, 0.10)
SOAK_ROUTES: tuple[tuple[str, dict[str, Any]], ...] = (
    ("/v1/translate", {"text": TEXT}),
    ("/v1/speech-translate", {"text": TEXT + " Where is the station?"}),
    ("/v1/audio/speech", {"model": "hayaku", "input": "テストです。"}),
)
NO_CPU = {"ray_actor_options": {"num_cpus": 0}}


# -- graphs ---------------------------------------------------------------------------------


def synthetic_args(
    translator: Mapping[str, Any] | None = None,
    speaker: Mapping[str, Any] | None = None,
    **limits: Any,
) -> dict[str, Any]:
    """Graph args with the echo translator and tone speaker; ``translator``/``speaker`` are their options."""
    return {
        "translator": {"backend": "echo", "options": dict(translator or {})},
        "speaker": {"backend": "tone", "voice": "sine", "options": dict(speaker or {})},
        "limits": {"request_timeout_s": 20, **limits},
    }


def _app(args: Mapping[str, Any], deployments: Mapping[str, Mapping[str, Any]] | None) -> Any:
    from deployments.app import graph_app
    from graph.auto import resolve_graph

    colocate = bool(args.get("colocate"))
    names = ("Ingress",) if colocate else ("Ingress", "Translator", "Speaker")
    over = {n: {**NO_CPU, **dict((deployments or {}).get(n, {}))} for n in names}
    return graph_app(resolve_graph(dict(args)), over)


def deploy(args: Mapping[str, Any], name: str, deployments: Mapping[str, Mapping[str, Any]] | None = None) -> str:
    """Runs a hayaku graph as Serve app ``name`` on route prefix ``/<name>`` (no CPU reservations); the prefix."""
    from ray import serve

    serve.run(_app(args, deployments), name=name, route_prefix=f"/{name}")
    return f"/{name}"


def deploy_many(graphs: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """Deploys several graphs (app name -> args) at once, which starts their replicas in parallel; name -> prefix."""
    from ray import serve
    from ray.serve.api import RunTarget

    serve.run_many([RunTarget(_app(args, None), name=name, route_prefix=f"/{name}") for name, args in graphs.items()])
    return {name: f"/{name}" for name in graphs}


def replica_pids(app: str) -> dict[str, int]:
    """Deployment name -> pid of its (first) live replica process."""
    from deployments.drain import replica_actors

    out: dict[str, int] = {}
    for r in replica_actors(app):
        out.setdefault(r["deployment"], r["pid"])
    return out


def live_pid(base_url: str, prefix: str, role: str) -> int | None:
    """The pid GET /v1/graph reports for the stage ``role`` (translator or speaker), or None."""
    import httpx

    try:
        r = httpx.get(f"{base_url}{prefix}/v1/graph", timeout=5, trust_env=False)
        pid = r.json()[role]["live"]["pid"] if r.status_code == 200 else None
        return int(pid) if pid else None
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        return None


# -- memory -----------------------------------------------------------------------------------


class RssSampler:
    """Samples the resident memory of some processes every ``interval_s`` in a background thread."""

    def __init__(self, pids: Mapping[str, int], interval_s: float = 0.5) -> None:
        self.pids = dict(pids)
        self.interval_s = interval_s
        self.samples: dict[str, list[tuple[float, int]]] = {n: [] for n in self.pids}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._t0 = time.monotonic()

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        import psutil

        procs = {n: psutil.Process(p) for n, p in self.pids.items()}
        while not self._stop.is_set():
            for n, proc in procs.items():
                # a replica that died is reported by the load, not here
                with contextlib.suppress(psutil.Error):
                    self.samples[n].append((time.monotonic() - self._t0, proc.memory_info().rss))
            self._stop.wait(self.interval_s)

    def summary(self, bound: tuple[int, float] = RSS_BOUND) -> dict[str, dict[str, Any]]:
        """Per process: median RSS of the first and last quarter of the samples, growth, and the verdict."""
        out: dict[str, dict[str, Any]] = {}
        for n, xs in self.samples.items():
            if len(xs) < 8:
                out[n] = {"samples": len(xs), "flat": None}
                continue
            q = len(xs) // 4
            first = statistics.median(r for _, r in xs[:q])
            last = statistics.median(r for _, r in xs[-q:])
            allowed = max(bound[0], bound[1] * first)
            out[n] = {
                "pid": self.pids[n],
                "samples": len(xs),
                "first_mib": round(first / MIB, 1),
                "last_mib": round(last / MIB, 1),
                "max_mib": round(max(r for _, r in xs) / MIB, 1),
                "growth_mib": round((last - first) / MIB, 2),
                "allowed_mib": round(allowed / MIB, 1),
                "flat": last - first <= allowed,
            }
        return out


# -- checks -------------------------------------------------------------------------------------


def problems(records: Iterable[Record]) -> list[str]:
    """What is wrong with a run's answers: anything but a 2xx or a 503 carrying Retry-After and a JSON error."""
    bad: Counter[str] = Counter()
    for r in records:
        if r.ok:
            continue
        if r.status == 503:
            if "retry-after" not in r.headers:
                bad[f"503 without Retry-After: {r.error}"] += 1
            elif not (r.headers.get("content-type") or "").startswith("application/json"):
                bad[f"503 without a JSON body: {r.error}"] += 1
            continue
        bad[f"status {r.status}: {r.error}"] += 1
    return [f"{n} x {msg}" for msg, n in bad.most_common()]


def status_counts(records: Iterable[Record]) -> dict[str, int]:
    return dict(sorted(Counter(str(r.status) for r in records).items()))


# -- soak -----------------------------------------------------------------------------------------


@dataclass
class Soak:
    """The outcome of ``soak``: every record, the load summary, memory per replica, what went wrong."""

    records: list[Record]
    summary: dict[str, Any]
    memory: dict[str, dict[str, Any]]
    problems: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"summary": self.summary, "memory": self.memory, "problems": self.problems}


async def _mixed_load(base: str, concurrency: int, max_requests: int, max_seconds: float) -> list[LoadResult]:
    """``concurrency`` workers spread over SOAK_ROUTES, each route with its share of the bounds."""
    k = len(SOAK_ROUTES)
    shares = [concurrency // k + (1 if i < concurrency % k else 0) for i in range(k)]
    runs = [
        run_load(base, path, [body], c, max_requests=max(1, max_requests * c // concurrency), max_seconds=max_seconds)
        for (path, body), c in zip(SOAK_ROUTES, shares, strict=True)
        if c > 0
    ]
    return list(await asyncio.gather(*runs))


def soak(
    base_url: str,
    prefix: str,
    app: str,
    *,
    concurrency: int = 32,
    max_requests: int = 20_000,
    max_seconds: float = 60.0,
    warmup_s: float = 5.0,
) -> Soak:
    """Warms the graph at concurrency 4, then runs the mixed load at ``concurrency`` while sampling RSS."""
    base = base_url + prefix
    asyncio.run(_mixed_load(base, 4, 10**6, warmup_s))
    pids = replica_pids(app)
    t0 = time.perf_counter()
    with RssSampler(pids) as rss:
        results = asyncio.run(_mixed_load(base, concurrency, max_requests, max_seconds))
    wall = time.perf_counter() - t0
    records = [r for res in results for r in res.records]
    summary = LoadResult(records, concurrency, wall, "mixed").summary()
    summary["by_route"] = {res.path: res.summary() for res in results}
    summary["statuses"] = status_counts(records)
    memory = rss.summary()
    bad = problems(records)
    bad += [
        f"{n}: RSS grew {m['growth_mib']} MiB (allowed {m['allowed_mib']})"
        for n, m in memory.items()
        if m.get("flat") is False
    ]
    bad += [f"{n}: too few RSS samples ({m['samples']})" for n, m in memory.items() if m.get("flat") is None]
    if summary["ok"] == 0:
        bad.append("no request succeeded")
    return Soak(records, summary, memory, bad)


# -- back-pressure ----------------------------------------------------------------------------------


def backpressure(base_url: str, prefix: str, *, concurrency: int, requests: int) -> dict[str, Any]:
    """A burst of ``requests`` at ``concurrency`` against a graph with a low ``limits.max_inflight``."""
    res = load(
        base_url + prefix,
        "/v1/translate",
        [{"text": TEXT}],
        concurrency,
        max_requests=requests,
        max_seconds=120,
        timeout_s=60,
    )
    ok = [r.latency_ms for r in res.records if r.ok]
    shed = [r for r in res.records if r.status == 503]
    return {
        "summary": res.summary(),
        "statuses": status_counts(res.records),
        "ok_p50_ms": statistics.median(ok) if ok else None,
        "shed_p50_ms": statistics.median(r.latency_ms for r in shed) if shed else None,
        "shed_with_retry_after": sum("retry-after" in r.headers for r in shed),
        "shed_error_types": dict(Counter((r.error or "").split(":")[0] for r in shed)),
        "problems": problems(res.records),
    }


# -- replica loss -------------------------------------------------------------------------------------


async def _probe_ok(base: str, timeout_s: float = 5.0) -> bool:
    import httpx

    async with httpx.AsyncClient(base_url=base, timeout=timeout_s, trust_env=False) as c:
        try:
            h = await c.get("/healthz")
            r = await c.post("/v1/speech-translate", json={"text": TEXT})
            return h.status_code == 200 and r.status_code == 200
        except httpx.HTTPError:
            return False


async def _kill_during_load(
    base_url: str,
    prefix: str,
    role: str,
    concurrency: int,
    load_s: float,
    kill_after_s: float,
    recover_timeout_s: float,
) -> dict[str, Any]:
    base = base_url + prefix
    pid = live_pid(base_url, prefix, role)
    if pid is None:
        raise RuntimeError(f"GET {prefix}/v1/graph reports no live pid for the {role}")
    t_run = time.perf_counter()  # run_load's own clock starts within a millisecond of this
    task = asyncio.ensure_future(
        run_load(
            base,
            "/v1/speech-translate",
            [{"text": TEXT}],
            concurrency,
            max_requests=10**6,
            max_seconds=load_s,
            timeout_s=60,
        )
    )
    await asyncio.sleep(kill_after_s)
    t_kill = time.perf_counter()
    os.kill(pid, signal.SIGKILL)
    recovered_s: float | None = None
    new_pid: int | None = None
    while time.perf_counter() - t_kill < recover_timeout_s:
        await asyncio.sleep(0.25)
        if await _probe_ok(base):
            new_pid = await asyncio.to_thread(live_pid, base_url, prefix, role)
            if new_pid is not None and new_pid != pid:
                recovered_s = time.perf_counter() - t_kill
                break
    res = await task
    kill_at = t_kill - t_run
    around = [r for r in res.records if r.start_s <= kill_at + 1 and r.start_s + r.latency_ms / 1000 >= kill_at]
    return {
        "role": role,
        "killed_pid": pid,
        "new_pid": new_pid,
        "recovery_s": None if recovered_s is None else round(recovered_s, 2),
        "summary": res.summary(),
        "statuses": status_counts(res.records),
        "in_flight_at_kill": len(around),
        "in_flight_statuses": status_counts(around),
        "max_latency_ms": max((r.latency_ms for r in res.records), default=None),
        "problems": problems(res.records)
        + ([] if recovered_s is not None else [f"not healthy within {recover_timeout_s:g} s of the kill"]),
    }


def kill_replica(
    base_url: str,
    prefix: str,
    role: str,
    *,
    concurrency: int = 8,
    load_s: float = 20.0,
    kill_after_s: float = 3.0,
    recover_timeout_s: float = 60.0,
) -> dict[str, Any]:
    """SIGKILLs the ``role`` replica's process ``kill_after_s`` into a ``load_s`` load and measures recovery.

    Recovery time: from the kill until /healthz is 200, a speech-translate request succeeds and
    /v1/graph reports a new pid for the stage.
    """
    return asyncio.run(_kill_during_load(base_url, prefix, role, concurrency, load_s, kill_after_s, recover_timeout_s))


# -- backend faults without a fallback -------------------------------------------------------------------

#: name -> (graph args, route). Every 2nd backend call faults: the replica's warm-up (call 1) passes,
#: so it starts, and requests alternate between a fault and a healthy call.
FAULT_CASES: dict[str, tuple[dict[str, Any], str]] = {
    "translator raises": (synthetic_args({"fault": "raise", "fault_every": 2}), "/v1/translate"),
    "speaker raises": (synthetic_args(speaker={"fault": "raise", "fault_every": 2}), "/v1/speech-translate"),
    "translator hangs": (
        synthetic_args({"fault": "hang", "fault_every": 2, "hang_s": 8}, request_timeout_s=3),
        "/v1/translate",
    ),
    "speaker hangs": (
        synthetic_args(speaker={"fault": "hang", "fault_every": 2, "hang_s": 8}, request_timeout_s=3),
        "/v1/speech-translate",
    ),
    "translator garbage (empty text)": (synthetic_args({"fault": "garbage", "fault_every": 2}), "/v1/translate"),
    "speaker garbage (NaN audio)": (
        synthetic_args(speaker={"fault": "garbage", "fault_every": 2}),
        "/v1/speech-translate",
    ),
}


def _content_problem(path: str, resp: Any) -> str | None:
    """Why a 200 answer is garbage (empty translation, undecodable, silent or non-finite audio), or None."""
    import numpy as np

    from backends.audio import decode_wav, rms

    if path == "/v1/translate":
        return None if str(resp.json().get("translation") or "").strip() else "a 200 with an empty translation"
    try:
        samples, _ = decode_wav(resp.content)
    except Exception as exc:  # whatever a broken WAV raises
        return f"a 200 whose WAV does not decode ({type(exc).__name__})"
    if len(samples) == 0 or not np.all(np.isfinite(samples)) or rms(samples) == 0:
        return "a 200 with empty, silent or non-finite audio"
    return None


def backend_fault(base_url: str, prefix: str, case: str, requests: int = 2) -> dict[str, Any]:
    """Sends ``requests`` one by one to a graph deployed with FAULT_CASES[case] and checks every answer.

    A 200 must carry a real result; anything else must be a JSON error that is not a 500
    (503 for a raise or hang, a 4xx or 503 for garbage), within the request deadline.
    """
    import httpx

    args, path = FAULT_CASES[case]
    deadline = float(args["limits"]["request_timeout_s"])
    statuses: Counter[str] = Counter()
    errors: list[str] = []
    bad: list[str] = []
    worst = 0.0
    with httpx.Client(base_url=base_url + prefix, timeout=deadline + 30, trust_env=False) as client:
        for _ in range(requests):
            t0 = time.perf_counter()
            try:
                resp = client.post(path, json={"text": TEXT})
            except httpx.HTTPError as exc:
                statuses["0"] += 1
                bad.append(f"no answer: {type(exc).__name__}")
                continue
            ms = (time.perf_counter() - t0) * 1000
            worst = max(worst, ms)
            statuses[str(resp.status_code)] += 1
            if ms > (deadline + 5) * 1000:
                bad.append(f"answered after {ms:.0f} ms, past the {deadline:g} s deadline")
            if resp.status_code == 200:
                problem = _content_problem(path, resp)
                if problem:
                    bad.append(problem)
                continue
            is_json = resp.headers.get("content-type", "").startswith("application/json")
            err = resp.json().get("error") if is_json else None
            if not isinstance(err, dict):
                bad.append(f"a {resp.status_code} without a JSON error body")
                continue
            errors.append(f"{resp.status_code} {err.get('type')}: {err.get('message')}")
            if resp.status_code >= 500 and resp.status_code != 503:
                bad.append(f"a {resp.status_code} ({err.get('type')}) instead of a 503 or 4xx")
    if not bad and sum(n for s, n in statuses.items() if s != "200") == 0:
        bad.append("the fault never showed: every answer was a healthy 200")
    return {
        "case": case,
        "statuses": dict(sorted(statuses.items())),
        "errors": sorted(set(errors))[:3],
        "max_latency_ms": round(worst, 1),
        "deadline_s": deadline,
        "problems": sorted(set(bad)),
    }


# -- drain on SIGTERM ----------------------------------------------------------------------------------------

SERVE_START_TIMEOUT_S = 180


def serve_run(config: Path, log: Path, hayaku: bool = True) -> subprocess.Popen[bytes]:
    """Starts ``hayaku serve <config>`` (or Ray's bare ``serve run``) with a fresh local Ray, output to ``log``."""
    bindir = Path(sys.executable).parent
    cmd = [str(bindir / "hayaku"), "serve"] if hayaku else [str(bindir / "serve"), "run"]
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)  # a Ray of its own, not one this process may be connected to
    with log.open("wb") as out:
        return subprocess.Popen(
            [*cmd, str(config)],
            cwd=Path(__file__).resolve().parents[1],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def wait_healthy(
    proc: subprocess.Popen[bytes], base_url: str, log: Path, timeout_s: float = SERVE_START_TIMEOUT_S
) -> None:
    """Polls /healthz until 200; raises RuntimeError (with the log's tail) if it exits or times out."""
    import httpx

    deadline = time.monotonic() + timeout_s
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"serve run exited early:\n{log.read_text(errors='replace')[-3000:]}")
        try:
            if httpx.get(f"{base_url}/healthz", timeout=2, trust_env=False).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"no /healthz within {timeout_s:g} s:\n{log.read_text(errors='replace')[-3000:]}")
        time.sleep(0.5)


def drain(
    proc: subprocess.Popen[bytes],
    base_url: str,
    *,
    requests: int = 4,
    sigterm_after_s: float = 1.0,
    sig: int = signal.SIGTERM,
    exit_timeout_s: float = 90.0,
    path: str = "/v1/translate",
) -> dict[str, Any]:
    """Sends ``requests`` concurrent slow requests, SIGTERMs ``serve run`` while they are in flight.

    Returns their statuses, how long after the signal each finished, and how long the process took to exit.
    """

    async def go() -> tuple[LoadResult, float, float | None]:
        t_run = time.perf_counter()
        task = asyncio.ensure_future(
            run_load(
                base_url,
                path,
                [{"text": TEXT}],
                requests,
                max_requests=requests,
                max_seconds=60,
                timeout_s=exit_timeout_s,
            )
        )
        await asyncio.sleep(sigterm_after_s)
        t_sig = time.perf_counter()
        proc.send_signal(sig)
        res = await task
        exited: float | None = None
        try:
            await asyncio.to_thread(proc.wait, exit_timeout_s)
            exited = time.perf_counter() - t_sig
        except subprocess.TimeoutExpired:
            pass
        return res, t_sig - t_run, exited

    res, sig_at, exited = asyncio.run(go())
    in_flight = [r for r in res.records if r.start_s < sig_at]
    return {
        "requests": len(res.records),
        "in_flight_at_sigterm": len(in_flight),
        "statuses": status_counts(res.records),
        "in_flight_statuses": status_counts(in_flight),
        "finished_after_sigterm_s": sorted(round(r.start_s + r.latency_ms / 1000 - sig_at, 2) for r in in_flight),
        "exit_after_sigterm_s": None if exited is None else round(exited, 2),
        "exit_code": proc.returncode,
        "problems": [f"in-flight request got {r.status}: {r.error}" for r in in_flight if not r.ok]
        + ([] if in_flight else ["no request was in flight at SIGTERM"])
        + ([] if exited is not None else [f"serve run still running {exit_timeout_s:g} s after SIGTERM"]),
    }


def drain_run(hayaku: bool = True, requests: int = 4, work_ms: float = 1000) -> dict[str, Any]:
    """Starts ``hayaku serve`` (or bare ``serve run``) on a slow tiny graph, then ``drain``; its result."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        log = Path(tmp) / "serve.log"
        proc = serve_run(drain_config(Path(tmp), port, work_ms), log, hayaku=hayaku)
        try:
            wait_healthy(proc, f"http://127.0.0.1:{port}", log)
            return drain(proc, f"http://127.0.0.1:{port}", requests=requests, path="/v1/speech-translate")
        except RuntimeError as exc:
            return {"requests": 0, "statuses": {}, "exit_after_sigterm_s": None, "problems": [str(exc)[-1500:]]}
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)


def drain_config(tmp: Path, port: int, work_ms: float = 1000) -> Path:
    """configs/tiny.yaml on ``port`` with a slow echo (``work_ms`` per call, batch 1)."""
    import yaml

    root = Path(__file__).resolve().parents[1]
    cfg = yaml.safe_load((root / "configs" / "tiny.yaml").read_text())
    cfg["http_options"] = {"host": "127.0.0.1", "port": port}
    args = cfg["applications"][0]["args"]
    args["translator"]["options"]["work_ms"] = work_ms
    args["translator"]["batch"] = {"max_batch_size": 1}
    path = tmp / "drain.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


# -- the report --------------------------------------------------------------------------------------------


def _section(name: str) -> Any:
    path = RESULTS / f"{name}.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except ValueError:
        return {"error": f"{path.name} is not valid JSON"}


def _json_block(data: Any) -> str:
    return "```json\n" + json.dumps(data, indent=1, ensure_ascii=False, default=str)[:6000] + "\n```"


def _hostile_section(data: Any) -> str:
    """Engineer S's hostile-input.json: inputs tried per property, failures found, what was fixed."""
    if data is None:
        return "_benchmarks/results/hostile-input.json is not there yet (`python -m benchmarks.hostile` writes it)._"
    tried = data.get("inputs_tried") if isinstance(data, dict) else None
    if not isinstance(tried, dict):
        return _json_block(data)
    tests = data.get("tests") or {}
    failures = data.get("failures_found") or []
    parts = [
        f"`{data.get('command', 'python -m benchmarks.hostile')}` ({data.get('budget', '?')} budget): "
        f"{data.get('inputs_tried_total', sum(tried.values()))} inputs tried; tests passed {tests.get('passed')}, "
        f"failed {tests.get('failed')}, skipped {tests.get('skipped')}; failures found: {len(failures)}.",
        markdown_table(["property", "inputs tried"], sorted(tried.items())),
    ]
    if failures:
        parts.append("Failures found:\n\n" + "\n".join(f"- {json.dumps(f, ensure_ascii=False)}" for f in failures))
    fixed = data.get("found_and_fixed_while_writing") or []
    if fixed:
        rows = [[f.get("property"), f.get("failure"), f.get("fix")] for f in fixed if isinstance(f, dict)]
        parts.append(
            "Found and fixed while the suite was written:\n\n" + markdown_table(["property", "failure", "fix"], rows)
        )
    return "\n\n".join(parts)


def _kills_section(kills: list[dict[str, Any]]) -> str:
    headers = ["replica killed", "pid", "new pid", "in flight at the kill", "their answers", "slowest ms", "recovery s"]
    rows = [
        [
            k["role"],
            k["killed_pid"],
            k["new_pid"],
            k["in_flight_at_kill"],
            _fmt_status(k["in_flight_statuses"]),
            k["max_latency_ms"],
            k["recovery_s"],
        ]
        for k in kills
    ]
    return markdown_table(headers, rows)


def report(data: dict[str, Any], argv: list[str]) -> Path:
    """Writes benchmarks/results/reliability.md and .json from one run's ``data``."""
    rows = []
    s = data.get("soak")
    if s:
        sm = s["summary"]
        rows.append(
            [
                f"soak (concurrency {sm['concurrency']}, mixed routes)",
                sm["requests"],
                sm["ok"],
                _fmt_status(sm["statuses"]),
                sm["p99_ms"],
                "-",
                len(s["problems"]),
            ]
        )
    bp = data.get("backpressure")
    if bp:
        rows.append(
            [
                "back-pressure (max_inflight 2, slow echo)",
                bp["summary"]["requests"],
                bp["summary"]["ok"],
                _fmt_status(bp["statuses"]),
                bp["summary"]["p99_ms"],
                "-",
                len(bp["problems"]),
            ]
        )
    for k in data.get("kills", []):
        rows.append(
            [
                f"SIGKILL {k['role']} replica mid-load",
                k["summary"]["requests"],
                k["summary"]["ok"],
                _fmt_status(k["statuses"]),
                k["summary"]["p99_ms"],
                k["recovery_s"],
                len(k["problems"]),
            ]
        )
    for f in data.get("faults", []):
        rows.append(
            [
                f"backend fault: {f['case']}",
                sum(f["statuses"].values()),
                f["statuses"].get("200", 0),
                _fmt_status(f["statuses"]),
                "-",
                "-",
                len(f["problems"]),
            ]
        )
    for key, what in (("drain", "SIGTERM `hayaku serve`"), ("drain_serve_run", "SIGTERM bare `serve run` (Ray's)")):
        d = data.get(key)
        if d:
            rows.append(
                [
                    f"{what} with requests in flight",
                    d["requests"],
                    d["statuses"].get("200", 0),
                    _fmt_status(d["statuses"]),
                    "-",
                    d["exit_after_sigterm_s"],
                    len(d["problems"]) if key == "drain" else f"({len(d['problems'])}, Ray's behaviour)",
                ]
            )
    table = markdown_table(
        ["scenario", "requests", "succeeded", "answers by status", "p99 ms (ok)", "recovery / exit s", "problems"],
        rows,
    )
    sent = sum(r[1] for r in rows)
    command = " ".join(["hayaku bench reliability", *argv])
    notes = [
        f"`{command}`. {sent} requests sent in all; every scenario's problems are "
        "listed below (none means: every answer was a 2xx or an explicit JSON 503 with Retry-After, garbage was "
        "refused, nothing hung past its deadline).",
        "Recovery: from SIGKILL of the replica's process (pid from GET /v1/graph) until /healthz is 200, a "
        "speech-translate request succeeds and a new pid serves the stage. Memory: median RSS of the first vs the "
        f"last quarter of the soak per replica process; allowed growth max({RSS_BOUND[0] // MIB} MiB, "
        f"{RSS_BOUND[1]:.0%}).",
        "Drain: Ray 2.60's own `serve run` does not drain: on SIGTERM Ray's signal handler aborts the driver and "
        "requests in flight lose their connection; on SIGINT `serve.shutdown()` stops the proxy together with the "
        "replicas. `hayaku serve` (deployments/drain.py) deploys the same YAML and on SIGTERM waits for the ingress "
        "replicas to go idle, deletes the apps (each replica finishes within its graceful_shutdown_timeout_s, the "
        "proxy still up), then shuts down.",
    ]
    if s:
        mem = s["memory"]
        notes.append(
            "### Soak memory per replica\n\n"
            + markdown_table(
                ["replica", "pid", "samples", "first MiB", "last MiB", "max MiB", "growth MiB", "allowed MiB", "flat"],
                [
                    [
                        n,
                        m.get("pid"),
                        m.get("samples"),
                        m.get("first_mib"),
                        m.get("last_mib"),
                        m.get("max_mib"),
                        m.get("growth_mib"),
                        m.get("allowed_mib"),
                        m.get("flat"),
                    ]
                    for n, m in mem.items()
                ],
            )
        )
    if data.get("kills"):
        notes.append("### Replica kills\n\n" + _kills_section(data["kills"]))
    notes.append(
        "### Problems found\n\n"
        + ("\n".join(f"- {scenario}: {p}" for scenario, ps in _all_problems(data) for p in ps) or "None.")
    )
    notes.append("### Hostile input (property tests)\n\n" + _hostile_section(data.get("hostile")))
    cluster = data.get("cluster")
    notes.append(
        "### Cluster: node loss\n\n"
        + (
            _json_block(cluster)
            if cluster is not None
            else "_benchmarks/results/cluster.json is not there yet (engineer C's cluster benchmark writes it)._"
        )
    )
    return write_result("reliability", "Reliability: soak, faults, drain", table, "\n\n".join(notes), data)


def _fmt_status(statuses: Mapping[str, int]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in statuses.items()) or "-"


def _all_problems(data: dict[str, Any]) -> list[tuple[str, list[str]]]:
    out = []
    if data.get("soak"):
        out.append(("soak", data["soak"]["problems"]))
    if data.get("backpressure"):
        out.append(("back-pressure", data["backpressure"]["problems"]))
    out += [(f"kill {k['role']}", k["problems"]) for k in data.get("kills", [])]
    out += [(f"fault {f['case']}", f["problems"]) for f in data.get("faults", [])]
    if data.get("drain"):
        out.append(("drain", data["drain"]["problems"]))
    return out


def main(argv: list[str] | None = None) -> int:
    """``hayaku bench reliability``: soak, back-pressure, replica kills, backend faults, drain; writes the report."""
    p = argparse.ArgumentParser(
        prog="hayaku bench reliability", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--soak-seconds", type=float, default=90.0, help="soak time bound (default 90)")
    p.add_argument("--soak-requests", type=int, default=20_000, help="soak request bound (default 20000)")
    p.add_argument("--concurrency", type=int, default=32, help="soak concurrency (default 32)")
    p.add_argument(
        "--skip",
        action="append",
        default=[],
        choices=["soak", "backpressure", "kills", "faults", "drain"],
        help="leave a scenario out",
    )
    p.add_argument(
        "--report-only",
        action="store_true",
        help="rewrite reliability.md from the last run's reliability.json with the current hostile/cluster results",
    )
    ns = p.parse_args(argv)
    argv = list(argv if argv is not None else sys.argv[1:])
    if ns.report_only:
        last = _section("reliability")
        if not isinstance(last, dict) or "error" in last:
            raise SystemExit("no usable benchmarks/results/reliability.json; run `hayaku bench reliability` first")
        last["hostile"], last["cluster"] = _section("hostile-input"), _section("cluster")
        print(report(last, last.get("argv", [])).read_text())
        return 1 if sum(len(ps) for _, ps in _all_problems(last)) else 0

    import ray
    from ray import serve

    def say(msg: str) -> None:
        print(f"[reliability] {msg}", file=sys.stderr, flush=True)

    data: dict[str, Any] = {"machine": machine(), "argv": argv}
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    say(f"starting Ray on 127.0.0.1, Serve on port {port}")
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        if "soak" not in ns.skip:
            say(f"soak: concurrency {ns.concurrency}, {ns.soak_requests} requests or {ns.soak_seconds:g} s")
            # max_inflight below the concurrency: the soak also sees explicit back-pressure
            prefix = deploy(synthetic_args(max_inflight=24), "soak")
            data["soak"] = soak(
                url,
                prefix,
                "soak",
                concurrency=ns.concurrency,
                max_requests=ns.soak_requests,
                max_seconds=ns.soak_seconds,
            ).to_dict()
            say(f"  {data['soak']['summary']['requests']} requests, {data['soak']['summary']['statuses']}")
            serve.delete("soak")
        if "backpressure" not in ns.skip:
            say("back-pressure: slow echo (work_ms 300), limits.max_inflight 2, 24 requests at concurrency 8")
            prefix = deploy(synthetic_args({"work_ms": 300}, max_inflight=2), "bp")
            data["backpressure"] = backpressure(url, prefix, concurrency=8, requests=24)
            say(f"  {data['backpressure']['statuses']}")
            serve.delete("bp")
        if "kills" not in ns.skip:
            prefix = deploy(synthetic_args(), "kill")
            data["kills"] = []
            for role in ("translator", "speaker"):
                say(f"SIGKILL the {role} replica mid-load")
                k = kill_replica(url, prefix, role)
                data["kills"].append(k)
                say(f"  recovered in {k['recovery_s']} s; answers {k['statuses']}")
            serve.delete("kill")
        if "faults" not in ns.skip:
            say(f"backend faults, no fallback: deploying {len(FAULT_CASES)} graphs")
            apps = {f"fault{i}": args for i, (args, _) in enumerate(FAULT_CASES.values())}
            prefixes = deploy_many(apps)
            data["faults"] = []
            for prefix, case in zip(prefixes.values(), FAULT_CASES, strict=True):
                f = backend_fault(url, prefix, case)
                data["faults"].append(f)
                say(f"  {case}: {f['statuses']} {f['problems'] or ''}")
            for name in apps:
                serve.delete(name)
    finally:
        serve.shutdown()
        ray.shutdown()
    if "drain" not in ns.skip:
        for hayaku in (True, False):
            cmd = "hayaku serve" if hayaku else "serve run (Ray's own)"
            say(f"drain: {cmd} configs/tiny.yaml with a slow echo, SIGTERM with speech-translate requests in flight")
            d = drain_run(hayaku)
            data["drain" if hayaku else "drain_serve_run"] = d
            say(f"  in flight: {d.get('in_flight_statuses')}, exit {d.get('exit_after_sigterm_s')} s after SIGTERM")
    data["hostile"] = _section("hostile-input")
    data["cluster"] = _section("cluster")
    md = report(data, argv)
    print(md.read_text())
    found = sum(len(ps) for _, ps in _all_problems(data))
    say(f"wrote {md}; problems: {found}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
