"""A KubeRay ``RayService`` manifest generated from a hayaku Serve YAML, and the check that they agree.

    hayaku kuberay generate configs/cluster.yaml            # writes deploy/kuberay/rayservice.yaml
    hayaku kuberay check configs/cluster.yaml deploy/kuberay/rayservice.yaml

The Serve YAML stays the one source of truth. ``generate`` derives from it:

- ``serveConfigV2``: the Serve YAML itself, with the HTTP proxy on ``0.0.0.0:8000`` (inside the
  pod network; KubeRay's serve Service reaches the head pod there);
- one worker group per custom resource the deployments ask for in ``ray_actor_options.resources``
  (``translate_node`` -> group ``translate`` with ``ray start --resources '{"translate_node": 1}'``),
  sized so that a node holds as many replicas as its one unit allows (``num-cpus``), with
  ``minReplicas``/``maxReplicas`` from the deployments' replica counts or ``autoscaling_config``;
  the Ingress deployment's resources go on the head (``proxy_location: HeadOnly``);
- every pod on the image the project's ``Dockerfile`` builds, whose ``HAYAKU_HOME`` already holds the
  prepared default models (``hayaku models prepare`` at build time): no pod builds a model cache.

``check`` compares what the Serve YAML decides, the Serve config and each group's
``rayStartParams`` and replica bounds, and prints a unified diff where they differ. The rest of
the manifest (image, pod resources, volumes) is the operator's to edit.
"""

from __future__ import annotations

import argparse
import difflib
import json
import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from graph.config import ConfigError
from graph.yaml_files import load_app_args, read_yaml

API_VERSION = "ray.io/v1"
KIND = "RayService"
DEFAULT_OUTPUT = Path("deploy/kuberay/rayservice.yaml")
DEFAULT_IMAGE = "hayaku:latest"
INGRESS = "Ingress"
SERVE_PORT = 8000
#: memory per logical CPU of a pod (the LLM translator needs ~3 GiB per replica)
MEMORY_GIB_PER_CPU = 4


@dataclass
class NodeGroup:
    """A kind of Ray node: the custom resources it offers (1 unit each) and what it must hold."""

    name: str
    resources: tuple[str, ...]
    num_cpus: float = 0.0
    num_gpus: float = 0.0
    min_pods: int = 0
    max_pods: int = 0
    deployments: list[str] = field(default_factory=list)


def group_name(resources: tuple[str, ...]) -> str:
    """``("translate_node",)`` -> ``translate``: a Kubernetes-friendly name (lower case, digits, '-')."""
    parts = [re.sub(r"_node$", "", r) for r in resources]
    name = re.sub(r"[^a-z0-9-]+", "-", "-".join(parts).lower()).strip("-")
    return name[:50] or "workers"


def _replica_bounds(dep: dict[str, Any]) -> tuple[int, int]:
    auto = dep.get("autoscaling_config")
    if isinstance(auto, dict):
        lo = int(auto.get("min_replicas", 1))
        return lo, max(lo, int(auto.get("max_replicas", lo)))
    n = dep.get("num_replicas", 1)
    n = 1 if n in (None, "auto") else int(n)
    return n, n


def node_groups(data: dict[str, Any], where: str) -> tuple[NodeGroup, list[NodeGroup]]:
    """The head group and the worker groups that the deployments' custom resources call for."""
    head = NodeGroup("head", ())
    workers: dict[tuple[str, ...], NodeGroup] = {}
    head_resources: set[str] = set()
    for i, app in enumerate(data.get("applications") or []):
        for j, dep in enumerate(app.get("deployments") or []):
            at = f"{where}: applications[{i}].deployments[{j}]"
            opts = dep.get("ray_actor_options") or {}
            custom = {k: v for k, v in (opts.get("resources") or {}).items()}
            bad = {k: v for k, v in custom.items() if not isinstance(v, (int, float)) or not 0 < v <= 1}
            if bad:
                raise ConfigError(
                    f"{at}.ray_actor_options.resources: {bad}: a node offers 1 unit of its resource, so a "
                    "replica asks for a fraction in (0, 1]"
                )
            if not custom:
                continue
            keys = tuple(sorted(custom))
            if dep.get("name") == INGRESS:
                head_resources.update(keys)
                group = head
            else:
                group = workers.setdefault(keys, NodeGroup(group_name(keys), keys))
            # the most replicas of this deployment one node's single unit can hold
            per_node = max(1, math.floor(min(1 / v for v in custom.values()) + 1e-9))
            lo, hi = _replica_bounds(dep)
            group.deployments.append(str(dep.get("name")))
            group.num_cpus += per_node * float(opts.get("num_cpus", 1))
            group.num_gpus += per_node * float(opts.get("num_gpus", 0))
            group.min_pods = max(group.min_pods, math.ceil(lo / per_node))
            # up to one pod per replica: room for the Ray autoscaler when a replica outgrows its node
            group.max_pods = max(group.max_pods, hi, group.min_pods)
    head.resources = tuple(sorted(head_resources))
    taken = [g.name for g in workers.values()]
    dupes = {n for n in taken if taken.count(n) > 1}
    if dupes:
        raise ConfigError(f"{where}: resources {sorted(dupes)} give two worker groups the same name; rename one")
    return head, sorted(workers.values(), key=lambda g: g.name)


