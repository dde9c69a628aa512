"""What Ray Serve adds per request: the HTTP graph vs the in-process pipeline, same backends.

    python -m benchmarks.overhead                    # echo translator + tone speaker
    python -m benchmarks.overhead --throughput-optimized
    python -m benchmarks.overhead --real             # the resolved `auto` backends (slow on 2 cores)

One Ray on 127.0.0.1 hosts several variants of the graph side by side (3 deployments with
handle hops; colocated in one replica), and the requests go A B C A B C ... over keep-alive
connections, together with the same call on an in-process ``Pipeline`` (graph.pipeline) and on the
same ingress app under plain FastAPI + uvicorn (no Ray, in a subprocess, colocated stages):
that row is FastAPI's own cost, the rest is Serve's. We report medians and the difference
to in-process, i.e. the latency added per request.

``RAY_SERVE_THROUGHPUT_OPTIMIZED`` must be set before Ray starts, so it is a separate run
(``--throughput-optimized``); compare the two tables. That mode also turns on Ray's direct
ingress: every ingress replica serves HTTP itself on a port of its own (30000 and up), which
the controller lists as the app's target group; the "direct" rows send requests there,
skipping the proxy (the target advertises the node's address, the socket listens on the
Serve HTTP host, 127.0.0.1 here).
"""

from __future__ import annotations

import argparse
import functools
import inspect
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any, cast

from benchmarks.common import interleave, markdown_table, write_result

TEXT = "Hello, how are you today?"
SYNTHETIC = {"translator": {"backend": "echo"}, "speaker": {"backend": "tone"}}
REAL = {"translator": {"backend": "auto"}, "speaker": {"backend": "auto"}}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _self_dependencies(router: Any) -> Iterator[Any]:
    """The ``Depends`` callables Serve put on the ingress methods' ``self`` (nested routers too)."""
    for route in router.routes:
        sub = getattr(route, "original_router", None)  # FastAPI >= 0.137 nests included routers
        if sub is not None:
            yield from _self_dependencies(sub)
            continue
        endpoint = getattr(route, "endpoint", None)
        param = inspect.signature(endpoint).parameters.get("self") if endpoint else None
        if param is not None and hasattr(param.default, "dependency"):
            yield param.default.dependency


def serve_fastapi(port: int, real: bool) -> None:
    """Runs the ingress app (colocated stages) under uvicorn on 127.0.0.1, without Ray."""
    import uvicorn

    from deployments import ingress
    from deployments.app import ingress_args
    from graph.auto import resolve_graph

    graph = resolve_graph({**(REAL if real else SYNTHETIC), "colocate": True})
    wrapper: Any = cast(Any, ingress.Ingress).func_or_class
    # serve.ingress subclasses our class (first base) with Ray's ASGI wrapper; build ours alone.
    obj: Any = object.__new__(wrapper)
    ours: Any = wrapper.__mro__[1]
    ours.__init__(obj, *ingress_args(graph))

    async def instance() -> Any:  # async, as Serve's own: a sync dependency would run in a thread pool
        return obj

    for dep in _self_dependencies(ingress.app):
        ingress.app.dependency_overrides[dep] = instance
    uvicorn.run(ingress.app, host="127.0.0.1", port=port, log_level="warning")


def _direct_ingress_urls(apps: dict[str, str], timeout_s: float = 60.0) -> dict[str, str]:
    """app name -> http://127.0.0.1:<replica port><route prefix>, from the controller's target groups."""
    from ray.serve.context import _get_global_client

    client = _get_global_client()
    assert client is not None, "serve.start() first"
    deadline = time.monotonic() + timeout_s
    found: dict[str, str] = {}
    while time.monotonic() < deadline:
        for tg in client.get_serve_details().get("target_groups", []):
            app, port = tg.get("app_name"), None
            if app in apps and str(tg.get("protocol")).upper().endswith("HTTP") and tg.get("targets"):
                port = int(tg["targets"][0]["port"])
            # Proxy target groups list the proxy's own port; only a replica port is direct.
            if app in apps and port is not None and port != int(apps[app].split(":")[-1]):
                found[app] = f"http://127.0.0.1:{port}{tg['route_prefix'].rstrip('/')}"
        if len(found) == len(apps):
            return found
        time.sleep(0.5)
    return found


