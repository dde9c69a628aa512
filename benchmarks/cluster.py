"""``hayaku bench cluster``: the hayaku graph on a local multi-node Ray cluster.

    flock /tmp/hayaku-bench.lock hayaku bench cluster      # scaling, autoscaling, node loss
    hayaku bench cluster --skip-loss                        # scaling and autoscaling only

The cluster is the one scripts/cluster.sh makes with Ray's own ``ray start`` (a head, worker
nodes with the custom resources translate_node / speak_node, loopback addresses, its own temp
dir and auth token); ``LocalCluster`` drives that script and reads the cluster through Ray's
own interfaces: the state API (nodes, replica actors and where they run), Serve's REST API
(application status, ``serve deploy``), and each node's Prometheus endpoint (Serve's
per-replica request counter). The graph is configs/cluster.yaml with its stages switched to
the synthetic echo translator and tone speaker, placement and autoscaling kept: no models.

- scaling: a head, two translate_node workers and a speak_node worker. Echo burns ``--work-ms``
  of CPU per call, translator batching is off (one backend call per request), concurrency 16 on
  /v1/translate, Translator num_replicas 1 vs 2, interleaved A B A B. What each replica did comes
  from Serve's own ``ray_serve_deployment_request_counter``.
- autoscaling: the YAML's ``autoscaling_config`` as it is (min 1, max 2, target_ongoing_requests)
  under the same load: when the second replica ran, throughput before and after.
- node loss: back to one translate node; /v1/speech-translate at concurrency 4 while the
  speaker's node is stopped (SIGTERM: Ray drains it) and then the translator's node is killed
  (SIGKILL to all of its processes, like a crash); each returns after ``--down-s``. Counted:
  requests started during the loss and how they ended (200, 503, anything else), the time from
  the loss to the first error and from the node's return to the first success, and where the
  replacement replica runs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from backends.errors import HayakuError
from benchmarks.common import RESULTS, machine, markdown_table, write_result
from benchmarks.load import SENTENCES, LoadResult, load
from graph.yaml_files import IMPORT_PATH, load_app_args, read_yaml

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "cluster.sh"
CONFIG = ROOT / "configs" / "cluster.yaml"
SERVE_CLI = Path(sys.executable).with_name("serve")
APP = "hayaku"
#: the deployment that holds each worker role's replicas
ROLE_DEPLOYMENT = {"translate": "Translator", "speak": "Speaker"}
SPEECH = {"text": "Hello, how are you today?", "response": "json"}


class ClusterError(HayakuError):
    """The local cluster or a deployment on it did not do what was asked; the message says what happened."""

    kind = "cluster_error"


def progress(message: str) -> None:
    print(f"[cluster] {message}", file=sys.stderr, flush=True)


@dataclass
class Replica:
    """A live Serve replica: which deployment, its id, the node it runs on and that node's resources."""

    deployment: str
    replica_id: str
    node_id: str
    pid: int | None
    node_resources: dict[str, float]


