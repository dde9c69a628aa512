"""The ``llm`` backend on a tiny random chat model (both runtimes), and its output cleaning."""

from __future__ import annotations

import itertools
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from backends.errors import BackendUnavailable, InvalidRequest
from backends.llm_convert import ct2_storage_quantization
from backends.llm_mt import DEFAULT_MODEL, FEW_SHOT, LLMTranslator, end_of_turn_ids
from backends.llm_text import (
    clean_translation,
    has_script,
    non_japanese_chars,
    non_japanese_han_token_ids,
    non_japanese_ids,
)
from backends.registry import create_translator
from backends.vocab import is_japanese_char

pytest.importorskip("transformers", reason="the llm backend needs transformers: pip install 'hayaku[llm]'")

TEXTS = ["Hello, how are you today?", "Thank you very much for your help.", "Good night."]


@pytest.fixture(scope="module", autouse=True)
def _own_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    # CTranslate2 conversions of the tiny model go to a throwaway home, not the user's cache.
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HAYAKU_HOME", str(tmp_path_factory.mktemp("hayaku_home")))
        yield


def _tiny(model: Path, **options: object) -> LLMTranslator:
    # ctranslate2 unless a test says otherwise: llama.cpp (the default runtime) reads GGUF files,
    # tested on ``tiny_gguf`` in test_llamacpp.py
    tr = LLMTranslator(str(model), {"max_new_tokens": 6, "device": "cpu", "runtime": "ctranslate2", **options})
    tr.load()
    return tr


# -- output cleaning (pure function, realistic chat-model answers) ----------------------------

SRC = "Hello, how are you today?"
JA = "こんにちは、お元気ですか？"


@pytest.mark.parametrize(
    "raw",
    [
        JA,
        f"  {JA}\n",
        f"「{JA}」",
        f'"{JA}"',
        f"Translation: {JA}",
        f"Japanese: {JA}",
        f"日本語：{JA}",
        f"Sure! Here is the translation:\n\n{JA}",
        f"Here's the Japanese translation:\n{JA}\n\n(Konnichiwa, ogenki desu ka?)",
        f"{JA} (Konnichiwa, ogenki desu ka?)",
        f"{JA}\nKonnichiwa, ogenki desu ka?",
        f"{JA}\n\nNote: this is a polite greeting.",
        f"```\n{JA}\n```",
        f"**Translation:** {JA}",
    ],
)
def test_clean_translation_keeps_only_the_japanese(raw: str) -> None:
    assert clean_translation(raw, "ja", SRC) == JA


def test_clean_translation_keeps_as_many_lines_as_the_source() -> None:
    src = "Good morning.\nSee you later."
    raw = "おはようございます。\nまたね。\n\nExplanation: casual phrases."
    assert clean_translation(raw, "ja", src) == "おはようございます。\nまたね。"
    assert clean_translation(raw, "ja", "Good morning.") == "おはようございます。"


def test_clean_translation_keeps_quotes_the_source_had() -> None:
    assert clean_translation("「はい」", "ja", "\u201cYes\u201d") == "「はい」"
    assert clean_translation('"はい"', "ja", "Yes") == "はい"


def test_clean_translation_latin_target_drops_the_preamble() -> None:
    raw = "Sure, here is the translation:\n\nBonjour, comment allez-vous aujourd'hui ?\n\nNote: formal register."
    assert clean_translation(raw, "fr", SRC) == "Bonjour, comment allez-vous aujourd'hui ?"


def test_clean_translation_keeps_a_translation_that_starts_like_a_preamble() -> None:
    assert clean_translation("Here is the station.", "en", "ここが駅です。") == "Here is the station."
    assert clean_translation("Sure, I can help.", "en", "はい、手伝えます。") == "Sure, I can help."
    assert clean_translation("Here is the translation:\nSure, I can help.", "en", "はい") == "Sure, I can help."


def test_clean_translation_never_returns_nothing_for_some_output() -> None:
    # No Japanese at all (a confused model): the answer is returned, not swallowed.
    assert clean_translation("I cannot translate that.", "ja", SRC) == "I cannot translate that."
    assert clean_translation("", "ja", SRC) == ""


def test_has_script() -> None:
    assert has_script("カタカナ", "ja") and has_script("ひらがな", "ja") and has_script("漢字", "ja")
    assert not has_script("romaji only", "ja")
    assert has_script("안녕", "ko") and not has_script("hello", "fr")


def test_ct2_storage_follows_compute_type() -> None:
    assert ct2_storage_quantization("int8") == "int8"
    assert ct2_storage_quantization("int8_float16") == "int8"
    assert ct2_storage_quantization("auto") == "int8"
    assert ct2_storage_quantization("float32") == "float32"


