"""The bundled offline translator (Qwen2.5-Coder-1.5B-Instruct) really translates to Japanese.

Slow: the first run builds the model (about 3 minutes, 5 GB under HAYAKU_HOME); later runs
load the cached folders.
"""

from __future__ import annotations

import pytest

from backends.llm_mt import LLMTranslator, has_script

pytestmark = pytest.mark.slow

SENTENCE = "Hello, how are you today?"


def _bundled_or_skip(options: dict[str, object]) -> LLMTranslator:
    reason = LLMTranslator.unavailable_reason(None)
    if reason:
        pytest.skip(reason)
    tr = LLMTranslator(None, {"device": "cpu", "max_new_tokens": 48, **options})
    tr.load()
    return tr


def _assert_japanese_translation(text: str) -> None:
    assert has_script(text, "ja"), f"no hiragana, katakana or kanji in {text!r}"
    assert "\n" not in text and "Translation" not in text
    assert "こんにちは" in text  # "Hello" has one standard rendering


def test_bundled_qwen_ct2_int8_speaks_japanese() -> None:
    tr = _bundled_or_skip({"runtime": "ctranslate2", "compute_type": "int8"})
    result = tr.translate([SENTENCE], "en", "ja")[0]
    _assert_japanese_translation(result.text)
    assert result.backend == "llm" and result.output_tokens and result.output_tokens < 48
    batch = tr.translate([SENTENCE, "Thank you very much for your help."], "en", "ja")
    assert all(has_script(r.text, "ja") for r in batch)


def test_bundled_qwen_transformers_speaks_japanese() -> None:
    tr = _bundled_or_skip({"runtime": "transformers", "dtype": "bfloat16"})
    _assert_japanese_translation(tr.translate([SENTENCE], "en", "ja")[0].text)
