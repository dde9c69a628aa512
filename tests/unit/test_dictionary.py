"""English -> Japanese noun hints from the real JMdict (jamdict-data), no mocks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from backends.dictionary import Dictionary, unavailable_reason
from backends.errors import BackendUnavailable

needs_jmdict = pytest.mark.skipif(unavailable_reason() is not None, reason=str(unavailable_reason()))


@pytest.fixture(scope="module")
def jmdict(hayaku_home: Path) -> Dictionary:
    if unavailable_reason():
        pytest.skip(str(unavailable_reason()))
    return Dictionary.load()


@needs_jmdict
@pytest.mark.parametrize(
    ("word", "expected"),
    [
        ("peanut", ("ピーナッツ", "落花生")),
        ("umbrella", ("傘",)),
        ("taxi", ("タクシー",)),
        ("Thursday", ("木曜日", "木曜")),
        ("hospital", ("病院",)),
        ("passport", ("旅券", "パスポート")),
        ("typhoon", ("台風",)),
    ],
)
def test_everyday_nouns(jmdict: Dictionary, word: str, expected: tuple[str, ...]) -> None:
    assert jmdict.lookup(word) in expected


@needs_jmdict
@pytest.mark.parametrize(
    ("plural", "singular"), [("peanuts", "peanut"), ("boxes", "box"), ("cities", "city"), ("Umbrellas", "umbrella")]
)
def test_plurals_and_case(jmdict: Dictionary, plural: str, singular: str) -> None:
    found = jmdict.lookup(singular)  # a Japanese word: kana and kanji only
    assert found and all("\u3040" <= c <= "\u30ff" or "\u4e00" <= c <= "\u9fff" or c == "\u3005" for c in found), found
    assert jmdict.lookup(plural) == jmdict.lookup(singular)


@needs_jmdict
def test_hints_name_the_nouns_in_order(jmdict: Dictionary) -> None:
    assert ("peanuts", jmdict.lookup("peanut")) in jmdict.hints("I am allergic to peanuts.")
    hints = jmdict.hints("Can I borrow your umbrella? I left my passport in the taxi.")
    assert [english for english, _ in hints] == ["umbrella", "passport", "taxi"]
    assert jmdict.hints("Can I borrow your umbrella? I left my passport in the taxi.", limit=1) == hints[:1]
    assert jmdict.hints("Can I pay by credit card?") == [("credit card", "クレジットカード")]


@needs_jmdict
@pytest.mark.parametrize(
    "text",
    [
        "I need to take it",
        "I like it, and I need to make a call.",
        "What would you like to drink?",
        "It's already dark outside.",
        "We usually work from home.",
        "Is it possible to store my bags here?",
    ],
)
def test_verbs_adjectives_and_function_words_are_never_hinted(jmdict: Dictionary, text: str) -> None:
    assert jmdict.hints("I need to take it") == []
    never = {"need", "take", "like", "make", "call", "drink", "dark", "usually", "work", "possible", "store"}
    assert not {english.lower() for english, _ in jmdict.hints(text)} & never


@needs_jmdict
@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "Alice met Bob and Carol in Smithfield.",
        "42 3.14 1,000,000 2024-01-01",
        "🙂🎉👍 ❤️",
        "def f(x): return x**2 + y_val  # numpy.array([1, 2])",
        "https://example.com/a?b=c&d=e",
        "SIM USB HTTP",
        "\x00\ufeff\u200b",
    ],
)
def test_no_hints_for_names_numbers_emoji_code(jmdict: Dictionary, text: str) -> None:
    assert jmdict.hints(text) == []


@needs_jmdict
def test_the_index_is_built_once_then_reused(
    jmdict: Dictionary, hayaku_home: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    (index,) = hayaku_home.glob("dictionary/*/index.json")
    before = index.stat().st_mtime_ns
    again = Dictionary.load()
    assert index.stat().st_mtime_ns == before
    assert "building" not in capfd.readouterr().err
    assert again.nouns == jmdict.nouns


def test_missing_package_is_backend_unavailable() -> None:
    code = (
        "import sys; sys.modules['jamdict_data'] = None\n"
        "from backends.dictionary import Dictionary, unavailable_reason\n"
        "from backends.errors import BackendUnavailable\n"
        "print(unavailable_reason())\n"
        "try:\n    Dictionary.load()\nexcept BackendUnavailable as e:\n    print('raised:', e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "pip install 'hayaku[hints]'" in out
    assert "raised: dictionary hints need jamdict" in out


def test_missing_package_in_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "jamdict_data", None)
    assert "jamdict-data" in str(unavailable_reason())
    with pytest.raises(BackendUnavailable, match=r"hayaku\[hints\]"):
        Dictionary.load()