# -- options and availability ------------------------------------------------------------------


def test_default_model_is_the_bundled_one() -> None:
    tr = create_translator("llm")
    assert tr.model == DEFAULT_MODEL
    assert tr.describe()["options"]["runtime"] == "llama.cpp"
    assert tr.concurrent  # llama.cpp batches concurrent calls itself
    assert not LLMTranslator(None, {"runtime": "ctranslate2"}).concurrent


def test_bundled_model_is_named_for_what_it_is_and_the_old_name_still_resolves() -> None:
    from backends import bundled, model_spec

    assert DEFAULT_MODEL == bundled.QWEN_NAME == "qwen2.5-coder-1.5b-instruct"
    assert bundled.bundled_name("qwen2.5-1.5b-instruct") == DEFAULT_MODEL
    assert bundled.bundled_name("./some/folder") == "./some/folder"
    # both names get the same answer (available or the same missing-parts reason)
    assert model_spec.unavailable_reason("qwen2.5-1.5b-instruct") == model_spec.unavailable_reason(DEFAULT_MODEL)


@pytest.mark.parametrize(
    "options, needle",
    [
        ({"runtime": "onnx"}, "'onnx'"),
        ({"compute_type": "int4"}, "'int4'"),
        ({"max_new_tokens": 0}, "max_new_tokens"),
        ({"beam": 3}, "unknown option"),
        ({"no_repeat_ngram_size": 2}, "repetition_penalty"),  # llama.cpp has no n-gram ban
        ({"parallel": 0}, "parallel"),
    ],
)
def test_bad_options_are_rejected_with_the_value(options: dict[str, object], needle: str) -> None:
    with pytest.raises(InvalidRequest) as err:
        LLMTranslator(None, options)
    assert needle in str(err.value)


