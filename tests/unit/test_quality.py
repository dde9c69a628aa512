"""The quality benchmark's pieces: the corpus, chrF, setting specs, and a run on a tiny model."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks.common import RESULTS
from benchmarks.quality import Pair, Setting, chrf, evaluate, load_corpus, parse_setting, reference_outputs, run, score

pytest.importorskip("sacrebleu", reason="chrF needs sacrebleu: pip install 'hayaku[bench]'")


@pytest.fixture(autouse=True)
def _own_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # cached reference outputs and conversions go to a throwaway home
    monkeypatch.setenv("HAYAKU_HOME", str(tmp_path / "home"))
    yield


def test_corpus_is_large_clean_and_without_duplicates() -> None:
    pairs = load_corpus()
    assert len(pairs) >= 100
    assert all(p.source and p.reference and p.domain for p in pairs)
    assert len({p.source for p in pairs}) == len(pairs)
    assert len({p.reference for p in pairs}) == len(pairs)
    assert {"everyday", "travel", "business"} <= {p.domain for p in pairs}
    # sources are English, references Japanese (kana in every one: natural sentences, not lists of kanji)
    assert all(p.source.isascii() for p in pairs)
    assert all(any("\u3040" <= c <= "\u30ff" for c in p.reference) for p in pairs)
    assert load_corpus(limit=5) == pairs[:5]


def test_unknown_corpus_names_the_available_ones() -> None:
    with pytest.raises(FileNotFoundError, match="en-ja"):
        load_corpus("xx-yy")


def test_chrf_on_known_strings() -> None:
    refs = ["おはようございます。", "駅はどこですか？"]
    assert chrf(refs, refs) == pytest.approx(100.0)
    assert chrf(["abcdef", "uvwxyz"], refs) < 5
    close = chrf(["おはようございます", "駅はどこ？"], refs)
    assert 30 < close < 100
    with pytest.raises(ValueError, match="2 references"):
        chrf(["x"], refs)


def test_score_counts_non_japanese_outputs() -> None:
    pairs = [Pair("I'm allergic to peanuts.", "私はピーナッツアレルギーです。"), Pair("Airport", "空港")]
    record = score(["我对花生过敏。", "空港"], pairs, reference_outputs=["私はピーナッツアレルギーです。", "空港"])
    assert record["non_japanese_outputs"] == 1 and set(record["non_japanese_chars"]) == {"过", "对"}
    assert record["chrf"] == record["chrf_vs_reference"] < 100


def test_parse_setting() -> None:
    s = parse_setting("llm:runtime=transformers,dtype=float32,few_shot=2,prompt_cache=false,max_length_ratio=2.5")
    assert s.backend == "llm"
    assert s.options == {
        "runtime": "transformers",
        "dtype": "float32",
        "few_shot": 2,
        "prompt_cache": False,
        "max_length_ratio": 2.5,
    }
    assert parse_setting("echo").options == {} and parse_setting("echo").label == "echo"
    prompt = parse_setting("llm:system_prompt=Translate {source}, politely, into {target}.,few_shot=0")
    assert prompt.options == {"system_prompt": "Translate {source}, politely, into {target}.", "few_shot": 0}
    with pytest.raises(ValueError, match="key=value"):
        parse_setting("llm:few_shot")
    own = parse_setting("llm:model=/m/q05.gguf,threads=2", model="default-model")
    assert own.model == "/m/q05.gguf" and own.options == {"threads": 2}
    assert parse_setting("llm:threads=2", model="default-model").model == "default-model"


def test_run_on_the_echo_translator_reports_rows_and_failures() -> None:
    pairs = load_corpus(limit=3)
    rows = run([Setting("echo"), Setting("llm", {"no_such_option": 1})], pairs, progress=False)
    ok, bad = rows
    assert ok["n"] == 3 and len(ok["outputs"]) == 3 and ok["median_ms"] >= 0
    assert ok["chrf"] < 20  # English echoed back is far from Japanese
    assert "no_such_option" in bad["skipped"]


def test_evaluate_and_cached_reference_on_the_tiny_llm(tiny_llm: Path) -> None:
    pytest.importorskip("ctranslate2")
    pairs = load_corpus(limit=3)
    ref = Setting("llm", {"runtime": "transformers", "dtype": "float32", "max_new_tokens": 6}, model=str(tiny_llm))
    outputs = reference_outputs(ref, pairs, progress=False)
    assert len(outputs) == 3
    assert reference_outputs(ref, pairs, progress=False) == outputs  # from the cache now
    opts = {"runtime": "ctranslate2", "compute_type": "float32", "max_new_tokens": 6}
    tr = Setting("llm", opts, model=str(tiny_llm)).create()
    tr.load()
    record = evaluate(tr, pairs, outputs, progress=False)
    # CTranslate2 float32 decodes the same tokens as torch float32
    assert record["outputs"] == outputs and record["chrf_vs_reference"] == pytest.approx(100.0)
    assert 0 <= record["chrf"] < 100


def test_main_writes_markdown_and_json(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import benchmarks.common as common
    from benchmarks import quality

    monkeypatch.setattr(common, "RESULTS", tmp_path)
    assert quality.main(["--setting", "echo", "--limit", "2", "--name", "q-test"]) == 0
    md = (tmp_path / "q-test.md").read_text()
    assert "chrF vs corpus" in md and "| echo |" in md
    data = json.loads((tmp_path / "q-test.json").read_text())
    assert data["n"] == 2 and data["rows"][0]["setting"] == "echo" and data["bandwidth_gbs"] > 0
    assert not (RESULTS / "q-test.md").exists()
    # the examples: each sentence beside its reference and the setting's output
    first = load_corpus(quality.TEST_CORPUS, 1)[0]
    examples = md.split("## Examples", 1)[1]
    assert f"| {first.source} | {first.reference} | {data['rows'][0]['outputs'][0]} |" in examples


def test_untranslated_words_keep_names_and_acronyms_of_the_source() -> None:
    from benchmarks.quality import untranslated_words

    assert untranslated_words("私は peanutsにアレルギーがあります。", "I am allergic to peanuts.") == ["peanuts"]
    assert untranslated_words("PDFを田中さんに送ってください。", "Please send the PDF to Ms. Tanaka.") == []
    assert untranslated_words("Johnさんは来ます。", "Tomorrow John will come.") == []
    # the first word of a sentence is capitalised anyway: not taken for a name
    assert untranslated_words("Jacketを着てください。", "Jacket on, please.") == ["Jacket"]


def test_content_checks_count_english_length_and_added_formulas() -> None:
    from benchmarks.quality import content_checks

    pairs = [
        Pair("Thank you very much for your help.", "手伝ってくれて本当にありがとうございます。"),
        Pair("I am allergic to peanuts.", "私はピーナッツアレルギーです。"),
        Pair("Please call a taxi for me.", "タクシーを呼んでください。"),
    ]
    outputs = ["どういたしまして、ありがとうございます。", "私は peanutsにアレルギーがあります。", "タ"]
    got = content_checks(outputs, pairs)
    assert got["added_formulas"] == 1
    assert got["latin_outputs"] == 1 and got["latin_words"] == ["peanuts"]
    assert got["length_outliers"] == 1  # one character for a whole request
    clean = content_checks([p.reference for p in pairs], pairs)
    assert clean == {"latin_outputs": 0, "latin_words": [], "length_outliers": 0, "added_formulas": 0}


def test_mbr_keeps_the_consensus_and_the_oracle_the_closest_to_the_reference() -> None:
    from benchmarks.quality_mbr import main, mbr_pick, oracle_pick

    outlier = "まったく違う文章です。"
    consensus = "駅はどこですか？"
    cands = [outlier, "駅はどこにありますか？", consensus, "駅はどちらですか？"]
    assert mbr_pick(cands) == consensus  # nearest to all the others, though not first
    assert oracle_pick(cands, "まったく違う文章です") == outlier
    assert mbr_pick(["同じ", "同じ"]) == "同じ"
    for bad in (["--candidates", "1"], ["--temperature", "0"]):
        with pytest.raises(SystemExit):
            main(bad)
