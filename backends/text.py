"""Sentence splitting for English and Japanese (one module for both)."""

from __future__ import annotations

import re

from backends.errors import InvalidRequest

# English: split after . ! ? (and closing quotes/brackets) followed by space and a capital,
# digit or quote; keep common abbreviations ("Mr.", "e.g.") and decimals together.
_ABBREV = {
    "mr",
    "mrs",
    "ms",
    "dr",
    "prof",
    "sr",
    "jr",
    "st",
    "vs",
    "etc",
    "e.g",
    "i.e",
    "no",
    "approx",
    "inc",
    "ltd",
    "co",
    "jan",
    "feb",
    "mar",
    "apr",
    "jun",
    "jul",
    "aug",
    "sep",
    "sept",
    "oct",
    "nov",
    "dec",
    "a.m",
    "p.m",
    "u.s",
    "u.k",
}
_EN_BOUNDARY = re.compile(r"([.!?…]+[\"'”’)\]]*)(\s+)(?=[\"'“‘(\[]?[A-Z0-9])")
# Japanese: after 。！？ (full or half width) and closing brackets, with or without space.
_JA_BOUNDARY = re.compile(r"([。！？!?…]+[」』）)】]*)")
#: what a finished sentence may end with, in either language (sentence end, then closing quotes/brackets)
_FINISHED = re.compile(r"[.!?…。！？]+[\"'”’)\]」』）)】]*$")


def check_text(text: object, max_chars: int, what: str = "text") -> str:
    """``text`` when it is a non-empty string of at most ``max_chars``, else InvalidRequest.

    Length is checked first: a megabyte of whitespace is a 413, not a 400, and the text is never
    quoted back at length in the message.
    """
    if isinstance(text, str) and len(text) > max_chars:
        raise InvalidRequest(f"{what} has {len(text)} characters; the limit is max_chars={max_chars}", status=413)
    if not isinstance(text, str) or not text.strip():
        shown = repr(text)
        shown = shown if len(shown) <= 40 else f"{shown[:37]}..."
        raise InvalidRequest(f"{what} is empty or whitespace only ({shown}); send some text", status=400)
    return text


def split_sentences(text: str, lang: str = "en", max_len: int = 400) -> list[str]:
    """Splits ``text`` into sentences; pieces longer than ``max_len`` are cut at spaces/commas."""
    text = text.strip()
    if not text:
        return []
    pieces: list[str] = []
    for para in re.split(r"\n\s*\n|\r\n\s*\r\n", text):
        cjk = lang in ("ja", "zh")  # sentences end at 。！？, with no space after
        para = para.replace("\n", "").strip() if cjk else " ".join(para.split())
        if not para:
            continue
        pieces.extend(_split_ja(para) if cjk else _split_en(para))
    out: list[str] = []
    for p in pieces:
        out.extend(_cap_length(p, max_len))
    return [p for p in out if p.strip()]


def complete_sentences(buffer: str, lang: str, flush: bool) -> tuple[list[str], str]:
    """Splits a live text buffer (captions arriving piece by piece) into its finished sentences and the
    unfinished rest (raw, spaces kept); ``flush`` takes everything as finished."""
    sentences = split_sentences(buffer, lang)
    if not sentences:
        return [], "" if flush else buffer
    if flush or _FINISHED.search(buffer.rstrip()):
        return sentences, ""
    # Splitting only normalises whitespace: the rest is the buffer's tail with as many visible characters.
    visible = sum(not ch.isspace() for ch in sentences[-1])
    pos = len(buffer)
    while visible and pos:
        pos -= 1
        visible -= not buffer[pos].isspace()
    return sentences[:-1], buffer[pos:]


#: where a clause may end: Japanese/Chinese commas and sentence ends (with closing brackets), else
#: punctuation followed by a space
_JA_CLAUSE = re.compile(r"[、，,。．！？!?…]+[」』）)】]*")
_OTHER_CLAUSE = re.compile(r"[,;:.!?…]+[\"'”’)\]]*(?=\s)")
#: shortest clause spoken alone (characters; words for space-separated languages): a shorter one joins
#: the next, so the voice does not stutter on one-word pieces
MIN_CLAUSE = {"ja": 5, "zh": 5}
MIN_CLAUSE_WORDS = 3


