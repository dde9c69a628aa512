"""Times every available speaker on a short and a long Japanese text, interleaved.

    python -m benchmarks.speak [--rounds 5]

Reports synthesis time, real-time factor (synthesis time / audio duration) and load time.
"""

from __future__ import annotations

import argparse
import functools
import sys
from typing import Any

from backends.registry import SPEAKERS, create_speaker, speaker_class
from benchmarks.common import interleave, markdown_table, write_result

TEXTS = {
    "short": "こんにちは、お元気ですか？",
    "long": "本日は晴天なり。明日の会議では、新しい翻訳システムの速度と品質について、"
    "皆さんと一緒に詳しく検討したいと思いますので、資料を事前にご確認ください。",
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.speak", description=__doc__)
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    p.add_argument("--include-synthetic", action="store_true", help="also time the tone speaker")
    ns = p.parse_args(argv)
    speakers: dict[str, Any] = {}
    for name in SPEAKERS:
        cls = speaker_class(name)
        reason = cls.unavailable_reason(None)
        if reason or (cls.synthetic and not ns.include_synthetic):
            if reason:
                print(f"skip {name}: {reason}", file=sys.stderr)
            continue
        sp = create_speaker(name)
        sp.load()
        speakers[name] = sp
    calls = {
        f"{n} {k}": functools.partial(sp.synthesize, text) for n, sp in speakers.items() for k, text in TEXTS.items()
    }
    series = interleave(calls, rounds=ns.rounds)
    rows = []
    for n, sp in speakers.items():
        for k, text in TEXTS.items():
            res = sp.synthesize(text)
            med = series[f"{n} {k}"].median()
            rows.append(
                [
                    n,
                    sp.voice or sp.default_voice,
                    k,
                    len(text),
                    res.duration_s,
                    med,
                    med / 1000 / res.duration_s,
                    (sp.load_ms or 0) / 1000,
                ]
            )
    table = markdown_table(["speaker", "voice", "text", "chars", "audio s", "median synth ms", "RTF", "load s"], rows)
    print(table)
    path = write_result(
        "speak",
        "Speakers, one interleaved run",
        table,
        f"{ns.rounds} rounds after one warm-up. RTF < 1 is faster than real time.",
        data=rows,
    )
    print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
