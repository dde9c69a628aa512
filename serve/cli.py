"""The ``hayaku`` command: say, backends, models, graph, bench.

Serving itself is Ray's own ``serve run configs/fast.yaml``; this CLI covers the rest.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from backends.errors import HayakuError

DEFAULT_TEXT = "Hello, how are you today?"


def _parse_kv(pairs: list[str] | None) -> dict[str, Any]:
    """``-O num_beams=3 -O dtype=bfloat16`` -> {"num_beams": 3, "dtype": "bfloat16"} (values parsed as YAML)."""
    import yaml

    out: dict[str, Any] = {}
    for p in pairs or []:
        if "=" not in p:
            raise SystemExit(f"option {p!r} must look like key=value")
        k, v = p.split("=", 1)
        try:
            value = yaml.safe_load(v)
        except yaml.YAMLError:
            value = v
        # "prefix=JA:" must stay the string "JA:", not become the mapping {"JA": None}
        out[k.strip()] = v if isinstance(value, dict) or (value is None and v.strip()) else value
    return out


def cmd_backends(ns: argparse.Namespace) -> int:
    from backends.registry import status

    rows = status()
    if ns.json:
        print(json.dumps(rows, indent=1))
        return 0
    width = max(len(r["name"]) for r in rows)
    for role in ("translator", "speaker"):
        print(f"{role}s:")
        for r in (r for r in rows if r["role"] == role):
            mark = "available  " if r["available"] else "unavailable"
            tag = " (synthetic: tests/benchmarks only)" if r["synthetic"] else ""
            reason = f"  {r['reason']}" if r["reason"] else ""
            print(f"  {r['name']:<{width}}  {mark}{tag}{reason}")
    return 0


def cmd_models(ns: argparse.Namespace) -> int:
    from backends import bundled, store

    if ns.action == "list":
        for name, entry in sorted(bundled.BUNDLED.items()):
            reason = entry.unavailable()
            aka = [a for a, n in bundled.ALIASES.items() if n == name]
            also = f" (also accepted: {', '.join(aka)})" if aka else ""
            print(f"{name}: {entry.description}{also}\n  {'installed' if reason is None else 'missing: ' + reason}")
        print(f"cache: {store.home()}")
        return 0
    names = [bundled.bundled_name(n) for n in ns.names] if ns.names else sorted(bundled.BUNDLED)
    for name in names:
        if name not in bundled.BUNDLED:
            raise HayakuError(f"unknown bundled model {name!r}; bundled: {', '.join(sorted(bundled.BUNDLED))}")
        entry = bundled.BUNDLED[name]
        reason = entry.unavailable()
        if reason:
            raise HayakuError(reason)
        build = (entry.prepare_all if ns.all_runtimes else None) or entry.prepare or entry.build
        path = build()
        print(f"{name}: ready at {path}")
    return 0


def _pipeline(ns: argparse.Namespace) -> Any:
    """The served graph's Pipeline, in this process, from a Serve YAML (default configs/fast.yaml) plus
    CLI overrides; loaded."""
    from graph.auto import resolve_graph
    from graph.config import GraphArgs, parse_args
    from graph.yaml_files import load_app_args

    cfg_path = Path(ns.config) if ns.config else None
    if cfg_path is None and Path("configs/fast.yaml").is_file():
        cfg_path = Path("configs/fast.yaml")
    args = load_app_args(cfg_path)[0].args if cfg_path else GraphArgs.model_validate({})
    data = args.model_dump()
    if ns.translator:
        data["translator"] = {"backend": ns.translator, "model": ns.model, "options": _parse_kv(ns.option)}
    elif ns.model or ns.option:
        data["translator"].update({k: v for k, v in (("model", ns.model), ("options", _parse_kv(ns.option))) if v})
    if ns.speaker:
        data["speaker"] = {"backend": ns.speaker, "voice": ns.voice, "options": _parse_kv(ns.speaker_option)}
    elif ns.voice:
        data["speaker"]["voice"] = ns.voice
    for key in ("source_lang", "target_lang"):
        if getattr(ns, key):
            data[key] = getattr(ns, key)
    resolved = resolve_graph(parse_args(data, "command line"))
    print(resolved.summary(), file=sys.stderr)
    print("loading models ...", file=sys.stderr, flush=True)
    return resolved.pipeline()


def cmd_say(ns: argparse.Namespace) -> int:
    text = " ".join(ns.text) if ns.text else DEFAULT_TEXT
    if text == "-":
        text = sys.stdin.read()
    out = _pipeline(ns).run_sync(text, speed=ns.speed)
    fmt = ns.format or (Path(ns.output).suffix.lstrip(".") if ns.output else "wav")
    data = out.encode(fmt)
    Path(ns.output).write_bytes(data)
    print(out.translation)
    t = out.timings_ms
    print(
        f"translate {t['translate']:.0f} ms, synthesize {t['synthesize']:.0f} ms, total {t['total']:.0f} ms; "
        f"{out.duration_s:.2f} s of audio at {out.sample_rate} Hz -> {ns.output}",
        file=sys.stderr,
    )
    return 0


def cmd_graph(ns: argparse.Namespace) -> int:
    from graph.auto import resolve_graph
    from graph.yaml_files import load_app_args

    for app in load_app_args(Path(ns.config)):
        resolved = resolve_graph(app.args)
        print(json.dumps({"application": app.name, **resolved.to_dict()}, indent=1, default=str))
    return 0


def cmd_serve(ns: argparse.Namespace, rest: list[str]) -> int:
    """Validates the YAML in this process (exit 2 with the YAML path of a bad field), then runs `serve run`.

    Ray's own `serve run file.yaml` builds the app inside its controller: a bad config is logged there
    and the app goes DEPLOY_FAILED, but the command keeps running. This checks first and fails at once.
    SIGTERM or Ctrl-C then drains in-flight requests before exiting (deployments/drain.py), which `serve run`
    alone does not.
    """
    import os

    from graph.auto import resolve_graph
    from graph.yaml_files import exposure_warning, load_app_args, read_yaml

    warning = exposure_warning(read_yaml(ns.config), os.environ)
    if warning:
        print(f"hayaku: warning: {warning}", file=sys.stderr)
    for app in load_app_args(Path(ns.config)):
        print(resolve_graph(app.args).summary(), file=sys.stderr)
    try:
        from deployments.drain import run_until_signal
    except ImportError as exc:
        raise HayakuError(f"Ray Serve is not installed ({exc}): pip install 'hayaku[serve]'") from None
    return run_until_signal(ns.config, rest)


#: `hayaku bench <name>` -> the benchmark module whose main(argv) runs it
BENCHMARKS = {
    "translate": "benchmarks.translate",
    "speak": "benchmarks.speak",
    "overhead": "benchmarks.overhead",
    "quality": "benchmarks.quality",
    "original": "benchmarks.original",
    "load": "benchmarks.load",
    "reliability": "benchmarks.reliability",
    "stream": "benchmarks.stream",
    "clauses": "benchmarks.clauses",
    "cluster": "benchmarks.cluster",
}


def cmd_bench(ns: argparse.Namespace, rest: list[str]) -> int:
    import importlib

    module = BENCHMARKS[ns.what]
    return int(importlib.import_module(module).main(rest) or 0)


def cmd_tune(ns: argparse.Namespace, rest: list[str]) -> int:
    """Runs the tuner (benchmarks/tune.py): exit 0 with a profile written, 1 without one."""
    from benchmarks import tune

    return int(tune.main(rest) or 0)


def cmd_compare(ns: argparse.Namespace, rest: list[str]) -> int:
    """Runs the offline A/B (benchmarks/compare.py) on two configs."""
    from benchmarks import compare

    return int(compare.main(rest) or 0)


def cmd_kuberay(ns: argparse.Namespace, rest: list[str]) -> int:
    """Generates or checks the KubeRay RayService manifest of a Serve YAML (serve/kuberay.py)."""
    from serve import kuberay

    return int(kuberay.main(rest) or 0)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hayaku", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)

    s = sub.add_parser("say", help="translate English text and speak it in Japanese, in-process (no Ray)")
    s.add_argument("text", nargs="*", help=f"text to translate ('-' reads stdin; default {DEFAULT_TEXT!r})")
    s.add_argument("-o", "--output", default="hayaku.wav", help="output audio file (default hayaku.wav)")
    s.add_argument("-f", "--format", choices=["wav", "pcm", "flac"], help="audio format (default: from -o suffix)")
    s.add_argument("-c", "--config", help="Serve YAML to take the stages from (default configs/fast.yaml if present)")
    s.add_argument("--translator", help="translator backend (overrides the config), e.g. llm, ctranslate2, echo")
    s.add_argument("--model", help="translator model: bundled name, local folder or hub id")
    s.add_argument("-O", "--option", action="append", help="translator option key=value (repeatable)")
    s.add_argument("--speaker", help="speaker backend (overrides the config), e.g. kokoro, openjtalk")
    s.add_argument("--voice", help="speaker voice, e.g. jf_alpha")
    s.add_argument("-S", "--speaker-option", action="append", help="speaker option key=value (repeatable)")
    s.add_argument("--speed", type=float, default=1.0, help="speech speed, 0.25-4.0 (default 1.0)")
    s.add_argument("--source-lang", help="source language (default from config: en)")
    s.add_argument("--target-lang", help="target language (default from config: ja)")

    b = sub.add_parser("backends", help="list every backend and whether it runs on this machine")
    b.add_argument("--json", action="store_true", help="machine-readable output")

    m = sub.add_parser("models", help="bundled offline models: list, or prepare (join/convert, cached)")
    m.add_argument("action", choices=["list", "prepare"])
    m.add_argument("names", nargs="*", help="bundled model names (default: all)")
    m.add_argument(
        "--all-runtimes",
        action="store_true",
        help="prepare: also build what the ctranslate2 and transformers runtimes read (minutes, ~6 GB)",
    )

    sv = sub.add_parser(
        "serve", help="validate a Serve YAML, `serve run` it, drain on SIGTERM (extra args go to serve run)"
    )
    sv.add_argument("config", help="path to a Serve YAML, e.g. configs/fast.yaml")

    g = sub.add_parser("graph", help="validate a Serve YAML and show the backends it resolves to here")
    g.add_argument("config", help="path to a Serve YAML, e.g. configs/fast.yaml")

    be = sub.add_parser(
        "bench", help="run a benchmark (see benchmarks/); extra args, --help too, go to it", add_help=False
    )
    be.add_argument("what", choices=list(BENCHMARKS))

    # the benchmark modules own these arguments (hayaku tune --help shows them)
    sub.add_parser("tune", help="measure the settings this machine can run, write the tuned profile", add_help=False)
    sub.add_parser("compare", help="offline A/B of two Serve YAMLs on the corpus", add_help=False)
    sub.add_parser("kuberay", help="KubeRay RayService manifest from a Serve YAML: generate, check", add_help=False)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    ns, rest = parser.parse_known_args(argv)
    if ns.cmd not in ("bench", "serve", "tune", "compare", "kuberay") and rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    try:
        if ns.cmd == "bench":
            return cmd_bench(ns, rest)
        if ns.cmd == "serve":
            return cmd_serve(ns, rest)
        if ns.cmd in ("tune", "compare", "kuberay"):
            return {"tune": cmd_tune, "compare": cmd_compare, "kuberay": cmd_kuberay}[ns.cmd](ns, rest)
        handler = {"say": cmd_say, "backends": cmd_backends, "models": cmd_models, "graph": cmd_graph}[ns.cmd]
        return handler(ns)
    except HayakuError as exc:
        print(f"hayaku: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
