"""One Ray (and one Serve HTTP proxy on a free loopback port) per test session."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import free_port

ray = pytest.importorskip("ray", reason="integration tests need Ray Serve: pip install 'hayaku[serve]'")
serve = pytest.importorskip("ray.serve")


@pytest.fixture(scope="session")
def serve_port() -> Iterator[int]:
    """Starts Ray bound to loopback and Serve's proxy on a free port; shuts both down at the end."""
    port = free_port()
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    try:
        yield port
    finally:
        serve.shutdown()
        ray.shutdown()


NO_CPU = {name: {"ray_actor_options": {"num_cpus": 0}} for name in ("Ingress", "Translator", "Speaker")}


def deploy(
    args: dict[str, Any], name: str, route_prefix: str, deployments: dict[str, dict[str, Any]] | None = None
) -> None:
    """serve.run of the hayaku graph built from ``args``; no CPU reservations, so several apps fit 2 cores.

    ``deployments``: extra ``.options()`` per deployment name, merged over those.
    """
    from deployments.app import graph_app
    from graph.auto import resolve_graph

    base = {"Ingress": NO_CPU["Ingress"]} if args.get("colocate") else NO_CPU
    over = {n: {**base.get(n, {}), **(deployments or {}).get(n, {})} for n in {*base, *(deployments or {})}}
    serve.run(graph_app(resolve_graph(args), over), name=name, route_prefix=route_prefix)


@pytest.fixture(scope="session")
def deploy_graph(serve_port: int) -> Any:
    """``deploy(args, name, route_prefix)``: runs a hayaku graph in the session's Serve."""
    return deploy
