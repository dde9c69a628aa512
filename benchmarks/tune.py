"""``hayaku tune``: measure every setting this machine can run, write the fastest as the tuned profile.

    hayaku tune                       # bundled Qwen through llm, every available speaker
    hayaku tune --model ./my-marian   # also a local seq2seq model (transformers / ctranslate2)
    hayaku tune --dry-run             # list the candidates, measure nothing

For each translator model, its float32 setting is the quality reference: every other
setting of that model is rejected when its chrF on the corpus (``benchmarks/corpus``,
``--limit`` sentences) falls more than 1 point below the reference's. Speakers synthesize
the corpus references. The winner is the accepted (translator, speaker) pair with the
lowest median end-to-end time per sentence (translation + speech of the same sentence).
It is written to ``HAYAKU_HOME/profiles/<hardware-key>.yaml`` (the format ``backend: auto``
reads, see serve/auto.py) with the table as YAML comments and in ``measurements``.

A setting that fails (exception, unavailable, out of budget) is a row marked failed with
its reason; the sweep goes on. No profile is written unless a reference, an accepted
translator and a speaker were all fully measured.

The selection (``judge``, ``combine``, ``build_profile``) is pure: rows in, profile out.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

#: a faster setting may lose at most this many chrF points against its model's float32 reference
CHRF_TOLERANCE = 1.0
BUNDLED_LLM = "qwen2.5-1.5b-instruct"


@dataclass
class Candidate:
    """One setting to measure. ``reference`` marks the float32 quality anchor of ``model``."""

    role: str  # "translator" | "speaker"
    backend: str
    options: dict[str, Any] = field(default_factory=dict)
    model: str | None = None
    voice: str | None = None
    reference: bool = False
    label: str = ""

    def __post_init__(self) -> None:
        if not self.label:
            opts = " ".join(f"{k}={v}" for k, v in self.options.items())
            self.label = " ".join(x for x in (self.backend, opts, self.voice or "") if x)


def translator_candidates(
    models: Sequence[str], bundled: bool = True, heavy: bool = True, max_tokens: int | None = None
) -> list[Candidate]:
    """Reference first for each model, then the faster settings, cheapest to measure first.

    ``max_tokens`` caps the output length of the seq2seq settings (the same cap on all, so
    quality stays comparable): random or badly matched models otherwise run to the default cap.
    """
    out: list[Candidate] = []
    tf_cap = {"max_new_tokens": max_tokens} if max_tokens else {}
    ct2_cap = {"max_decoding_length": max_tokens} if max_tokens else {}
    if bundled:
        m = BUNDLED_LLM
        out += [
            Candidate("translator", "llm", {"runtime": "transformers", "dtype": "float32"}, m, reference=True),
            Candidate("translator", "llm", {"runtime": "ctranslate2", "compute_type": "int8"}, m),
            Candidate("translator", "llm", {"runtime": "ctranslate2", "compute_type": "int8", "few_shot": 0}, m),
            Candidate(
                "translator", "llm", {"runtime": "ctranslate2", "compute_type": "int8", "max_length_ratio": 1.5}, m
            ),
        ]
        if heavy:
            out.append(Candidate("translator", "llm", {"runtime": "transformers", "dtype": "bfloat16"}, m))
    for m in models:
        out += [
            Candidate("translator", "transformers", {"dtype": "float32", "num_beams": 1, **tf_cap}, m, reference=True),
            Candidate("translator", "ctranslate2", {"compute_type": "int8", "beam_size": 1, **ct2_cap}, m),
            Candidate(
                "translator", "transformers", {"dtype": "float32", "quantize": "int8", "num_beams": 1, **tf_cap}, m
            ),
            Candidate("translator", "transformers", {"dtype": "bfloat16", "num_beams": 1, **tf_cap}, m),
        ]
    return out


def speaker_candidates(names: Sequence[str] | None = None) -> list[Candidate]:
    """Every available non-synthetic speaker with its default voice (or exactly ``names``)."""
    from backends.registry import SPEAKERS, speaker_class

    if names:
        return [Candidate("speaker", n) for n in names]
    out = []
    for n in SPEAKERS:
        cls = speaker_class(n)
        if not cls.synthetic and cls.unavailable_reason(None) is None:
            out.append(Candidate("speaker", n))
    return out


# -- selection: pure functions over measured rows ---------------------------------------------


def _median(xs: Sequence[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def judge(rows: list[dict[str, Any]], tolerance: float = CHRF_TOLERANCE) -> list[dict[str, Any]]:
    """Marks each translator row ``accepted`` (with ``chrf_delta`` and a ``verdict``); returns new rows.

    A row needs ``ok``; its model's reference row must be ok too, and its ``chrf`` at most
    ``tolerance`` below the reference's. The reference itself is accepted when ok.
    """
    refs = {r["model"]: r for r in rows if r.get("reference")}
    out = []
    for row in rows:
        r = dict(row)
        ref = refs.get(r["model"])
        if not r.get("ok"):
            r.update(accepted=False, verdict=f"failed: {r.get('reason', '?')}")
        elif ref is None or not ref.get("ok"):
            r.update(accepted=False, verdict="no quality reference measured for this model")
        else:
            r["chrf_delta"] = r["chrf"] - ref["chrf"]
            r["accepted"] = r["chrf_delta"] >= -tolerance
            r["verdict"] = (
                "accepted"
                if r["accepted"]
                else f"rejected: chrF {r['chrf_delta']:+.2f} vs float32 (limit -{tolerance})"
            )
        out.append(r)
    return out


def combine(translators: list[dict[str, Any]], speakers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every accepted translator x ok non-synthetic speaker, with the median end-to-end ms, fastest first.

    End to end is, per sentence, translation time + speech time of that sentence; the median
    is over sentences (so a pair is ranked on what one request costs, not on two medians).
    """
    combos = []
    for t in translators:
        if not t.get("accepted"):
            continue
        for s in speakers:
            if not s.get("ok") or s.get("synthetic"):
                continue
            n = min(len(t["ms"]), len(s["ms"]))
            totals = [t["ms"][i] + s["ms"][i] for i in range(n)]
            combos.append({"translator": t["label"], "speaker": s["label"], "p50_ms": _median(totals), "n": n})
    return sorted(combos, key=lambda c: c["p50_ms"])


