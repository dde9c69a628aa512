"""English -> Japanese noun hints from JMdict, offline (``pip install 'hayaku[hints]'``).

A small LLM translator leaves words in English or picks the wrong sense; a few dictionary words
for the *nouns* of the source sentence help it. JMdict is indexed Japanese -> English, so a
reverse index (English noun -> one Japanese word) is built once from the SQLite file that
``jamdict-data`` installs (its sdist unpacks ``jamdict.db.xz`` while pip builds the wheel, into
``site-packages/jamdict_data/jamdict.db``, 325 MB), read with plain ``sqlite3`` in a few bulk
queries (jamdict's per-entry API would take minutes). The build takes ~5 s on 2 cores and writes
a ~0.4 MB JSON file under ``HAYAKU_HOME/dictionary/``, keyed by the jamdict-data version; loading
it afterwards takes ~15 ms (17k nouns).

Selective on purpose (hinting every content word hurt quality: like -> 何と言うか, take -> 本番,
need -> 貧困): common entries only (news1, ichi1, spec1/2, gai1), noun senses only, one word per
English noun, never an English word that is polysemous or mostly a verb, adjective or adverb.
"""

from __future__ import annotations

import importlib
import json
import re
import sqlite3
from collections import defaultdict
from importlib import metadata
from pathlib import Path
from typing import Any

from backends import store
from backends.errors import BackendUnavailable

_FORMAT = 1  # bump when the index build changes: the cache key has it
_INSTALL = "dictionary hints need jamdict, jamdict-data: pip install 'hayaku[hints]'"
_COMMON = {"news1", "ichi1", "spec1", "spec2", "gai1"}  # JMdict's "common word" markers
_UK = "word usually written using kana alone"
_GLOSS = re.compile(r"[a-z][a-z'-]*( [a-z][a-z'-]*)?")  # one word or a two-word phrase
_WORD = re.compile(r"[A-Za-z]+(?:['’-][A-Za-z]+)*")
_PUNCT = ".,!?;:\"'()[]“”‘’…"
_NOUNY = ("ness", "ity", "ty", "ence", "ance", "ment", "tion", "sion", "dom", "ship", "ism", "th")
_DETERMINERS = {"the", "a", "an", "my", "your", "our", "his", "her", "their", "its", "this", "that", "these", "those"}
# After these a word is a verb ("to rent", "we ship", "could you share"), unless it ends in -s ("to peanuts").
_CUES = "to i we you they he she can could will would shall should must may might please let's don't doesn't didn't"
_VERB_CUES = {*_CUES.split(), "won't", "can't", "cannot", "i'll", "we'll", "you'll", "they'll", "i'd", "we'd", "you'd"}
# Words the index has that are function words ("can" -> 缶, "may" -> 五月, "will" -> 意志), number words,
# everyday verbs and adjectives (play, find, last, free) or nouns whose sense is rarely the one meant
# ("back" -> 背中, "morning" in "good morning"). Most such words never reach the index: _build drops them.
_STOP_WORDS = """to being can down every here may might no she then through under we who will within without
    somewhere someone nothing later around ago thanks excuse one two three four seven eight nine ten thing things
    sort fact back left find play stay today tonight tomorrow yesterday morning evening night afternoon day days
    week year last other free dead"""
_STOP = set(_STOP_WORDS.split())


def unavailable_reason() -> str | None:
    """None when the dictionary can be used here, else what to install."""
    try:
        importlib.import_module("jamdict_data")
    except ImportError:
        return _INSTALL
    return None


def _rank(tags: set[str]) -> int:
    """Lower is more frequent: JMdict's nfXX (newspaper frequency, 500 words a step), then ichi1."""
    nf = [int(t[2:]) for t in tags if t.startswith("nf")]
    return (min(nf) if nf else 24 if "news1" in tags else 30) + 5 * ("ichi1" not in tags)


def _database() -> Path:
    import jamdict_data  # type: ignore[import-not-found]

    db = Path(jamdict_data.JAMDICT_DB_PATH)  # pip unpacks jamdict.db.xz while it builds the wheel
    if not db.is_file():
        raise BackendUnavailable(f"jamdict-data has no database at {db}: pip install --force-reinstall jamdict-data")
    return db


def _clean(gloss: str) -> str:
    """'(uncooked) rice' -> 'rice', 'The Moon' -> 'moon': the English words of a gloss."""
    while "(" in gloss and gloss != (gloss := re.sub(r"\([^()]*\)", " ", gloss)):
        pass  # nested: "dog (Canis (lupus) familiaris)"
    return re.sub(r"^(the|an?) ", "", " ".join(gloss.split()).lower())


