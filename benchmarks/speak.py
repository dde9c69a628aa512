"""Times every available speaker and voice on a short and a long Japanese text, interleaved.

    python -m benchmarks.speak [--rounds 3] [--speaker openjtalk] [--all-voices [kokoro ...]]

For each speaker (its default voice; every voice of the speakers ``--all-voices`` names, or of
all of them when it names none: espeak has ~100 variants):

- total: synthesis of the whole text in one call;
- first audio: synthesis of the text's first sentence alone, which is when the streaming routes
  (``stream: true``, ``/v1/stream``) send their first audio, since they speak sentence by sentence;
  for the one-sentence short text it equals the total;
- real-time factor: total synthesis time / audio duration (< 1 is faster than real time);
- memory: resident memory the speaker added to this process (after loading it and speaking
  both texts), and its load time.

All calls of all speakers run interleaved (A B C, A B C, ...) after one warm-up each.
"""

from __future__ import annotations

import argparse
import functools
import sys
from typing import Any

from backends.registry import SPEAKERS, create_speaker, speaker_class
from backends.text import split_sentences
from benchmarks.common import bar_chart, interleave, markdown_table, rss_mb, write_result

TEXTS = {
    "short": "こんにちは、お元気ですか？",
    "long": "本日は晴天なり。明日の会議では、新しい翻訳システムの速度と品質について、"
    "皆さんと一緒に詳しく検討したいと思いますので、資料を事前にご確認ください。",
}
HEADERS = ["speaker", "voice", "text", "chars", "audio s", "first audio ms", "total ms", "RTF", "RSS MB", "load s"]


def load_speakers(names: list[str] | None, include_synthetic: bool) -> dict[str, tuple[Any, float]]:
    """{name: (loaded speaker, RSS MiB it added)} for the speakers that run here.

    Each is loaded and speaks both texts once before the next is loaded, so its RSS growth is its own.
    """
    out: dict[str, tuple[Any, float]] = {}
    for name in names or list(SPEAKERS):
        cls = speaker_class(name)
        reason = cls.unavailable_reason(None)
        if reason or (cls.synthetic and not include_synthetic):
            if reason:
                print(f"skip {name}: {reason}", file=sys.stderr)
            continue
        before = rss_mb()
        print(f"load {name} ...", file=sys.stderr, flush=True)
        sp = create_speaker(name)
        sp.load()
        for text in TEXTS.values():
            sp.synthesize(text)
        out[name] = (sp, rss_mb() - before)
    return out


def _speak(sp: Any, text: str, voice: str) -> dict[str, float]:
    """One timed synthesis; its audio duration rides along in the sample, so no call is repeated for it."""
    return {"duration_s": sp.synthesize(text, "ja", voice).duration_s}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.speak", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    p.add_argument("--speaker", action="append", choices=sorted(SPEAKERS), help="only these (repeatable)")
    p.add_argument("--all-voices", nargs="*", metavar="SPEAKER",
                   help="every voice of these speakers (of all when none is named), not only the default")  # fmt: skip
    p.add_argument("--include-synthetic", action="store_true", help="also time the tone speaker")
    ns = p.parse_args(argv)
    speakers = load_speakers(ns.speaker, ns.include_synthetic)
    if not speakers:
        print("no speaker runs on this machine", file=sys.stderr)
        return 2
    every = set(speakers) if ns.all_voices == [] else set(ns.all_voices or ())
    voices = {
        n: (list(sp.list_voices()) if n in every and sp.list_voices() else [sp.voice or sp.default_voice])
        for n, (sp, _) in speakers.items()
    }
    firsts = {k: split_sentences(text, "ja")[0] for k, text in TEXTS.items()}
    calls: dict[str, Any] = {}
    for n, (sp, _) in speakers.items():
        for v in voices[n]:
            for k, text in TEXTS.items():
                calls[f"{n} {v} {k}"] = functools.partial(_speak, sp, text, v)
                if firsts[k] != text:
                    calls[f"{n} {v} {k} first"] = functools.partial(_speak, sp, firsts[k], v)
    series = interleave(calls, rounds=ns.rounds)
    rows = []
    for n, (sp, added) in speakers.items():
        for v in voices[n]:
            for k, text in TEXTS.items():
                whole = series[f"{n} {v} {k}"]
                duration = next(x.extra["duration_s"] for x in whole.samples if x.ok)
                total = whole.median()
                first = series[f"{n} {v} {k} first"].median() if firsts[k] != text else total
                rows.append(
                    [n, v, k, len(text), duration, first, total, total / 1000 / duration, added,
                     (sp.load_ms or 0) / 1000]
                )  # fmt: skip
    table = markdown_table(HEADERS, rows)
    print(table)
    notes = (
        f"{ns.rounds} interleaved rounds after one warm-up. First audio: synthesis of the first sentence "
        f"alone ({firsts['long']!r} for the long text), when the streaming routes send their first audio. "
        "RTF: total synthesis time / audio duration (< 1 is faster than real time). RSS MB: resident memory "
        "the speaker added to the process when loaded and speaking both texts once (before the next was "
        "loaded; onnxruntime and torch allocator arenas make it approximate). Chart: speak.png."
    )
    data = [dict(zip(HEADERS, r, strict=True)) for r in rows]
    path = write_result("speak", "Speakers, one interleaved run", table, notes, data=data)
    labels = [f"{r[0]} {r[1]} {r[2]}" for r in rows]
    png = bar_chart("speak", labels, {"first audio": [r[5] for r in rows], "total": [r[6] for r in rows]},
                    "synthesis ms (log scale)", log=True)  # fmt: skip
    print(f"wrote {path} and {png}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
