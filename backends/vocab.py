"""Output-vocabulary restriction: the token ids a decoder may choose for one target language.

A seq2seq decoder's last layer scores every vocabulary entry at every step (NLLB: 256k
entries x 1024, more than half of the weights a step reads). A translation into Japanese
never needs Cyrillic, Devanagari or simplified-Chinese pieces, so the ``transformers``
(sliced output projection) and ``ctranslate2`` (vocabulary map) backends can score only a
subset and skip those rows altogether. The same ids serve both runtimes, so they agree.

``output_vocab`` (an option of both backends) is one of:

- ``full``: no restriction.
- ``target``: tokens whose characters all belong to the target language's script, or to
  Latin (names, acronyms and units appear in Latin inside Japanese text too), or are
  script-neutral (digits, punctuation, symbols, spaces, byte pieces); for Japanese, Han
  characters outside the Japanese repertoire are excluded as in the ``llm`` backend.
- a path to a text file of allowed token ids (whitespace-separated integers): a list built
  offline, e.g. from a corpus.

Whatever the choice, the ids a decoder needs to run (EOS, unknown, start, the target
language token) are always allowed. A greedy decoder whose full-vocabulary choices all lie
inside the subset produces exactly the same tokens with it (tests check this).
"""

from __future__ import annotations

import functools
import unicodedata
from collections.abc import Iterable, Sequence
from pathlib import Path

from pydantic import Field, field_validator

from backends.base import BackendOptions
from backends.errors import InvalidRequest
from backends.languages import LANGUAGES

FULL = "full"
TARGET = "target"

#: ISO 15924 script (the suffix of NLLB's language codes) -> words of Unicode character names
_SCRIPT_WORDS: dict[str, tuple[str, ...]] = {
    "Latn": ("LATIN",),
    "Jpan": ("HIRAGANA", "KATAKANA", "CJK", "IDEOGRAPHIC"),
    "Hans": ("CJK", "IDEOGRAPHIC", "BOPOMOFO"),
    "Hant": ("CJK", "IDEOGRAPHIC", "BOPOMOFO"),
    "Hang": ("HANGUL", "CJK", "IDEOGRAPHIC"),
    "Cyrl": ("CYRILLIC",),
    "Arab": ("ARABIC",),
    "Deva": ("DEVANAGARI",),
    "Thai": ("THAI",),
    "Grek": ("GREEK",),
    "Hebr": ("HEBREW",),
}
#: the codec whose repertoire is "characters written in Japanese": JIS X 0208 plus the NEC and
#: IBM extensions (every jōyō and jinmeiyō kanji, common name variants), and none of the
#: simplified-Chinese-only forms (过, 场, 这, 们, 时, 对 ...). JIS X 0213 is wider but contains
#: rare kanji that coincide with simplified forms (开, 关), which is what a Chinese-leaning
#: model emits, so it would let them through.
JAPANESE_CODEC = "cp932"
#: SentencePiece's word-boundary mark
_SPACE_MARK = "\u2581"


class OutputVocabOptions(BackendOptions):
    """The ``output_vocab`` option of the seq2seq runtimes that can restrict their output layer."""

    output_vocab: str = Field(
        FULL,
        min_length=1,
        description="Tokens the decoder may choose: 'full'; 'target' (tokens in the target language's script, "
        "Latin or script-neutral: a smaller output layer per step); or a path to a file of allowed token ids. "
        "See backends/vocab.py.",
    )

    @field_validator("output_vocab")
    @classmethod
    def _known(cls, value: str) -> str:
        if value in (FULL, TARGET):
            return value
        if not Path(value).expanduser().is_file():
            raise ValueError(f"output_vocab {value!r} is not 'full', 'target' or an existing file of token ids")
        return value


def script_of(iso: str) -> str | None:
    """The ISO 15924 script a language is written in ('ja' -> 'Jpan'), or None when unknown."""
    entry = LANGUAGES.get(iso)
    return entry[1].split("_")[-1] if entry else None