def _build(db: Path) -> dict[str, Any]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    forms: dict[int, dict[str, tuple[str, set[str]]]] = defaultdict(dict)  # idseq -> kanji/kana -> first form
    for kind, sql in (("kanji", "Kanji k LEFT JOIN KJP p"), ("kana", "Kana k LEFT JOIN KNP p")):
        for idseq, text, tag in con.execute(f"SELECT k.idseq, k.text, p.text FROM {sql} ON p.kid = k.ID ORDER BY k.ID"):
            first = forms[idseq].setdefault(kind, (text, set()))
            if first[0] == text and tag:
                first[1].add(tag)
    entries = {}  # common entries: idseq -> (rank, first kanji form if it is common, first kana form)
    for idseq, f in forms.items():
        tags = set().union(*(tags for _, tags in f.values()))
        if tags & _COMMON and "kana" in f:
            kanji = f["kanji"][0] if "kanji" in f and f["kanji"][1] & _COMMON else None
            entries[idseq] = (_rank(tags), kanji, f["kana"][0])
    senses: dict[int, tuple[int, int]] = {}  # sense id -> (idseq, index of the sense in its entry)
    count: dict[int, int] = defaultdict(int)
    for sid, idseq in con.execute("SELECT ID, idseq FROM Sense ORDER BY ID"):
        if idseq in entries:
            senses[sid], count[idseq] = (idseq, count[idseq]), count[idseq] + 1
    pos: dict[int, set[str]] = defaultdict(set)
    for sid, text in con.execute("SELECT sid, text FROM pos"):  # noun, verb, adverb, adjective, adjectival, ...
        pos[sid].add("verb" if "verb" in text and not text.startswith(("noun", "adverb")) else text.split(" ")[0])
    kana_only = {sid for (sid,) in con.execute("SELECT sid FROM misc WHERE text = ?", (_UK,))}
    glosses: dict[int, list[str]] = defaultdict(list)
    for sid, gloss in con.execute("SELECT sid, text FROM SenseGloss ORDER BY rowid"):
        if sid in senses:
            glosses[sid].append(gloss)
    con.close()
    used: dict[str, set[int]] = defaultdict(set)  # English word -> the common entries that gloss it
    written: dict[str, int] = defaultdict(int)  # common entries written alike (床: とこ "bed", ゆか "floor")
    for sid, texts in glosses.items():
        for text in texts:
            used[_clean(text)].add(senses[sid][0])
    for _, kanji, kana in entries.values():
        written[kanji or kana] += 1
    best: dict[str, tuple[int, str, bool]] = {}  # noun -> (score, Japanese, capitalised in JMdict)
    other: dict[str, int] = {}  # verb ("to need"), adjective ("possible") or adverb ("usually") -> score
    for sid, texts in glosses.items():
        idseq, index = senses[sid]
        rank, kanji, kana = entries[idseq]
        japanese, kinds = kana if (sid in kana_only or kanji is None) else kanji, pos[sid]
        for position, text in enumerate(texts):
            word = _clean(text)
            # Lower is better: the entry's first sense (JMdict lists the most common first), a frequent
            # entry, an early gloss of a sense with few glosses, no narrowing qualifier ("bill (law)";
            # "(e.g. ...)", "(esp. ...)" only give examples), a written form no other common entry shares.
            score = 25 * (index > 0) + rank + 8 * min(position, 3) + 3 * min(len(texts) - 1, 3)
            score += 25 * bool(re.search(r"\((?!e\.g\.|esp\.|i\.e\.|usu\.|[A-Z])", text)) + 10 * (written[japanese] > 1)
            # Senses that are a noun and an adverb (常時 "usually", 木曜 "Thursday") or adjectival noun
            # (可能 "possible", 不便 "inconvenience") gloss English adverbs and adjectives too: tell by the ending.
            adverb = "adverb" in kinds and ("noun" not in kinds or word.endswith("ly"))
            adjective = kinds & {"adjective", "adjectival"} and ("noun" not in kinds or not word.endswith(_NOUNY))
            if adverb or adjective or ("verb" in kinds and word.startswith("to ")):
                key = word[3:] if word.startswith("to ") else word
                other[key] = min(score, other.get(key, 999))
            elif "noun" in kinds and _GLOSS.fullmatch(word) and score < best.get(word, (999,))[0]:
                best[word] = (score, japanese, text[:1].isupper())
    nouns = {}
    for w, (score, ja, _) in best.items():
        # An English word that glosses many common entries is polysemous (order, plan, figure, light):
        # one Japanese word would often be the wrong sense, and the model knows these words anyway.
        ambiguous = max(len(used[c]) for c in (w, *_singulars(w))) > 10
        # A word JMdict glosses about as readily as a verb, adjective or adverb ("to take", "usually")
        # is mostly used that way: hinting its noun sense is how take -> 本番 and need -> 貧困 happened.
        verbal = other.get(w, 999) < score + 25
        if score <= 50 and not ambiguous and not verbal:
            nouns[w] = ja
    proper = sorted(w for w, (_, _, upper) in best.items() if upper and w in nouns)
    return {"format": _FORMAT, "nouns": dict(sorted(nouns.items())), "proper": proper}


