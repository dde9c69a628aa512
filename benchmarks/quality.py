"""Translation quality: chrF of translator settings on the project's own corpus.

    python -m benchmarks.quality                                   # the default llm setting, test part
    python -m benchmarks.quality --corpus en-ja                    # the dev part (what may be tuned on)
    python -m benchmarks.quality --limit 20 \\
        --setting llm --setting llm:few_shot=0,japanese_kanji_only=false
    python -m benchmarks.quality --reference llm:runtime=transformers,dtype=float32

Each setting translates every corpus sentence one at a time (the latency case); settings
run interleaved sentence by sentence (A B A B), so their median times compare fairly.
chrF (sacrebleu, character n-grams: no Japanese word segmenter needed) is measured against
the corpus references and, with ``--reference``, against the outputs of the reference
setting of the same model (its float32 run): the tuner rejects a faster setting that falls
more than 1 point below its reference. Reference outputs are cached under HAYAKU_HOME, so a
slow float32 run is paid once per corpus and setting.

A setting is ``backend[:key=value,key=value...]``; values are JSON (numbers, true/false)
or plain strings; ``model=<name or path>`` is the setting's model (``--model`` sets every setting's).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import re
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.common import interleave, markdown_table, write_result

#: the latency sentence of every translation benchmark (benchmarks.translate)
SPEED_SENTENCE = "Hello, how are you today?"
CORPUS_DIR = Path(__file__).resolve().parent / "corpus"
#: prompts, examples and glossaries may be tuned on the dev part; nothing is tuned on the test part
DEV_CORPUS = "en-ja"
TEST_CORPUS = "en-ja-test"


@dataclass(frozen=True)
class Pair:
    """One corpus entry: a source sentence and the project's reference translation."""

    source: str
    reference: str
    domain: str = ""


def load_corpus(name: str = "en-ja", limit: int | None = None) -> list[Pair]:
    """The pairs of ``benchmarks/corpus/<name>.tsv`` (columns domain, en, ja), in file order."""
    path = CORPUS_DIR / f"{name}.tsv"
    if not path.is_file():
        known = sorted(p.stem for p in CORPUS_DIR.glob("*.tsv"))
        raise FileNotFoundError(f"no corpus {name!r} in {CORPUS_DIR}; available: {known}")
    with path.open(encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    header, body = rows[0], rows[1:]
    src_col, ref_col = header.index(name.split("-")[0]), header.index(name.split("-")[1])
    dom_col = header.index("domain") if "domain" in header else None
    pairs = [
        Pair(row[src_col].strip(), row[ref_col].strip(), row[dom_col].strip() if dom_col is not None else "")
        for row in body
        if row
    ]
    return pairs[:limit] if limit else pairs


def corpus_digest(pairs: Sequence[Pair]) -> str:
    """A short hash of the sources, so cached reference outputs follow corpus edits."""
    return hashlib.sha256("\n".join(p.source for p in pairs).encode()).hexdigest()[:16]


def chrf(hyps: Sequence[str], refs: Sequence[str]) -> float:
    """Corpus-level chrF (sacrebleu defaults: character 6-grams, beta 2), 0-100."""
    from sacrebleu.metrics import CHRF

    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} hypotheses for {len(refs)} references")
    return float(CHRF().corpus_score(list(hyps), [list(refs)]).score)


#: formulas a translation adds when the model answers the text instead of translating it
#: ("Thank you for your help." -> どういたしまして): flagged where the reference does not have them
FORMULAS = (
    "どういたしまして",
    "よろしくお願いします",
    "お疲れ様です",
    "かしこまりました",
    "承知しました",
    "もちろんです",
)
#: how far outside the corpus's own reference/source length ratios an output must be to be flagged
RATIO_SLACK = 1.5


def untranslated_words(output: str, source: str) -> list[str]:
    """Latin-letter words of ``output`` that are not names or acronyms kept from ``source``.

    "Ms. Tanaka", "PDF", "USB" may stay; "peanuts", "jacket" may not (``kept_names``).
    """
    from backends.llm_text import LATIN_WORD, kept_names

    kept = {w.lower() for w in kept_names(source)}
    return [w for w in LATIN_WORD.findall(output) if w.lower() not in kept]


def ratio_bounds(pairs: Sequence[Pair]) -> tuple[float, float]:
    """The range of reference/source character-length ratios in ``pairs``, widened by RATIO_SLACK."""
    ratios = [len(p.reference) / max(1, len(p.source)) for p in pairs]
    return min(ratios) / RATIO_SLACK, max(ratios) * RATIO_SLACK


