"""The hayaku graph on the local cluster: configs/cluster.yaml with synthetic stages, and scaling runs.

``synthetic_config`` switches the YAML's stages to the echo translator and tone speaker (no
models), placement and autoscaling kept; ``scaling`` compares 1 and 2 Translator replicas and
``autoscaling`` runs the YAML's own autoscaling_config (``hayaku bench cluster``).
"""

from __future__ import annotations

import statistics
import threading
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import yaml

from benchmarks.cluster_nodes import CONFIG, LocalCluster, progress
from benchmarks.load import SENTENCES, LoadResult, load
from graph.yaml_files import IMPORT_PATH, load_app_args, read_yaml

# -- the graph -----------------------------------------------------------------------------------


def synthetic_config(
    port: int,
    *,
    work_ms: float = 0.0,
    batch: int | None = None,
    request_timeout_s: float | None = None,
    translator_replicas: int | None = None,
    source: str | Path = CONFIG,
) -> dict[str, Any]:
    """configs/cluster.yaml with the echo and tone stages and Serve HTTP on 127.0.0.1:``port``.

    Deployments and placement stay as they are; ``translator_replicas`` replaces the Translator's
    autoscaling with a fixed replica count.
    """
    cfg = read_yaml(source)
    cfg["http_options"] = {**(cfg.get("http_options") or {}), "host": "127.0.0.1", "port": port}
    app = next(a for a in cfg["applications"] if a.get("import_path") == IMPORT_PATH)
    args = app.setdefault("args", {})
    translator: dict[str, Any] = {"backend": "echo", "options": {"work_ms": work_ms} if work_ms else {}}
    if batch is not None:
        translator["batch"] = {"max_batch_size": batch, "batch_wait_timeout_s": 0.0}
    args["translator"] = translator
    args["speaker"] = {"backend": "tone", "voice": "sine"}
    if request_timeout_s is not None:
        args.setdefault("limits", {})["request_timeout_s"] = request_timeout_s
    if translator_replicas is not None:
        dep = translator_deployment(cfg)
        dep.pop("autoscaling_config", None)
        dep["num_replicas"] = translator_replicas
    return cfg


