"""The tiny GGUF file (``tiny_gguf``) is the tiny Qwen2 (``tiny_llm``) as llama.cpp sees it.

llama.cpp and transformers float32 must agree on the metadata, the token ids, the chat template
and greedy decoding, or tests of the llama.cpp runtime would test a different model. llama.cpp
runs here with an f32 KV cache and without flash attention, and needs both: with either of its
defaults (f16 cache; flash attention, whose CPU kernel rounds to f16) the chosen tokens' log-probs
move by up to 0.3, as this model's std-1.0 weights make attention scores large, and one greedy
path in 40 parts from transformers within 16 tokens. With both it is 2e-4 and none.
"""

from __future__ import annotations

import json
import shutil
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from benchmarks.models import ENGLISH, JAPANESE

N_NEW = 8
CHAT = [{"role": "system", "content": "You are a professional translator."}, {"role": "user", "content": ENGLISH[0]}]


class Llama:
    """xllamacpp's engine, greedy, one slot, one thread; HTTP for the routes Python lacks."""

    def __init__(self, gguf_path: Path) -> None:
        import xllamacpp as xlc

        from backends.llamacpp_rt import greedy_params

        p = greedy_params(gguf_path, threads=1, parallel=1, context=512)
        p.cache_type_k = p.cache_type_v = xlc.ggml_type.GGML_TYPE_F32
        p.flash_attn_type = xlc.llama_flash_attn_type.LLAMA_FLASH_ATTN_TYPE_DISABLED
        self.server = xlc.Server(p)
        # Dropping a Server that has served no completion yet hangs now and then (1 in ~30, in the
        # join of its loop thread; a /health answer is not enough), so serve one first.
        self.http("/completion", {"prompt": [0], "n_predict": 1})

    def http(self, route: str, body: dict[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            self.server.listening_address + route, data=data, headers={"content-type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read())


@pytest.fixture(scope="module", params=["tiny_llm", "random_biases"])
def model_pair(
    request: pytest.FixtureRequest, tiny_llm: Path, tiny_gguf: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Path]:
    """(HF folder, GGUF file): ``tiny_llm`` itself, and a copy with random biases and norm weights.

    transformers initialises biases to 0 and norm weights to 1, so on ``tiny_llm`` alone a GGUF
    that dropped the q/v biases or swapped attn_norm and ffn_norm would decode the same.
    """
    if request.param == "tiny_llm":
        return tiny_llm, tiny_gguf
    import torch
    from transformers import AutoModelForCausalLM

    from benchmarks.models import build_tiny_gguf

    folder = tmp_path_factory.mktemp("random_biases")
    shutil.copytree(tiny_llm, folder, dirs_exist_ok=True)
    model = AutoModelForCausalLM.from_pretrained(str(tiny_llm), dtype=torch.float32)
    torch.manual_seed(1)
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() == 1:
                param.add_(torch.randn_like(param) * 0.5)
    model.save_pretrained(folder)
    return folder, build_tiny_gguf(folder, folder / "model.gguf")


@pytest.fixture(scope="module")
def llama(model_pair: tuple[Path, Path]) -> Iterator[Llama]:
    engine = Llama(model_pair[1])
    yield engine
    del engine.server  # frees llama.cpp's threads and port now, not at interpreter exit


@pytest.fixture(scope="module")
def hf(model_pair: tuple[Path, Path]) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(model_pair[0]), dtype=torch.float32).eval()
    return AutoTokenizer.from_pretrained(str(model_pair[0])), model


def test_llama_cpp_reads_the_model(llama: Llama, hf: tuple[Any, Any]) -> None:
    tok, model = hf
    meta = llama.http("/v1/models")["data"][0]["meta"]
    assert meta["n_vocab"] == len(tok) == model.config.vocab_size
    assert meta["n_embd"] == model.config.hidden_size
    assert meta["n_ctx_train"] == model.config.max_position_embeddings
    assert meta["n_params"] == model.num_parameters()  # a tied output head counts once in both
    props = llama.http("/props")
    assert props["chat_template"] == tok.chat_template
    assert (props["eos_token"], props["bos_token"]) == ("<|im_end|>", "<|endoftext|>")


def test_token_ids_and_chat_prompt_match_transformers(llama: Llama, hf: tuple[Any, Any]) -> None:
    tok, _ = hf
    for text in [*ENGLISH, *JAPANESE]:
        assert llama.http("/tokenize", {"content": text})["tokens"] == tok(text)["input_ids"], text
    prompt = tok.apply_chat_template(CHAT, tokenize=False, add_generation_prompt=True)
    assert llama.http("/apply-template", {"messages": CHAT})["prompt"] == prompt
    # the specials are single CONTROL tokens in llama.cpp, as in HF
    assert llama.http("/tokenize", {"content": prompt, "parse_special": True})["tokens"] == tok(prompt)["input_ids"]


@pytest.mark.parametrize("text", [ENGLISH[0], ENGLISH[5], JAPANESE[0], JAPANESE[2], "chat"])
def test_greedy_decoding_matches_transformers(llama: Llama, hf: tuple[Any, Any], text: str) -> None:
    import torch

    tok, model = hf
    if text == "chat":
        text = tok.apply_chat_template(CHAT, tokenize=False, add_generation_prompt=True)
    ids = tok(text)["input_ids"]
    with torch.no_grad():
        out = model.generate(torch.tensor([ids]), max_new_tokens=N_NEW, do_sample=False, eos_token_id=None)
    expected = out[0, len(ids) :].tolist()
    r = llama.http(
        "/completion",
        {"prompt": ids, "n_predict": N_NEW, "ignore_eos": True, "return_tokens": True, "temperature": 0},
    )
    got = r["tokens"]
    for step, (a, b) in enumerate(zip(expected, got, strict=True)):
        if a != b:
            # only a tie may part the two: float32 sums in a different order differ by ~1e-5
            with torch.no_grad():
                logits = model(torch.tensor([ids + expected[:step]])).logits[0, -1]
            assert abs(logits[a] - logits[b]).item() < 1e-3, f"step {step}: HF {expected}, llama.cpp {got}"
            break