@functools.lru_cache(maxsize=65536)
def char_in_script(ch: str, script: str) -> bool:
    """Whether ``ch`` may appear in text written in ``script``: its letters, Latin, or anything not a letter."""
    category = unicodedata.category(ch)
    if category[0] not in "LM":  # digits, punctuation, symbols, spaces: every script uses them
        return True
    words = set(unicodedata.name(ch, "").replace("-", " ").split())
    if category[0] == "M" and "COMBINING" in words:
        return True
    if not words & {*_SCRIPT_WORDS.get(script, ()), "LATIN"}:
        return False
    if script == "Jpan" and ("CJK" in words or "IDEOGRAPHIC" in words):
        return is_japanese_char(ch)
    return True


@functools.lru_cache(maxsize=8192)
def is_japanese_char(ch: str) -> bool:
    """False for a Han ideograph outside the Japanese repertoire (``JAPANESE_CODEC``); True otherwise."""
    if not is_han(ch):
        return True
    try:
        ch.encode(JAPANESE_CODEC)
    except UnicodeEncodeError:
        return False
    return True


def is_han(ch: str) -> bool:
    """A CJK unified or compatibility ideograph (any extension block)."""
    cp = ord(ch)
    return 0x3400 <= cp <= 0x4DBF or 0x4E00 <= cp <= 0x9FFF or 0xF900 <= cp <= 0xFAFF or 0x20000 <= cp <= 0x3FFFF


def token_in_script(token: str, script: str) -> bool:
    """Whether every character of a vocabulary piece is allowed for text in ``script``.

    Byte-fallback pieces (``<0xE3>``) are allowed: they spell characters the vocabulary lacks.
    """
    if len(token) == 6 and token.startswith("<0x") and token.endswith(">"):
        return True
    return all(char_in_script(ch, script) for ch in token.replace(_SPACE_MARK, " "))


def script_token_ids(tokens: Iterable[tuple[int, str | None]], script: str) -> set[int]:
    """Ids of the ``(id, piece)`` pairs whose piece is written in ``script``; unnamed ids are left out."""
    return {i for i, t in tokens if t is not None and token_in_script(t, script)}


def read_id_file(path: str | Path) -> set[int]:
    """The ids listed in a file (whitespace-separated integers)."""
    text = Path(path).expanduser().read_text(encoding="utf-8")
    try:
        return {int(x) for x in text.split()}
    except ValueError as exc:
        raise InvalidRequest(f"output_vocab file {path}: not a list of integer token ids ({exc})") from None


def allowed_ids(
    spec: str,
    target_lang: str,
    vocab_size: int,
    pieces: Iterable[tuple[int, str | None]],
    required: Sequence[int],
    excluded: Sequence[int] = (),
) -> list[int] | None:
    """Sorted ids the decoder may choose for ``target_lang`` under ``spec``; None means the full vocabulary.

    ``pieces`` are the vocabulary's (id, piece) pairs (read only for ``target``); ``required``
    ids are always allowed; ``excluded`` ids (e.g. ids the runtime suppresses) never are.
    """
    if spec == FULL:
        return None
    if spec == TARGET:
        script = script_of(target_lang)
        if script is None or script not in _SCRIPT_WORDS:
            return None  # no script table for this language: decode with everything
        ids = script_token_ids(pieces, script)
    else:
        ids = read_id_file(spec)
    ids = (ids - {int(i) for i in excluded}) | {int(i) for i in required}
    bad = sorted(i for i in ids if not 0 <= i < vocab_size)
    if bad and spec != TARGET:
        raise InvalidRequest(
            f"output_vocab file {spec}: ids {bad[:5]} are outside the vocabulary (0..{vocab_size - 1})"
        )
    return sorted(i for i in ids if 0 <= i < vocab_size)