def translator_deployment(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The Translator's entry in the hayaku application's ``deployments`` list (edited in place)."""
    app = next(a for a in cfg["applications"] if a.get("import_path") == IMPORT_PATH)
    return next(d for d in app.get("deployments") or [] if d.get("name") == "Translator")


def write_config(cfg: Mapping[str, Any], path: Path) -> Path:
    """Writes a Serve YAML and validates it the way `hayaku serve` does before anything deploys it."""
    path.write_text(yaml.safe_dump(dict(cfg), sort_keys=False))
    load_app_args(path)
    return path


# -- scaling --------------------------------------------------------------------------------------------


def _settled_counts(
    cluster: LocalCluster, before: Mapping[str, float], at_least: int, timeout_s: float = 45
) -> dict[str, float]:
    """Per-replica request counts once they exceed ``before`` by ``at_least`` (Serve exports them every few s)."""
    deadline = time.monotonic() + timeout_s
    now = cluster.replica_requests()
    while sum(now.values()) - sum(before.values()) < at_least and time.monotonic() < deadline:
        time.sleep(2)
        now = cluster.replica_requests()
    return now


def scaling(
    cluster: LocalCluster, tmp: Path, port: int, *, work_ms: float, rounds: int, requests: int, seconds: float
) -> dict[str, Any]:
    """Throughput at concurrency 16 with 1 vs 2 Translator replicas (interleaved), and what each replica did."""
    base = f"http://127.0.0.1:{port}"
    payloads = [{"text": s} for s in SENTENCES]
    configs = {}
    for n in (1, 2):
        cfg = synthetic_config(port, work_ms=work_ms, batch=1, translator_replicas=n)
        # Serve's own spreading knob: the two replicas run on the two translate nodes, not side by side
        translator_deployment(cfg)["max_replicas_per_node"] = 1
        configs[n] = write_config(cfg, tmp / f"replicas{n}.yaml")
    runs: list[dict[str, Any]] = []
    for r in range(rounds):
        for n in (1, 2) if r % 2 == 0 else (2, 1):
            progress(f"round {r + 1}/{rounds}: {n} translator replica(s)")
            cluster.deploy(configs[n])
            cluster.wait_running(replicas={"Translator": n})
            counts = cluster.replica_requests()
            warm = load(base, "/v1/translate", payloads, 4, max_requests=16, max_seconds=30, timeout_s=60)
            counts = _settled_counts(cluster, counts, warm.summary()["ok"])
            placed = {p.replica_id: p for p in cluster.placement() if p.deployment == "Translator"}
            res = load(base, "/v1/translate", payloads, 16, max_requests=requests, max_seconds=seconds, timeout_s=60)
            s = res.summary()
            after = _settled_counts(cluster, counts, s["ok"])
            per_replica = {k: v - counts.get(k, 0.0) for k, v in after.items() if v - counts.get(k, 0.0) > 0}
            runs.append(
                {
                    "replicas": n,
                    "round": r + 1,
                    **s,
                    "per_replica": {
                        rid: {"requests": int(c), "node": placed[rid].node_id[:8] if rid in placed else "?"}
                        for rid, c in sorted(per_replica.items())
                    },
                }
            )
            progress(
                f"  {s['ok']}/{s['requests']} ok, {s['throughput_rps']:.1f} req/s, p50 {s['p50_ms']} ms; "
                f"per replica {runs[-1]['per_replica']}"
            )
    rows = []
    for n in (1, 2):
        sel = [x for x in runs if x["replicas"] == n]
        rows.append(
            {
                "replicas": n,
                "throughput_rps": round(statistics.median(x["throughput_rps"] for x in sel), 2),
                "p50_ms": round(statistics.median(x["p50_ms"] or 0 for x in sel), 1),
                "p99_ms": round(statistics.median(x["p99_ms"] or 0 for x in sel), 1),
                "requests": sum(x["requests"] for x in sel),
                "ok": sum(x["ok"] for x in sel),
                "errors": dict(sum((Counter(x["errors_by_status"]) for x in sel), Counter())),
                "nodes": sorted({v["node"] for x in sel for v in x["per_replica"].values()}),
                "per_replica_share": [
                    round(v["requests"] / max(1, sum(w["requests"] for w in x["per_replica"].values())), 2)
                    for x in sel[-1:]
                    for v in x["per_replica"].values()
                ],
            }
        )
    ratio = rows[1]["throughput_rps"] / rows[0]["throughput_rps"] if rows[0]["throughput_rps"] else float("nan")
    return {"work_ms": work_ms, "concurrency": 16, "runs": runs, "rows": rows, "ratio_2_vs_1": round(ratio, 3)}


def autoscaling(cluster: LocalCluster, tmp: Path, port: int, *, work_ms: float, seconds: float) -> dict[str, Any]:
    """The YAML's own autoscaling_config under concurrency-16 load: replica count over time."""
    cfg = synthetic_config(port, work_ms=work_ms, batch=1)
    auto = translator_deployment(cfg)["autoscaling_config"]
    cluster.deploy(write_config(cfg, tmp / "autoscaling.yaml"))
    cluster.wait_running(replicas={"Translator": int(auto.get("min_replicas", 1))})
    base = f"http://127.0.0.1:{port}"
    replicas: list[tuple[float, int]] = []
    runs: list[LoadResult] = []
    # one continuous run (no pauses between rounds): its throughput is what the replica count gives
    thread = threading.Thread(
        target=lambda: runs.append(
            load(
                base,
                "/v1/translate",
                [{"text": s} for s in SENTENCES],
                16,
                max_requests=10**6,
                max_seconds=seconds,
                timeout_s=60,
            )
        ),
        daemon=True,
    )
    t0 = time.monotonic()
    thread.start()
    while thread.is_alive():
        replicas.append((round(time.monotonic() - t0, 1), cluster.running_replicas().get("Translator", 0)))
        thread.join(timeout=1)
    t_two = next((t for t, n in replicas if n >= 2), None)
    records = runs[0].records if runs else []
    ok = [r.start_s + r.latency_ms / 1000 for r in records if r.ok]

    def rate(lo: float, hi: float) -> float | None:
        n = sum(1 for end in ok if lo <= end < hi)
        return round(n / (hi - lo), 2) if hi - lo >= 2 else None

    return {
        "autoscaling_config": auto,
        "concurrency": 16,
        "work_ms": work_ms,
        "seconds": seconds,
        "second_replica_running_s": t_two,
        "throughput_before_rps": rate(1, t_two) if t_two else rate(1, seconds),
        "throughput_after_rps": rate(t_two + 2, seconds) if t_two else None,
        "replicas": replicas,
        "statuses": dict(Counter(str(r.status) for r in records)),
        "placement": [asdict(p) for p in cluster.placement() if p.deployment == "Translator"],
    }
