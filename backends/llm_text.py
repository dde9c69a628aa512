"""The ``llm`` backend's text rules: what is not Japanese, which Latin words a translation may keep,
and the cleaning of a chat model's answer (labels, quotes, romanisations, notes) into the translation."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from backends.vocab import char_in_script, token_in_script

LATIN_WORD = re.compile(r"[A-Za-z][A-Za-z'-]*")


def kept_names(source: str) -> set[str]:
    """Words of ``source`` a translation may keep in Latin letters: acronyms and capitalised names.

    The first word is capitalised anyway, so it counts only in capitals ("PDF", not "Please").
    """
    words = LATIN_WORD.findall(source)
    return {w for i, w in enumerate(words) if (w.isupper() and len(w) > 1) or (i > 0 and w[0].isupper())}


def latin_grammar(source: str) -> str:
    """A llama.cpp grammar (GBNF) of text without Latin letters but for the names ``kept_names`` finds.

    A grammar, not a ban of the ~69k Latin-letter tokens: llama.cpp checks it only against the token it
    would choose (and masks the vocabulary only when that one is refused), where the bans were parsed
    anew by every request (~40 ms before its first token).
    """
    names = "".join(f' | "{name}"' for name in sorted(kept_names(source)))  # letters, ' and -: nothing to escape
    return f"root ::= ([^A-Za-z]{names})*"


def non_japanese_chars(text: str) -> str:
    """The characters of ``text`` Japanese text does not contain, in order: Han characters Japanese does
    not use and letters of other scripts (Cyrillic, Hangul, Greek ...); Latin letters are not counted."""
    return "".join(ch for ch in text if not char_in_script(ch, "Jpan"))


def non_japanese_ids(pieces: Iterable[tuple[int, str]]) -> list[int]:
    """Ids among ``(id, text)`` pieces whose text has a character ``non_japanese_chars`` would report."""
    return sorted(idx for idx, text in pieces if not token_in_script(text, "Jpan"))


def non_japanese_han_token_ids(tokenizer: Any) -> list[int]:
    """Ids of a transformers tokenizer's vocabulary tokens that contain a Han character Japanese does not use.

    Each token is decoded on its own; a byte-level piece that is only part of a character
    decodes to U+FFFD and is kept (it may begin a Japanese character too).
    """
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    return non_japanese_ids(
        (idx, tokenizer.convert_tokens_to_string([token]))
        for token, idx in tokenizer.get_vocab().items()
        if idx not in special
    )


# -- output cleaning -----------------------------------------------------------------------

#: characters that only the target's script uses; Latin-script targets have none
_SCRIPTS: dict[str, str] = {
    "ja": r"\u3040-\u30ff\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uff66-\uff9f",
    "zh": r"\u3400-\u4dbf\u4e00-\u9fff",
    "ko": r"\uac00-\ud7af\u1100-\u11ff\u3130-\u318f",
    "ru": r"\u0400-\u04ff",
    "uk": r"\u0400-\u04ff",
    "ar": r"\u0600-\u06ff\u0750-\u077f",
    "hi": r"\u0900-\u097f",
    "th": r"\u0e00-\u0e7f",
}
_LABEL = re.compile(
    r"^\s*(?:\*\*)?(?:here(?:'s| is) (?:the|a|my) [\w ]*translation(?: [\w ]*)?|translation|translated text|"
    r"answer|output|result|assistant|japanese|english|chinese|korean|日本語訳|日本語|翻訳|訳文|訳|中文|译文|번역)"
    r"(?:\s*\([^)]*\))?(?:\*\*)?\s*[:：]\s*(?:\*\*)?",
    re.IGNORECASE,
)
#: "Sure! Here is the translation:" -- but not a translation that happens to start with "Here"
_PREAMBLE = re.compile(
    r"^(?:sure|certainly|of course|okay|ok|here|below)\b(?:.*[:：]|.*\btranslat\w*\b.*)\s*$", re.IGNORECASE
)
_NOTE = re.compile(
    r"^\s*[(（\[]?\s*(?:note|explanation|romaji|romanization|pronunciation|literally|注|※)", re.IGNORECASE
)
_QUOTES = (('"', '"'), ("'", "'"), ("“", "”"), ("‘", "’"), ("「", "」"), ("『", "』"), ("«", "»"), ("`", "`"))
_TRAILING_PAREN = re.compile(r"\s*[(（][^()（）]*[)）]\s*$")


def has_script(text: str, target_lang: str) -> bool:
    """True when ``text`` contains a character of the target language's own script."""
    chars = _SCRIPTS.get(target_lang)
    return bool(chars) and re.search(f"[{chars}]", text) is not None


def _strip_quotes(text: str, source_text: str) -> str:
    src = source_text.strip()
    if any(len(src) >= 2 and src.startswith(left) and src.endswith(right) for left, right in _QUOTES):
        return text  # a quoted source keeps its quotes, in whichever style the target uses
    changed = True
    while changed and len(text) >= 2:
        changed = False
        for left, right in _QUOTES:
            inner = text[len(left) : -len(right)]
            if text.startswith(left) and text.endswith(right) and left not in inner and right not in inner:
                text, changed = inner.strip(), True
    return text


def clean_translation(raw: str, target_lang: str, source_text: str = "") -> str:
    """The translation alone, from a chat model's raw answer.

    Drops code fences, preambles ("Sure! Here is the translation:"), labels
    ("Translation:", "日本語："), notes and romanisations, keeps the first paragraph (as many
    lines as the source had) in the target's script, and unwraps quotes the source did not
    have. Falls back to the stripped answer rather than returning nothing.
    """
    text = raw.replace("\r\n", "\n").strip()
    text = re.sub(r"^```[\w-]*\n?|\n?```$", "", text).strip()
    lines = [ln.strip() for ln in text.split("\n")]
    src_lines = max(1, len([ln for ln in source_text.split("\n") if ln.strip()]))
    scripted = target_lang in _SCRIPTS

    kept: list[str] = []
    for line in lines:
        if not line:
            if kept:
                break  # end of the first paragraph
            continue
        if _NOTE.match(line):
            if kept:
                break
            continue
        line = _LABEL.sub("", line).strip()
        if not line:
            continue
        if not kept and _PREAMBLE.match(line) and not (scripted and has_script(line, target_lang)):
            continue
        if scripted and not has_script(line, target_lang):
            if kept:
                break  # a romanisation or an English explanation after the translation
            continue
        kept.append(line)
        if len(kept) >= src_lines:
            break
    if not kept:
        return _strip_quotes(text, source_text) if text else text

    out = []
    for line in kept:
        line = _strip_quotes(line, source_text)
        # "(Konnichiwa ...)" after a Japanese line: an added reading, not translation
        if scripted:
            m = _TRAILING_PAREN.search(line)
            if m and not has_script(m.group(0), target_lang) and has_script(line[: m.start()], target_lang):
                line = line[: m.start()].rstrip()
        out.append(line)
    return _strip_quotes("\n".join(out), source_text)
