"""The ``llm`` backend's llama.cpp runtime on the tiny GGUF file the tests build (``tiny_gguf``)."""

from __future__ import annotations

import re
import shutil
import threading
from pathlib import Path

import pytest

from backends.errors import BackendUnavailable, InvalidRequest
from backends.gguf_meta import check_whole
from backends.llamacpp_rt import Bans
from backends.llm_mt import LLMTranslator

pytest.importorskip("xllamacpp", reason="the llama.cpp runtime needs xllamacpp: pip install 'hayaku[llm]'")

TEXTS = ["Hello, how are you today?", "Thank you very much for your help.", "Good night.", "Where is the station?"]


@pytest.fixture(scope="module")
def tiny(tiny_gguf: Path) -> LLMTranslator:
    tr = LLMTranslator(str(tiny_gguf), {"max_new_tokens": 6, "threads": 1, "parallel": 4, "context": 512})
    tr.load()
    return tr


def test_translates_with_the_gguf_file_itself(tiny: LLMTranslator, tiny_gguf: Path) -> None:
    results = tiny.translate(TEXTS[:2], "en", "ja")
    assert [r.source_text for r in results] == TEXTS[:2]
    for r in results:
        assert r.options["runtime"] == "llama.cpp" and r.backend == "llm"
        assert r.output_tokens is not None and 0 < r.output_tokens <= 6
    assert tiny.health()["ok"] and tiny.health()["runtime"] == "llama.cpp"
    # a folder holding one .gguf file works as the model too
    assert LLMTranslator.unavailable_reason(str(tiny_gguf.parent)) is None


def test_greedy_output_matches_transformers_on_the_same_weights(tiny: LLMTranslator, tiny_llm: Path) -> None:
    torch_tr = LLMTranslator(
        str(tiny_llm),
        {"runtime": "transformers", "dtype": "float32", "max_new_tokens": 6, "japanese_kanji_only": False},
    )
    torch_tr.load()
    plain = LLMTranslator(
        str(tiny.model), {**tiny.options.model_dump(), "japanese_kanji_only": False, "no_latin": False}
    )
    plain.load()
    # random weights emit partial UTF-8 sequences, which the two decoders render as different
    # numbers of U+FFFD; the characters that did decode are what the tokens decide
    ours = [r.text.replace("\ufffd", "") for r in plain.translate(TEXTS, "en", "ja")]
    theirs = [r.text.replace("\ufffd", "") for r in torch_tr.translate(TEXTS, "en", "ja")]
    # same weights in float32, same chat template, both greedy: a near-tie may rarely flip a token
    assert sum(a == b for a, b in zip(ours, theirs, strict=True)) >= len(TEXTS) - 1, (ours, theirs)


def test_concurrent_requests_decode_together_and_change_nothing(tiny: LLMTranslator) -> None:
    one_by_one = [tiny.translate([t], "en", "ja")[0].text for t in TEXTS]
    assert [r.text for r in tiny.translate(TEXTS, "en", "ja")] == one_by_one  # one call, 4 slots
    got: dict[int, str] = {}

    def call(i: int) -> None:
        got[i] = tiny.translate([TEXTS[i]], "en", "ja")[0].text

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(TEXTS))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert [got[i] for i in range(len(TEXTS))] == one_by_one  # many threads at once


def test_the_fixed_prompt_prefix_is_not_recomputed(tiny: LLMTranslator) -> None:
    engine = tiny._runtime
    overhead = tiny._prompt_overhead("en", "ja")
    first = engine.chat(tiny.messages("Good morning.", "en", "ja"), 2)
    second = engine.chat(tiny.messages("See you tomorrow.", "en", "ja"), 2)
    assert first["timings"]["prompt_n"] > 0
    # the system prompt and the examples come from the cache: only the new text (and the template's
    # closing markers) is prefilled
    assert second["timings"]["cache_n"] > 0.8 * overhead, (second["timings"], overhead)
    assert second["timings"]["prompt_n"] < overhead / 4


def test_every_slot_holds_the_prefix_after_the_first_translation(tiny_gguf: Path) -> None:
    tr = LLMTranslator(str(tiny_gguf), {"max_new_tokens": 2, "threads": 1, "parallel": 3, "context": 512})
    tr.load()
    tr.translate(["Hello."], "en", "ja")  # the replica's warm-up
    overhead = tr._prompt_overhead("en", "ja")
    timings: list[dict[str, int]] = []
    barrier = threading.Barrier(3)

    def call(text: str) -> None:
        barrier.wait()  # side by side, so each request takes a slot of its own
        timings.append(tr._runtime.chat(tr.messages(text, "en", "ja"), 2)["timings"])

    threads = [threading.Thread(target=call, args=(t,)) for t in TEXTS[:3]]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(timings) == 3 and all(t["prompt_n"] < overhead / 4 for t in timings), (timings, overhead)
    tr.close()


def test_a_text_longer_than_the_context_is_refused_before_any_work(tiny_gguf: Path) -> None:
    opts = {"max_new_tokens": 6, "threads": 1, "parallel": 1, "context": 256, "few_shot": 0}
    tr = LLMTranslator(str(tiny_gguf), opts)
    tr.load()
    with pytest.raises(InvalidRequest) as err:
        tr.translate(["Hello, how are you today? " * 60], "en", "ja")
    assert err.value.status == 413 and "context" in str(err.value)
    assert tr.translate(["Good night."], "en", "ja")[0].text is not None  # still serving