def _public(row: dict[str, Any]) -> dict[str, Any]:
    """A row as recorded in the profile: no per-sentence lists or outputs."""
    return {k: v for k, v in row.items() if k not in ("ms", "outputs")}


def row_text(t: dict[str, Any], s: dict[str, Any], combo: dict[str, Any]) -> str:
    """The winner's table row in one line (it ends up in GET /v1/graph's reason)."""
    delta = t.get("chrf_delta")
    quality = f"chrF {t['chrf']:.1f}" + (f" ({delta:+.2f} vs float32)" if delta is not None else "")
    return (
        f"{t['label']} ({t.get('model')}) + {s['label']}: p50 {combo['p50_ms']:.0f} ms end to end over "
        f"{combo['n']} sentences (translate {t['p50_ms']:.0f} ms, speak {s['p50_ms']:.0f} ms), {quality}"
    )


def build_profile(
    translators: list[dict[str, Any]], speakers: list[dict[str, Any]], hardware: dict[str, Any], created: str
) -> tuple[dict[str, Any] | None, str]:
    """(profile, message): the profile to write, or None and why not. ``translators`` must be judged."""
    combos = combine(translators, speakers)
    if not any(r.get("reference") and r.get("ok") for r in translators):
        return None, "no float32 reference was fully measured, so no setting could be quality-checked"
    if not combos:
        why = "no translator passed the quality check" if not any(r.get("accepted") for r in translators) else ""
        return None, why or "no speaker was fully measured"
    best = combos[0]
    t = next(r for r in translators if r["label"] == best["translator"])
    s = next(r for r in speakers if r["label"] == best["speaker"])
    text = row_text(t, s, best)
    reason = f"tuned on {created[:10]}: {text}"
    profile = {
        "created": created,
        "hardware": {k: v for k, v in hardware.items() if k != "runtimes"},
        "translator": {
            "backend": t["backend"],
            "model": t.get("model"),
            "options": dict(t.get("options") or {}),
            "reason": reason,
        },
        "speaker": {
            "backend": s["backend"],
            "voice": s.get("voice"),
            "options": dict(s.get("options") or {}),
            "reason": reason,
        },
        "measurements": {
            "translator": [_public(r) for r in translators],
            "speaker": [_public(r) for r in speakers],
            "end_to_end": combos,
        },
    }
    return profile, text