def _resources_param(resources: tuple[str, ...]) -> str:
    # KubeRay passes rayStartParams to `ray start` through a shell: the JSON keeps its own quotes
    return json.dumps(json.dumps({r: 1 for r in resources}))


def _parse_resources_param(value: Any) -> Any:
    try:
        inner = json.loads(value) if isinstance(value, str) else value
        return json.loads(inner) if isinstance(inner, str) else inner
    except (TypeError, ValueError):
        return value


def _cpus(n: float) -> str:
    return str(int(n)) if float(n).is_integer() else str(n)


def _ray_start_params(group: NodeGroup, head: bool) -> dict[str, str]:
    params: dict[str, str] = {}
    if head:
        params["dashboard-host"] = "0.0.0.0"
    if group.resources:
        params["resources"] = _resources_param(group.resources)
    if not head or group.num_cpus:
        params["num-cpus"] = _cpus(group.num_cpus)
    if group.num_gpus:
        params["num-gpus"] = _cpus(group.num_gpus)
    return params


def serve_config_for_kubernetes(data: dict[str, Any]) -> dict[str, Any]:
    """The Serve YAML as KubeRay submits it: the proxy listens on the pod's interfaces."""
    out = {k: v for k, v in data.items() if k != "http_options"}
    out["http_options"] = {**(data.get("http_options") or {}), "host": "0.0.0.0", "port": SERVE_PORT}
    return out


def _container(name: str, image: str, group: NodeGroup, head: bool) -> dict[str, Any]:
    cpus = max(1.0, group.num_cpus)
    limits: dict[str, Any] = {"cpu": _cpus(math.ceil(cpus)), "memory": f"{MEMORY_GIB_PER_CPU * math.ceil(cpus)}Gi"}
    if group.num_gpus:
        limits["nvidia.com/gpu"] = math.ceil(group.num_gpus)
    env: list[dict[str, Any]] = []
    if head:
        # the Ingress replica (on the head) reads its API key from here; see `security` in graph/config.py
        env.append(
            {
                "name": "HAYAKU_API_KEY",
                "valueFrom": {"secretKeyRef": {"name": "hayaku-api-key", "key": "api-key", "optional": True}},
            }
        )
    resources = {"requests": dict(limits), "limits": limits}
    container: dict[str, Any] = {"name": name, "image": image, "resources": resources}
    if env:
        container["env"] = env
    if head:
        container["ports"] = [
            {"containerPort": 6379, "name": "gcs"},
            {"containerPort": 8265, "name": "dashboard"},
            {"containerPort": 10001, "name": "client"},
            {"containerPort": SERVE_PORT, "name": "serve"},
        ]
    return container


def _pod_template(container_name: str, image: str, group: NodeGroup, head: bool) -> dict[str, Any]:
    # The image's HAYAKU_HOME holds the models it was built with; to share one cache across nodes
    # instead, mount a ReadWriteMany volume and set HAYAKU_HOME to it (README, "Multi-node cluster").
    spec: dict[str, Any] = {"containers": [_container(container_name, image, group, head)]}
    return {"spec": spec}


def build_manifest(
    serve_yaml: str | Path, *, name: str = "hayaku", image: str = DEFAULT_IMAGE, ray_version: str | None = None
) -> dict[str, Any]:
    """The RayService for a Serve YAML (validated first, as `hayaku serve` does)."""
    load_app_args(serve_yaml)
    data = read_yaml(serve_yaml)
    head, workers = node_groups(data, str(serve_yaml))
    if ray_version is None:
        import ray

        ray_version = ray.__version__
    worker_specs = []
    for g in workers:
        worker_specs.append(
            {
                "groupName": g.name,
                "replicas": g.min_pods,
                "minReplicas": g.min_pods,
                "maxReplicas": g.max_pods,
                "rayStartParams": _ray_start_params(g, head=False),
                "template": _pod_template("ray-worker", image, g, head=False),
            }
        )
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": name},
        "spec": {
            "serveConfigV2": yaml.safe_dump(serve_config_for_kubernetes(data), sort_keys=False, allow_unicode=True),
            "rayClusterConfig": {
                "rayVersion": ray_version,
                # the Ray autoscaler adds worker pods when replicas wait for a resource no node has left
                "enableInTreeAutoscaling": True,
                "headGroupSpec": {
                    "rayStartParams": _ray_start_params(head, head=True),
                    "template": _pod_template("ray-head", image, head, head=True),
                },
                "workerGroupSpecs": worker_specs,
            },
        },
    }


