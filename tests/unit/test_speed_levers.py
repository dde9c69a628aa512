"""Speed levers of the seq2seq runtimes pick the same tokens as the plain settings, on tiny models.

- ``output_vocab``: a restricted output layer (torch: sliced projection; CTranslate2: vocabulary
  map) gives exactly the full-vocabulary greedy tokens whenever those lie inside the subset,
  and never a token outside it.
- ``loop: greedy`` (hayaku's loop over the KV cache) matches ``generate()`` token for token.
- ``threads`` applies during the call and is restored after.
- the script rule behind ``output_vocab: target``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from backends import vocab
from backends.errors import InvalidRequest
from backends.registry import create_translator, translator_class

pytest.importorskip("torch", reason="speed-lever tests need torch: pip install 'hayaku[torch]'")
pytest.importorskip("transformers", reason="speed-lever tests need transformers: pip install 'hayaku[torch]'")

from benchmarks.models import ENGLISH

MAX_NEW = 12
TEXTS = ENGLISH[:8]


@pytest.fixture(scope="module", autouse=True)
def _home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HAYAKU_HOME", str(tmp_path_factory.mktemp("hayaku-home")))
        yield


def _ids(name: str, model: Path, **options: Any) -> list[list[int]]:
    reason = translator_class(name).unavailable_reason(None)
    if reason:
        pytest.skip(f"{name}: {reason}")
    length = {"max_decoding_length": MAX_NEW} if name == "ctranslate2" else {"max_new_tokens": MAX_NEW}
    t = create_translator(name, model=str(model), options={**length, **options})
    t.load()
    try:
        return t.generate_ids(TEXTS, "en", "ja")
    finally:
        t.close()


def test_script_rule() -> None:
    ok = ["こんにちは", "\u2581カタカナ", "東京", "。", "\u2581123", "\u2581Taro", "<0xE3>", "ー", "々", "Ｐ"]
    bad = ["\u2581привет", "过", "场", "안녕", "नमस्ते", "\u0639\u0631\u0628"]
    assert all(vocab.token_in_script(t, "Jpan") for t in ok), [t for t in ok if not vocab.token_in_script(t, "Jpan")]
    assert not any(vocab.token_in_script(t, "Jpan") for t in bad), [t for t in bad if vocab.token_in_script(t, "Jpan")]
    assert vocab.token_in_script("\u2581привет", "Cyrl") and not vocab.token_in_script("こんにちは", "Cyrl")
    assert vocab.script_of("ja") == "Jpan" and vocab.script_of("xx") is None


def test_allowed_ids_keep_required_and_drop_excluded(tmp_path: Path) -> None:
    pieces = list(enumerate(["</s>", "<pad>", "jpn_Jpan", "\u2581привет", "こん", None, "fra_Latn"]))
    ids = vocab.allowed_ids("target", "ja", 7, pieces, required=[0, 2], excluded=[1, 2, 6])
    assert ids == [0, 2, 4]  # required beat excluded; Cyrillic and the unnamed id are out
    assert vocab.allowed_ids("full", "ja", 7, pieces, [0]) is None
    f = tmp_path / "ids.txt"
    f.write_text("3 4\n5\n")
    assert vocab.allowed_ids(str(f), "ja", 7, pieces, [0]) == [0, 3, 4, 5]
    f.write_text("3 99")
    with pytest.raises(InvalidRequest, match="outside the vocabulary"):
        vocab.allowed_ids(str(f), "ja", 7, pieces, [0])
    with pytest.raises(InvalidRequest, match="output_vocab"):
        create_translator("transformers", model="x", options={"output_vocab": str(tmp_path / "missing.txt")})


@pytest.mark.parametrize("family", ["marian", "nllb"])
def test_restricted_output_layer_agrees(family: str, tiny_marian: Path, tiny_nllb: Path, tmp_path: Path) -> None:
    model = tiny_marian if family == "marian" else tiny_nllb
    full = _ids("transformers", model)
    vocab_size = 202 if family == "marian" else 306
    used = {i for row in full[:4] for i in row}
    # the tokens of the first four outputs plus a third of the rest: the other outputs leave the subset
    subset = used | set(range(0, vocab_size, 3))
    path = tmp_path / "ids.txt"
    path.write_text(" ".join(map(str, sorted(subset))))
    outside = [i for i, row in enumerate(full) if not set(row) <= subset]
    assert outside, "the subset should cut some outputs, or the test proves nothing"
    for name in ("transformers", "ctranslate2"):
        opts = {"compute_type": "float32"} if name == "ctranslate2" else {}
        ref = full if name == "transformers" else _ids(name, model, **opts)
        got = _ids(name, model, output_vocab=str(path), **opts)
        for i, (a, b) in enumerate(zip(ref, got, strict=True)):
            if set(a) <= subset:
                assert a == b, f"{name} row {i}: {a} != {b}"
            assert set(b) <= subset | {0, 1, 2, 3}, f"{name} row {i} left the subset: {b}"
        assert any(a != b for i, (a, b) in enumerate(zip(ref, got, strict=True)) if i in outside)


@pytest.mark.parametrize("family", ["marian", "nllb"])
def test_greedy_loop_matches_generate(family: str, tiny_marian: Path, tiny_nllb: Path) -> None:
    model = tiny_marian if family == "marian" else tiny_nllb
    # forced length (EOS held back) on Marian, free length on NLLB
    forced = {"min_new_tokens": MAX_NEW} if family == "marian" else {}
    assert _ids("transformers", model, loop="greedy", **forced) == _ids("transformers", model, **forced)


def test_threads_are_set_per_call_and_restored(tiny_marian: Path) -> None:
    import torch

    before = torch.get_num_threads()
    seen: list[int] = []
    t = create_translator("transformers", model=str(tiny_marian), options={"max_new_tokens": 4, "threads": 1})
    t.load()
    forward = t.model_obj.forward

    def spy(*a: Any, **kw: Any) -> Any:
        seen.append(torch.get_num_threads())
        return forward(*a, **kw)

    t.model_obj.forward = spy
    t.translate(["Hello"])
    t.close()
    assert seen and set(seen) == {1}
    assert torch.get_num_threads() == before


def test_option_errors() -> None:
    with pytest.raises(InvalidRequest, match="greedy"):
        create_translator("transformers", model="x", options={"loop": "greedy", "num_beams": 2})
    with pytest.raises(InvalidRequest, match="output_vocab"):
        create_translator("ctranslate2", model="x", options={"output_vocab": "japanese"})