class LocalCluster:
    """The cluster of scripts/cluster.sh in ``directory`` (its HAYAKU_CLUSTER_DIR), and Ray's APIs on it."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.env: dict[str, str] = {}

    # -- the script ---------------------------------------------------------------------------

    def _script(self, *args: str, timeout_s: float = 1800) -> str:
        env = {**os.environ, "HAYAKU_CLUSTER_DIR": str(self.directory)}
        env.pop("RAY_ADDRESS", None)
        # stderr is the script's progress: it goes where ours goes
        out = subprocess.run(
            [str(SCRIPT), *args], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True, timeout=timeout_s, check=False
        )
        if out.returncode != 0:
            raise ClusterError(f"scripts/cluster.sh {' '.join(args)} failed with exit status {out.returncode}")
        return out.stdout

    def up(self) -> LocalCluster:
        """Starts the head and the translate and speak workers (minutes on a busy 2-core machine)."""
        self._script("up")
        return self.attach()

    def attach(self) -> LocalCluster:
        """Reads the addresses of a cluster that is up (the script's cluster.env)."""
        lines = (self.directory / "cluster.env").read_text().splitlines()
        self.env = dict(line.split("=", 1) for line in lines if "=" in line)
        return self

    def down(self) -> None:
        """Stops every node of this cluster (and nothing else)."""
        self._script("down")

    def start_node(self, role: str, name: str | None = None) -> None:
        self._script("start-node", role, *([name] if name else []))

    def stop_node(self, name: str) -> None:
        """SIGTERM to the node's ``ray start --block``: Ray drains the node and stops its processes."""
        self._script("stop-node", name)

    def kill_node(self, name: str) -> None:
        """SIGKILL to every process of the node at once: a crash."""
        self._script("kill-node", name)

    def node_sessions(self) -> dict[str, int]:
        """Node name -> the pid (and session id) of its ``ray start --block``, for nodes the script started."""
        return {p.stem: int(p.read_text()) for p in sorted((self.directory / "nodes").glob("*.pid"))}

    @staticmethod
    def session_processes(sid: int) -> list[int]:
        """Live processes of a node's session: its ``ray start``, raylet, agents and workers."""
        import psutil

        out = []
        for proc in psutil.process_iter(["status"]):
            try:
                if os.getsid(proc.pid) == sid and proc.info["status"] != psutil.STATUS_ZOMBIE:
                    out.append(proc.pid)
            except (OSError, psutil.Error):
                continue  # gone meanwhile
        return out

    def metrics_ports(self) -> list[int]:
        ports = []
        for f in sorted((self.directory / "nodes").glob("*.env")):
            for line in f.read_text().splitlines():
                if line.startswith("METRICS_PORT="):
                    ports.append(int(line.split("=", 1)[1]))
        return ports

    # -- clients --------------------------------------------------------------------------------

    @property
    def dashboard(self) -> str:
        return self.env["HAYAKU_DASHBOARD"]

    @property
    def node_ip(self) -> str:
        return self.env["RAY_ADDRESS"].rsplit(":", 1)[0]

    @property
    def headers(self) -> dict[str, str]:
        """The cluster's auth token as an HTTP header, for its dashboard (state and Serve REST APIs)."""
        token = Path(self.env["RAY_AUTH_TOKEN_PATH"]).read_text().strip()
        return {"Authorization": f"Bearer {token}"}

    def cli_env(self) -> dict[str, str]:
        """Environment for Ray's CLIs (`serve deploy`, `ray status`) aimed at this cluster."""
        env = {**os.environ, **self.env, "RAY_USAGE_STATS_ENABLED": "0"}
        env.pop("RAY_ADDRESS", None)  # the serve CLI talks to the dashboard, given with -a
        return env

    def serve(self, *args: str, timeout_s: float = 300) -> str:
        """Runs Ray's ``serve`` CLI against this cluster's dashboard."""
        if not SERVE_CLI.exists():
            raise ClusterError(f"Ray Serve's CLI is not next to {sys.executable}: pip install 'hayaku[serve]'")
        out = subprocess.run(
            [str(SERVE_CLI), *args, "-a", self.dashboard],
            env=self.cli_env(),
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
        if out.returncode != 0:
            raise ClusterError(f"serve {' '.join(args)} failed:\n{(out.stderr or out.stdout)[-2000:]}")
        return out.stdout

    def deploy(self, config: str | Path) -> None:
        """``serve deploy``: Serve builds the app in the cluster and rolls it out."""
        self.serve("deploy", str(config))

    def applications(self) -> dict[str, Any]:
        """Serve's REST view of the applications (status, deployments, replicas)."""
        import httpx

        r = httpx.get(f"{self.dashboard}/api/serve/applications/", headers=self.headers, timeout=30, trust_env=False)
        r.raise_for_status()
        return dict(r.json().get("applications") or {})

    def running_replicas(self, app: str = APP) -> dict[str, int]:
        """Deployment -> replicas in state RUNNING."""
        deps = (self.applications().get(app) or {}).get("deployments") or {}
        return {n: sum(1 for r in d.get("replicas") or [] if r.get("state") == "RUNNING") for n, d in deps.items()}

    def wait_running(self, app: str = APP, replicas: Mapping[str, int] | None = None, timeout_s: float = 300) -> None:
        """Waits until ``app`` is RUNNING with every deployment HEALTHY (and the given replica counts)."""
        deadline = time.monotonic() + timeout_s
        last = "no answer yet"
        while time.monotonic() < deadline:
            try:
                info = self.applications().get(app) or {}
            except Exception as exc:  # the dashboard may be busy starting; keep asking until the deadline
                last = f"{type(exc).__name__}: {exc}"
                time.sleep(2)
                continue
            deps = info.get("deployments") or {}
            running = {
                n: sum(1 for r in d.get("replicas") or [] if r.get("state") == "RUNNING") for n, d in deps.items()
            }
            last = f"{info.get('status')}: {info.get('message') or ''} {running}"
            if info.get("status") == "DEPLOY_FAILED":
                raise ClusterError(f"application {app} failed to deploy: {info.get('message')}")
            if (
                info.get("status") == "RUNNING"
                and deps
                and all(d.get("status") == "HEALTHY" for d in deps.values())
                and all(running.get(n) == k for n, k in (replicas or {}).items())
            ):
                return
            time.sleep(1)
        raise ClusterError(f"application {app} not running within {timeout_s:g} s; last: {last[:1500]}")

    def _state_list(self, resource: str, filters: list[tuple[str, str, Any]] | None = None) -> list[Any]:
        from ray.util.state import StateApiClient
        from ray.util.state.common import ListApiOptions, StateResource

        client = StateApiClient(address=self.dashboard, headers=self.headers)
        options = ListApiOptions(filters=filters or [], detail=True, limit=10_000)
        return list(client.list(StateResource(resource), options=options, raise_on_missing_output=False))

    def nodes(self) -> list[Any]:
        """Ray's state API: every node (alive or dead) with its resources."""
        return self._state_list("nodes")

    def placement(self, app: str = APP) -> list[Replica]:
        """Every live replica of ``app``, with the node it runs on (Ray's state API)."""
        nodes = {n.node_id: n for n in self.nodes()}
        prefix = f"ServeReplica:{app}:"
        out = []
        for a in self._state_list("actors", [("state", "=", "ALIVE")]):
            cls = a.class_name or ""
            if not cls.startswith(prefix):
                continue
            node = nodes.get(a.node_id)
            out.append(
                Replica(
                    cls[len(prefix) :],
                    (a.name or "").rsplit("#", 1)[-1],
                    a.node_id,
                    a.pid,
                    dict(node.resources_total) if node is not None else {},
                )
            )
        return sorted(out, key=lambda r: (r.deployment, r.replica_id))

    def replica_requests(self, app: str = APP, deployment: str = "Translator") -> dict[str, float]:
        """Replica id -> requests it has handled: Serve's request counter from every node's metrics endpoint."""
        import httpx
        from prometheus_client.parser import text_string_to_metric_families

        counts: dict[str, float] = {}
        for port in self.metrics_ports():
            try:
                text = httpx.get(f"http://{self.node_ip}:{port}/metrics", timeout=10, trust_env=False).text
            except httpx.HTTPError:
                continue  # a stopped node
            for family in text_string_to_metric_families(text):
                for s in family.samples:
                    if (
                        s.name.startswith("ray_serve_deployment_request_counter")
                        and s.labels.get("application") == app
                        and s.labels.get("deployment") == deployment
                    ):
                        counts[s.labels["replica"]] = counts.get(s.labels["replica"], 0.0) + s.value
        return counts


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


def placement_problems(replicas: Sequence[Replica], cfg: Mapping[str, Any]) -> list[str]:
    """Replicas on a node without the custom resources their deployment asks for, and deployments without replicas."""
    wanted: dict[str, set[str]] = {}
    for app in cfg.get("applications") or []:
        for dep in app.get("deployments") or []:
            wanted[str(dep["name"])] = set((dep.get("ray_actor_options") or {}).get("resources") or {})
    problems = []
    for r in replicas:
        missing = wanted.get(r.deployment, set()) - set(r.node_resources)
        if missing:
            problems.append(
                f"{r.deployment} replica {r.replica_id} runs on node {r.node_id[:8]} without {sorted(missing)}"
            )
    for name in wanted:
        if not any(r.deployment == name for r in replicas):
            problems.append(f"no live {name} replica")
    return problems


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- load in the background -------------------------------------------------------------------------


@dataclass
class Event:
    """One request on the experiment's clock: started and ended (seconds from its start), status, error."""

    start: float
    end: float
    status: int
    error: str | None


class BackgroundLoad:
    """``benchmarks.load.run_load`` in one-second rounds on a thread until stopped, on one clock."""

    def __init__(self, base_url: str, path: str, payloads: Sequence[Any], concurrency: int, timeout_s: float) -> None:
        self.args = (base_url, path, list(payloads), concurrency)
        self.timeout_s = timeout_s
        self.events: list[Event] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cluster-load", daemon=True)
        self.t0 = time.monotonic()

    def now(self) -> float:
        return time.monotonic() - self.t0

    def _run(self) -> None:
        while not self._stop.is_set():
            round_t0 = self.now()
            res = load(*self.args, max_requests=1_000_000, max_seconds=1.0, timeout_s=self.timeout_s)
            for r in res.records:
                start = round_t0 + r.start_s
                self.events.append(Event(start, start + r.latency_ms / 1000, r.status, r.error))

    def __enter__(self) -> BackgroundLoad:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=self.timeout_s + 60)

    def wait_for(self, pred: Callable[[list[Event]], float | None], timeout_s: float) -> float | None:
        """Polls ``pred(events)`` until it returns a time (or ``timeout_s`` passes: None)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            found = pred(list(self.events))
            if found is not None:
                return found
            time.sleep(0.5)
        return None


def per_second(events: Sequence[Event]) -> list[dict[str, Any]]:
    """Answers per second of the run, by status, keyed by when each request ended."""
    if not events:
        return []
    rows: dict[int, Counter[str]] = {}
    for e in events:
        rows.setdefault(int(e.end), Counter())[str(e.status)] += 1
    return [{"t": t, **dict(rows.get(t, Counter()))} for t in range(max(rows) + 1)]


# -- node loss ------------------------------------------------------------------------------------------


def node_loss(
    cluster: LocalCluster,
    base_url: str,
    *,
    node: str,
    role: str,
    how: str = "stop",
    down_s: float = 10.0,
    concurrency: int = 4,
    request_timeout_s: float = 30.0,
    recover_timeout_s: float = 300.0,
    settle_s: float = 3.0,
    path: str = "/v1/speech-translate",
) -> dict[str, Any]:
    """Takes worker ``node`` away under load (``how``: stop or kill), brings it back, measures the outage.

    The loss window runs from the loss until the first success of a request started after the
    node was gone: every request started in it must end as a 200 or an explicit 503.
    """
    deployment = ROLE_DEPLOYMENT[role]
    before = [asdict(r) for r in cluster.placement() if r.deployment == deployment]
    with BackgroundLoad(base_url, path, [SPEECH], concurrency, request_timeout_s + 10) as bg:
        time.sleep(settle_s)
        t_loss = bg.now()
        progress(f"{how} node {node} ({deployment} replicas: {[r['replica_id'] for r in before]})")
        (cluster.kill_node if how == "kill" else cluster.stop_node)(node)
        t_gone = bg.now()
        time.sleep(max(0.0, down_s - (t_gone - t_loss)))
        t_start = bg.now()
        progress(f"node {node} back ({role})")
        cluster.start_node(role, node)
        t_back = bg.now()

        def recovered(events: list[Event]) -> float | None:
            oks = [e.end for e in events if e.start >= t_gone and e.status == 200]
            return min(oks) if oks else None

        t_ok = bg.wait_for(recovered, recover_timeout_s)
        time.sleep(settle_s)
    events = sorted(bg.events, key=lambda e: e.start)
    window_end = t_ok if t_ok is not None else bg.now()
    during = [e for e in events if t_loss <= e.start <= window_end]
    statuses = Counter(e.status for e in during)
    others = [e for e in during if e.status not in (200, 503)]
    first_error = min((e.end for e in events if e.end >= t_loss and e.status != 200), default=None)
    after = [asdict(r) for r in cluster.placement() if r.deployment == deployment]

    def rnd(x: float | None) -> float | None:
        return None if x is None else round(x, 2)

    return {
        "node": node,
        "role": role,
        "deployment": deployment,
        "how": how,
        "path": path,
        "concurrency": concurrency,
        "request_timeout_s": request_timeout_s,
        "down_s": round(t_start - t_loss, 2),
        "sent_during_loss": len(during),
        "answered_200": statuses.get(200, 0),
        "answered_503": statuses.get(503, 0),
        "other": len(others),
        "other_errors": sorted({f"{e.status}: {e.error}" for e in others})[:5],
        "errors_503": sorted({str(e.error) for e in during if e.status == 503})[:3],
        "first_error_after_loss_s": rnd(None if first_error is None else first_error - t_loss),
        "node_start_s": rnd(t_back - t_start),
        "recovered": t_ok is not None,
        "recovered_after_node_back_s": rnd(None if t_ok is None else t_ok - t_back),
        "outage_s": rnd(None if t_ok is None else t_ok - t_loss),
        "replicas_before": before,
        "replicas_after": after,
        "requests_total": len(events),
        "timeline": per_second(events),
        "marks": {"loss": rnd(t_loss), "gone": rnd(t_gone), "back": rnd(t_back), "recovered": rnd(t_ok)},
    }


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


# -- the report ----------------------------------------------------------------------------------------


def _chart(data: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    losses = data.get("node_loss") or []
    fig, axes = plt.subplots(1, 1 + len(losses), figsize=(4.5 * (1 + len(losses)), 3.8), squeeze=False)
    ax = axes[0][0]
    sc = data.get("scaling")
    if sc:
        rows = sc["rows"]
        ax.bar([str(r["replicas"]) for r in rows], [r["throughput_rps"] for r in rows], color=["#888", "#37a"])
        ax.set(
            xlabel="translator replicas", ylabel="requests/s", title=f"concurrency 16, echo work_ms={sc['work_ms']:g}"
        )
    for ax, loss in zip(axes[0][1:], losses, strict=True):
        tl = loss["timeline"]
        ts = [r["t"] for r in tl]
        ax.plot(ts, [r.get("200", 0) for r in tl], label="200")
        ax.plot(ts, [r.get("503", 0) for r in tl], label="503")
        other = [sum(v for k, v in r.items() if k not in ("t", "200", "503")) for r in tl]
        if any(other):
            ax.plot(ts, other, label="other")
        for mark, color, style in (
            ("loss", "r", "--"),
            ("gone", "k", "-."),
            ("back", "g", "--"),
            ("recovered", "b", ":"),
        ):
            if loss["marks"].get(mark) is not None:
                ax.axvline(loss["marks"][mark], color=color, linestyle=style, linewidth=1, label=mark)
        ax.set(xlabel="s", ylabel="answers/s", title=f"{loss['how']} {loss['node']} node")
        ax.legend(fontsize=7)
    fig.suptitle(f"hayaku on a local 3-4 node Ray cluster; {machine()}", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def report(data: dict[str, Any], argv: Sequence[str]) -> Path:
    """Writes benchmarks/results/cluster.md, .json and .png."""
    parts = []
    sc = data.get("scaling")
    if sc:
        parts.append(
            "### Scaling: 1 vs 2 translator replicas on two translate nodes (`max_replicas_per_node: 1`)\n\n"
            + markdown_table(
                [
                    "translator replicas",
                    "throughput req/s",
                    "p50 ms",
                    "p99 ms",
                    "requests",
                    "ok",
                    "errors",
                    "nodes used",
                    "share per replica (last round)",
                ],
                [
                    [
                        r["replicas"],
                        r["throughput_rps"],
                        r["p50_ms"],
                        r["p99_ms"],
                        r["requests"],
                        r["ok"],
                        sum(r["errors"].values()),
                        len(r["nodes"]),
                        " / ".join(f"{x:.2f}" for x in r["per_replica_share"]),
                    ]
                    for r in sc["rows"]
                ],
            )
            + f"\n\n2 replicas vs 1: **{sc['ratio_2_vs_1']:.2f}x** (median of {len(sc['runs']) // 2} interleaved "
            f"rounds each; echo burns {sc['work_ms']:g} ms of CPU per request, batching off). Per run:\n\n"
            + markdown_table(
                ["round", "replicas", "req/s", "p50 ms", "requests per replica (node)"],
                [
                    [
                        x["round"],
                        x["replicas"],
                        x["throughput_rps"],
                        x["p50_ms"],
                        ", ".join(f"{v['requests']} ({v['node']})" for v in x["per_replica"].values()),
                    ]
                    for x in sc["runs"]
                ],
            )
        )
    au = data.get("autoscaling")
    if au:
        parts.append(
            "### Autoscaling (the YAML's autoscaling_config)\n\n"
            + markdown_table(
                ["autoscaling_config", "second replica running after s", "req/s before", "req/s after", "statuses"],
                [
                    [
                        json.dumps(au["autoscaling_config"]),
                        au["second_replica_running_s"],
                        au["throughput_before_rps"],
                        au["throughput_after_rps"],
                        json.dumps(au["statuses"]),
                    ]
                ],
            )
        )
    losses = data.get("node_loss") or []
    if losses:
        parts.append(
            "### Node loss under load\n\n"
            + markdown_table(
                [
                    "node",
                    "how",
                    "sent during loss",
                    "200",
                    "503",
                    "other",
                    "first error after loss s",
                    "node start s",
                    "recovered after node back s",
                    "outage s",
                    "replacement on a new node",
                ],
                [
                    [
                        x["node"],
                        x["how"],
                        x["sent_during_loss"],
                        x["answered_200"],
                        x["answered_503"],
                        x["other"],
                        x["first_error_after_loss_s"],
                        x["node_start_s"],
                        x["recovered_after_node_back_s"],
                        x["outage_s"],
                        bool(x["replicas_after"])
                        and {r["node_id"] for r in x["replicas_after"]}.isdisjoint(
                            r["node_id"] for r in x["replicas_before"]
                        ),
                    ]
                    for x in losses
                ],
            )
        )
    notes = (
        f"`hayaku bench cluster {' '.join(argv)}` on a local cluster made by scripts/cluster.sh (Ray's `ray start`, "
        "all nodes on this one machine, so they share its 2 cores: more replicas cannot add compute here, the "
        "figures show placement, spreading and recovery rather than speed-up). Graph: configs/cluster.yaml with the "
        "synthetic echo translator and tone speaker, placement kept. Per-replica counts are Serve's own "
        "`ray_serve_deployment_request_counter` from each node's metrics endpoint. Node loss: `stop` is SIGTERM to "
        "the node's `ray start` (Ray drains it), `kill` is SIGKILL to all of its processes at once (a crash: the GCS "
        "notices after its health checks fail: scripts/cluster.sh lets a node miss 10 checks 3 s apart, twice Ray's "
        "default, so that a raylet starved of CPU on this shared machine is not declared dead; Serve replaces the "
        "lost replicas once the node is declared dead, about 30 s after the kill). A drained node keeps answering "
        "until it is gone. While a stage has no replica, requests wait in the ingress until `request_timeout_s` "
        "(10 s here): they succeed if a replacement comes up in time, else get a JSON 503 (`timeout`); a replica "
        "that dies under a request gives a 503 with Retry-After. 'sent during loss': requests started from the "
        "loss until the first success of a request started after the node was gone; 'outage': that span."
    )
    path = write_result(
        "cluster", "Multi-node cluster: scaling, autoscaling, node loss", "\n\n".join(parts), notes, data
    )
    _chart(data, RESULTS / "cluster.png")
    return path


def main(argv: list[str] | None = None) -> int:
    """``hayaku bench cluster``: see the module docstring."""
    p = argparse.ArgumentParser(
        prog="hayaku bench cluster", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--work-ms", type=float, default=20.0, help="CPU ms the echo translator burns per request (20)")
    p.add_argument("--rounds", type=int, default=2, help="interleaved rounds of 1 vs 2 replicas (default 2)")
    p.add_argument("--requests", type=int, default=400, help="requests per scaling run (default 400)")
    p.add_argument("--seconds", type=float, default=30.0, help="time bound per scaling run (default 30)")
    p.add_argument("--autoscale-seconds", type=float, default=45.0, help="load time of the autoscaling run (45)")
    p.add_argument("--down-s", type=float, default=15.0, help="how long a lost node stays away (default 15)")
    p.add_argument("--skip-scaling", action="store_true", help="no scaling or autoscaling runs")
    p.add_argument("--skip-loss", action="store_true", help="no node-loss runs")
    p.add_argument("--cluster-dir", help="HAYAKU_CLUSTER_DIR for the cluster (default: a new temp dir)")
    ns = p.parse_args(argv)
    argv_shown = argv if argv is not None else sys.argv[1:]

    tmp = Path(tempfile.mkdtemp(prefix="hkb-", dir="/tmp"))
    cluster = LocalCluster(ns.cluster_dir or tmp / "c")
    port = free_port()
    data: dict[str, Any] = {"machine": machine()}
    progress(f"starting a local cluster in {cluster.directory} (head, translate, speak) ...")
    cluster.up()
    try:
        if not ns.skip_scaling:
            progress("adding a second translate node")
            cluster.start_node("translate", "translate2")
            data["scaling"] = scaling(
                cluster, tmp, port, work_ms=ns.work_ms, rounds=ns.rounds, requests=ns.requests, seconds=ns.seconds
            )
            progress("autoscaling run")
            data["autoscaling"] = autoscaling(cluster, tmp, port, work_ms=ns.work_ms, seconds=ns.autoscale_seconds)
            cluster.stop_node("translate2")
        if not ns.skip_loss:
            timeout = 10.0
            cfg = write_config(synthetic_config(port, request_timeout_s=timeout), tmp / "loss.yaml")
            cluster.deploy(cfg)
            cluster.wait_running()
            base = f"http://127.0.0.1:{port}"
            data["node_loss"] = [
                node_loss(
                    cluster, base, node="speak", role="speak", how="stop", down_s=ns.down_s, request_timeout_s=timeout
                ),
                node_loss(
                    cluster,
                    base,
                    node="translate",
                    role="translate",
                    how="kill",
                    down_s=ns.down_s,
                    request_timeout_s=timeout,
                ),
            ]
            for x in data["node_loss"]:
                progress(
                    f"{x['how']} {x['node']}: {x['sent_during_loss']} sent during the loss, 200 {x['answered_200']}, "
                    f"503 {x['answered_503']}, other {x['other']}; recovered {x['recovered_after_node_back_s']} s "
                    "after the node came back"
                )
    finally:
        with_errors = []
        try:
            cluster.serve("shutdown", "-y")
        except Exception as exc:  # the cluster goes down next anyway; say why Serve did not stop cleanly
            with_errors.append(str(exc))
        cluster.down()
        for e in with_errors:
            progress(f"serve shutdown: {e[:300]}")
    path = report(data, argv_shown)
    print(path.read_text())
    print(f"wrote {path}, {RESULTS / 'cluster.json'} and {RESULTS / 'cluster.png'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
