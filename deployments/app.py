"""The typed application builder that a Ray Serve YAML names: ``import_path: serve.app:build``.

``build`` validates the YAML's ``args`` and resolves ``auto`` stages *before* any replica
starts, so a bad config fails at once with a message naming the field (``args.translator...``).
Ray 2.60's ``serve run <file>.yaml`` builds in the Serve controller: the error is printed at
once and the application is DEPLOY_FAILED, but the CLI itself keeps running; validate first
with ``graph.yaml_files.load_app_args(path)`` (full YAML paths, plain process) to exit non-zero.
The graph is Ingress -> Translator -> Speaker, or a single Ingress with ``colocate: true``.

Opt-in speed: ``RAY_SERVE_THROUGHPUT_OPTIMIZED=1`` in the environment of ``serve run``
(set before Ray starts) cuts Serve's per-request overhead; it also turns on Ray's direct
ingress, where each ingress replica serves HTTP on a port of its own (30000 and up, on the
Serve HTTP host): clients sent there skip the proxy, and with ``colocate: true`` that path
costs about as much as plain FastAPI (benchmarks/results/overhead-tput.md).
"""

from __future__ import annotations

from typing import Any, cast

from ray.serve import Application, Deployment

from backends.store import progress
from deployments.ingress import Ingress
from deployments.speaker import SpeakerDeployment
from deployments.translator import TranslatorDeployment
from graph.auto import ResolvedGraph, resolve_graph
from graph.config import ConfigError, GraphArgs, VariantConfig, deployment_names, stage_deployment, variant_list


def resolve_variants(graph: ResolvedGraph) -> list[tuple[VariantConfig, ResolvedGraph]]:
    """Each A/B variant with its stages resolved (``auto`` included) on the graph's machine."""
    a = graph.args
    out = []
    for i, v in enumerate(variant_list(a)):
        if v.translator == a.translator and v.speaker == a.speaker:
            out.append((v, graph))
            continue
        alone = a.model_copy(update={"translator": v.translator, "speaker": v.speaker, "variants": []})
        out.append((v, resolve_graph(alone, hw=graph.hardware, where=f"args.variants[{i}]")))
    return out


def ingress_args(graph: ResolvedGraph, bind: Any = None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The Ingress constructor's arguments: the graph's description and its variants.

    ``bind(deployment_name, role, resolved)`` returns the stage's bound deployment; without it the
    stages run inside the ingress (colocated; also how benchmarks run the app without Ray).
    """
    a = graph.args
    resolved = resolve_variants(graph)
    info = graph.to_dict()
    info["variants"] = [{"name": v.name, "weight": v.weight, "shadow": v.shadow} for v, _ in resolved]
    info["ab"] = a.ab.model_dump()
    variants = []
    for v, rg in resolved:
        entry: dict[str, Any] = {"name": v.name, "weight": v.weight, "shadow": v.shadow, "graph": rg.to_dict()}
        for role in ("translator", "speaker"):
            stage = rg.translator_stage() if role == "translator" else rg.speaker_stage()
            if bind is None:
                entry[f"{role}_stage"] = stage
            else:
                entry[role] = bind(stage_deployment(role, a, v), role, rg)
        variants.append(entry)
    return info, variants


def graph_app(graph: ResolvedGraph, deployments: dict[str, dict[str, Any]] | None = None) -> Application:
    """Binds the deployments of a resolved graph into an Application.

    ``deployments`` maps a deployment name to ``.options()`` overrides, like the YAML's
    ``deployments:`` list does for ``serve run`` (e.g. ``{"Translator": {"num_replicas": 2}}``).
    A/B variants whose stage differs from the graph's get deployments of their own
    (``Translator_<variant>``, ``Speaker_<variant>``).
    """
    over = deployments or {}
    a = graph.args
    valid = deployment_names(a)
    unknown = set(over) - set(valid)
    if unknown:
        raise ConfigError(f"deployments: unknown names {sorted(unknown)}; valid: {', '.join(valid)}")
    bound: dict[str, Application] = {}

    def bind(name: str, role: str, rg: ResolvedGraph) -> Application:
        if name not in bound:
            if role == "translator":
                bound[name] = TranslatorDeployment.options(name=name, **over.get(name, {})).bind(
                    rg.translator_stage(), a.limits.max_chars, a.source_lang, a.target_lang
                )
            else:
                bound[name] = SpeakerDeployment.options(name=name, **over.get(name, {})).bind(
                    rg.speaker_stage(), a.limits.max_chars, a.target_lang
                )
        return bound[name]

    info, variants = ingress_args(graph, None if a.colocate else bind)
    return cast(Deployment, Ingress).options(**over.get("Ingress", {})).bind(info, variants)


def build(args: GraphArgs | dict[str, Any]) -> Application:
    """Builds the hayaku graph from a YAML's ``args`` (a dict from Ray, or a GraphArgs)."""
    graph = resolve_graph(args, where="args")
    progress(f"graph on {graph.hardware.get('key')}:\n{graph.summary()}")
    return graph_app(graph)