def table(translators: list[dict[str, Any]], speakers: list[dict[str, Any]], combos: list[dict[str, Any]]) -> str:
    """The measured tables, as markdown."""
    from benchmarks.common import markdown_table

    def num(r: dict[str, Any], k: str) -> Any:
        v = r.get(k)
        return "-" if v is None else v

    t_rows = [
        [
            r["label"],
            r.get("model") or "-",
            num(r, "p50_ms"),
            num(r, "chrf"),
            num(r, "chrf_delta"),
            r.get("verdict", ""),
        ]
        for r in translators
    ]
    s_rows = [
        [r["label"], r.get("voice") or "-", num(r, "p50_ms"), "ok" if r.get("ok") else r.get("reason", "")]
        for r in speakers
    ]
    c_rows = [[c["translator"], c["speaker"], c["p50_ms"], c["n"]] for c in combos]
    return "\n\n".join(
        [
            markdown_table(["translator", "model", "p50 ms", "chrF", "delta vs float32", "verdict"], t_rows),
            markdown_table(["speaker", "voice", "p50 ms", "status"], s_rows),
            markdown_table(
                ["translator", "speaker", "end-to-end p50 ms", "sentences"], c_rows or [["-", "-", "-", "-"]]
            ),
        ]
    )


# -- measuring --------------------------------------------------------------------------------


class OutOfBudget(Exception):
    """The time budget ran out in the middle of a setting."""


