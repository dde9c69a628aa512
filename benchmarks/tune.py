"""``hayaku tune``: measure every setting this machine can run, write the fastest as the tuned profile.

    hayaku tune                       # bundled Qwen through llm, every available speaker, configs/
    hayaku tune --model ./my-marian   # also a local seq2seq model (transformers / ctranslate2)
    hayaku tune --dry-run             # list the candidates and configs, measure nothing
    hayaku tune --sweep sweep.yaml    # also these settings: translators: [{backend, model, options,
                                      # reference}], speakers: [{backend, voice, options}]

Two passes over the corpus (``benchmarks/corpus``, ``--limit`` sentences, 24 by default):

1. Quality: each setting alone (one model in memory at a time) translates every sentence.
   For each translator model its float32 setting is the quality reference: every other
   setting of that model is rejected when its chrF falls more than 1 point below the
   reference's. Speakers synthesize the corpus references.
2. Ranking, interleaved: the fastest accepted translators of pass 1 (``--finalists``), the
   translators of the configs in ``configs/``, and every speaker, loaded together and run
   sentence by sentence in rotating order (A B C, B C A, ...), so machine noise lands on all
   of them alike. A pair's figure is the median over sentences of translation + speech of
   the same sentence.

The winner is the fastest pair whose speaker is in the best quality tier available for the
target language (``SPEAKER_TIERS``: espeak does not read kanji, so it is chosen for Japanese
only when no other speaker runs). The pick is never slower than a config in ``configs/``:
each config that runs here (``auto`` stages resolved by preference, not by an old profile) is
measured in the same ranking run, and when the fastest of them beats the sweep's winner, it
becomes the pick. It is written to ``HAYAKU_HOME/profiles/<hardware-key>.yaml`` (the format
``backend: auto`` reads, see graph/auto.py) with the table as YAML comments and in
``measurements``.

A setting or config that fails (exception, unavailable, out of budget) is a row marked failed
with its reason; the sweep goes on. No profile is written unless a reference, an accepted
translator (or a config) and a speaker were all fully measured in both passes; an
interrupted run (Ctrl-C) writes none either.

The selection (``judge``, ``combine``, ``config_combos``, ``build_profile``) is pure: rows in,
profile out.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: a faster setting may lose at most this many chrF points against its model's float32 reference
CHRF_TOLERANCE = 1.0
BUNDLED_LLM = "qwen2.5-coder-1.5b-instruct"
CONFIGS = Path(__file__).resolve().parents[1] / "configs"
#: Ray pins OMP_NUM_THREADS=1 in replicas, so a runtime left at its default decodes on one core
#: there; every candidate names its thread count, and the profile carries it to the replica
CORES = max(1, os.cpu_count() or 1)
#: speaker quality tiers per target language, lower is better; unlisted speakers are tier 0.
#: espeak-ng is formant synthesis and does not read kanji (it spells or skips them)
SPEAKER_TIERS: dict[str, dict[str, int]] = {"ja": {"espeak": 1}}
TIER_NOTES = {0: "natural", 1: "formant, does not read kanji"}


@dataclass
class Candidate:
    """One setting to measure. ``reference`` marks the float32 quality anchor of ``model``;
    ``configs`` names the files of configs/ whose graph runs this setting."""

    role: str  # "translator" | "speaker"
    backend: str
    options: dict[str, Any] = field(default_factory=dict)
    model: str | None = None
    voice: str | None = None
    reference: bool = False
    label: str = ""
    configs: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.label:
            opts = " ".join(f"{k}={v}" for k, v in self.options.items())
            self.label = " ".join(x for x in (self.backend, opts, self.voice or "") if x)

    def key(self) -> str:
        """Identity of what runs: two candidates with the same key are one measurement."""
        opts = json.dumps(self.options, sort_keys=True, default=str)
        return f"{self.role}|{self.backend}|{self.model or ''}|{opts}|{self.voice or ''}"


def translator_candidates(
    models: Sequence[str], bundled: bool = True, heavy: bool = False, max_tokens: int | None = None
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
        ct2 = {"runtime": "ctranslate2", "compute_type": "int8", "threads": CORES}
        torch = {"runtime": "transformers", "threads": CORES}
        out += [
            # the float32 reference on CTranslate2: the int8 settings differ from it in precision
            # alone (same runtime, same cached prompt prefix), and it is ~3x faster than torch here
            Candidate("translator", "llm", {**ct2, "compute_type": "float32"}, m, reference=True),
            Candidate("translator", "llm", {"runtime": "llama.cpp", "threads": CORES}, m),
            Candidate("translator", "llm", ct2, m),
            Candidate("translator", "llm", {**ct2, "few_shot": 2}, m),
            Candidate("translator", "llm", {**ct2, "max_length_ratio": 1.5}, m),
        ]
        if heavy:
            out += [
                Candidate("translator", "llm", {**torch, "dtype": "float32"}, m),
                Candidate("translator", "llm", {**torch, "dtype": "bfloat16"}, m),
            ]
    for m in models:
        tf = {"num_beams": 1, "threads": CORES, **tf_cap}
        ct2 = {"compute_type": "int8", "beam_size": 1, "intra_threads": CORES, **ct2_cap}
        out += [
            Candidate("translator", "transformers", {"dtype": "float32", **tf}, m, reference=True),
            Candidate("translator", "ctranslate2", ct2, m),
            Candidate("translator", "ctranslate2", {**ct2, "output_vocab": "target"}, m),
            Candidate("translator", "transformers", {"dtype": "float32", "quantize": "int8", **tf}, m),
            Candidate(
                "translator",
                "transformers",
                {"dtype": "float32", "quantize": "int8", "loop": "greedy", "output_vocab": "target", **tf},
                m,
            ),
            Candidate("translator", "transformers", {"dtype": "bfloat16", **tf}, m),
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


class SweepFileError(ValueError):
    """A sweep file that cannot be read as one (its entries' backends and options are checked when measured)."""


SWEEP_KEYS = {
    "translators": {"backend", "model", "options", "reference"},
    "speakers": {"backend", "model", "options", "voice"},
}


def sweep_candidates(path: Path) -> list[Candidate]:
    """The settings a sweep file lists, float32 references first (the others of a model are judged by them).

    ``translators: [{backend, model?, options?, reference?}]``, ``speakers: [{backend, voice?,
    model?, options?}]``. The file's shape is checked here; an unknown backend or option is not: it
    becomes that setting's failed row, and the sweep goes on.
    """
    import yaml

    where = str(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise SweepFileError(f"{where}: cannot read it as YAML: {exc}") from None
    if not isinstance(data, dict) or not data:
        raise SweepFileError(f"{where}: expected a mapping with translators: and/or speakers: lists")
    unknown = sorted(set(map(str, data)) - set(SWEEP_KEYS))
    if unknown:
        raise SweepFileError(f"{where}: unknown key(s) {', '.join(unknown)}; valid: {', '.join(SWEEP_KEYS)}")
    out: list[Candidate] = []
    for key, allowed in SWEEP_KEYS.items():
        entries = data.get(key) or []
        if not isinstance(entries, list):
            raise SweepFileError(f"{where}.{key}: expected a list of settings")
        role = key[:-1]
        for i, e in enumerate(entries):
            at = f"{where}.{key}[{i}]"
            if not isinstance(e, dict) or not isinstance(e.get("backend"), str):
                raise SweepFileError(f"{at}: expected a mapping with a backend: name")
            extra = sorted(set(map(str, e)) - allowed)
            if extra:
                raise SweepFileError(f"{at}: unknown key(s) {', '.join(extra)}; valid: {', '.join(sorted(allowed))}")
            if not isinstance(e.get("options") or {}, dict):
                raise SweepFileError(f"{at}.options: expected a mapping of option: value")
            for name in ("model", "voice"):
                if e.get(name) is not None and not isinstance(e[name], str):
                    raise SweepFileError(f"{at}.{name}: expected a string")
            out.append(
                Candidate(role, e["backend"], dict(e.get("options") or {}), e.get("model"), e.get("voice"),
                          reference=role == "translator" and e.get("reference") is True)
            )  # fmt: skip
    return sorted(out, key=lambda c: not c.reference)


def config_candidates(
    paths: Sequence[Path], hw: dict[str, Any]
) -> tuple[list[dict[str, Any]], list[Candidate], list[Candidate]]:
    """(config rows, translator candidates, speaker candidates) of the configs in ``paths``.

    Each file's first hayaku application is resolved on this machine as ``serve run`` would
    resolve it without a tuned profile; one that cannot run here, or runs only test backends,
    is a failed row with the reason.
    """
    from backends.registry import speaker_class, translator_class
    from graph.auto import resolve_graph
    from graph.yaml_files import load_app_args

    rows: list[dict[str, Any]] = []
    ts: list[Candidate] = []
    ss: list[Candidate] = []
    for path in paths:
        row: dict[str, Any] = {"config": path.name, "ok": False}
        rows.append(row)
        try:
            graph = resolve_graph(load_app_args(path)[0].args, hw, where=str(path), use_profile=False)
            t, s = graph.translator, graph.speaker
            if translator_class(t.backend).synthetic or speaker_class(s.backend).synthetic:
                raise RuntimeError(f"test backends ({t.backend} + {s.backend}) are never a tuning choice")
        except Exception as exc:  # a config that cannot run here is a row, not the end of the sweep
            row["reason"] = f"{type(exc).__name__}: {exc}"[:300]
            continue
        # the backend's default model named or not is one setting too
        model = _build(Candidate("translator", t.backend, dict(t.options), t.model)).model
        tc = Candidate("translator", t.backend, dict(t.options), model, configs=[path.name])
        # the default voice named or not is one setting
        voice = None if s.voice == speaker_class(s.backend).default_voice else s.voice
        sc = Candidate("speaker", s.backend, dict(s.options), s.model, voice=voice, configs=[path.name])
        row.update(ok=True, translator=tc.key(), speaker=sc.key())  # keys: labels once merged
        ts.append(tc)
        ss.append(sc)
    return rows, ts, ss


def name_configs(rows: list[dict[str, Any]], cands: Sequence[Candidate]) -> None:
    """Replaces the candidate keys in config rows by the (merged) candidates' labels."""
    label = {c.key(): c.label for c in cands}
    for r in rows:
        for role in ("translator", "speaker"):
            if role in r:
                r[role] = label.get(r[role], r[role])


def unique_labels(cands: Sequence[Candidate]) -> None:
    """Adds the model's name to labels that several models share (rows are found by label)."""
    seen: dict[str, int] = {}
    for c in cands:
        seen[c.label] = seen.get(c.label, 0) + 1
    for c in cands:
        if seen[c.label] > 1 and c.model:
            c.label = f"{c.label} [{Path(c.model).name}]"


def merge(cands: list[Candidate], extra: Sequence[Candidate]) -> list[Candidate]:
    """``cands`` plus those of ``extra`` not already there; a duplicate adds its configs to the original."""
    out = list(cands)
    by_key = {c.key(): c for c in out}
    for c in extra:
        same = by_key.get(c.key())
        if same is None:
            by_key[c.key()] = c
            out.append(c)
        else:
            same.configs += [n for n in c.configs if n not in same.configs]
    return out


# -- selection: pure functions over measured rows ---------------------------------------------


def _median(xs: Sequence[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def speaker_tier(row: dict[str, Any], target_lang: str = "ja") -> int:
    """The quality tier of a speaker row for ``target_lang``: 0 is the best."""
    return SPEAKER_TIERS.get(target_lang, {}).get(str(row.get("backend")), 0)


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


def _pair(t: dict[str, Any], s: dict[str, Any]) -> dict[str, Any]:
    n = min(len(t["ms"]), len(s["ms"]))
    totals = [t["ms"][i] + s["ms"][i] for i in range(n)]
    return {"translator": t["label"], "speaker": s["label"], "p50_ms": _median(totals), "n": n}


def _ranked(r: dict[str, Any]) -> bool:
    return bool(r.get("ok")) and bool(r.get("ranked", True)) and bool(r.get("ms"))


def combine(
    translators: list[dict[str, Any]], speakers: list[dict[str, Any]], target_lang: str = "ja"
) -> list[dict[str, Any]]:
    """Every accepted translator x ok non-synthetic speaker, best first: by speaker tier, then
    by the median end-to-end ms.

    End to end is, per sentence, translation time + speech time of that sentence (timed in the
    same round of the ranking run); the median is over sentences, so a pair is ranked on what
    one request costs, not on two medians. Rows with ``ranked: False`` (not in the ranking
    run) take no part.
    """
    combos = []
    for t in translators:
        if not t.get("accepted") or not _ranked(t):
            continue
        for s in speakers:
            if not _ranked(s) or s.get("synthetic"):
                continue
            combos.append({**_pair(t, s), "tier": speaker_tier(s, target_lang)})
    return sorted(combos, key=lambda c: (c["tier"], c["p50_ms"]))


def config_combos(
    configs: list[dict[str, Any]], translators: list[dict[str, Any]], speakers: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The end-to-end figure of each config that ran, fastest first (quality verdicts aside:
    a config is what the project ships, so the pick must beat it, whatever its chrF)."""
    t_by, s_by = {r["label"]: r for r in translators}, {r["label"]: r for r in speakers}
    out = []
    for c in configs:
        t, s = t_by.get(c.get("translator", "")), s_by.get(c.get("speaker", ""))
        if c.get("ok") and t is not None and s is not None and _ranked(t) and _ranked(s):
            out.append({**_pair(t, s), "config": c["config"], "tier": speaker_tier(s)})
    return sorted(out, key=lambda c: c["p50_ms"])


def _public(row: dict[str, Any]) -> dict[str, Any]:
    """A row as recorded in the profile: no per-sentence lists or outputs."""
    return {k: v for k, v in row.items() if k not in ("ms", "first_ms", "outputs")}


def row_text(t: dict[str, Any], s: dict[str, Any], combo: dict[str, Any]) -> str:
    """The winner's table row in one line (it ends up in GET /v1/graph's reason)."""
    delta = t.get("chrf_delta")
    quality = f"chrF {t['chrf']:.1f}" + (f" ({delta:+.2f} vs float32)" if delta is not None else "")
    return (
        f"{t['label']} ({t.get('model')}) + {s['label']}: p50 {combo['p50_ms']:.0f} ms end to end over "
        f"{combo['n']} sentences (translate {t['p50_ms']:.0f} ms, speak {s['p50_ms']:.0f} ms), {quality}"
    )


def build_profile(
    translators: list[dict[str, Any]],
    speakers: list[dict[str, Any]],
    hardware: dict[str, Any],
    created: str,
    configs: list[dict[str, Any]] | None = None,
) -> tuple[dict[str, Any] | None, str]:
    """(profile, message): the profile to write, or None and why not. ``translators`` must be judged."""
    configs = configs or []
    if not any(r.get("reference") and r.get("ok") for r in translators):
        return None, "no float32 reference was fully measured, so no setting could be quality-checked"
    combos = combine(translators, speakers)
    fallbacks = config_combos(configs, translators, speakers)
    if not combos and not fallbacks:
        why = "no translator passed the quality check" if not any(r.get("accepted") for r in translators) else ""
        return None, why or "no speaker was fully measured"
    best = combos[0] if combos else None
    note = ""
    if fallbacks and (best is None or fallbacks[0]["p50_ms"] < best["p50_ms"]):
        beaten = f"{best['p50_ms']:.0f} ms" if best else "no accepted setting"
        note = f" [configs/{fallbacks[0]['config']}: faster than the sweep's best ({beaten}), so kept]"
        best = fallbacks[0]
    assert best is not None
    t = next(r for r in translators if r["label"] == best["translator"])
    s = next(r for r in speakers if r["label"] == best["speaker"])
    text = row_text(t, s, best) + note
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
            "configs": [{**c, **next((f for f in fallbacks if f["config"] == c["config"]), {})} for c in configs],
        },
    }
    return profile, text


def table(
    translators: list[dict[str, Any]],
    speakers: list[dict[str, Any]],
    combos: list[dict[str, Any]],
    configs: list[dict[str, Any]] | None = None,
) -> str:
    """The measured tables, as markdown."""
    from benchmarks.common import markdown_table

    def num(r: dict[str, Any], k: str) -> Any:
        v = r.get(k)
        return "-" if v is None else v

    def ranking(r: dict[str, Any]) -> Any:
        return num(r, "p50_ms") if r.get("ranked") else "-"

    t_rows = [
        [
            r["label"],
            r.get("model") or "-",
            num(r, "first_p50_ms"),
            ranking(r),
            num(r, "chrf"),
            num(r, "chrf_delta"),
            r.get("verdict", "") + (f" (in {', '.join(r['configs'])})" if r.get("configs") else ""),
        ]
        for r in translators
    ]
    s_rows = [
        [
            r["label"],
            r.get("voice") or "-",
            num(r, "first_p50_ms"),
            ranking(r),
            f"{speaker_tier(r)} ({TIER_NOTES.get(speaker_tier(r), '')})",
            "ok" if r.get("ok") else r.get("reason", ""),
        ]
        for r in speakers
    ]
    c_rows = [[c["translator"], c["speaker"], c["p50_ms"], c["n"], c["tier"]] for c in combos]
    fast = {f["config"]: f for f in config_combos(configs or [], translators, speakers)}
    g_rows = [
        [
            c["config"],
            c.get("translator", "-"),
            c.get("speaker", "-"),
            fast[c["config"]]["p50_ms"] if c["config"] in fast else "-",
            "measured" if c["config"] in fast else (c.get("reason") or "not measured (a stage failed)"),
        ]
        for c in configs or []
    ]
    tables = [
        markdown_table(
            ["translator", "model", "pass 1 p50 ms", "ranking p50 ms", "chrF", "delta vs float32", "verdict"], t_rows
        ),
        markdown_table(["speaker", "voice", "pass 1 p50 ms", "ranking p50 ms", "tier", "status"], s_rows),
        markdown_table(
            ["translator", "speaker", "end-to-end p50 ms", "sentences", "speaker tier"],
            c_rows or [["-", "-", "-", "-", "-"]],
        ),
    ]
    if g_rows:
        tables.append(markdown_table(["config", "translator", "speaker", "end-to-end p50 ms", "status"], g_rows))
    return "\n\n".join(tables)


# -- measuring --------------------------------------------------------------------------------


class OutOfBudget(Exception):
    """The time budget ran out in the middle of a setting."""


def bar(done: int, total: int, width: int = 20) -> str:
    """A text progress bar: ``[#######.............] 7/20``."""
    filled = round(width * done / total) if total else width
    return f"[{'#' * filled}{'.' * (width - filled)}] {done}/{total}"


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
            say(f"  {label}: {bar(i + 1, len(items))} sentences")
    return outputs, ms


def _build(cand: Candidate) -> Any:
    from backends.registry import create_speaker, create_translator

    if cand.role == "translator":
        return create_translator(cand.backend, model=cand.model, options=cand.options)
    return create_speaker(cand.backend, model=cand.model, options=cand.options, voice=cand.voice)


def _load(cand: Candidate) -> Any:
    """The candidate's backend, built as a replica builds it (graph.stages: loaded and warmed up with one
    tiny call); raises with the reason when it cannot run."""
    from backends.base import DEFAULT_MAX_CHARS
    from graph.stages import build_speaker, build_translator

    unbuilt = _build(cand)
    reason = type(unbuilt).unavailable_reason(unbuilt.model)
    unbuilt.close()
    if reason:
        raise RuntimeError(f"unavailable: {reason}")
    stage = {"backend": cand.backend, "model": cand.model, "options": cand.options}
    if cand.role == "translator":
        return build_translator(stage, DEFAULT_MAX_CHARS, "en", "ja")
    return build_speaker({**stage, "voice": cand.voice}, DEFAULT_MAX_CHARS, "ja")


def _base_row(cand: Candidate) -> dict[str, Any]:
    row: dict[str, Any] = {"role": cand.role, "label": cand.label, "backend": cand.backend, "model": cand.model,
                           "options": cand.options, "ok": False}  # fmt: skip
    if cand.role == "translator":
        row["reference"] = cand.reference
    if cand.configs:
        row["configs"] = list(cand.configs)
    return row


def _measure(row: dict[str, Any], cand: Candidate, run: Callable[[Any], None]) -> dict[str, Any]:
    """Builds and loads one backend, lets ``run`` fill ``row``; any failure becomes the row's reason."""
    backend = None
    try:
        if cand.role == "speaker":
            row["synthetic"] = bool(type(_build(cand)).synthetic)  # known before loading: failed rows carry it
        backend = _load(cand)
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
    from benchmarks.quality import chrf

    row = _base_row(cand)

    def run(tr: Any) -> None:
        row["load_s"] = (tr.load_ms or 0.0) / 1000.0
        outputs, ms = _corpus_run(
            lambda s: tr.translate([s], "en", "ja")[0].text, [p.source for p in pairs], deadline, cand.label, say
        )
        row.update(ms=ms, outputs=outputs, p50_ms=_median(ms), chrf=chrf(outputs, [p.reference for p in pairs]))

    return _measure(row, cand, run)


def measure_speaker(
    cand: Candidate, texts: Sequence[str], deadline: float, say: Callable[[str], None]
) -> dict[str, Any]:
    """One speaker on the corpus references: a row with per-sentence ms, or failed with the reason."""
    row = _base_row(cand)

    def run(sp: Any) -> None:
        row["voice"] = sp.voice or sp.default_voice

        def speak(text: str) -> str:
            sp.synthesize(text, "ja")
            return ""

        _, ms = _corpus_run(speak, texts, deadline, cand.label, say)
        row.update(ms=ms, p50_ms=_median(ms), load_s=(sp.load_ms or 0.0) / 1000.0)

    return _measure(row, cand, run)


class Progress:
    """``[tune  123/1200 s] [####........] 3/12 ...`` lines on stderr."""

    def __init__(self, budget_s: float, total: int) -> None:
        self.start, self.budget_s, self.total, self.done = time.monotonic(), budget_s, total, 0

    def __call__(self, msg: str) -> None:
        el = time.monotonic() - self.start
        print(f"[tune {el:5.0f}/{self.budget_s:.0f} s] {msg}", file=sys.stderr, flush=True)

    def step(self, msg: str) -> None:
        self.done += 1
        self(f"{bar(self.done, self.total)} {msg}")


def sweep(
    translators: Sequence[Candidate],
    speakers: Sequence[Candidate],
    pairs: Sequence[Any],
    deadline: float,
    say: Progress,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Pass 1: every candidate alone on the corpus until ``deadline``; rows past it are failed rows."""
    t_rows: list[dict[str, Any]] = []
    s_rows: list[dict[str, Any]] = []
    failed_refs: set[str | None] = set()
    # speakers first: they are cheap, and every translator row needs one to be worth anything
    for cand in [*speakers, *translators]:
        say.step(f"{cand.role} {cand.label}" + (f" [{cand.model}]" if cand.model else ""))
        row = _base_row(cand)
        if time.monotonic() > deadline:
            row["reason"] = "time budget exhausted before it was measured"
        elif cand.role == "translator" and not cand.reference and cand.model in failed_refs:
            row["reason"] = "not measured: its float32 reference failed"
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


def finalists(t_rows: list[dict[str, Any]], count: int) -> list[dict[str, Any]]:
    """The translators of the ranking run: the ``count`` fastest accepted ones of pass 1, and
    every ok translator a config uses."""
    accepted = sorted((r for r in t_rows if r.get("accepted")), key=lambda r: r["p50_ms"])[:count]
    chosen = {r["label"] for r in accepted} | {r["label"] for r in t_rows if r.get("ok") and r.get("configs")}
    return [r for r in t_rows if r["label"] in chosen]


def ranking_run(
    t_rows: list[dict[str, Any]],
    s_rows: list[dict[str, Any]],
    cands: dict[str, Candidate],
    pairs: Sequence[Any],
    deadline: float,
    say: Progress,
) -> None:
    """Pass 2: the given rows' backends loaded together, sentence by sentence in rotating order.

    Each row gets ``ranked``, its pass-1 figures under ``first_*`` and the ranking run's
    per-sentence ``ms``/``p50_ms``. A backend that fails here is a failed row. Raises
    OutOfBudget when the run cannot finish: a partial ranking is never used.
    """
    rows = [*t_rows, *s_rows]
    loaded: dict[str, Any] = {}
    try:
        for r in rows:
            say(f"  loading {r['role']} {r['label']} for the ranking run")
            try:
                loaded[r["label"]] = _load(cands[r["label"]])
            except Exception as exc:  # it ran in pass 1; if it cannot now, it is out of the ranking
                r.update(ok=False, ranked=False, reason=f"ranking run: {type(exc).__name__}: {exc}"[:300])

        live = [r for r in rows if r["label"] in loaded]
        times: dict[str, list[float]] = {r["label"]: [] for r in live}

        def attempt(r: dict[str, Any], i: int) -> float | None:
            b, start = loaded[r["label"]], time.perf_counter()
            try:
                if r["role"] == "translator":
                    b.translate([pairs[i].source], "en", "ja")
                else:
                    b.synthesize(pairs[i].reference, "ja")
            except Exception as exc:  # a crash mid-run drops the setting, not the run
                r.update(ok=False, ranked=False, reason=f"ranking run: {type(exc).__name__}: {exc}"[:300])
                del times[r["label"]]
                return None
            return (time.perf_counter() - start) * 1000.0

        for r in live:
            attempt(r, 0)  # warm-up, untimed
        for i in range(len(pairs)):
            if time.monotonic() > deadline:
                raise OutOfBudget(f"time budget ran out in the ranking run after {i}/{len(pairs)} sentences")
            k = i % len(live)
            for r in live[k:] + live[:k]:
                if r["label"] in times and (ms := attempt(r, i)) is not None:
                    times[r["label"]].append(ms)
            say(f"  ranking run: {bar(i + 1, len(pairs))} sentences")
        for r in live:
            if r["label"] in times:
                r.update(first_ms=r.get("ms"), ms=times[r["label"]], p50_ms=_median(times[r["label"]]), ranked=True)
    finally:
        for b in loaded.values():
            b.close()


def _comment(text: str) -> str:
    return "\n".join("# " + line if line else "#" for line in text.splitlines())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="hayaku tune", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--budget-s", type=float, default=1200.0, help="time budget for the whole sweep (default 1200)")
    p.add_argument("--limit", type=int, default=24, help="corpus sentences per setting (default 24; 0: all)")
    p.add_argument("--model", action="append", default=[], help="also tune a local seq2seq model folder (repeatable)")
    p.add_argument("--max-tokens", type=int, help="cap the output length of the --model settings (default: theirs)")
    p.add_argument("--sweep", type=Path, action="append", default=[],
                   help="also the settings a sweep file lists (YAML: translators:, speakers:; repeatable)")  # fmt: skip
    p.add_argument("--no-bundled", action="store_true", help=f"skip the bundled {BUNDLED_LLM} (llm backend)")
    p.add_argument("--heavy", action="store_true", help="also the slow torch settings of the llm (float32, bfloat16)")
    p.add_argument("--speaker", action="append", help="speakers to measure (default: every available one)")
    p.add_argument("--configs", type=Path, default=CONFIGS, help=f"configs the pick must beat (default {CONFIGS})")
    p.add_argument("--no-configs", action="store_true", help="do not measure the configs")
    p.add_argument("--finalists", type=int, default=3, help="accepted translators in the ranking run (default 3)")
    p.add_argument("--dry-run", action="store_true", help="list the candidates and exit")
    ns = p.parse_args(argv)

    from benchmarks.quality import load_corpus
    from graph import auto, hardware

    hw = hardware.probe(with_runtimes=False)
    paths = [] if ns.no_configs else sorted(ns.configs.glob("*.yaml"))
    try:
        swept = [c for f in ns.sweep for c in sweep_candidates(f)]
    except SweepFileError as exc:
        print(f"hayaku tune: {exc}", file=sys.stderr)
        return 2
    c_rows, c_ts, c_ss = config_candidates(paths, hw)
    t_cands = translator_candidates(ns.model, not ns.no_bundled, ns.heavy, ns.max_tokens)
    t_cands = merge(merge(t_cands, [c for c in swept if c.role == "translator"]), c_ts)
    s_cands = merge(merge(speaker_candidates(ns.speaker), [c for c in swept if c.role == "speaker"]), c_ss)
    unique_labels(t_cands)
    name_configs(c_rows, [*t_cands, *s_cands])
    if ns.dry_run or not t_cands or not s_cands:
        for c in [*t_cands, *s_cands]:
            tag = " (float32 reference)" if c.reference else ""
            tag += f" (in {', '.join(c.configs)})" if c.configs else ""
            print(f"{c.role:10} {c.label}{tag}" + (f"  [{c.model}]" if c.model else ""))
        for r in c_rows:
            print(
                f"{'config':10} {r['config']}: " + (f"{r['translator']} + {r['speaker']}" if r["ok"] else r["reason"])
            )
        print(f"profile: {auto.profile_path(hw['key'])}")
        if not ns.dry_run:
            print("hayaku tune: nothing to tune (no translator or no speaker candidates)", file=sys.stderr)
            return 2
        return 0
    pairs = load_corpus("en-ja", ns.limit or None)
    print(f"tuning {len(t_cands)} translator and {len(s_cands)} speaker settings ({len(c_rows)} configs) on "
          f"{len(pairs)} sentences, budget {ns.budget_s:.0f} s", file=sys.stderr)  # fmt: skip
    say = Progress(ns.budget_s, len(t_cands) + len(s_cands) + 1)
    # pass 1 may use 70% of the budget; the ranking run gets what is left
    end = say.start + ns.budget_s
    t_rows: list[dict[str, Any]] = []
    s_rows: list[dict[str, Any]] = []
    failure = ""
    try:
        t_rows, s_rows = sweep(t_cands, s_cands, pairs, say.start + 0.7 * ns.budget_s, say)
        t_rows = judge(t_rows)
        by_label = {c.label: c for c in [*t_cands, *s_cands]}
        final_t = finalists(t_rows, ns.finalists)
        final_s = [r for r in s_rows if r.get("ok") and not r.get("synthetic")]
        for r in [*t_rows, *s_rows]:
            r.update(ranked=False, first_p50_ms=r.get("p50_ms"))
        if final_t and final_s:
            round_s = sum(r["p50_ms"] for r in [*final_t, *final_s]) / 1000.0
            n = min(len(pairs), int(0.8 * (end - time.monotonic()) / max(round_s, 1e-3)) - 1)
            if n < min(5, len(pairs)):
                raise OutOfBudget(f"no time left for a ranking run ({round_s:.1f} s per sentence)")
            say.step(f"ranking run: {len(final_t)} translators x {len(final_s)} speakers on {n} sentences")
            ranking_run(final_t, final_s, by_label, pairs[:n], end, say)
    except OutOfBudget as exc:
        failure = str(exc)
    except KeyboardInterrupt:
        failure = "interrupted"
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    md = table(t_rows, s_rows, combine(t_rows, s_rows), c_rows)
    print(md)
    wall = time.monotonic() - say.start
    profile, message = (None, failure) if failure else build_profile(t_rows, s_rows, hw, created, c_rows)
    summary = f"{len(pairs)} corpus sentences, {wall:.0f} s, budget {ns.budget_s:.0f} s"
    if profile is None:
        print(f"hayaku tune: no profile written: {message}", file=sys.stderr)
        _record(md, f"No profile written ({summary}): {message}.", t_rows, s_rows, c_rows)
        return 130 if failure == "interrupted" else 1
    header = f"Tuned by `hayaku tune` on {created} ({summary}).\nWinner: {message}\n\n{md}"
    path = auto.write_profile(hw["key"], profile, header=_comment(header))
    _record(md, f"Winner ({summary}), written to the profile `auto` reads: {message}.", t_rows, s_rows, c_rows)
    print(f"winner: {message}\nwrote {path} in {wall:.0f} s", file=sys.stderr)
    return 0


def _record(md: str, verdict: str, *rows: list[dict[str, Any]]) -> None:
    """results/tune.md: the last run's table on this machine, so the README can link what the tuner saw."""
    from benchmarks.common import write_result

    data = [[_public(r) for r in group] for group in rows]
    write_result("tune", "hayaku tune on this machine", md, verdict, data=data)


if __name__ == "__main__":
    sys.exit(main())
