"""The local multi-node Ray cluster of scripts/cluster.sh, and Ray's own view of it.

``LocalCluster`` drives the script (a head and worker nodes made with Ray's ``ray start``, each in
a session of its own, on loopback, with the cluster's own temp dir and auth token) and reads the
cluster through Ray's interfaces: the state API (nodes, replica actors and where they run),
Serve's REST API (application and replica status, ``serve deploy``) and each node's Prometheus
endpoint. Ray's CLIs are the ones of the environment running this Python (``environment_executable``),
never a fixed path in the checkout.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import sysconfig
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backends.errors import HayakuError

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "cluster.sh"
CONFIG = ROOT / "configs" / "cluster.yaml"
APP = "hayaku"
#: the deployment that holds each worker role's replicas
ROLE_DEPLOYMENT = {"translate": "Translator", "speak": "Speaker"}


def environment_executable(name: str) -> Path | None:
    """The console script ``name`` of the environment running this Python, or None.

    Looked for next to ``sys.executable`` (a virtualenv's or conda env's bin/, not resolved: a
    venv's python is a link to the base interpreter), in the scripts folders of this
    interpreter's install schemes (``pip install --user`` puts them in ~/.local/bin), and last on
    PATH: wherever the environment is, never a fixed ``.venv`` in the checkout.
    """
    folders = [Path(sys.executable).parent, Path(sysconfig.get_path("scripts"))]
    with contextlib.suppress(KeyError, AttributeError):  # no user scheme in this build
        folders.append(Path(sysconfig.get_path("scripts", sysconfig.get_preferred_scheme("user"))))
    for folder in folders:
        found = shutil.which(name, path=str(folder))
        if found:
            return Path(found)
    found = shutil.which(name)
    return Path(found) if found else None


#: Ray's CLIs of the environment running this Python (None: Ray is not installed with its scripts)
RAY_CLI = environment_executable("ray")
SERVE_CLI = environment_executable("serve")


class ClusterError(HayakuError):
    """The local cluster or a deployment on it did not do what was asked; the message says what happened."""

    kind = "cluster_error"


def progress(message: str) -> None:
    print(f"[cluster] {message}", file=sys.stderr, flush=True)


@dataclass
class Replica:
    """A Serve replica's actor: which deployment, its id, the node it runs on, that node's resources, its state."""

    deployment: str
    replica_id: str
    node_id: str
    pid: int | None
    node_resources: dict[str, float]
    #: Ray's actor state: ALIVE, or DEAD once its process is gone (PENDING_CREATION, RESTARTING between)
    state: str = "ALIVE"


class LocalCluster:
    """The cluster of scripts/cluster.sh in ``directory`` (its HAYAKU_CLUSTER_DIR), and Ray's APIs on it."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.env: dict[str, str] = {}

    # -- the script ---------------------------------------------------------------------------

    def _script(self, *args: str, timeout_s: float = 1800) -> str:
        if RAY_CLI is None:
            raise ClusterError(f"Ray's CLI is not installed with {sys.executable}: pip install 'hayaku[serve]'")
        # the nodes run this environment's `ray` (its workers: this Python, with hayaku importable)
        env = {**os.environ, "HAYAKU_CLUSTER_DIR": str(self.directory), "RAY": str(RAY_CLI), "PYTHON": sys.executable}
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
        if SERVE_CLI is None:
            raise ClusterError(f"Ray Serve's CLI is not installed with {sys.executable}: pip install 'hayaku[serve]'")
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

    def node_states(self) -> dict[str, str]:
        """Node id -> ALIVE or DEAD, as the GCS has it (a node stays listed, DEAD, once it is gone)."""
        return {n.node_id: n.state for n in self.nodes()}

    def placement(self, app: str = APP) -> list[Replica]:
        """Every live replica of ``app``, with the node it runs on (Ray's state API)."""
        return self.replica_actors(app, alive_only=True)

    def replica_actors(self, app: str = APP, *, alive_only: bool = False) -> list[Replica]:
        """The actors of ``app``'s replicas, also the dead ones unless ``alive_only`` (Ray's state API)."""
        nodes = {n.node_id: n for n in self.nodes()}
        prefix = f"ServeReplica:{app}:"
        out = []
        for a in self._state_list("actors", [("state", "=", "ALIVE")] if alive_only else []):
            cls = a.class_name or ""
            if not cls.startswith(prefix):
                continue
            node = nodes.get(a.node_id) if a.node_id else None
            out.append(
                Replica(
                    cls[len(prefix) :],
                    (a.name or "").rsplit("#", 1)[-1],
                    a.node_id or "",
                    a.pid or None,
                    dict(node.resources_total) if node is not None else {},
                    str(a.state),
                )
            )
        return sorted(out, key=lambda r: (r.deployment, r.replica_id))

    def serve_replicas(self, app: str = APP, deployment: str = "Speaker") -> list[tuple[str, str, str]]:
        """Serve's own view of a deployment's replicas: (replica id, Serve state, node id) each."""
        deps = (self.applications().get(app) or {}).get("deployments") or {}
        return sorted(
            (str(r.get("replica_id")), str(r.get("state")), str(r.get("node_id") or ""))
            for r in (deps.get(deployment) or {}).get("replicas") or []
        )

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