class Dictionary:
    """English noun -> one common Japanese word, from a reverse index of JMdict."""

    def __init__(self, nouns: dict[str, str], proper: set[str] | frozenset[str] = frozenset()):
        self.nouns = nouns
        self.proper = proper  # glossed capitalised in JMdict (Thursday, Japan): hinted mid-sentence too

    @classmethod
    def load(cls) -> Dictionary:
        """The index from the cache; built first (~5 s) when missing or made from another jamdict-data."""
        reason = unavailable_reason()
        if reason:
            raise BackendUnavailable(reason)
        target = store.cache_dir("dictionary", "jmdict-nouns", metadata.version("jamdict-data"), _FORMAT)
        if not store.is_built(target):
            store.progress("building the English -> Japanese noun index from JMdict (once, a few seconds)")
            with store.building(target) as tmp:
                try:
                    index = _build(_database())
                except sqlite3.Error as e:
                    raise BackendUnavailable(
                        f"cannot read JMdict from jamdict-data ({e}): reinstall jamdict-data"
                    ) from e
                (tmp / "index.json").write_text(json.dumps(index, ensure_ascii=False, separators=(",", ":")))
            store.progress(f"{len(index['nouns'])} nouns in {target}")
        data = json.loads((target / "index.json").read_text(encoding="utf-8"))
        return cls(data["nouns"], set(data["proper"]))

    def lookup(self, word: str) -> str | None:
        """The Japanese word for an English noun (singular or simple plural, any case), or None."""
        w = word.strip().lower()
        return next((self.nouns[c] for c in (w, *_singulars(w)) if c in self.nouns), None)

    def hints(self, text: str, limit: int = 3) -> list[tuple[str, str]]:
        """(word as written, Japanese) for the first ``limit`` nouns of ``text`` worth a hint; never raises."""
        out: list[tuple[str, str]] = []
        chunks = text.split() if isinstance(text, str) else []
        initial, prev, skip = True, "", -1  # after a full stop a capital letter is no sign of a name
        for i, raw in enumerate(chunks):
            tok, first, before = raw.strip(_PUNCT), initial, prev
            low = tok.lower()
            initial, prev = raw.rstrip("\"')]”’").endswith((".", "!", "?", "…")), "" if raw[-1] in _PUNCT else low
            if len(out) >= limit or i == skip or len(tok) < 3 or not _WORD.fullmatch(tok) or tok.isupper():
                continue  # code, numbers, emoji, URLs, acronyms (SIM, USB)
            if low in _STOP or any(s in _STOP for s in _singulars(low)):
                continue  # function words and the others of _STOP
            if tok[0].isupper() and not first and low not in self.proper:
                continue  # a name, which the model keeps as written
            if (before in _VERB_CUES and not low.endswith("s")) or (low.endswith("ed") and not low.endswith("eed")):
                continue  # "to rent", "we ship"; "closed", "included"
            if low.endswith("ing") and before not in _DETERMINERS:
                continue  # "is working", "go hiking"; but "the meeting", "a washing machine"
            nxt = chunks[i + 1].strip(_PUNCT) if i + 1 < len(chunks) and prev else ""
            pair = self.lookup(f"{low} {nxt}") if _WORD.fullmatch(nxt) and nxt.lower() not in _STOP else None
            japanese = pair or self.lookup(low)
            if japanese and all(japanese != ja for _, ja in out):
                out.append((f"{tok} {nxt}" if pair else tok, japanese))
                skip = i + 1 if pair else skip
        return out


def _singulars(word: str) -> list[str]:
    """Simple English plurals back to candidates for the singular (boxes, cities, knives, peanuts)."""
    if len(word) < 4 or not word.endswith("s") or word.endswith("ss"):
        return []
    if word.endswith("ies"):
        return [word[:-3] + "y", word[:-1]]
    if word.endswith(("ses", "xes", "zes", "ches", "shes", "oes")):
        return [word[:-2], word[:-1]]
    return [word[:-1], word[:-3] + "f", word[:-3] + "fe"] if word.endswith("ves") else [word[:-1]]