class _BlockDumper(yaml.SafeDumper):
    """Writes multi-line strings (serveConfigV2) as literal blocks, readable as the YAML they hold."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockDumper.add_representer(str, _str)


def render(manifest: dict[str, Any], source: str | Path) -> str:
    """The manifest as YAML text, headed by how it was made and how to check it."""
    header = (
        f"# Generated by `hayaku kuberay generate {source}`. The Serve config and the groups'\n"
        f"# rayStartParams come from {source}: change it there and regenerate\n"
        f"# (`hayaku kuberay check {source} <this file>` says when they disagree).\n"
        "# Image, pod resources and volumes are yours to edit.\n"
    )
    return header + yaml.dump(manifest, Dumper=_BlockDumper, sort_keys=False, allow_unicode=True, width=100)


def decisions(manifest: Any) -> dict[str, Any]:
    """What the Serve YAML decides in a manifest: the Serve config and each group's Ray settings."""
    if not isinstance(manifest, dict):
        return {"manifest": f"not a mapping: {type(manifest).__name__}"}
    spec = manifest.get("spec") or {}
    raw = spec.get("serveConfigV2")
    try:
        serve_cfg = yaml.safe_load(raw) if isinstance(raw, str) else raw
    except yaml.YAMLError as exc:
        serve_cfg = f"not valid YAML: {exc}"
    cluster = spec.get("rayClusterConfig") or {}

    def params(group: dict[str, Any]) -> dict[str, Any]:
        p = dict(group.get("rayStartParams") or {})
        if "resources" in p:
            p["resources"] = _parse_resources_param(p["resources"])
        return p

    groups: dict[str, Any] = {"head": params(cluster.get("headGroupSpec") or {})}
    for g in cluster.get("workerGroupSpecs") or []:
        groups[str(g.get("groupName"))] = {
            "rayStartParams": params(g),
            "minReplicas": g.get("minReplicas"),
            "maxReplicas": g.get("maxReplicas"),
        }
    return {
        "apiVersion": manifest.get("apiVersion"),
        "kind": manifest.get("kind"),
        "serveConfigV2": serve_cfg,
        "groups": groups,
    }


def check(serve_yaml: str | Path, manifest_path: str | Path) -> list[str]:
    """Unified diff lines between what the Serve YAML decides and what the manifest has; [] if they agree."""
    expected = decisions(build_manifest(serve_yaml, ray_version="-"))
    try:
        actual = decisions(yaml.safe_load(Path(manifest_path).read_text()))
    except FileNotFoundError:
        raise ConfigError(f"{manifest_path}: no such file") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{manifest_path}: not valid YAML: {exc}") from None

    def text(d: dict[str, Any]) -> list[str]:
        return yaml.safe_dump(d, sort_keys=True, allow_unicode=True).splitlines(keepends=True)

    return list(
        difflib.unified_diff(
            text(expected), text(actual), fromfile=f"{serve_yaml} (expected)", tofile=str(manifest_path)
        )
    )


def main(argv: list[str] | None = None) -> int:
    """``hayaku kuberay generate|check``; check exits 1 with a diff when the files disagree."""
    p = argparse.ArgumentParser(
        prog="hayaku kuberay", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = p.add_subparsers(dest="action", required=True)
    g = sub.add_parser("generate", help="write the RayService manifest for a Serve YAML")
    g.add_argument("config", help="Serve YAML, e.g. configs/cluster.yaml")
    g.add_argument("-o", "--output", default=str(DEFAULT_OUTPUT), help=f"manifest path (default {DEFAULT_OUTPUT})")
    g.add_argument("--image", default=DEFAULT_IMAGE, help=f"container image with hayaku installed ({DEFAULT_IMAGE})")
    g.add_argument("--name", default="hayaku", help="the RayService's name (default hayaku)")
    c = sub.add_parser("check", help="exit 1 with a diff when a manifest disagrees with its Serve YAML")
    c.add_argument("config", help="Serve YAML, e.g. configs/cluster.yaml")
    c.add_argument("manifest", help="RayService manifest, e.g. deploy/kuberay/rayservice.yaml")
    ns = p.parse_args(argv)
    if ns.action == "generate":
        manifest = build_manifest(ns.config, name=ns.name, image=ns.image)
        out = Path(ns.output)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(render(manifest, ns.config))
        groups = manifest["spec"]["rayClusterConfig"]["workerGroupSpecs"]
        print(f"wrote {out}: head + worker groups {', '.join(w['groupName'] for w in groups) or '(none)'}")
        return 0
    diff = check(ns.config, ns.manifest)
    if diff:
        sys.stdout.writelines(diff)
        print(f"\n{ns.manifest} disagrees with {ns.config}; regenerate: hayaku kuberay generate {ns.config}")
        return 1
    print(f"{ns.manifest} agrees with {ns.config}")
    return 0
