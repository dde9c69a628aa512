"""Does a sentence spoken clause by clause sound like one sentence? Duration of the joined clauses vs whole.

    hayaku bench clauses                      # every Japanese speaker available here
    hayaku bench clauses --speaker kokoro --limit 40

The streamed routes speak each clause of a translation (backends.text.complete_clauses) as soon as its
text exists, the first sentence's first phrase apart (backends.text.first_phrase), and join the pieces
with a short pause after a comma (graph.pieces.CLAUSE_PAUSE_S), none after a phrase. For every corpus
reference (Japanese) that is one sentence spoken in more than one piece, this speaks it whole and piece by
piece through the orchestrator (``Pipeline.speak``) with the same speaker and voice, and compares the
durations: the issue's bound is 15%. Writes ``results/clauses.md`` and, for listening,
``results/clauses/<speaker>-<i>-{whole,clauses}.wav`` for the first three sentences (not committed).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Any

from benchmarks.common import RESULTS, machine, markdown_table, write_result

JAPANESE_SPEAKERS = ("kokoro", "openjtalk", "espeak")


async def _spoken(pipe: Any, text: str, clauses: bool) -> Any:
    return await pipe.speak(text, clauses=clauses).whole()  # on the loop: the stage calls start as its tasks


def measure(name: str, sentences: list[str], listen: Path | None) -> dict[str, Any]:
    """Each one-sentence reference with 2+ clauses through the served orchestrator: spoken whole, and
    clause by clause as the streamed routes speak it (graph.run joins the clauses)."""
    import asyncio

    from backends.registry import create_speaker
    from backends.text import complete_clauses, first_phrase, split_sentences
    from graph.pipeline import local_pipeline

    pipe = local_pipeline(None, create_speaker(name), target_lang="ja")
    loop = asyncio.new_event_loop()  # one loop: the speaker stage's lock belongs to it
    rows: list[dict[str, Any]] = []
    for text in sentences:
        clauses, _ = complete_clauses(text, "ja", flush=True)
        phrase = bool(first_phrase(clauses[0], "ja")[0]) if clauses else False
        if len(clauses) + phrase < 2 or len(split_sentences(text, "ja")) > 1:
            continue
        whole, joined = (loop.run_until_complete(_spoken(pipe, text, c)) for c in (False, True))
        rows.append(
            {
                "text": text,
                "clauses": len(clauses),
                "phrase": phrase,
                "whole_s": whole.duration_s,
                "joined_s": joined.duration_s,
            }
        )
        if listen is not None and (len(rows) <= 3 or (phrase and sum(r["phrase"] for r in rows) <= 3)):
            listen.mkdir(parents=True, exist_ok=True)
            (listen / f"{name}-{len(rows)}-whole.wav").write_bytes(whole.wav())
            (listen / f"{name}-{len(rows)}-clauses.wav").write_bytes(joined.wav())
    loop.close()
    ratios = [r["joined_s"] / r["whole_s"] for r in rows]
    phrased = [x for x, r in zip(ratios, rows, strict=True) if r["phrase"]]
    return {
        "phrase_split": len(phrased),
        "median_ratio_phrase": statistics.median(phrased) if phrased else None,
        "speaker": name,
        "sentences": len(rows),
        "median_ratio": statistics.median(ratios) if ratios else None,
        "worst_ratio": max(ratios, key=lambda x: abs(x - 1)) if ratios else None,
        "within_15pct": sum(abs(r - 1) <= 0.15 for r in ratios),
        "rows": rows,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="hayaku bench clauses", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--speaker", action="append", help="a speaker backend (repeatable; default: every Japanese one here)"
    )
    p.add_argument("--limit", type=int, default=60, help="corpus references to try (default 60)")
    ns = p.parse_args(argv)
    from backends.registry import speaker_class
    from benchmarks.quality import load_corpus

    names = ns.speaker or [n for n in JAPANESE_SPEAKERS if speaker_class(n).unavailable_reason(None) is None]
    refs = [q.reference for q in [*load_corpus("en-ja"), *load_corpus("en-ja-test")]][: ns.limit]
    results = []
    for name in names:
        print(f"[clauses] {name}: speaking {len(refs)} references whole and clause by clause", file=sys.stderr)
        results.append(measure(name, refs, RESULTS / "clauses"))
    rows = [
        [
            r["speaker"],
            r["sentences"],
            f"{r['median_ratio']:.3f}",
            f"{r['worst_ratio']:.3f}",
            f"{r['within_15pct']}/{r['sentences']}",
            r["phrase_split"],
            f"{r['median_ratio_phrase']:.3f}" if r["phrase_split"] else "-",
        ]
        for r in results
        if r["sentences"]
    ]
    table = markdown_table(
        [
            "speaker",
            "sentences in 2+ pieces",
            "joined / whole duration (median)",
            "farthest from 1",
            "within 15%",
            "of which first phrase apart",
            "their median",
        ],
        rows,
    )
    notes = (
        f"Corpus references (Japanese) of benchmarks/corpus/en-ja*.tsv that are one sentence spoken in more than "
        f"one piece (clauses, and the first phrase apart), among the first {ns.limit}; each spoken whole and piece "
        f"by piece through graph.pipeline (Pipeline.speak, pieces joined as the streamed routes join them: "
        f"graph.pieces.CLAUSE_PAUSE_S after a comma, nothing after a phrase). Machine: {machine()}.\n\n"
        "Listening check: results/clauses/<speaker>-<n>-whole.wav against -clauses.wav for the first three "
        "sentences and the first three with the first phrase apart (written by this run, not committed)."
    )
    path = write_result("clauses", "Clause-by-clause speech vs the whole sentence", table, notes, results)
    print(table)
    print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