def complete_clauses(buffer: str, lang: str, flush: bool = False) -> tuple[list[str], str]:
    """Splits text arriving piece by piece (a translation being decoded) into the clauses that are
    finished and long enough to speak alone, and the rest; ``flush`` takes the rest as a clause too.

    Text with no clause boundary stays whole until ``flush``: it is spoken at the sentence end.
    """
    cjk = lang in MIN_CLAUSE
    pattern = _JA_CLAUSE if cjk else _OTHER_CLAUSE
    clauses: list[str] = []
    start = 0
    for m in pattern.finditer(buffer):
        candidate = buffer[start : m.end()]
        size = len(candidate.strip()) if cjk else len(candidate.split())
        if size >= (MIN_CLAUSE[lang] if cjk else MIN_CLAUSE_WORDS):
            clauses.append(candidate)
            start = m.end()
    rest = buffer[start:]
    if flush and rest.strip():
        if clauses and (len(rest.strip()) if cjk else len(rest.split())) < (MIN_CLAUSE[lang] if cjk else 1):
            clauses[-1] += rest  # a short tail goes with the clause before it
        else:
            clauses.append(rest)
        rest = ""
    return clauses, rest


#: characters a Japanese noun ends with: kanji, katakana, digits
_NOUN_CHARS = r"\u3400-\u9fff々ァ-ヺー0-9０-９"
#: where a Japanese phrase (bunsetsu) surely ends: a case or topic particle after a noun, followed by the next
#: noun (a hiragana next could still make は of では or で of です)
_JA_PHRASE = re.compile(
    rf"[{_NOUN_CHARS}](?:には|では|とは|にも|でも|から|まで|は|が|を|に|で|へ|と|も)(?=[{_NOUN_CHARS}「])"
)
#: shortest first phrase spoken alone (characters): 私の妹は, not 私は
MIN_PHRASE = 4


def first_phrase(buffer: str, lang: str) -> tuple[list[str], str]:
    """The first phrase of a Japanese sentence being decoded, once it surely ended, and the rest.

    For a sentence's first audio only: a sentence with no comma would otherwise be spoken when all of it is
    decoded. Each phrase alone would make the voice choppy, so later ones wait for their clause. Text in
    other languages, or with no phrase of ``MIN_PHRASE`` characters yet, stays whole: ``([], buffer)``.
    """
    if lang == "ja":
        for m in _JA_PHRASE.finditer(buffer):
            if len(buffer[: m.end()].strip()) >= MIN_PHRASE:
                return [buffer[: m.end()]], buffer[m.end() :]
    return [], buffer


def _split_en(para: str) -> list[str]:
    out: list[str] = []
    start = 0
    for m in _EN_BOUNDARY.finditer(para):
        end = m.end(1)
        candidate = para[start:end]
        last_word = candidate.rstrip(".!?…\"'”’)]").rsplit(" ", 1)[-1].lower()
        if m.group(1).startswith(".") and (last_word in _ABBREV or (len(last_word) == 1 and last_word.isalpha())):
            continue
        out.append(candidate.strip())
        start = m.end()
    out.append(para[start:].strip())
    return [s for s in out if s]


def _split_ja(para: str) -> list[str]:
    parts = _JA_BOUNDARY.split(para)
    out: list[str] = []
    for i in range(0, len(parts), 2):
        body = parts[i]
        tail = parts[i + 1] if i + 1 < len(parts) else ""
        s = (body + tail).strip()
        if s:
            out.append(s)
    return out


def _cap_length(sentence: str, max_len: int) -> list[str]:
    if len(sentence) <= max_len:
        return [sentence]
    out: list[str] = []
    rest = sentence
    while len(rest) > max_len:
        window = rest[:max_len]
        cut = max(window.rfind(", "), window.rfind("、"), window.rfind(" "))
        cut = cut + 1 if cut > max_len // 4 else max_len
        out.append(rest[:cut].strip())
        rest = rest[cut:].strip()
    if rest:
        out.append(rest)
    return out


# C0/C1 control characters other than tab and newline (and DEL): engines either choke on
# them or, worse, treat them as terminal/markup controls.
_CONTROL = re.compile(r"[\x01-\x08\x0b-\x1f\x7f-\x9f]")
# Half of a UTF-16 pair on its own: no UTF-8 encoding exists, so no engine can be handed it.
_SURROGATE = re.compile(r"[\ud800-\udfff]")


def engine_text(text: str) -> str:
    """Text made safe to hand to an external speech engine as data.

    NUL is rejected (C engines would silently truncate the text there); other control
    characters become spaces, so what is spoken matches what was sent.
    """
    pos = text.find("\x00")
    if pos >= 0:
        raise InvalidRequest(f"text contains a NUL character at position {pos}; remove it", status=400)
    surrogate = _SURROGATE.search(text)
    if surrogate:
        raise InvalidRequest(
            f"text contains a lone UTF-16 surrogate (U+{ord(surrogate.group()):04X}) at position "
            f"{surrogate.start()}; send valid Unicode",
            status=400,
        )
    return _CONTROL.sub(" ", text)
