"""A translation memory: example pairs picked for each text by word overlap, for the ``llm`` prompt.

A small model translates better after examples that resemble the text (same words, same kind
of sentence) than after fixed ones. The memory is a TSV file of pairs (columns ``domain``,
the source and the target language code, as in ``benchmarks/corpus``); the bundled one for
en->ja is the project's dev corpus, which was written for the project and shares nothing with
the held-out test part.

Similarity is IDF-weighted word overlap, normalised by both lengths (a cosine over word sets):
no model, ~0.1 ms for 150 pairs, and it prefers pairs sharing rare words ("peanuts",
"Thursday") over pairs sharing "the" and "is".
"""

from __future__ import annotations

import csv
import functools
import math
import re
from collections import Counter
from pathlib import Path

from backends.errors import BackendUnavailable

#: the bundled memories: one file per language pair
MEMORY_DIR = Path(__file__).resolve().parent / "memory"
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def words(text: str) -> set[str]:
    """Lower-cased words of ``text``, plural and past-tense endings folded (cats -> cat, booked -> book)."""
    out = set()
    for w in _WORD.findall(text.lower()):
        for suffix in ("ies", "es", "s", "ed"):
            if len(w) > len(suffix) + 2 and w.endswith(suffix) and not w.endswith("ss"):
                w = w[: -len(suffix)] + ("y" if suffix == "ies" else "")
                break
        out.add(w)
    return out


class Memory:
    """Pairs ``(source, target)`` and the nearest of them to a text."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self.pairs = pairs
        self._words = [words(src) for src, _ in pairs]
        df = Counter(w for ws in self._words for w in ws)
        self._idf = {w: math.log((1 + len(pairs)) / (1 + n)) + 1.0 for w, n in df.items()}
        self._norm = [self._length(ws) for ws in self._words]

    def _length(self, ws: set[str]) -> float:
        # a word the memory never saw weighs as much as the rarest word it did
        top = math.log(1 + len(self.pairs)) + 1.0
        return math.sqrt(sum(self._idf.get(w, top) ** 2 for w in ws)) or 1.0

    @classmethod
    def from_tsv(cls, path: Path, source_lang: str, target_lang: str) -> Memory:
        """The pairs of a TSV file with a header naming the two language columns."""
        try:
            with path.open(encoding="utf-8", newline="") as f:
                rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
            header = rows[0]
            src, tgt = header.index(source_lang), header.index(target_lang)
        except (OSError, IndexError, ValueError) as exc:
            raise BackendUnavailable(
                f"translation memory {path}: not a TSV file with {source_lang} and {target_lang} columns ({exc})"
            ) from None
        return cls([(r[src].strip(), r[tgt].strip()) for r in rows[1:] if len(r) > max(src, tgt)])

    def nearest(self, text: str, k: int, exclude: str | None = None) -> list[tuple[str, str]]:
        """The ``k`` pairs most like ``text`` that share a word with it, least alike first (the closest ends
        next to the text); ``exclude`` leaves out a pair with that source (measuring on the memory itself)."""
        query = words(text)
        if k <= 0 or not query:
            return []
        qnorm = self._length(query)
        scored = []
        for i, ws in enumerate(self._words):
            shared = query & ws
            if shared and self.pairs[i][0] != exclude:
                score = sum(self._idf[w] ** 2 for w in shared) / (qnorm * self._norm[i])
                scored.append((score, -i))
        best = sorted(scored, reverse=True)[:k]
        return [self.pairs[-i] for _, i in reversed(best)]


@functools.lru_cache(maxsize=8)
def memory_from_tsv(path: Path, source_lang: str, target_lang: str) -> Memory:
    """``Memory.from_tsv``, read once per process."""
    return Memory.from_tsv(path, source_lang, target_lang)


def bundled(source_lang: str, target_lang: str) -> Memory | None:
    """The memory shipped for a language pair, or None when there is none."""
    path = MEMORY_DIR / f"{source_lang}-{target_lang}.tsv"
    return memory_from_tsv(path, source_lang, target_lang) if path.is_file() else None
