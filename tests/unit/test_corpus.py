"""The en-ja corpus split: the dev part (en-ja.tsv) and the held-out test part (en-ja-test.tsv).

Nothing is tuned on the test part: its English sentences appear neither in the dev part nor among
the few-shot examples, so chrF on it is an honest measurement.
"""

from __future__ import annotations

import csv
import re
from collections import Counter
from pathlib import Path

import pytest

from backends.llm_mt import FEW_SHOT
from backends.vocab import JAPANESE_CODEC

CORPUS = Path(__file__).resolve().parents[2] / "benchmarks" / "corpus"
DEV = CORPUS / "en-ja.tsv"
TEST = CORPUS / "en-ja-test.tsv"
HEADER = ["domain", "en", "ja"]
KANA = re.compile(r"[\u3041-\u309f\u30a0-\u30ff]")


def _rows(path: Path) -> list[list[str]]:
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))


def _norm(text: str) -> str:
    """Lower case, punctuation and spacing dropped: how a near-copy of a sentence is recognised."""
    return " ".join(re.findall(r"[a-z0-9]+", text.lower().replace("'", "")))


@pytest.mark.parametrize("path", [DEV, TEST], ids=["dev", "test"])
def test_header_and_three_columns(path: Path) -> None:
    rows = _rows(path)
    assert rows[0] == HEADER
    for n, row in enumerate(rows[1:], start=2):
        assert len(row) == 3, f"{path.name}:{n}: {row}"
        assert all(field and field == field.strip() for field in row), f"{path.name}:{n}: {row}"
    assert path.read_bytes().endswith(b"\n")


def test_test_part_is_large_enough_in_every_domain() -> None:
    body = _rows(TEST)[1:]
    assert len(body) >= 150
    domains = Counter(row[0] for row in body)
    for domain in ("everyday", "travel", "business"):
        assert domains[domain] >= 40, domains


def test_test_part_is_held_out_from_dev_and_few_shot() -> None:
    dev = {_norm(row[1]) for row in _rows(DEV)[1:]}
    shots = {_norm(src) for examples in FEW_SHOT.values() for src, _ in examples}
    assert shots, "FEW_SHOT has no examples to check against"
    for row in _rows(TEST)[1:]:
        assert _norm(row[1]) not in dev, f"in the dev part: {row[1]}"
        assert _norm(row[1]) not in shots, f"a few-shot example: {row[1]}"


def test_test_part_has_no_duplicate_sentences() -> None:
    sources = Counter(_norm(row[1]) for row in _rows(TEST)[1:])
    assert [s for s, n in sources.items() if n > 1] == []


@pytest.mark.parametrize("path", [DEV, TEST], ids=["dev", "test"])
def test_references_are_japanese(path: Path) -> None:
    for row in _rows(path)[1:]:
        assert KANA.search(row[2]), f"no kana: {row[2]}"
        # only characters written in Japanese (no simplified-Chinese-only Han)
        row[2].encode(JAPANESE_CODEC)