def content_checks(outputs: Sequence[str], pairs: Sequence[Pair]) -> dict[str, Any]:
    """Counts of outputs a simple check can see are wrong: English left in, length far off, added formulas."""
    low, high = ratio_bounds(pairs)
    latin = [untranslated_words(o, p.source) for o, p in zip(outputs, pairs, strict=True)]
    off = [not (low <= len(o) / max(1, len(p.source)) <= high) for o, p in zip(outputs, pairs, strict=True)]
    added = [[f for f in FORMULAS if f in o and f not in p.reference] for o, p in zip(outputs, pairs, strict=True)]
    return {
        "latin_outputs": sum(1 for w in latin if w),
        "latin_words": sorted({w for ws in latin for w in ws})[:20],
        "length_outliers": sum(off),
        "added_formulas": sum(1 for a in added if a),
    }


def non_japanese(text: str) -> str:
    """Han characters of ``text`` that Japanese does not use (simplified-Chinese forms)."""
    from backends.llm_text import non_japanese_chars

    return non_japanese_chars(text)


# -- settings --------------------------------------------------------------------------------


@dataclass
class Setting:
    """A translator to measure: backend, options, model; ``label`` names it in tables."""

    backend: str
    options: dict[str, Any] = field(default_factory=dict)
    model: str | None = None
    label: str = ""

    def __post_init__(self) -> None:
        if not self.label:
            opts = ",".join(f"{k}={v}" for k, v in self.options.items())
            self.label = f"{self.backend}:{opts}" if opts else self.backend

    def create(self) -> Any:
        """The translator, built but not loaded."""
        from backends.registry import create_translator

        return create_translator(self.backend, model=self.model, options=self.options)


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_setting(spec: str, model: str | None = None) -> Setting:
    """``backend[:key=value,...]`` -> Setting; a value is JSON where it parses, else a string.

    A comma followed by ``key=`` separates options; any other comma belongs to the value.
    """
    backend, _, rest = spec.partition(":")
    options: dict[str, Any] = {}
    # a comma starts a new option only before "key=", so values (prompts) may contain commas
    for item in filter(None, (s.strip() for s in re.split(r",(?=\s*[A-Za-z_]\w*=)", rest))):
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise ValueError(f"bad option {item!r} in setting {spec!r}: write key=value")
        options[key.strip()] = _value(value.strip())
    # model= names the setting's model (a bundled name or a path), so settings of two models interleave
    own_model = options.pop("model", None)
    return Setting(backend.strip(), options, str(own_model) if own_model is not None else model, label=spec)


# -- measuring -------------------------------------------------------------------------------


def _progress(label: str, done: int, total: int) -> None:
    if sys.stderr.isatty() or done == total or done % max(1, total // 10) == 0:
        end = "\n" if done == total else ""
        print(f"\r  {label}: {done}/{total}", end=end, file=sys.stderr, flush=True)


def translate_all(
    translators: dict[str, Any], pairs: Sequence[Pair], src: str = "en", tgt: str = "ja", progress: bool = True
) -> dict[str, dict[str, Any]]:
    """Each translator on each sentence, one sentence at a time, interleaved across translators.

    Returns per label: outputs, per-sentence milliseconds and generated token counts. Every
    translator translates the first sentence once, untimed, first: that call builds lazily
    made state (cached prompt prefix, suppression list).
    """
    labels = list(translators)
    runs: dict[str, dict[str, Any]] = {k: {"outputs": [], "ms": [], "tokens": []} for k in labels}
    if pairs:
        for k in labels:
            translators[k].translate([pairs[0].source], src, tgt)
    for i, pair in enumerate(pairs):
        order = labels[i % len(labels) :] + labels[: i % len(labels)]
        for k in order:
            start = time.perf_counter()
            result = translators[k].translate([pair.source], src, tgt)[0]
            runs[k]["ms"].append((time.perf_counter() - start) * 1000.0)
            runs[k]["outputs"].append(result.text)
            runs[k]["tokens"].append(result.output_tokens or 0)
        if progress:
            _progress("sentences", i + 1, len(pairs))
    return runs


def score(
    outputs: Sequence[str], pairs: Sequence[Pair], reference_outputs: Sequence[str] | None = None
) -> dict[str, Any]:
    """chrF against the corpus references (and a reference setting's outputs), and script checks."""
    record: dict[str, Any] = {
        "n": len(outputs),
        "chrf": chrf(outputs, [p.reference for p in pairs]),
        "chrf_vs_reference": chrf(outputs, reference_outputs) if reference_outputs is not None else None,
        "non_japanese_outputs": sum(1 for o in outputs if non_japanese(o)),
        "non_japanese_chars": "".join(sorted({c for o in outputs for c in non_japanese(o)})),
        **content_checks(outputs, pairs),
    }
    return record


def summarize(run: dict[str, Any]) -> dict[str, Any]:
    """Median / p95 milliseconds and mean generated tokens of one translate_all run."""
    ms = sorted(run["ms"])
    if not ms:
        return {"median_ms": float("nan"), "p95_ms": float("nan"), "tokens_per_sentence": float("nan")}
    return {
        "median_ms": statistics.median(ms),
        "p95_ms": ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))],
        "tokens_per_sentence": statistics.mean(run["tokens"]),
    }


