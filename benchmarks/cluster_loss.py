"""Node loss under load on the local cluster: a worker node stopped (drained) or killed, then back.

``node_loss`` runs /v1/speech-translate at a fixed concurrency, takes a worker node away with
scripts/cluster.sh (``stop``: SIGTERM to its ``ray start --block``, which asks the GCS to drain
the node; ``kill``: SIGKILL to every process of it), brings a new node of the same role back and
measures how requests ended. Besides the answers it keeps the evidence of what happened to the
node and the stage on it: the replicas' actors and processes before (and that they belonged to
that node's session), whether any process of the node was left once the script returned, the
GCS's state of the node and of the old replicas afterwards, Serve's own replica states over
time, and how many requests were answered 200 while the node was away (none can be, if the
stage ran only there).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from benchmarks.cluster_nodes import ROLE_DEPLOYMENT, ClusterError, LocalCluster, progress
from benchmarks.load import load

SPEECH = {"text": "Hello, how are you today?", "response": "json"}
#: Serve replica states in which a replica takes requests (a draining node's replica serves on)
SERVING = ("RUNNING", "PENDING_MIGRATION")
#: an answer that ends this long after the node was gone may still be one the old replica sent
AWAY_MARGIN_S = 1.0


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


class ReplicaWatch:
    """Serve's view of one deployment's replicas, polled on a thread: (t, [(id, state, node)]) at each change."""

    def __init__(self, cluster: LocalCluster, deployment: str, now: Callable[[], float], every_s: float = 1.0) -> None:
        self.cluster = cluster
        self.deployment = deployment
        self.now = now
        self.every_s = every_s
        self.changes: list[tuple[float, list[tuple[str, str, str]]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cluster-watch", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            t = self.now()
            try:
                seen = [
                    (rid, state, node[:8])
                    for rid, state, node in self.cluster.serve_replicas(deployment=self.deployment)
                ]
            except Exception as exc:  # a busy dashboard: note it and ask again
                seen = [("?", f"{type(exc).__name__}", "")]
            if not self.changes or self.changes[-1][1] != seen:
                self.changes.append((round(t, 2), seen))
            self._stop.wait(self.every_s)

    def __enter__(self) -> ReplicaWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    def serving_gaps(self) -> list[tuple[float, float]]:
        """Spans (from, to) in which Serve listed no replica that takes requests (to the watch's resolution)."""
        gaps, start = [], None
        for t, seen in self.changes:
            if seen and seen[0][0] == "?":
                continue
            serving = any(state in SERVING for _, state, _ in seen)
            if not serving and start is None:
                start = t
            elif serving and start is not None:
                gaps.append((start, t))
                start = None
        if start is not None:
            gaps.append((start, round(self.now(), 2)))
        return gaps


def _alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


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
    node was gone: every request started in it must end as a 200 or an explicit 503. "Gone" is
    when scripts/cluster.sh returned: no process of the node's session is left by then (the
    script SIGKILLs what a drain leaves after 30 s); "back" is when the new node has started.
    """
    if how not in ("stop", "kill"):
        raise ValueError(f"how: stop or kill, not {how!r}")
    deployment = ROLE_DEPLOYMENT[role]
    sid = cluster.node_sessions().get(node)
    if sid is None:
        raise ClusterError(f"no node {node!r} of this cluster is running")
    node_pids = set(cluster.session_processes(sid))
    before = [r for r in cluster.placement() if r.deployment == deployment]
    with (
        BackgroundLoad(base_url, path, [SPEECH], concurrency, request_timeout_s + 10) as bg,
        ReplicaWatch(cluster, deployment, bg.now) as watch,
    ):
        time.sleep(settle_s)
        t_loss = bg.now()
        progress(f"{how} node {node} ({deployment} replicas: {[r.replica_id for r in before]})")
        (cluster.kill_node if how == "kill" else cluster.stop_node)(node)
        t_gone = bg.now()
        node_left = cluster.session_processes(sid)
        replica_pids_left = [r.pid for r in before if r.pid and _alive(r.pid)]
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
    # what became of the node and of the old replicas, as the GCS has it now
    node_states = cluster.node_states()
    actor_states = {r.replica_id: r.state for r in cluster.replica_actors() if r.deployment == deployment}
    lost_nodes = sorted({r.node_id for r in before})

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
        "away_s": round(t_back - t_gone, 2),
        "sent_during_loss": len(during),
        "answered_200": statuses.get(200, 0),
        "answered_503": statuses.get(503, 0),
        "other": len(others),
        "other_errors": sorted({f"{e.status}: {e.error}" for e in others})[:5],
        "errors_503": sorted({str(e.error) for e in during if e.status == 503})[:3],
        "longest_answer_s": rnd(max((e.end - e.start for e in during), default=None)),
        # the stage ran only on the lost node: nothing can have answered 200 while it was away
        "answered_200_while_node_away": sum(
            1 for e in events if e.status == 200 and t_gone + AWAY_MARGIN_S < e.end < t_back
        ),
        "first_error_after_loss_s": rnd(None if first_error is None else first_error - t_loss),
        "node_start_s": rnd(t_back - t_start),
        "recovered": t_ok is not None,
        "recovered_after_node_back_s": rnd(None if t_ok is None else t_ok - t_back),
        "outage_s": rnd(None if t_ok is None else t_ok - t_loss),
        "node_processes_before": len(node_pids),
        "replicas_in_node_session": all(r.pid in node_pids for r in before),
        "node_processes_left": node_left,
        "replica_pids_left": replica_pids_left,
        "lost_nodes": {n: node_states.get(n, "?") for n in lost_nodes},
        "old_replicas_after": {r.replica_id: actor_states.get(r.replica_id, "?") for r in before},
        "serving_gaps": [[rnd(a), rnd(b)] for a, b in watch.serving_gaps()],
        "replica_states": [[t, [list(x) for x in seen]] for t, seen in watch.changes],
        "replicas_before": [asdict(r) for r in before],
        "replicas_after": after,
        "requests_total": len(events),
        "timeline": per_second(events),
        "marks": {"loss": rnd(t_loss), "gone": rnd(t_gone), "back": rnd(t_back), "recovered": rnd(t_ok)},
    }
