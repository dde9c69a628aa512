"""``hayaku serve``: Ray's ``serve run`` of a YAML, plus a graceful drain on SIGTERM and SIGINT.

Ray 2.60's ``serve run`` does not drain: on SIGTERM Ray's own signal handler in the driver
aborts the process at once (requests in flight get a dropped connection), and on SIGINT it
calls ``serve.shutdown()``, which stops the HTTP proxy together with the replicas, so the
replicas finish their requests but nobody is left to send the answers. Here ``serve run``
deploys the YAML without blocking, in this process; then a signal first waits (up to
``DRAIN_TIMEOUT_S``) until the ingress replicas have no request in flight, so that no stage
replica goes away under a request that still needs it, then deletes the applications
(``serve.delete``: the proxy stays up, each replica finishes what it holds within its
``graceful_shutdown_timeout_s``) before Serve and Ray shut down. New requests during the
drain get the proxy's 404/503; a second signal stops at once.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from types import FrameType
from typing import Any

#: longest wait for the ingress replicas to finish their requests before the apps are deleted anyway
DRAIN_TIMEOUT_S = 60.0
SERVE_NAMESPACE = "serve"


def replica_actors(app: str, deployment: str | None = None) -> list[dict[str, Any]]:
    """Live replica actors of a Serve app (``deployment``, pid, actor name), from this Ray's GCS actor table.

    ``ray.util.state`` would need the dashboard's API server and picks "the" Ray of the machine;
    the actor table of the Ray this process is connected to is always there.
    """
    import ray

    prefix = f"ServeReplica:{app}:"
    out = []
    for actor in ray._private.state.actors().values():  # type: ignore[attr-defined]
        cls = str(actor.get("ActorClassName") or "")
        if not cls.startswith(prefix) or actor.get("State") != "ALIVE":
            continue
        name = cls[len(prefix) :]
        if deployment is None or name == deployment:
            out.append({"deployment": name, "pid": int(actor.get("Pid") or 0), "actor": actor.get("Name")})
    return out


def ongoing_requests(app: str, deployment: str = "Ingress") -> int:
    """Requests in flight at the deployment's live replicas (Ray's own per-replica count)."""
    import ray

    refs = [
        ray.get_actor(r["actor"], namespace=SERVE_NAMESPACE).get_num_ongoing_requests.remote()
        for r in replica_actors(app, deployment)
        if r["actor"]
    ]
    return int(sum(ray.get(refs, timeout=10))) if refs else 0


def wait_idle(apps: list[str], timeout_s: float = DRAIN_TIMEOUT_S) -> bool:
    """Waits until no ingress replica of ``apps`` has a request in flight; False on timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            busy = sum(ongoing_requests(app) for app in apps)
        except Exception as exc:  # a replica going away mid-count: look again
            print(f"hayaku serve: could not count in-flight requests ({type(exc).__name__}); retrying", file=sys.stderr)
            busy = -1
        if busy == 0:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)


def app_names(config: dict[str, Any]) -> list[str]:
    """The application names of a Serve YAML, as Serve names them (``default`` when unnamed)."""
    return [str(a.get("name") or "default") for a in config.get("applications") or [] if isinstance(a, dict)]


def run_until_signal(config_path: str, extra_args: list[str]) -> int:
    """Deploys ``config_path`` like ``serve run`` does, serves until SIGTERM/SIGINT, then drains; exit code."""
    import click
    import ray
    from ray import serve
    from ray.serve.scripts import run as serve_run

    from graph.yaml_files import read_yaml

    names = app_names(read_yaml(config_path))
    try:
        serve_run.main([config_path, "--non-blocking", *extra_args], prog_name="serve run", standalone_mode=False)
    except click.ClickException as exc:  # a bad extra argument for serve run
        exc.show()
        return 2
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            print("hayaku serve: second signal, stopping without draining", file=sys.stderr, flush=True)
            raise SystemExit(1)
        stop.set()

    # Installed after Ray's init, so these replace the handlers Ray put in place.
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    print("hayaku serve: serving; SIGTERM or Ctrl-C drains in-flight requests, then exits", file=sys.stderr, flush=True)
    while not stop.wait(1.0):
        pass
    t0 = time.monotonic()
    print(f"hayaku serve: draining {', '.join(names)} ...", file=sys.stderr, flush=True)
    try:
        if not wait_idle(names):
            print(f"hayaku serve: requests still in flight after {DRAIN_TIMEOUT_S:g} s", file=sys.stderr)
        for name in names:
            serve.delete(name)  # blocks until its replicas finished their requests or timed out
        print(f"hayaku serve: drained in {time.monotonic() - t0:.1f} s; shutting down", file=sys.stderr, flush=True)
    finally:
        serve.shutdown()
        ray.shutdown()
    return 0
