"""The onnx and coreml runtimes on the tiny random models: exports, caches, agreement."""

from __future__ import annotations

import platform
from pathlib import Path

import pytest

from backends.errors import BackendUnavailable, InvalidRequest

TEXTS = ["Hello, how are you today?", "The cat is sleeping on the sofa.", "Please open the window."]


@pytest.fixture(scope="module")
def onnx_ready(hayaku_home: Path) -> None:
    for mod in ("onnxruntime", "onnx", "torch", "transformers"):
        pytest.importorskip(mod, reason=f"the onnx backend needs {mod}: pip install 'hayaku[onnx]'")


def _transformers_ids(model: Path, tgt: str, max_new: int) -> list[list[int]]:
    from backends.transformers_mt import TransformersTranslator

    ref = TransformersTranslator(str(model), {"device": "cpu", "dtype": "float32", "max_new_tokens": max_new})
    return ref.generate_ids(TEXTS, "en", tgt)


def test_onnx_greedy_equals_transformers_on_tiny_marian(onnx_ready: None, tiny_marian: Path) -> None:
    from backends.onnx_mt import OnnxTranslator

    onnx = OnnxTranslator(str(tiny_marian), {"max_new_tokens": 16})
    got = onnx.generate_ids(TEXTS, "en", "ja")  # one padded batch of three
    assert got == _transformers_ids(tiny_marian, "ja", 16)
    assert all(len(ids) > 0 for ids in got)
    assert got == [onnx.generate_ids([t], "en", "ja")[0] for t in TEXTS]  # unpadded, one by one


def test_onnx_greedy_equals_transformers_on_tiny_nllb_with_forced_language(onnx_ready: None, tiny_nllb: Path) -> None:
    from backends.onnx_mt import OnnxTranslator

    onnx = OnnxTranslator(str(tiny_nllb), {"max_new_tokens": 16})
    got = onnx.generate_ids(TEXTS, "en", "ja")
    assert onnx.tokenizer is not None
    jpn = onnx.tokenizer.lang_token_id("ja")
    assert all(ids[0] == jpn for ids in got), "the target-language token must come first"
    assert got == _transformers_ids(tiny_nllb, "ja", 16)
    fra = onnx.generate_ids(TEXTS[:1], "en", "fr")[0]
    assert fra[0] == onnx.tokenizer.lang_token_id("fr") and fra != got[0]


def test_onnx_min_new_tokens_forces_the_output_length(onnx_ready: None, tiny_nllb: Path) -> None:
    from backends.onnx_mt import OnnxTranslator

    onnx = OnnxTranslator(str(tiny_nllb), {"max_new_tokens": 9, "min_new_tokens": 9})
    assert [r.output_tokens for r in onnx.translate(TEXTS, "en", "ja")] == [9, 9, 9]


def test_onnx_export_is_cached_and_reused(onnx_ready: None, tiny_marian: Path) -> None:
    from backends.onnx_mt import OnnxTranslator

    first = OnnxTranslator(str(tiny_marian), {"max_new_tokens": 4})
    first.load()
    folder = first.export_dir()
    assert (folder / "encoder.onnx").is_file() and (folder / "decoder.onnx").is_file()
    stamp = (folder / "decoder.onnx").stat().st_mtime_ns
    second = OnnxTranslator(str(tiny_marian), {"max_new_tokens": 4, "intra_op_threads": 1})
    second.load()
    assert second.export_dir() == folder
    assert second.export_s is None, "the second load exported again instead of reusing the cache"
    assert (folder / "decoder.onnx").stat().st_mtime_ns == stamp
    assert second.translate(TEXTS[:1], "en", "ja")[0].text == first.translate(TEXTS[:1], "en", "ja")[0].text


def test_onnx_num_beams_above_one_is_refused() -> None:
    from backends.onnx_mt import OnnxTranslator

    with pytest.raises(InvalidRequest, match=r"num_beams=3.*greedily"):
        OnnxTranslator("unused", {"num_beams": 3})
    with pytest.raises(InvalidRequest, match="min_new_tokens 9 is larger than max_new_tokens 4"):
        OnnxTranslator("unused", {"max_new_tokens": 4, "min_new_tokens": 9})


@pytest.mark.skipif(platform.system() == "Darwin", reason="checks the refusal off macOS; this is macOS")
def test_onnx_coreml_provider_off_macos_is_a_clear_error(
    onnx_ready: None, tiny_marian: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from backends.onnx_mt import OnnxTranslator

    monkeypatch.setenv("HAYAKU_HOME", str(tmp_path))

    onnx = OnnxTranslator(str(tiny_marian), {"provider": "coreml"})
    with pytest.raises(BackendUnavailable, match=r"provider 'coreml'.*only on macOS"):
        onnx.load()
    assert not onnx.export_dir().exists(), "a refused provider must not export anything first"


def test_onnx_cuda_provider_without_cuda_build_names_the_fix(onnx_ready: None, tiny_marian: Path) -> None:
    import onnxruntime as ort

    from backends.onnx_mt import OnnxTranslator

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has the CUDA provider; the refusal cannot happen here")
    with pytest.raises(BackendUnavailable, match="onnxruntime-gpu"):
        OnnxTranslator(str(tiny_marian), {"provider": "cuda"}).load()


@pytest.mark.parametrize("fixture", ["tiny_marian", "tiny_nllb"])
def test_coreml_conversion_writes_mlpackages(hayaku_home: Path, fixture: str, request: pytest.FixtureRequest) -> None:
    for mod in ("coremltools", "torch", "transformers"):
        pytest.importorskip(mod, reason=f"Core ML conversion needs {mod}: pip install 'hayaku[coreml]'")
    from backends.coreml_mt import CoreMLTranslator

    model: Path = request.getfixturevalue(fixture)
    translator = CoreMLTranslator(str(model), {"precision": "float32", "max_source_tokens": 64})
    folder = translator.convert()
    for name in ("encoder.mlpackage", "decoder.mlpackage"):
        package = folder / name
        assert package.is_dir() and (package / "Manifest.json").is_file(), f"{package} is not an .mlpackage"
    assert translator.convert_s is not None and translator.convert_s > 0, "the first convert() converts"
    again = CoreMLTranslator(str(model), {"precision": "float32", "max_source_tokens": 64})
    assert again.convert() == folder and again.convert_s is None


@pytest.mark.skipif(platform.system() == "Darwin", reason="checks the refusal off macOS; this is macOS")
def test_coreml_load_off_macos_says_why_before_any_work(
    tiny_marian: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from backends.coreml_mt import CoreMLTranslator

    monkeypatch.setenv("HAYAKU_HOME", str(tmp_path))

    translator = CoreMLTranslator(str(tiny_marian), {"precision": "float16"})
    with pytest.raises(BackendUnavailable, match="Core ML predicts only on macOS"):
        translator.load()
    assert not translator.convert_dir().exists(), "load() converted before refusing"
    assert "Core ML predicts only on macOS" in str(CoreMLTranslator.unavailable_reason(None))
