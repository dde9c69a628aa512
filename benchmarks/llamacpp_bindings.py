"""llama.cpp bindings side by side on the bundled GGUF: same prompt, same tokens, interleaved.

    python -m benchmarks.llamacpp_bindings [--rounds 7] [--other-python /path/to/venv/bin/python]

Candidates: ``xllamacpp`` (prebuilt PyPI wheel, the runtime hayaku ships) and ``llama-cpp-python``
(PyPI has its source only: it compiles llama.cpp for this CPU at install time). llama-cpp-python
is not a hayaku dependency; build it in a separate venv and pass that venv's python
(``--other-python``); without it only xllamacpp is measured. Each binding runs in its own worker
process (each vendors its own ggml) that holds the model loaded; the parent sends one request at a
time, alternating. The request is the llm backend's real prompt (system prompt, 4 examples, the
latency sentence) with the prefix already cached; generation is greedy with the end of turn
banned, so both decode exactly ``n`` tokens. 1 and 17 tokens split prefill from per-token decode;
the floor per token is the bytes a decode step reads (every tensor but the token embedding) over
the read bandwidth measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import Sample, Series, machine, markdown_table, write_result

SENTENCE = "Hello, how are you today?"
DECODE_TOKENS = 16


def _prompt() -> str:
    from backends.llm_mt import LLMTranslator

    tr = LLMTranslator(None, {})
    chat = tr.messages(SENTENCE, "en", "ja")
    # ChatML, exactly what the bundled model's template renders for these messages
    body = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in chat)
    return body + "<|im_start|>assistant\n"


def worker(binding: str, path: str, threads: int) -> None:
    """Loads the model with ``binding`` and answers each stdin line ``n`` with one timed request."""
    prompt = _prompt_from_stdin()
    ban = {151643: -100.0, 151645: -100.0}  # <|endoftext|>, <|im_end|>
    if binding == "xllamacpp":
        import xllamacpp

        from backends.llamacpp_rt import greedy_params

        server = xllamacpp.Server(greedy_params(Path(path), threads, parallel=1, context=2048))

        def run(n: int) -> str:
            body = {"prompt": prompt, "max_tokens": n, "temperature": 0, "top_k": 1, "cache_prompt": True}
            body["logit_bias"] = [[k, v] for k, v in ban.items()]
            return str(server.handle_completions(body)["choices"][0]["text"])
    else:
        from llama_cpp import Llama

        llm = Llama(model_path=path, n_ctx=2048, n_threads=threads, n_threads_batch=threads, verbose=False)

        def run(n: int) -> str:
            out = llm.create_completion(prompt, max_tokens=n, temperature=0, top_k=1, logit_bias=ban)
            return str(out["choices"][0]["text"])  # type: ignore[index]

    run(1)  # fills the prompt cache
    print("ready", flush=True)
    for line in sys.stdin:
        n = int(line)
        start = time.perf_counter()
        text = run(n)
        print(json.dumps({"ms": (time.perf_counter() - start) * 1000, "text": text}), flush=True)


def _prompt_from_stdin() -> str:
    return str(json.loads(sys.stdin.readline()))


class Worker:
    def __init__(self, python: str, binding: str, path: Path, threads: int) -> None:
        cmd = [python, "-m", "benchmarks.llamacpp_bindings", "--worker", binding, "--gguf", str(path)]
        cmd += ["--threads", str(threads)]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(json.dumps(_prompt()) + "\n")
        self.proc.stdin.flush()
        if self.proc.stdout.readline().strip() != "ready":
            raise RuntimeError(f"{binding} worker failed to start (see its stderr above)")

    def request(self, n: int) -> Sample:
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(f"{n}\n")
        self.proc.stdin.flush()
        out = json.loads(self.proc.stdout.readline())
        return Sample(out["ms"], extra={"text": out["text"]})

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait(timeout=30)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--other-python", help="python of a venv with llama-cpp-python installed")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--gguf", help=argparse.SUPPRESS)
    ns = ap.parse_args(argv)
    if ns.worker:
        worker(ns.worker, ns.gguf, ns.threads)
        return 0

    from backends import bundled
    from backends.gguf_meta import decode_step_bytes
    from benchmarks.original import read_bandwidth_gbs

    path = bundled.qwen_gguf()
    step_bytes = decode_step_bytes(path)
    bandwidth_before = read_bandwidth_gbs()
    workers = {"xllamacpp (PyPI wheel)": Worker(sys.executable, "xllamacpp", path, ns.threads)}
    if ns.other_python:
        workers["llama-cpp-python (built here)"] = Worker(ns.other_python, "llama-cpp-python", path, ns.threads)
    series = {f"{w} {n}": Series(f"{w} {n}") for w in workers for n in (1, 1 + DECODE_TOKENS)}
    for r in range(ns.rounds):
        names = list(workers)
        for w in names[r % len(names) :] + names[: r % len(names)]:
            for n in (1, 1 + DECODE_TOKENS):
                series[f"{w} {n}"].samples.append(workers[w].request(n))
        print(f"\r  round {r + 1}/{ns.rounds}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    for proc in workers.values():
        proc.close()
    bandwidth = max(bandwidth_before, read_bandwidth_gbs())
    floor_ms = step_bytes / (bandwidth * 1e9) * 1000
    rows, data = [], []
    for w in workers:
        one, many = series[f"{w} 1"].median(), series[f"{w} {1 + DECODE_TOKENS}"].median()
        per_token = (many - one) / DECODE_TOKENS
        rows.append([w, one, many, per_token, per_token / floor_ms])
        data.append({"binding": w, "prefill_first_ms": one, "total_17_ms": many, "decode_ms_per_token": per_token})
    table = markdown_table(
        ["binding", "prefill + 1 token ms", f"prefill + {1 + DECODE_TOKENS} tokens ms", "ms/token", "x floor"], rows
    )
    text = series[f"{next(iter(workers))} {1 + DECODE_TOKENS}"].samples[-1].extra.get("text", "")
    notes = (
        f"Machine: {machine()}; read bandwidth {bandwidth:.1f} GB/s (measured in this run). "
        f"Medians of {ns.rounds} interleaved rounds, {ns.threads} threads, prompt prefix cached, greedy, end of turn "
        f"banned so every request decodes exactly its tokens ({text!r}). A decode step reads "
        f"{step_bytes / 1e6:.0f} MB (every tensor but the token embedding): floor {floor_ms:.1f} ms/token."
    )
    path_out = write_result("llamacpp-bindings", "llama.cpp bindings on the bundled GGUF", table, notes, data)
    print(table + "\n\n" + notes + f"\n\nwritten to {path_out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