def _corpus_run(
    call: Callable[[str], str], items: Sequence[str], deadline: float, label: str, say: Callable[[str], None]
) -> tuple[list[str], list[float]]:
    """``call`` on each item (after one untimed warm-up call); per-item outputs and ms."""
    call(items[0])
    outputs, ms = [], []
    for i, item in enumerate(items):
        if time.monotonic() > deadline:
            raise OutOfBudget(f"time budget ran out after {i}/{len(items)} sentences")
        start = time.perf_counter()
        outputs.append(call(item))
        ms.append((time.perf_counter() - start) * 1000.0)
        if sys.stderr.isatty() or i + 1 == len(items) or (i + 1) % max(1, len(items) // 4) == 0:
            say(f"  {label}: {i + 1}/{len(items)} sentences")
    return outputs, ms


def _measure(row: dict[str, Any], build: Callable[[], Any], run: Callable[[Any], None]) -> dict[str, Any]:
    """Builds and loads one backend, lets ``run`` fill ``row``; any failure becomes the row's reason."""
    backend = None
    try:
        backend = build()
        reason = type(backend).unavailable_reason(backend.model)
        if reason:
            raise RuntimeError(f"unavailable: {reason}")
        backend.load()
        run(backend)
        row["ok"] = True
    except Exception as exc:  # one bad setting is a failed row, never the end of the sweep
        row["reason"] = f"{type(exc).__name__}: {exc}"[:300]
    finally:
        if backend is not None:
            backend.close()
    return row


def measure_translator(
    cand: Candidate, pairs: Sequence[Any], deadline: float, say: Callable[[str], None]
) -> dict[str, Any]:
    """One translator on the corpus: a row (ok with chrF and per-sentence ms, or failed with the reason)."""
    from backends.registry import create_translator
    from benchmarks.quality import chrf

    row: dict[str, Any] = {
        "role": "translator",
        "label": cand.label,
        "backend": cand.backend,
        "model": cand.model,
        "options": cand.options,
        "reference": cand.reference,
        "ok": False,
    }

    def run(tr: Any) -> None:
        row["load_s"] = (tr.load_ms or 0.0) / 1000.0
        outputs, ms = _corpus_run(
            lambda s: tr.translate([s], "en", "ja")[0].text, [p.source for p in pairs], deadline, cand.label, say
        )
        row.update(ms=ms, outputs=outputs, p50_ms=_median(ms), chrf=chrf(outputs, [p.reference for p in pairs]))

    return _measure(row, lambda: create_translator(cand.backend, model=cand.model, options=cand.options), run)


def measure_speaker(
    cand: Candidate, texts: Sequence[str], deadline: float, say: Callable[[str], None]
) -> dict[str, Any]:
    """One speaker on the corpus references: a row with per-sentence ms, or failed with the reason."""
    from backends.registry import create_speaker

    row: dict[str, Any] = {
        "role": "speaker",
        "label": cand.label,
        "backend": cand.backend,
        "options": cand.options,
        "ok": False,
    }

    def run(sp: Any) -> None:
        row["voice"] = sp.voice or sp.default_voice

        def speak(text: str) -> str:
            sp.synthesize(text, "ja")
            return ""

        _, ms = _corpus_run(speak, texts, deadline, cand.label, say)
        row.update(ms=ms, p50_ms=_median(ms), load_s=(sp.load_ms or 0.0) / 1000.0)

    def build() -> Any:
        sp = create_speaker(cand.backend, model=cand.model, options=cand.options, voice=cand.voice)
        row["synthetic"] = bool(type(sp).synthetic)  # known before loading, so failed rows carry it too
        return sp

    return _measure(row, build, run)


def sweep(
    translators: Sequence[Candidate], speakers: Sequence[Candidate], pairs: Sequence[Any], budget_s: float
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Measures every candidate within ``budget_s``; rows past the budget are failed rows."""
    start = time.monotonic()
    deadline = start + budget_s
    total = len(translators) + len(speakers)

    def say(msg: str) -> None:
        el = time.monotonic() - start
        print(f"[tune {el:5.0f}/{budget_s:.0f} s] {msg}", file=sys.stderr, flush=True)

    t_rows: list[dict[str, Any]] = []
    s_rows: list[dict[str, Any]] = []
    failed_refs: set[str | None] = set()
    # speakers first: they are cheap, and every translator row needs one to be worth anything
    for i, cand in enumerate([*speakers, *translators], 1):
        say(f"({i}/{total}) {cand.role} {cand.label}" + (f" [{cand.model}]" if cand.model else ""))
        if time.monotonic() > deadline:
            row = {"role": cand.role, "label": cand.label, "backend": cand.backend, "model": cand.model,
                   "options": cand.options, "reference": cand.reference, "ok": False,
                   "reason": "time budget exhausted before it was measured"}  # fmt: skip
        elif cand.role == "translator" and not cand.reference and cand.model in failed_refs:
            row = {"role": cand.role, "label": cand.label, "backend": cand.backend, "model": cand.model,
                   "options": cand.options, "reference": False, "ok": False,
                   "reason": "not measured: its float32 reference failed"}  # fmt: skip
        elif cand.role == "translator":
            row = measure_translator(cand, pairs, deadline, say)
        else:
            row = measure_speaker(cand, [p.reference for p in pairs], deadline, say)
        if not row["ok"]:
            say(f"  failed: {row['reason']}")
            if cand.reference:
                failed_refs.add(cand.model)
        (t_rows if cand.role == "translator" else s_rows).append(row)
    return t_rows, s_rows


def _comment(text: str) -> str:
    return "\n".join("# " + line if line else "#" for line in text.splitlines())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="hayaku tune", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--budget-s", type=float, default=1200.0, help="time budget for the whole sweep (default 1200)")
    p.add_argument("--limit", type=int, default=30, help="corpus sentences per setting (default 30; 0: all)")
    p.add_argument("--model", action="append", default=[], help="also tune a local seq2seq model folder (repeatable)")
    p.add_argument("--max-tokens", type=int, help="cap the output length of the --model settings (default: theirs)")
    p.add_argument("--no-bundled", action="store_true", help=f"skip the bundled {BUNDLED_LLM} (llm backend)")
    p.add_argument("--no-heavy", action="store_true", help="skip the slow transformers bfloat16 llm setting")
    p.add_argument("--speaker", action="append", help="speakers to measure (default: every available one)")
    p.add_argument("--dry-run", action="store_true", help="list the candidates and exit")
    ns = p.parse_args(argv)

    from benchmarks.quality import load_corpus
    from serve import auto, hardware

    t_cands = translator_candidates(ns.model, not ns.no_bundled, not ns.no_heavy, ns.max_tokens)
    s_cands = speaker_candidates(ns.speaker)
    hw = hardware.probe(with_runtimes=False)
    if ns.dry_run or not t_cands or not s_cands:
        for c in [*t_cands, *s_cands]:
            tag = " (float32 reference)" if c.reference else ""
            print(f"{c.role:10} {c.label}{tag}" + (f"  [{c.model}]" if c.model else ""))
        print(f"profile: {auto.profile_path(hw['key'])}")
        if not ns.dry_run:
            print("hayaku tune: nothing to tune (no translator or no speaker candidates)", file=sys.stderr)
            return 2
        return 0
    pairs = load_corpus("en-ja", ns.limit or None)
    print(f"tuning {len(t_cands)} translator and {len(s_cands)} speaker settings on {len(pairs)} sentences, "
          f"budget {ns.budget_s:.0f} s", file=sys.stderr)  # fmt: skip
    t_rows, s_rows = sweep(t_cands, s_cands, pairs, ns.budget_s)
    t_rows = judge(t_rows)
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    md = table(t_rows, s_rows, combine(t_rows, s_rows))
    print(md)
    profile, message = build_profile(t_rows, s_rows, hw, created)
    if profile is None:
        print(f"hayaku tune: no profile written: {message}", file=sys.stderr)
        return 1
    header = f"Tuned by `hayaku tune` on {created} ({len(pairs)} corpus sentences).\nWinner: {message}\n\n{md}"
    path = auto.write_profile(hw["key"], profile, header=_comment(header))
    print(f"winner: {message}\nwrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