def evaluate(
    translator: Any,
    pairs: Sequence[Pair],
    reference_outputs: Sequence[str] | None = None,
    src: str = "en",
    tgt: str = "ja",
    progress: bool = True,
) -> dict[str, Any]:
    """One loaded translator on the corpus: chrF (vs references and ``reference_outputs``), times, outputs."""
    run = translate_all({"x": translator}, pairs, src, tgt, progress)["x"]
    return {**score(run["outputs"], pairs, reference_outputs), **summarize(run), "outputs": run["outputs"]}


def reference_outputs(setting: Setting, pairs: Sequence[Pair], progress: bool = True) -> list[str]:
    """Outputs of the reference setting on ``pairs``: cached under HAYAKU_HOME, else computed."""
    from backends import store

    key = json.dumps({"backend": setting.backend, "options": setting.options}, sort_keys=True)
    target = store.cache_dir("quality-reference", setting.model or setting.backend, key, corpus_digest(pairs))
    if store.is_built(target):
        return list(json.loads((target / "outputs.json").read_text()))
    print(f"reference {setting.label}: translating {len(pairs)} sentences (cached afterwards) ...", file=sys.stderr)
    tr = setting.create()
    tr.load()
    outputs = translate_all({setting.label: tr}, pairs, progress=progress)[setting.label]["outputs"]
    tr.close()
    with store.building(target) as tmp:
        (tmp / "outputs.json").write_text(json.dumps(outputs, ensure_ascii=False, indent=0))
    return list(outputs)


def _speed_call(translator: Any) -> Callable[[], Any]:
    return lambda: translator.translate([SPEED_SENTENCE])


def run(
    settings: Sequence[Setting],
    pairs: Sequence[Pair],
    reference: Setting | None = None,
    progress: bool = True,
    speed_rounds: int = 0,
) -> list[dict[str, Any]]:
    """Every setting on the corpus, interleaved; a setting that fails to load is a row with its reason.

    ``speed_rounds`` > 0 also times ``SPEED_SENTENCE`` on every setting, interleaved, for
    that many rounds after one warm-up (``speed_ms``: the median).
    """
    from backends.errors import HayakuError

    ref_out = reference_outputs(reference, pairs, progress) if reference else None
    loaded: dict[str, Any] = {}
    rows: dict[str, dict[str, Any]] = {}
    for s in settings:
        row: dict[str, Any] = {"setting": s.label, "backend": s.backend, "options": s.options, "model": s.model}
        rows[s.label] = row
        try:
            tr = s.create()
            reason = type(tr).unavailable_reason(s.model)
            if reason:
                raise RuntimeError(reason)
            print(f"load {s.label} ...", file=sys.stderr, flush=True)
            tr.load()
        except (HayakuError, RuntimeError, ValueError) as exc:
            print(f"skip {s.label}: {exc}", file=sys.stderr)
            row["skipped"] = str(exc)
            continue
        row["load_s"] = (tr.load_ms or 0.0) / 1000.0
        loaded[s.label] = tr
    runs = translate_all(loaded, pairs, progress=progress) if loaded else {}
    for label, r in runs.items():
        rows[label].update(score(r["outputs"], pairs, ref_out), **summarize(r), outputs=r["outputs"])
    if speed_rounds and loaded:
        series = interleave({k: _speed_call(tr) for k, tr in loaded.items()}, rounds=speed_rounds, progress=progress)
        for label, ser in series.items():
            rows[label].update(speed_ms=ser.median(), speed_p95_ms=ser.pct(95), speed_errors=ser.errors)
            rows[label]["speed_output"] = loaded[label].translate([SPEED_SENTENCE])[0].text
    for tr in loaded.values():
        tr.close()
    return list(rows.values())


