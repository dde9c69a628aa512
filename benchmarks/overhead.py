"""What Ray Serve adds per request: the HTTP graph vs the in-process pipeline, same backends.

    python -m benchmarks.overhead                    # echo translator + tone speaker
    python -m benchmarks.overhead --throughput-optimized
    python -m benchmarks.overhead --real             # the resolved `auto` backends (slow on 2 cores)

One Ray on 127.0.0.1 hosts several variants of the graph side by side (3 deployments with
handle hops; colocated in one replica), and the requests go A B C A B C ... over keep-alive
connections, together with the same call on an in-process ``SpeechTranslator``. We report
medians and the difference to in-process, i.e. Serve's added latency per request.
``RAY_SERVE_THROUGHPUT_OPTIMIZED`` must be set before Ray starts, so it is a separate run
(``--throughput-optimized``); compare the two tables.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time
from typing import Any

from benchmarks.common import interleave, markdown_table, write_result

TEXT = "Hello, how are you today?"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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
    ns = p.parse_args(argv)
    if ns.throughput_optimized:
        os.environ["RAY_SERVE_THROUGHPUT_OPTIMIZED"] = "1"

    import httpx
    import ray
    from ray import serve

    from backends import SpeechTranslator, create_speaker, create_translator
    from serve.app import graph_app
    from serve.auto import resolve_graph

    stages: dict[str, Any] = (
        {"translator": {"backend": "auto"}, "speaker": {"backend": "auto"}}
        if ns.real
        else {"translator": {"backend": "echo"}, "speaker": {"backend": "tone"}}
    )
    port = _free_port()
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    no_cpu = {"ray_actor_options": {"num_cpus": 0}}
    variants = {
        "graph (ingress -> translator -> speaker)": ({**stages}, "/g"),
        "colocated (one replica)": ({**stages, "colocate": True}, "/c"),
    }
    for i, (label, (args, prefix)) in enumerate(variants.items()):
        graph = resolve_graph(args)
        over = (
            {"Ingress": no_cpu} if args.get("colocate") else dict.fromkeys(("Ingress", "Translator", "Speaker"), no_cpu)
        )
        print(f"deploying {label} ...", file=sys.stderr, flush=True)
        serve.run(graph_app(graph, over), name=f"v{i}", route_prefix=prefix)

    graph = resolve_graph(stages)
    t, s = graph.translator_stage(), graph.speaker_stage()
    local = SpeechTranslator(
        create_translator(t["backend"], model=t["model"], options=t["options"]),
        create_speaker(s["backend"], model=s["model"], options=s["options"], voice=s["voice"]),
    )
    local.load()

    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120)
    body = {"text": TEXT}

    def over_http(prefix: str) -> dict[str, Any]:
        r = client.post(f"{prefix}/v1/speech-translate", json=body)
        if r.status_code != 200:
            raise RuntimeError(f"HTTP {r.status_code}: {r.text[:200]}")
        return {}

    def in_process() -> dict[str, Any]:
        local.run(TEXT).wav()
        return {}

    calls = {"in-process SpeechTranslator": in_process}
    calls.update({label: (lambda prefix=prefix: over_http(prefix)) for label, (_, prefix) in variants.items()})
    start = time.perf_counter()
    series = interleave(calls, rounds=ns.requests, warmup=5)
    wall = time.perf_counter() - start
    base = series["in-process SpeechTranslator"]
    rows = []
    for label, ser in series.items():
        rows.append([label, ser.median(), ser.pct(95), ser.pct(99), ser.median() - base.median(), ser.errors])
    table = markdown_table(["variant", "p50 ms", "p95 ms", "p99 ms", "added p50 ms vs in-process", "errors"], rows)
    print(table)
    backends = "resolved auto backends" if ns.real else "echo translator + tone speaker"
    notes = (
        f"{ns.requests} sequential keep-alive requests per variant, interleaved, POST /v1/speech-translate "
        f"{{'text': {TEXT!r}}} through Serve's HTTP proxy, {backends}; "
        f"RAY_SERVE_THROUGHPUT_OPTIMIZED={'1' if ns.throughput_optimized else 'unset'}; wall {wall:.0f} s."
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
    client.close()
    serve.shutdown()
    ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
