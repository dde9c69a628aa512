"""Streamed speech and live A/B, measured over HTTP on a real Ray Serve graph (loopback).

    hayaku bench stream               # offline models if prepared (auto), else echo + slow tone
    hayaku bench stream --synthetic   # echo + tone with work_ms per sentence (no models)

Two parts, written to benchmarks/results/stream.md and ab-split.md:

1. Time to first audio. A 4-sentence paragraph, non-streamed (whole WAV) vs streamed
   (NDJSON, the first piece's line), interleaved A B A B (targets: first audio <= 0.15 x the
   non-streamed time, streamed total <= non-streamed + 5%); then short everyday sentences one
   by one (target: first audio <= 0.5 x the whole response, median).
2. A/B split: weights 0.7/0.3 over the echo translator and tone speaker; 1000 requests
   routed at random, and 200 client keys sent twice (sticky: the same variant each time).
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from benchmarks.common import Series, interleave, markdown_table, write_result
from benchmarks.load import load

PARAGRAPH = (
    "Good morning, and thank you for coming. The train to Kyoto leaves at nine from platform four. "
    "Please keep your ticket until you leave the station. Have a pleasant trip."
)
SYNTHETIC = {
    "translator": {"backend": "echo", "options": {"work_ms": 150}},
    "speaker": {"backend": "tone", "options": {"work_ms": 150}},
}
AB = {
    "translator": {"backend": "echo"},
    "speaker": {"backend": "tone"},
    "variants": [
        {"name": "a", "weight": 0.7},
        {"name": "b", "weight": 0.3, "speaker": {"backend": "tone", "voice": "square"}},
    ],
}


def _streamed(url: str, text: str = PARAGRAPH) -> dict[str, Any]:
    import httpx

    t0 = time.perf_counter()
    first = None
    pieces: list[str] = []
    with (
        httpx.Client(timeout=300, trust_env=False) as c,
        c.stream("POST", url, json={"text": text, "stream": True, "response": "json"}) as r,
    ):
        buf = b""
        for chunk in r.iter_bytes():
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                msg = json.loads(line)
                if msg["type"] == "error":
                    raise RuntimeError(line.decode())
                if msg["type"] == "sentence":
                    first = first if first is not None else (time.perf_counter() - t0) * 1000
                    pieces.append(str(msg.get("text", "")))
    if r.status_code != 200 or first is None:
        raise RuntimeError(f"HTTP {r.status_code}")
    return {"first_audio_ms": first, "pieces": pieces}


def _whole(url: str, text: str = PARAGRAPH) -> dict[str, Any]:
    import httpx

    r = httpx.post(url, json={"text": text}, timeout=300, trust_env=False)
    if r.status_code != 200:
        raise RuntimeError(f"HTTP {r.status_code}: {r.text[:200]}")
    return {}


def _first_audio(series: Series) -> list[float]:
    return [s.extra["first_audio_ms"] for s in series.samples if s.ok]


def _deploy(args: dict[str, Any], name: str) -> dict[str, Any]:
    from ray import serve

    from deployments.app import graph_app
    from graph.auto import resolve_graph

    graph = resolve_graph({**args, "limits": {"request_timeout_s": 300}})
    over = {n: {"ray_actor_options": {"num_cpus": 0}} for n in ("Ingress", "Translator", "Speaker", "Speaker_b")}
    names = ("Ingress", "Translator", "Speaker") + (("Speaker_b",) if args.get("variants") else ())
    serve.run(graph_app(graph, {n: over[n] for n in names}), name=name, route_prefix=f"/{name}")
    return graph.to_dict()


def stream_part(base: str, synthetic: bool, rounds: int, sentences: int = 12) -> dict[str, Any]:
    from graph.auto import resolve_graph

    args: dict[str, Any] = SYNTHETIC
    if not synthetic:
        try:
            resolve_graph({})
            args = {}
        except Exception as exc:  # no offline models here: say so and measure the synthetic graph
            print(f"[stream] offline models unavailable ({exc}); using echo + tone with work_ms")
            synthetic = True
    info = _deploy(args, "st")
    url = f"{base}/st/v1/speech-translate"
    series = interleave({"whole": lambda: _whole(url), "streamed": lambda: _streamed(url)}, rounds, warmup=1)
    whole, streamed = series["whole"], series["streamed"]
    ttfa = statistics.median(_first_audio(streamed))
    data = {
        "graph": {"translator": info["translator"], "speaker": info["speaker"], "synthetic": synthetic},
        "paragraph": PARAGRAPH,
        "rounds": rounds,
        "whole_ms": whole.ok_ms,
        "streamed_total_ms": streamed.ok_ms,
        "first_audio_ms": _first_audio(streamed),
        "errors": {"whole": whole.errors, "streamed": streamed.errors},
        "first_audio_over_whole": ttfa / whole.median(),
        "streamed_total_over_whole": streamed.median() / whole.median(),
        "sentence": _short_sentences(url, sentences),
    }
    return data


def _short_sentences(url: str, n: int) -> dict[str, Any]:
    """One short everyday sentence per request (the corpus's first ``n``), whole vs streamed, interleaved per
    sentence; with the streamed pieces' texts, to tell a text spoken from its first clause from one spoken whole."""
    from benchmarks.quality import load_corpus

    texts = [p.source for p in load_corpus("en-ja") if p.domain == "everyday" and p.source.count(".") <= 1][:n]
    ratios, wholes, firsts = [], [], []
    pieces: list[list[str]] = []
    for text in texts:
        calls: dict[str, Callable[[], dict[str, Any]]] = {
            "whole": functools.partial(_whole, url, text),
            "streamed": functools.partial(_streamed, url, text),
        }
        series = interleave(calls, 2, warmup=0)
        w, f = series["whole"].median(), statistics.median(_first_audio(series["streamed"]))
        wholes.append(w)
        firsts.append(f)
        ratios.append(f / w)
        pieces.append(next(s.extra["pieces"] for s in series["streamed"].samples if s.ok))
    # spoken in more than one piece: the first audio came before the whole text was translated
    early = [i for i, p in enumerate(pieces) if len(p) > 1]
    return {
        "texts": texts,
        "pieces": pieces,
        "whole_ms": wholes,
        "first_audio_ms": firsts,
        "first_audio_over_whole": ratios,
        "median_ratio": statistics.median(ratios),
        "early": len(early),
        "median_ratio_early": statistics.median([ratios[i] for i in early]) if early else None,
        "median_ratio_whole": statistics.median([r for i, r in enumerate(ratios) if i not in early])
        if len(early) < len(ratios)
        else None,
    }


def ab_part(base: str, n: int) -> dict[str, Any]:
    _deploy(AB, "ab")
    url = f"{base}/ab"
    res = load(url, "/v1/translate", [{"text": "Hello."}], 16, max_requests=n, max_seconds=300)
    shares = Counter(r.headers.get("x-hayaku-variant") for r in res.records if r.ok)
    ok = sum(shares.values())
    keys = [{"text": "Hi.", "user": f"user-{i}"} for i in range(200)]
    first = load(url, "/v1/translate", keys, 1, max_requests=200, max_seconds=300)
    second = load(url, "/v1/translate", keys, 1, max_requests=200, max_seconds=300)
    same = sum(
        a.headers.get("x-hayaku-variant") == b.headers.get("x-hayaku-variant")
        for a, b in zip(first.records, second.records, strict=True)
    )
    import httpx

    report = httpx.get(f"{url}/v1/ab", timeout=30, trust_env=False).json()
    return {
        "requests": n,
        "ok": ok,
        "shares": {k: round(v / ok, 4) for k, v in shares.items()},
        "weights": {"a": 0.7, "b": 0.3},
        "sticky_same": same,
        "sticky_keys": len(keys),
        "summary": res.summary(),
        "server_report": report,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="hayaku bench stream", description=__doc__.split("\n\n")[0])
    p.add_argument("--synthetic", action="store_true", help="echo + tone with work_ms instead of the offline models")
    p.add_argument("--rounds", type=int, default=8, help="interleaved rounds of whole vs streamed (default 8)")
    p.add_argument("--sentences", type=int, default=12, help="short everyday sentences measured one by one (12)")
    p.add_argument("--ab-requests", type=int, default=1000, help="requests for the A/B split (default 1000)")
    a = p.parse_args(argv)
    import socket

    import ray
    from ray import serve

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    base = f"http://127.0.0.1:{port}"
    from benchmarks.original import read_bandwidth_gbs

    bandwidth = read_bandwidth_gbs()
    try:
        st = stream_part(base, a.synthetic, a.rounds, a.sentences)
        serve.delete("st")
        ab = ab_part(base, a.ab_requests)
    finally:
        serve.shutdown()
        ray.shutdown()
    g = st["graph"]
    med = statistics.median
    rows = [
        ["whole WAV (non-streamed)", "-", round(med(st["whole_ms"]), 1), "1.00"],
        [
            "streamed NDJSON",
            round(med(st["first_audio_ms"]), 1),
            round(med(st["streamed_total_ms"]), 1),
            f"{st['streamed_total_over_whole']:.2f}",
        ],
    ]
    sent = st["sentence"]
    rows.append(
        [
            f"one short sentence, streamed ({len(sent['texts'])} everyday corpus sentences)",
            round(med(sent["first_audio_ms"]), 1),
            round(med(sent["whole_ms"]), 1),
            f"first audio / whole = {sent['median_ratio']:.2f}",
        ]
    )
    for label, key, count in (
        ("spoken in more than one piece", "median_ratio_early", sent["early"]),
        ("spoken in one piece (no 、 before the end)", "median_ratio_whole", len(sent["texts"]) - sent["early"]),
    ):
        ratio = sent[key]
        rows.append([f"  of which: {label} ({count})", "-", "-", "-" if ratio is None else f"{ratio:.2f}"])
    st["read_bandwidth_gbs"] = bandwidth
    table = markdown_table(["response", "first audio p50 ms", "total p50 ms", "total vs whole"], rows)
    notes = (
        f"Graph: translator {g['translator']['backend']} {g['translator'].get('options')}, speaker "
        f"{g['speaker']['backend']} ({'synthetic' if g['synthetic'] else 'offline models'}); a 4-sentence paragraph; "
        f"{st['rounds']} interleaved rounds over HTTP through the Serve proxy. Read bandwidth {bandwidth:.1f} GB/s "
        "(measured in this run).\n\n"
        f"Paragraph: first audio / whole response = **{st['first_audio_over_whole']:.2f}** (target <= 0.15); "
        f"streamed total / whole = **{st['streamed_total_over_whole']:.2f}** (target <= 1.05). One short sentence: "
        f"median of per-sentence first audio / whole = **{sent['median_ratio']:.2f}** (target <= 0.5). "
        f"Errors: {st['errors']}.\n\n"
        "Streamed responses speak clause by clause: a translator that decodes token by token (llm on llama.cpp) "
        "hands each clause (、。！？) to the speaker as soon as its text exists; the whole response is unchanged "
        "(every sentence translated, then spoken whole). A sentence whose translation has no 、 before its end is "
        "spoken at its end, as a whole: its first audio is its whole response less the WAV's encoding."
    )
    write_result("stream", "Streamed speech: time to first audio", table, notes, st)
    ab_rows = [
        [k, ab["weights"][k], ab["shares"].get(k, 0.0), round(ab["shares"].get(k, 0.0) - ab["weights"][k], 4)]
        for k in ("a", "b")
    ]
    ab_notes = (
        f"{ab['requests']} requests through the echo translator and tone speaker, routed at random by weight "
        f"(concurrency 16; {ab['ok']} answered, p50 {ab['summary']['p50_ms']} ms). Sticky: {ab['sticky_same']}/"
        f"{ab['sticky_keys']} client keys got the same variant on a second pass. The server's own GET /v1/ab report "
        "is in ab-split.json."
    )
    write_result(
        "ab-split",
        "Live A/B split",
        markdown_table(["variant", "weight", "observed share", "delta"], ab_rows),
        ab_notes,
        ab,
    )
    print(f"first audio / whole = {st['first_audio_over_whole']:.2f}; A/B shares {ab['shares']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
