"""Shared fixtures. Tests are auto-marked by folder: unit/, integration/, e2e/, cluster/."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "artifacts"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        parts = Path(str(item.fspath)).relative_to(ROOT / "tests").parts
        if parts and parts[0] in ("unit", "integration", "e2e", "cluster"):
            item.add_marker(getattr(pytest.mark, parts[0]))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now (for a Serve proxy or a test server of one's own).

    The one definition for every test folder: ``from tests.conftest import free_port``.
    """
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


# -- llm backend: a tiny random chat model (Qwen2 architecture) -------------------------------


@pytest.fixture(scope="session")
def tiny_llm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder of a tiny random chat LM for the ``llm`` backend (built once per session)."""
    pytest.importorskip("transformers", reason="the tiny llm needs transformers: pip install 'hayaku[llm]'")
    pytest.importorskip("torch", reason="the tiny llm needs torch: pip install 'hayaku[llm]'")
    from benchmarks.models import build_tiny_llm

    return build_tiny_llm(tmp_path_factory.mktemp("tiny_llm") / "model")


@pytest.fixture(scope="session")
def tiny_gguf(tiny_llm: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``tiny_llm`` as a float32 GGUF file for the llama.cpp runtime (built once per session)."""
    pytest.importorskip("gguf", reason="the tiny GGUF needs gguf: pip install 'hayaku[llm]'")
    pytest.importorskip("xllamacpp", reason="the tiny GGUF is for llama.cpp (xllamacpp): pip install 'hayaku[llm]'")
    from benchmarks.models import build_tiny_gguf

    return build_tiny_gguf(tiny_llm, tmp_path_factory.mktemp("tiny_gguf") / "model.gguf")


# -- seq2seq MT backends: tiny random Marian and NLLB-architecture models ----------------------


@pytest.fixture(scope="session")
def tiny_marian(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder of a tiny random MarianMT en->ja (d_model 32), built once per session."""
    pytest.importorskip("transformers", reason="the tiny Marian needs transformers: pip install 'hayaku[torch]'")
    pytest.importorskip("sentencepiece", reason="the tiny Marian needs sentencepiece: pip install 'hayaku[torch]'")
    from benchmarks.models import build_tiny_marian

    return build_tiny_marian(tmp_path_factory.mktemp("tiny_marian") / "model")


@pytest.fixture(scope="session")
def tiny_nllb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder of a tiny random M2M100 model with an NLLB tokenizer (eng_Latn, jpn_Jpan, ...)."""
    pytest.importorskip("transformers", reason="the tiny NLLB needs transformers: pip install 'hayaku[torch]'")
    from benchmarks.models import build_tiny_nllb

    return build_tiny_nllb(tmp_path_factory.mktemp("tiny_nllb") / "model")


@pytest.fixture(scope="module")
def hayaku_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A private HAYAKU_HOME for the test module: what it builds or exports lands there, starting empty."""
    home = tmp_path_factory.mktemp("hayaku_home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HAYAKU_HOME", str(home))
        yield home