def test_retrieved_examples_count_against_the_context(tiny_gguf: Path, tmp_path: Path) -> None:
    long_pair = ("Where is the station? " * 12, "駅はどこですか？" * 12)
    tm = tmp_path / "tm.tsv"
    tm.write_text(f"domain\ten\tja\nx\t{long_pair[0]}\t{long_pair[1]}\n", encoding="utf-8")
    opts = {"max_new_tokens": 6, "threads": 1, "parallel": 1, "context": 256, "few_shot": 0, "memory": str(tm)}
    text = "Where is the station? " * 3
    plain = LLMTranslator(str(tiny_gguf), opts)
    plain.load()
    assert plain.translate([text], "en", "ja")[0].output_tokens  # fits without the example
    tr = LLMTranslator(str(tiny_gguf), {**opts, "retrieve": 1})
    tr.load()
    with pytest.raises(InvalidRequest) as err:  # the retrieved example is counted before any work
        tr.translate([text], "en", "ja")
    assert err.value.status == 413
    assert tr.translate(["Good night."], "en", "ja")[0].text is not None  # nothing shared: no example


def test_suppressed_tokens_are_never_generated(tiny: LLMTranslator) -> None:
    free = LLMTranslator(str(tiny.model), {**tiny.options.model_dump(), "japanese_kanji_only": False})
    free.load()
    engine = free._runtime

    def token_ids(text: str, bans: Bans | None) -> set[int]:
        # llama.cpp reports a token once its bytes complete a character, so ids come from logprobs
        out = engine.chat(free.messages(text, "en", "ja"), 4, bans, n_probs=1)
        return {int(t["id"]) for t in (out["choices"][0].get("logprobs") or {}).get("content", [])}

    banned = set().union(*(token_ids(t, None) for t in TEXTS))
    assert banned, "the engine reported no generated token"
    assert not banned & set().union(*(token_ids(t, Bans(banned)) for t in TEXTS))
    # the backend's own list reaches the engine as such bans
    assert tiny._logit_bias().ids == tuple(tiny.suppressed_ids())


def test_broken_gguf_files_are_clear_errors(tiny_gguf: Path, tmp_path: Path) -> None:
    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(tiny_gguf.read_bytes()[: tiny_gguf.stat().st_size * 2 // 3])
    with pytest.raises(BackendUnavailable, match="truncated"):
        LLMTranslator(str(truncated)).load()
    header_only = tmp_path / "header.gguf"
    header_only.write_bytes(tiny_gguf.read_bytes()[:64])
    with pytest.raises(BackendUnavailable, match=r"truncated|ends inside"):
        check_whole(header_only)
    foreign = tmp_path / "foreign.gguf"
    foreign.write_text("not a model")
    with pytest.raises(BackendUnavailable, match="not a GGUF file"):
        LLMTranslator(str(foreign)).load()
    two = tmp_path / "two"
    two.mkdir()
    for name in ("a.gguf", "b.gguf"):
        shutil.copy(tiny_gguf, two / name)
    assert ".gguf" in (LLMTranslator.unavailable_reason(str(two)) or "")  # which one? refused, not guessed


def test_no_latin_is_llamacpp_only_and_keeps_names_of_the_source() -> None:
    from backends.llm_options import LLMOptions
    from backends.llm_text import kept_names

    assert kept_names("Please send the PDF to Ms. Tanaka.") == {"PDF", "Ms", "Tanaka"}
    assert kept_names("Jacket on, please.") == set()
    with pytest.raises(ValueError, match=r"no_latin is only available with runtime llama\.cpp"):
        LLMOptions(runtime="ctranslate2", no_latin=True)


def test_no_latin_grammar_refuses_latin_letters_but_not_the_names_of_the_source(tiny: LLMTranslator) -> None:
    from backends.llamacpp_rt import vocab_pieces
    from backends.llm_text import latin_grammar

    engine = tiny._runtime
    # a name the tiny vocabulary spells as one token, pushed so that the random model wants to write it
    name_id, name = next((i, p.strip()) for i, p in vocab_pieces(engine.meta) if re.fullmatch(" ?[A-Z][a-z]{2,}", p))
    source = f"I met {name} at the station."
    messages = tiny.messages(source, "en", "ja")
    push = [[name_id, 30.0]]

    def answer(**extra: object) -> str:
        return str(engine.chat(messages, 6, logit_bias=push, **extra)["choices"][0]["message"]["content"])

    assert name in answer()
    named = answer(grammar=latin_grammar(source))
    assert name in named and not re.search("[A-Za-z]", named.replace(name, ""))
    assert not re.search("[A-Za-z]", answer(grammar=latin_grammar("I like green tea.")))
    assert latin_grammar("I like green tea.") == "root ::= ([^A-Za-z])*"


def test_translate_stream_hands_over_each_token_and_ends_with_the_same_record(tiny: LLMTranslator) -> None:
    assert tiny.streams_text()
    pieces: list[str] = []
    streamed = tiny.translate_stream(TEXTS[0], "en", "ja", lambda p: pieces.append(p) is not None)
    whole = tiny.translate([TEXTS[0]], "en", "ja")[0]
    # greedy: the same tokens; random weights end on a partial UTF-8 character, which the streamed decoder
    # holds back and the whole one renders as U+FFFD, so the characters that did decode are compared
    assert streamed.output_tokens == whole.output_tokens
    assert streamed.text.replace("\ufffd", "") == whole.text.replace("\ufffd", "")
    assert len(pieces) >= 2  # token by token, not in one piece


def test_a_consumer_that_returns_true_stops_the_decoding(tiny: LLMTranslator) -> None:
    pieces: list[str] = []

    def emit(piece: str) -> bool:
        pieces.append(piece)
        return True  # the listener left after the first piece

    result = tiny.translate_stream(TEXTS[1], "en", "ja", emit)
    assert len(pieces) == 1 and (result.output_tokens or 0) <= 2
