"""The translation memory (backends.memory) and the ``llm`` option that shows its nearest pairs."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from backends.errors import BackendUnavailable, InvalidRequest
from backends.llm_mt import FEW_SHOT, LLMTranslator
from backends.llm_options import QUALITY_PRESETS, LLMOptions
from backends.memory import MEMORY_DIR, Memory, bundled, words

PAIRS = [
    ("Where is the station?", "駅はどこですか？"),
    ("I am allergic to peanuts.", "ピーナッツアレルギーです。"),
    ("The meeting is on Thursday.", "会議は木曜日です。"),
    ("Where is the toilet?", "トイレはどこですか？"),
]


def test_words_fold_plurals_and_past_tense() -> None:
    assert words("Cities, boxes and cats booked!") == {"city", "box", "and", "cat", "book"}
    assert words("glass class") == {"glass", "class"}  # -ss is not a plural
    assert words("") == set() and words("😀 ¿？") == set()


def test_nearest_prefers_rare_shared_words_and_puts_the_closest_last() -> None:
    m = Memory(PAIRS)
    assert m.nearest("My son is allergic to peanuts.", 1) == [PAIRS[1]]
    # "where is the" is shared by two pairs; "toilet" decides, and the closest comes last
    got = m.nearest("Where is the nearest toilet?", 2)
    assert got[-1] == PAIRS[3] and got[0] == PAIRS[0]
    assert m.nearest("Thursdays are busy.", 4) == [PAIRS[2]]  # only pairs sharing a word
    assert m.nearest("Where is the station?", 1, exclude="Where is the station?") == [PAIRS[3]]
    for nothing in ("", "12:30", "😀", "Zxqv"):
        assert m.nearest(nothing, 3) == []
    assert m.nearest("Where is the station?", 0) == []


def test_bad_memory_files_are_clear(tmp_path: Path) -> None:
    bad = tmp_path / "tm.tsv"
    bad.write_text("domain\tfr\tde\nx\tBonjour\tHallo\n", encoding="utf-8")
    with pytest.raises(BackendUnavailable, match="en and ja columns"):
        Memory.from_tsv(bad, "en", "ja")
    with pytest.raises(ValueError, match="not a file"):
        LLMOptions(memory=str(tmp_path / "missing.tsv"))


def test_bundled_memory_is_the_dev_part_only() -> None:
    m = bundled("en", "ja")
    assert m is not None and len(m.pairs) >= 100
    corpus = Path(__file__).resolve().parents[2] / "benchmarks" / "corpus"
    assert (corpus / "en-ja.tsv").resolve() == (MEMORY_DIR / "en-ja.tsv").resolve()
    test_sources = {line.split("\t")[1] for line in (corpus / "en-ja-test.tsv").read_text("utf-8").splitlines()[1:]}
    assert not test_sources & {src for src, _ in m.pairs}
    assert bundled("fr", "de") is None


def test_retrieved_examples_follow_the_fixed_ones(tmp_path: Path) -> None:
    tm = tmp_path / "tm.tsv"
    tm.write_text("domain\ten\tja\n" + "".join(f"x\t{s}\t{t}\n" for s, t in PAIRS), encoding="utf-8")
    tr = LLMTranslator(options={"few_shot": 2, "retrieve": 1, "memory": str(tm)})
    chat = tr.messages("Is my son allergic to peanuts?", "en", "ja")
    fixed = FEW_SHOT[("en", "ja")]
    assert [m["content"] for m in chat[1:5]] == [fixed[0][0], fixed[0][1], fixed[1][0], fixed[1][1]]
    assert [m["content"] for m in chat[5:7]] == list(PAIRS[1]) and chat[-1]["content"].endswith("peanuts?")
    # the prefix every prompt shares (what the prompt cache keeps) does not depend on the text
    assert tr.messages("x", "en", "ja", retrieved=False) == [*chat[:5], {"role": "user", "content": "x"}]
    with pytest.raises(InvalidRequest, match="no translation memory"):
        LLMTranslator(options={"retrieve": 2}).messages("Hello there.", "fr", "de")


def test_hint_turns_come_last_and_a_missing_dictionary_is_an_unavailability(
    tiny_gguf: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from backends import dictionary

    if dictionary.unavailable_reason():
        pytest.skip(str(dictionary.unavailable_reason()))
    monkeypatch.setenv("HAYAKU_HOME", str(tmp_path))  # the index is built here, not in the user's cache
    tm = tmp_path / "tm.tsv"
    tm.write_text("domain\ten\tja\n" + "".join(f"x\t{s}\t{t}\n" for s, t in PAIRS), encoding="utf-8")
    opts = {"few_shot": 1, "retrieve": 1, "hints": 2, "memory": str(tm), "threads": 1, "parallel": 1}
    tr = LLMTranslator(str(tiny_gguf), {**opts, "max_new_tokens": 4, "context": 512})
    tr.load()
    chat = tr.messages("Is my son allergic to peanuts?", "en", "ja")
    assert [m["content"] for m in chat[3:5]] == list(PAIRS[1])  # the retrieved example
    hints = dict(zip([m["content"] for m in chat[5:-1:2]], [m["content"] for m in chat[6:-1:2]], strict=True))
    assert "ピーナッツ" in hints["peanuts"] and len(hints) <= 2  # then the nouns' hints
    assert chat[-1]["content"] == "Is my son allergic to peanuts?"
    assert tr.translate(["Is my son allergic to peanuts?"], "en", "ja")[0].output_tokens
    # no nouns, no hints: the prompt is the plain one
    assert len(tr.messages("12:30 😀", "en", "ja")) == 1 + 2 + 1
    tr.close()
    monkeypatch.setitem(sys.modules, "jamdict_data", None)
    reason = LLMTranslator.unavailable_reason(str(tiny_gguf), {"hints": 2})
    assert reason and "hints" in reason and "pip install" in reason
    assert LLMTranslator.unavailable_reason(str(tiny_gguf), {"hints": 0}) is None


def test_quality_balanced_bans_english_where_the_runtime_can() -> None:
    balanced = LLMOptions(quality="balanced")
    assert (balanced.hints, balanced.no_latin, balanced.retrieve) == (3, True, 0)
    on_ct2 = LLMOptions(quality="balanced", runtime="ctranslate2")  # no_latin is a llama.cpp logit bias
    assert (on_ct2.hints, on_ct2.no_latin) == (3, False)
    assert LLMOptions(quality="balanced", no_latin=False).no_latin is False
    with pytest.raises(ValueError, match="quality"):
        LLMOptions(quality="great")


def test_quality_best_sets_the_levers_and_explicit_options_win() -> None:
    best = LLMOptions(quality="best")
    assert best.retrieve == QUALITY_PRESETS["best"]["retrieve"] > 0
    assert (LLMOptions(quality="best", hints=0).hints, LLMOptions().retrieve, LLMOptions().hints) == (0, 0, 0)


def test_every_preset_bans_english_on_llamacpp_and_the_default_is_a_preset() -> None:
    for quality in QUALITY_PRESETS:
        assert LLMOptions(quality=quality).no_latin is True
        assert LLMOptions(quality=quality, runtime="ctranslate2").no_latin is False
    assert LLMOptions().no_latin is True  # no quality named: fast's levers
    assert LLMOptions(no_latin=False).no_latin is False
