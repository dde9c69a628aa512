"""Shared fixtures. Tests are auto-marked by folder: unit/, integration/, e2e/."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "artifacts"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        parts = Path(str(item.fspath)).relative_to(ROOT / "tests").parts
        if parts and parts[0] in ("unit", "integration", "e2e"):
            item.add_marker(getattr(pytest.mark, parts[0]))


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


# -- llm backend: a tiny random chat model (Qwen2 architecture) -------------------------------

TINY_CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def build_tiny_llm(out: Path, seed: int = 0, chat_template: str | None = TINY_CHATML) -> Path:
    """A random Qwen2 causal LM (hidden size 32) with a byte-level BPE trained in memory.

    ``initializer_range=1.0`` keeps greedy choices far apart, so float32 runtimes agree token
    for token. The chat template is ChatML, as in Qwen's own models.
    """
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    from benchmarks.models import ENGLISH, JAPANESE

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    prompt_words = ["system", "user", "assistant", "You are a professional translator.", "Japanese", "English"]
    bpe.train_from_iterator(ENGLISH + JAPANESE + prompt_words, trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    if chat_template:
        tok.chat_template = chat_template
    tok.save_pretrained(out)
    torch.manual_seed(seed)
    config = Qwen2Config(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        initializer_range=1.0,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        bos_token_id=None,
    )
    Qwen2ForCausalLM(config).save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_llm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder of a tiny random chat LM for the ``llm`` backend (built once per session)."""
    pytest.importorskip("transformers", reason="the tiny llm needs transformers: pip install 'hayaku[llm]'")
    pytest.importorskip("torch", reason="the tiny llm needs torch: pip install 'hayaku[llm]'")
    return build_tiny_llm(tmp_path_factory.mktemp("tiny_llm") / "model")


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