def table(rows: Sequence[dict[str, Any]], with_reference: bool) -> str:
    """The markdown table of ``run``'s rows."""
    headers = ["setting", "chrF vs corpus", "chrF vs reference", "median ms", "p95 ms", "tokens", "non-ja outputs",
               "English left", "length off", "added formula"]  # fmt: skip
    timed = any("speed_ms" in r for r in rows)
    if timed:
        headers.append(f"{SPEED_SENTENCE!r} ms")
    out: list[list[Any]] = []
    for r in rows:
        if "chrf" not in r:
            skipped = [r["setting"], "-", "-", "-", "-", "-", f"skipped: {r.get('skipped', '')[:80]}", "-", "-", "-"]
            out.append(skipped + ["-"] * timed)
            continue
        ref = r["chrf_vs_reference"] if with_reference else "-"
        bad = f"{r['non_japanese_outputs']} {r['non_japanese_chars']}".strip()
        row = [r["setting"], r["chrf"], ref, r["median_ms"], r["p95_ms"], r["tokens_per_sentence"], bad,
               r["latin_outputs"], r["length_outliers"], r["added_formulas"]]  # fmt: skip
        out.append(row + ([r.get("speed_ms", "-")] if timed else []))
    return markdown_table(headers, out)


def examples_table(rows: Sequence[dict[str, Any]], pairs: Sequence[Pair], n: int = 10) -> str:
    """``n`` sentences spread evenly over the corpus: source, reference and each measured setting's output."""
    done = [r for r in rows if "outputs" in r]
    picks = range(0, len(pairs), max(1, len(pairs) // n))[:n]
    body = [[pairs[i].source, pairs[i].reference, *(r["outputs"][i] for r in done)] for i in picks]
    return markdown_table(["source", "reference", *(r["setting"] for r in done)], body)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="hayaku bench quality", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--setting",
        action="append",
        help="backend[:key=value,...] to measure (repeatable; default: llm with its default options)",
    )
    p.add_argument(
        "--reference",
        help="setting whose outputs are the reference (its float32 run), e.g. llm:runtime=transformers,dtype=float32",
    )
    p.add_argument("--model", help="model for every setting (default: each backend's default)")
    p.add_argument(
        "--corpus",
        default=TEST_CORPUS,
        help=f"benchmarks/corpus/<name>.tsv (default {TEST_CORPUS}: the held-out test part; {DEV_CORPUS}: dev)",
    )
    p.add_argument("--limit", type=int, help="only the first N sentences (quick runs)")
    p.add_argument(
        "--speed-rounds",
        type=int,
        default=0,
        help=f"also time {SPEED_SENTENCE!r} on every setting, interleaved, this many rounds (default 0: no)",
    )
    p.add_argument("--name", default="quality", help="results/<name>.md and .json (default quality)")
    ns = p.parse_args(argv)
    pairs = load_corpus(ns.corpus, ns.limit)
    settings = [parse_setting(s, ns.model) for s in (ns.setting or ["llm"])]
    reference = parse_setting(ns.reference, ns.model) if ns.reference else None
    print(f"{len(pairs)} sentences, {len(settings)} settings", file=sys.stderr)
    from benchmarks.original import read_bandwidth_gbs

    bandwidth = read_bandwidth_gbs()
    rows = run(settings, pairs, reference, speed_rounds=ns.speed_rounds)
    md = table(rows, reference is not None)
    print(md)
    notes = (
        f"Read bandwidth {bandwidth:.1f} GB/s (measured in this run). "
        f"Corpus: benchmarks/corpus/{ns.corpus}.tsv, {len(pairs)} sentences"
        f"{' (--limit)' if ns.limit else ''}; one sentence per call, settings interleaved sentence by sentence. "
        "chrF: sacrebleu CHRF (character 6-grams). "
        + (f"Reference setting: {reference.label}. " if reference else "")
        + "non-ja outputs: outputs with Han characters Japanese does not use (and which). English left: outputs "
        "with a Latin-letter word that is not a name or acronym of the source. length off: output/source length "
        f"ratio outside the corpus references' range widened {RATIO_SLACK}x. added formula: a politeness formula "
        "the reference does not have (the model answered instead of translating)."
        + (
            f" Last column: median of {ns.speed_rounds} interleaved rounds on {SPEED_SENTENCE!r}."
            if ns.speed_rounds
            else ""
        )
    )
    notes += "\n\n## Examples\n\n" + examples_table(rows, pairs)
    data = {"corpus": ns.corpus, "n": len(pairs), "reference": reference.label if reference else None, "rows": rows}
    data["bandwidth_gbs"] = bandwidth
    path = write_result(ns.name, "Translation quality on the project corpus", md, notes, data=data)
    print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
