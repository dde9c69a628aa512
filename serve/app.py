"""The typed application builder that a Ray Serve YAML names: ``import_path: serve.app:build``.

``build`` validates the YAML's ``args`` and resolves ``auto`` stages *before* any replica
starts, so a bad config fails at once with a message naming the field (``args.translator...``).
Ray 2.60's ``serve run <file>.yaml`` builds in the Serve controller: the error is printed at
once and the application is DEPLOY_FAILED, but the CLI itself keeps running; validate first
with ``serve.config.load_app_args(path)`` (full YAML paths, plain process) to exit non-zero.
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
from deployments.speaker import Speaker
from deployments.translator import Translator
from serve.auto import ResolvedGraph, resolve_graph
from serve.config import ConfigError, GraphArgs


def graph_app(graph: ResolvedGraph, deployments: dict[str, dict[str, Any]] | None = None) -> Application:
    """Binds the deployments of a resolved graph into an Application.

    ``deployments`` maps a deployment name to ``.options()`` overrides, like the YAML's
    ``deployments:`` list does for ``serve run`` (e.g. ``{"Translator": {"num_replicas": 2}}``).
    """
    over = deployments or {}
    unknown = set(over) - {"Ingress", "Translator", "Speaker"}
    if unknown:
        raise ConfigError(f"deployments: unknown names {sorted(unknown)}; valid: Ingress, Translator, Speaker")
    a = graph.args
    info = graph.to_dict()
    ingress = cast(Deployment, Ingress).options(**over.get("Ingress", {}))
    if a.colocate:
        return ingress.bind(info, None, None, graph.translator_stage(), graph.speaker_stage())
    translator = Translator.options(**over.get("Translator", {})).bind(
        graph.translator_stage(), a.limits.max_chars, a.source_lang, a.target_lang
    )
    speaker = Speaker.options(**over.get("Speaker", {})).bind(graph.speaker_stage(), a.limits.max_chars, a.target_lang)
    return ingress.bind(info, translator, speaker)


def build(args: GraphArgs | dict[str, Any]) -> Application:
    """Builds the hayaku graph from a YAML's ``args`` (a dict from Ray, or a GraphArgs)."""
    graph = resolve_graph(args, where="args")
    progress(f"graph on {graph.hardware.get('key')}:\n{graph.summary()}")
    return graph_app(graph)