def test_missing_model_is_reported_cheaply(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    for options in ({}, {"runtime": "ctranslate2"}):
        reason = LLMTranslator.unavailable_reason(str(missing), options)
        assert reason is not None and str(missing) in reason
        with pytest.raises(BackendUnavailable):
            LLMTranslator(str(missing), options).load()
    assert ".gguf" in (LLMTranslator.unavailable_reason(str(tmp_path)) or "")


def test_model_without_chat_template_is_unavailable(tiny_llm: Path, tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    shutil.copytree(tiny_llm, plain)
    (plain / "chat_template.jinja").unlink(missing_ok=True)
    cfg = json.loads((plain / "tokenizer_config.json").read_text())
    cfg.pop("chat_template", None)
    (plain / "tokenizer_config.json").write_text(json.dumps(cfg))
    with pytest.raises(BackendUnavailable, match="chat template"):
        _tiny(plain, runtime="transformers")


# -- end to end on the tiny model ----------------------------------------------------------------


def test_prompt_uses_the_chat_template_and_language_names(tiny_llm: Path) -> None:
    tr = _tiny(tiny_llm, runtime="transformers")
    prompt = tr._tokenizer.decode(tr.prompt_ids("Hello there", "en", "ja"))
    assert prompt.startswith("<|im_start|>system\n")
    assert "English" in prompt and "Japanese" in prompt
    assert "<|im_start|>user\nHello there<|im_end|>" in prompt
    assert prompt.endswith("<|im_start|>assistant\n")
    custom = LLMTranslator(str(tiny_llm), {"system_prompt": "Render {source} as {target}. {braces} stay."})
    assert custom.system_prompt("en", "fr") == "Render English as French. {braces} stay."


def test_end_of_turn_includes_im_end(tiny_llm: Path) -> None:
    tr = _tiny(tiny_llm, runtime="transformers")
    assert tr._tokenizer.convert_tokens_to_ids("<|im_end|>") in end_of_turn_ids(tr._tokenizer, tiny_llm)


@pytest.mark.parametrize("runtime", ["transformers", "ctranslate2"])
def test_translates_end_to_end(tiny_llm: Path, runtime: str) -> None:
    pytest.importorskip("ctranslate2" if runtime == "ctranslate2" else "torch")
    tr = _tiny(tiny_llm, runtime=runtime)
    results = tr.translate(TEXTS, "en", "ja")
    assert [r.source_text for r in results] == TEXTS
    for r in results:
        assert r.backend == "llm" and r.target_lang == "ja"
        assert r.options["runtime"] == runtime
        assert r.output_tokens is not None and 0 <= r.output_tokens <= 6
        assert isinstance(r.text, str)
    assert tr.health()["ok"] and tr.health()["runtime"] == runtime
    tr.close()
    assert not tr.health()["ok"]


def _token_ids(tr: LLMTranslator, texts: list[str], max_new: int = 6) -> list[list[int]]:
    prompts = [tr.prompt_ids(t, "en", "ja") for t in texts]
    if tr.options.model_dump()["runtime"] == "ctranslate2":
        return tr._generate_ct2(prompts, max_new, [], [])
    return tr._generate_transformers(prompts, max_new, [])


def test_runtimes_agree_and_batching_changes_nothing(tiny_llm: Path) -> None:
    pytest.importorskip("ctranslate2")
    torch_tr = _tiny(tiny_llm, runtime="transformers", dtype="float32")
    ct2_tr = _tiny(tiny_llm, runtime="ctranslate2", compute_type="float32")
    batched = _token_ids(torch_tr, TEXTS)
    assert all(len(ids) > 0 for ids in batched)
    assert [_token_ids(torch_tr, [t])[0] for t in TEXTS] == batched  # left padding is harmless
    assert _token_ids(ct2_tr, TEXTS) == batched  # CTranslate2 float32 == torch float32
    texts_torch = [r.text for r in torch_tr.translate(TEXTS, "en", "ja")]
    assert [r.text for r in ct2_tr.translate(TEXTS, "en", "ja")] == texts_torch


@pytest.mark.parametrize("runtime", ["transformers", "ctranslate2"])
def test_generation_stops_at_end_of_turn(tiny_llm: Path, tmp_path: Path, runtime: str) -> None:
    pytest.importorskip("ctranslate2" if runtime == "ctranslate2" else "torch")
    free = _token_ids(_tiny(tiny_llm, runtime="transformers"), [TEXTS[0]])[0]
    stop_at = next(i for i, t in enumerate(free) if t not in free[:i] and i > 0)
    # Declare the token the model is about to produce an end-of-turn token.
    model = tmp_path / "stops"
    shutil.copytree(tiny_llm, model)
    gen = json.loads((model / "generation_config.json").read_text())
    gen["eos_token_id"] = [gen.get("eos_token_id"), free[stop_at]]
    (model / "generation_config.json").write_text(json.dumps(gen))
    tr = _tiny(model, runtime=runtime, **({"compute_type": "float32"} if runtime == "ctranslate2" else {}))
    result = tr.translate([TEXTS[0]], "en", "ja")[0]
    assert result.output_tokens == stop_at


# -- speed and quality levers ----------------------------------------------------------------


def test_japanese_repertoire_rejects_simplified_only_forms() -> None:
    for ch in "过场这们时对见东车门语请谢读买飞书长乐为开关":
        assert not is_japanese_char(ch), ch
    # 机 (desk) and 写 are Japanese too; kana, Latin and punctuation are never Han
    for ch in "機机写空港駅気様広応こカー、。？!aZ1":
        assert is_japanese_char(ch), ch
    assert non_japanese_chars("去机场过敏です") == "场过"
    # letters of other scripts too (seen in outputs: ミンутス); Latin, full- and half-width forms,
    # the long-vowel and iteration marks are Japanese text
    assert non_japanese_chars("ミンутス 행복 αβ café ＡＢＣ ｱｲｳ 々ー「」①") == "ут행복αβ"
    assert non_japanese_ids([(1, "ут"), (2, "행"), (3, " the"), (4, "ー"), (5, "\ufffd")]) == [1, 2]


def test_suppression_list_from_a_tiny_tokenizer() -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600, special_tokens=["<|im_end|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    bpe.train_from_iterator(["机场 机场 机场", "过敏 过敏 过敏", "機械 機械", "こんにちは カタカナ"] * 20, trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|im_end|>")
    banned = set(non_japanese_han_token_ids(tok))
    vocab = tok.get_vocab()
    text_of = {i: tok.convert_tokens_to_string([t]) for t, i in vocab.items()}
    assert banned, "the tokenizer learned 场 and 过: some tokens must be banned"
    assert all(non_japanese_chars(text_of[i]) for i in banned)
    for word in ("机场", "过敏"):
        assert any(i in banned for i in tok(word)["input_ids"]), word
    for word in ("機械", "こんにちは", "カタカナ", "机"):
        assert not any(i in banned for i in tok(word)["input_ids"]), word
    assert vocab["<|im_end|>"] not in banned


def test_few_shot_examples_are_not_in_the_quality_corpus() -> None:
    from benchmarks.quality import load_corpus

    sources = {p.source for p in load_corpus()}
    references = {p.reference for p in load_corpus()}
    for src, tgt in FEW_SHOT[("en", "ja")]:
        assert src not in sources and tgt not in references


def test_few_shot_allows_every_written_example_and_no_more() -> None:
    from backends.llm_options import LLMOptions

    most = max(len(examples) for examples in FEW_SHOT.values())
    assert LLMOptions(few_shot=most).few_shot == most
    with pytest.raises(ValueError, match="few_shot"):
        LLMOptions(few_shot=most + 1)


def test_few_shot_turns_come_before_the_text(tiny_llm: Path) -> None:
    tr = _tiny(tiny_llm, runtime="transformers", few_shot=2)
    chat = tr.messages("Hello there", "en", "ja")
    assert [m["role"] for m in chat] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert chat[1]["content"] == FEW_SHOT[("en", "ja")][0][0] and chat[-1]["content"] == "Hello there"
    # pairs without examples get the plain prompt
    assert [m["role"] for m in tr.messages("Bonjour", "fr", "en")] == ["system", "user"]
    prefix = tr.prefix_ids("en", "ja")
    ids = tr.prompt_ids("Hello there", "en", "ja")
    assert ids[: len(prefix)] == prefix and len(ids) > len(prefix)


@pytest.mark.parametrize("few_shot", [0, 2])
def test_prompt_cache_changes_no_output(tiny_llm: Path, few_shot: int) -> None:
    pytest.importorskip("ctranslate2")
    cached = _tiny(tiny_llm, runtime="ctranslate2", compute_type="float32", few_shot=few_shot, prompt_cache=True)
    plain = _tiny(tiny_llm, runtime="ctranslate2", compute_type="float32", few_shot=few_shot, prompt_cache=False)
    prompts = [cached.prompt_ids(t, "en", "ja") for t in TEXTS]
    prefix = cached.prefix_ids("en", "ja")
    expected = plain._generate_ct2(prompts, 6, [], [])
    assert cached._generate_ct2(prompts, 6, [], prefix) == expected  # batched, cache filled
    assert cached._generate_ct2(prompts, 6, [], prefix) == expected  # batched, from the cache
    assert [cached._generate_ct2([p], 6, [], prefix)[0] for p in prompts] == expected  # one at a time
    assert [r.text for r in cached.translate(TEXTS, "en", "ja")] == [r.text for r in plain.translate(TEXTS, "en", "ja")]


@pytest.mark.parametrize("runtime", ["transformers", "ctranslate2"])
def test_suppressed_tokens_are_never_generated(tiny_llm: Path, runtime: str) -> None:
    pytest.importorskip("ctranslate2" if runtime == "ctranslate2" else "torch")
    opts = {"compute_type": "float32"} if runtime == "ctranslate2" else {}
    tr = _tiny(tiny_llm, runtime=runtime, **opts)
    prompts = [tr.prompt_ids(t, "en", "ja") for t in TEXTS]
    free = _token_ids(tr, TEXTS)
    banned = sorted({ids[0] for ids in free})  # what each text would start with
    if runtime == "ctranslate2":
        again = tr._generate_ct2(prompts, 6, banned, [])
    else:
        again = tr._generate_transformers(prompts, 6, banned)
    assert all(t not in banned for ids in again for t in ids)
    assert again != free


def test_output_length_is_bounded_by_the_input(tiny_llm: Path) -> None:
    tr = _tiny(tiny_llm, runtime="transformers", max_new_tokens=200, max_length_ratio=1.0)
    n = len(tr._tokenizer("Good night.", add_special_tokens=False)["input_ids"])
    assert tr.max_new_tokens(["Good night."]) == n + 16
    assert tr.max_new_tokens(["Good night.", TEXTS[1]]) > n + 16  # the batch's longest text
    assert _tiny(tiny_llm, runtime="transformers", max_new_tokens=5).max_new_tokens(["Good night."]) == 5
    unbounded = _tiny(tiny_llm, runtime="transformers", max_new_tokens=200, max_length_ratio=0)
    assert unbounded.max_new_tokens(["Good night."]) == 200
    bounded = tr.translate(["Good night."], "en", "ja")[0].output_tokens
    assert bounded is not None and bounded <= n + 16


@pytest.mark.parametrize("runtime", ["transformers", "ctranslate2"])
def test_repetition_guard_forbids_repeated_ngrams(tiny_llm: Path, runtime: str) -> None:
    pytest.importorskip("ctranslate2" if runtime == "ctranslate2" else "torch")
    opts = {"compute_type": "float32"} if runtime == "ctranslate2" else {}

    def repeats(ids: list[int]) -> int:
        bigrams = list(itertools.pairwise(ids))
        return len(bigrams) - len(set(bigrams))

    free = _tiny(tiny_llm, runtime=runtime, max_new_tokens=40, **opts)
    assert sum(repeats(ids) for ids in _token_ids(free, TEXTS, max_new=40)) > 0  # the random model loops
    guarded = _tiny(tiny_llm, runtime=runtime, max_new_tokens=40, no_repeat_ngram_size=2, **opts)
    assert all(repeats(ids) == 0 for ids in _token_ids(guarded, TEXTS, max_new=40))