def _wait_http(url: str, timeout_s: float = 60.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            httpx.get(url, timeout=2)
            return
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.overhead", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--requests", type=int, default=300, help="sequential requests per variant (default 300)")
    p.add_argument(
        "--throughput-optimized", action="store_true", help="set RAY_SERVE_THROUGHPUT_OPTIMIZED=1 before Ray starts"
    )
    p.add_argument("--real", action="store_true", help="use the `auto` backends instead of echo + tone")
    p.add_argument("--name", help="results/<name>.md (default overhead[-tput][-real])")
    p.add_argument("--fastapi-server", type=int, metavar="PORT", help=argparse.SUPPRESS)  # the baseline's subprocess
    ns = p.parse_args(argv)
    if ns.fastapi_server:
        serve_fastapi(ns.fastapi_server, ns.real)
        return 0
    if ns.throughput_optimized:
        os.environ["RAY_SERVE_THROUGHPUT_OPTIMIZED"] = "1"

    import httpx
    import ray
    from ray import serve

    from deployments.app import graph_app
    from graph.auto import resolve_graph

    stages: dict[str, Any] = REAL if ns.real else SYNTHETIC
    fastapi_port = _free_port()
    cmd = [sys.executable, "-m", "benchmarks.overhead", "--fastapi-server", str(fastapi_port)]
    fastapi_proc = subprocess.Popen([*cmd, *(["--real"] if ns.real else [])])
    port = _free_port()
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    no_cpu = {"ray_actor_options": {"num_cpus": 0}}
    proxy = f"http://127.0.0.1:{port}"
    deployed = {
        "graph": ("graph (ingress -> translator -> speaker)", {**stages}, "/g"),
        "colocated": ("colocated (one replica)", {**stages, "colocate": True}, "/c"),
    }
    urls = {"FastAPI + uvicorn, no Ray (same app, colocated)": f"http://127.0.0.1:{fastapi_port}"}
    for app, (label, args, prefix) in deployed.items():
        graph = resolve_graph(args)
        names = ("Ingress",) if args.get("colocate") else ("Ingress", "Translator", "Speaker")
        over = dict.fromkeys(names, no_cpu)
        print(f"deploying {label} ...", file=sys.stderr, flush=True)
        serve.run(graph_app(graph, over), name=app, route_prefix=prefix)
        urls[f"Serve proxy: {label}"] = proxy + prefix
    direct = _direct_ingress_urls({app: proxy for app in deployed}) if ns.throughput_optimized else {}
    for app, url in direct.items():
        urls[f"Serve direct ingress: {deployed[app][0]}"] = url
    if ns.throughput_optimized and len(direct) < len(deployed):
        print(f"direct ingress ports not found for {sorted(set(deployed) - set(direct))}", file=sys.stderr)
    _wait_http(urls["FastAPI + uvicorn, no Ray (same app, colocated)"] + "/healthz")

    local = resolve_graph(stages).pipeline()

    clients = {label: httpx.Client(base_url=url, timeout=120) for label, url in urls.items()}
    body = {"text": TEXT}

    def over_http(client: httpx.Client) -> dict[str, Any]:
        r = client.post("/v1/speech-translate", json=body)
        if r.status_code != 200:
            raise RuntimeError(f"HTTP {r.status_code}: {r.text[:200]}")
        return {}

    def in_process() -> dict[str, Any]:
        local.run_sync(TEXT).wav()
        return {}

    calls: dict[str, Callable[[], dict[str, Any]]] = {"in-process Pipeline": in_process}
    calls.update({label: functools.partial(over_http, c) for label, c in clients.items()})
    try:
        start = time.perf_counter()
        series = interleave(calls, rounds=ns.requests, warmup=5)
        wall = time.perf_counter() - start
    finally:
        for c in clients.values():
            c.close()
        fastapi_proc.terminate()
        fastapi_proc.wait(timeout=30)
        serve.shutdown()
        ray.shutdown()
    base = series["in-process Pipeline"]
    rows = []
    for label, ser in series.items():
        rows.append([label, ser.median(), ser.pct(95), ser.pct(99), ser.median() - base.median(), ser.errors])
    table = markdown_table(["variant", "p50 ms", "p95 ms", "p99 ms", "added p50 ms vs in-process", "errors"], rows)
    print(table)
    backends = "resolved auto backends" if ns.real else "echo translator + tone speaker"
    notes = (
        f"{ns.requests} sequential keep-alive requests per variant, interleaved, POST /v1/speech-translate "
        f"{{'text': {TEXT!r}}}, {backends}; "
        f"RAY_SERVE_THROUGHPUT_OPTIMIZED={'1' if ns.throughput_optimized else 'unset'}; wall {wall:.0f} s. "
        "Through the proxy the replica reads the request body by calling back into the proxy actor "
        "(Ray's ASGIReceiveProxy); direct ingress reads it from its own socket."
    )
    name = ns.name or ("overhead" + ("-tput" if ns.throughput_optimized else "") + ("-real" if ns.real else ""))
    path = write_result(
        name,
        "Serve overhead per request",
        table,
        notes,
        data=[dict(zip(["variant", "p50", "p95", "p99", "added_p50", "errors"], r, strict=True)) for r in rows],
    )
    print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
