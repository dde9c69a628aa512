"""Tiny random seq2seq MT models, built in seconds and saved as ordinary HF folders.

No hub: tokenizers are trained in memory on the sentences below, weights are random.
``init_std=1.0`` spreads the logits far apart, so greedy decoding never ties and every
runtime (torch float32, bfloat16, int8, CTranslate2, ONNX) picks the same tokens.

Also writes a config with the exact ``facebook/nllb-200-distilled-600M`` architecture, so
benchmarks can time every backend at the real size with random weights.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

ENGLISH = [
    "Hello, how are you today?",
    "The weather is nice this morning.",
    "I would like a cup of coffee, please.",
    "Where is the nearest train station?",
    "Thank you very much for your help.",
    "My name is Taro and I live in Tokyo.",
    "This book is very interesting.",
    "Can you speak more slowly?",
    "We are going to the park tomorrow.",
    "The meeting starts at three o'clock.",
    "Please open the window.",
    "How much does this cost?",
    "I am learning Japanese every day.",
    "The cat is sleeping on the sofa.",
    "It is raining, so take an umbrella.",
    "Good night and sweet dreams.",
    "Speech translation should be fast.",
    "She bought fresh fish at the market.",
    "Do you have any questions?",
    "Let's eat dinner together.",
]
JAPANESE = [
    "こんにちは、今日はお元気ですか？",
    "今朝は天気がいいです。",
    "コーヒーを一杯ください。",
    "一番近い駅はどこですか？",
    "手伝ってくれて本当にありがとう。",
    "私の名前は太郎で、東京に住んでいます。",
    "この本はとても面白いです。",
    "もっとゆっくり話してくれますか？",
    "明日は公園に行きます。",
    "会議は三時に始まります。",
    "窓を開けてください。",
    "これはいくらですか？",
    "毎日日本語を勉強しています。",
    "猫がソファーで寝ています。",
    "雨が降っているので、傘を持って行ってください。",
    "おやすみなさい、いい夢を。",
    "音声翻訳は速くなければならない。",
    "彼女は市場で新鮮な魚を買いました。",
    "何か質問はありますか？",
    "一緒に晩ご飯を食べましょう。",
]

#: NLLB codes the tiny NLLB tokenizer knows: a subset, so "unsupported language" is testable
TINY_NLLB_CODES = ("eng_Latn", "jpn_Jpan", "fra_Latn", "deu_Latn", "zho_Hans")

_TINY_DIMS: dict[str, Any] = {
    "d_model": 32,
    "encoder_layers": 2,
    "decoder_layers": 2,
    "encoder_attention_heads": 4,
    "decoder_attention_heads": 4,
    "encoder_ffn_dim": 64,
    "decoder_ffn_dim": 64,
    "max_position_embeddings": 512,
    "dropout": 0.0,
    "attention_dropout": 0.0,
    "activation_dropout": 0.0,
    "init_std": 1.0,
}


def _train_spm(vocab_size: int) -> bytes:
    import sentencepiece as spm

    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(ENGLISH + JAPANESE),
        model_writer=buf,
        vocab_size=vocab_size,
        model_type="unigram",
        character_coverage=1.0,
        hard_vocab_limit=False,
        # Marian's vocab.json holds the specials; keep the spm model free of control ids
        # beyond the defaults so piece ids never leak into the model vocabulary.
        bos_id=-1,
        eos_id=-1,
        unk_id=0,
        minloglevel=2,
        num_threads=1,
    )
    return buf.getvalue()


def build_tiny_marian(out: Path, seed: int = 0, init_std: float = 1.0) -> Path:
    """A MarianMT en->ja with d_model 32 and 2+2 layers; ``<pad>`` is the last vocabulary id."""
    import sentencepiece as spm
    import torch
    from transformers import GenerationConfig, MarianConfig, MarianMTModel, MarianTokenizer

    out.mkdir(parents=True, exist_ok=True)
    model_bytes = _train_spm(200)
    sp = spm.SentencePieceProcessor(model_proto=model_bytes)
    pieces = [sp.id_to_piece(i) for i in range(sp.get_piece_size()) if sp.id_to_piece(i) != "<unk>"]
    # CTranslate2 drops a trailing <pad> (the decoder starts from a zero embedding there),
    # so <pad> must be last for the two runtimes to share token ids.
    vocab = {"</s>": 0, "<unk>": 1}
    for p in pieces:
        vocab.setdefault(p, len(vocab))
    vocab["<pad>"] = len(vocab)
    (out / "source.spm").write_bytes(model_bytes)
    (out / "target.spm").write_bytes(model_bytes)
    (out / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False, indent=1), encoding="utf-8")

    tok = MarianTokenizer(
        source_spm=str(out / "source.spm"),
        target_spm=str(out / "target.spm"),
        vocab=str(out / "vocab.json"),
        source_lang="en",
        target_lang="ja",
    )
    pad = vocab["<pad>"]
    config = MarianConfig(
        vocab_size=len(vocab),
        decoder_vocab_size=len(vocab),
        pad_token_id=pad,
        eos_token_id=0,
        decoder_start_token_id=pad,
        forced_eos_token_id=0,
        scale_embedding=True,
        share_encoder_decoder_embeddings=True,
        # Untied output projection: with init_std=1.0 a tied one makes the decoder repeat
        # its previous token forever, which would make agreement tests trivially true.
        tie_word_embeddings=False,
        activation_function="swish",
        **{**_TINY_DIMS, "init_std": init_std},
    )
    torch.manual_seed(seed)
    model = MarianMTModel(config).eval()
    # Real Marian checkpoints never emit <pad>; say so, as their generation configs do.
    model.generation_config = GenerationConfig(
        bad_words_ids=[[pad]],
        decoder_start_token_id=pad,
        eos_token_id=0,
        pad_token_id=pad,
        forced_eos_token_id=0,
        max_length=64,
        num_beams=1,
    )
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def _train_bpe_vocab(reserved: list[str], n_merges_vocab: int) -> tuple[dict[str, int], Any]:
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    trainer = trainers.BpeTrainer(vocab_size=n_merges_vocab, special_tokens=reserved, show_progress=False)
    bpe.train_from_iterator(ENGLISH + JAPANESE, trainer=trainer)
    state = json.loads(bpe.to_str())["model"]
    # the tokenizers BPE model wants (left, right) pairs; its JSON may hold "left right" strings
    merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else (m[0], m[1]) for m in state["merges"]]
    return dict(state["vocab"]), merges


def build_tiny_nllb(out: Path, seed: int = 0, init_std: float = 1.0) -> Path:
    """An M2M100-architecture model with an NLLB tokenizer (eng_Latn, jpn_Jpan, ... codes)."""
    import torch
    from transformers import GenerationConfig, M2M100Config, M2M100ForConditionalGeneration, NllbTokenizer

    out.mkdir(parents=True, exist_ok=True)
    vocab, merges = _train_bpe_vocab(["<s>", "<pad>", "</s>", "<unk>"], 300)
    tok = NllbTokenizer(vocab=vocab, merges=merges, extra_special_tokens=list(TINY_NLLB_CODES), src_lang="eng_Latn")
    config = M2M100Config(
        vocab_size=len(tok),
        bos_token_id=0,
        pad_token_id=1,
        eos_token_id=2,
        decoder_start_token_id=2,
        scale_embedding=True,
        activation_function="relu",
        tie_word_embeddings=False,
        **{**_TINY_DIMS, "init_std": init_std},
    )
    torch.manual_seed(seed)
    model = M2M100ForConditionalGeneration(config).eval()
    model.generation_config = GenerationConfig(
        bos_token_id=0, pad_token_id=1, eos_token_id=2, decoder_start_token_id=2, max_length=64, num_beams=1
    )
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def build_tiny_t5(out: Path, seed: int = 0) -> Path:
    """A T5 (d_model 32) with a sentencepiece unigram vocabulary: exercises task prefixes."""
    import sentencepiece as spm
    import torch
    from transformers import T5Config, T5ForConditionalGeneration, T5Tokenizer

    out.mkdir(parents=True, exist_ok=True)
    sp = spm.SentencePieceProcessor(model_proto=_train_spm(200))
    pieces = [(sp.id_to_piece(i), sp.get_score(i)) for i in range(sp.get_piece_size()) if sp.id_to_piece(i) != "<unk>"]
    tok = T5Tokenizer(vocab=[("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), *pieces], extra_ids=0)
    config = T5Config(
        vocab_size=len(tok),
        d_model=32,
        d_kv=8,
        d_ff=64,
        num_layers=2,
        num_decoder_layers=2,
        num_heads=4,
        pad_token_id=0,
        eos_token_id=1,
        initializer_factor=1.0,
        dropout_rate=0.0,
    )
    config.tie_word_embeddings = False  # see build_tiny_marian: a tied head repeats tokens
    config.decoder_start_token_id = 0  # T5 starts decoding from <pad>
    torch.manual_seed(seed)
    T5ForConditionalGeneration(config).eval().save_pretrained(out)
    tok.save_pretrained(out)
    return out


#: facebook/nllb-200-distilled-600M's config.json, written out (no hub)
NLLB_600M_CONFIG: dict[str, Any] = {
    "architectures": ["M2M100ForConditionalGeneration"],
    "model_type": "m2m100",
    "vocab_size": 256206,
    "d_model": 1024,
    "encoder_layers": 12,
    "decoder_layers": 12,
    "encoder_attention_heads": 16,
    "decoder_attention_heads": 16,
    "encoder_ffn_dim": 4096,
    "decoder_ffn_dim": 4096,
    "encoder_layerdrop": 0,
    "decoder_layerdrop": 0,
    "max_position_embeddings": 1024,
    "activation_function": "relu",
    "dropout": 0.1,
    "attention_dropout": 0.1,
    "activation_dropout": 0.0,
    "init_std": 0.02,
    "scale_embedding": True,
    "tie_word_embeddings": True,
    "use_cache": True,
    "is_encoder_decoder": True,
    "bos_token_id": 0,
    "pad_token_id": 1,
    "eos_token_id": 2,
    "decoder_start_token_id": 2,
    "max_length": 200,
    "tokenizer_class": "NllbTokenizer",
}


def build_nllb_600m_random(out: Path, seed: int = 0, with_tokenizer: bool = True) -> Path:
    """A randomly initialised model with the exact NLLB-200-distilled-600M architecture.

    Speed does not depend on weight values, so this times every backend at the real size.
    The tokenizer is the tiny one (its ids are all < 256206); benchmarks force the output
    length (e.g. 24 new tokens) because random weights stop at arbitrary points.
    """
    import torch
    from transformers import GenerationConfig, M2M100Config, M2M100ForConditionalGeneration

    out.mkdir(parents=True, exist_ok=True)
    cfg = {k: v for k, v in NLLB_600M_CONFIG.items() if k not in ("architectures", "model_type", "max_length")}
    config = M2M100Config(**cfg)
    config.architectures = ["M2M100ForConditionalGeneration"]
    torch.manual_seed(seed)
    model = M2M100ForConditionalGeneration(config).eval()
    model.generation_config = GenerationConfig(
        bos_token_id=0, pad_token_id=1, eos_token_id=2, decoder_start_token_id=2, max_length=200, num_beams=1
    )
    model.save_pretrained(out)
    if with_tokenizer:
        tiny = out / ".tiny-tokenizer"
        build_tiny_nllb(tiny, seed=seed)
        from transformers import AutoTokenizer

        AutoTokenizer.from_pretrained(str(tiny)).save_pretrained(out)
        import shutil

        shutil.rmtree(tiny, ignore_errors=True)
    return out


if __name__ == "__main__":  # pragma: no cover - manual helper
    import sys
    import time

    target = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/hayaku-tiny")
    t0 = time.perf_counter()
    build_tiny_marian(target / "marian")
    t1 = time.perf_counter()
    build_tiny_nllb(target / "nllb")
    t2 = time.perf_counter()
    print(f"marian {t1 - t0:.2f}s nllb {t2 - t1:.2f}s -> {target}")


def nllb600m_random(seed: int = 0) -> Path:
    """The NLLB-600M-sized random model, built once under HAYAKU_HOME/bench (about 2.3 GB, ~1 min)."""
    from backends import store

    target = store.cache_dir("bench", "nllb-200-distilled-600M-random", seed, sorted(NLLB_600M_CONFIG.items()))
    if store.is_built(target):
        return target
    store.progress(f"building a random model with the NLLB-200-distilled-600M architecture in {target} ...")
    with store.building(target) as tmp:
        build_nllb_600m_random(tmp, seed=seed)
    return target


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


def build_tiny_gguf(hf_folder: Path, out: Path) -> Path:
    """Write the Qwen2 folder of :func:`build_tiny_llm` as a float32 GGUF file that llama.cpp loads.

    Tests of the llama.cpp runtime then need neither the real 1 GB model nor llama.cpp's
    ``convert_hf_to_gguf.py`` (not in the gguf package); this writes the keys and tensor names
    that script writes for Qwen2. float32 lets llama.cpp, run with an f32 KV cache and without
    flash attention, agree with transformers float32 token for token.
    """
    import gguf
    from safetensors.numpy import load_file
    from transformers import AutoTokenizer

    cfg = json.loads((hf_folder / "config.json").read_text(encoding="utf-8"))
    tok = AutoTokenizer.from_pretrained(str(hf_folder))
    # transformers 5 nests rope_theta in rope_parameters; 4.x kept it at the top level
    rope_theta = cfg.get("rope_parameters", {}).get("rope_theta", cfg.get("rope_theta", 10000.0))

    out.parent.mkdir(parents=True, exist_ok=True)
    w = gguf.GGUFWriter(out, gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.QWEN2])
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    w.add_context_length(cfg["max_position_embeddings"])
    w.add_embedding_length(cfg["hidden_size"])
    w.add_block_count(cfg["num_hidden_layers"])
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_head_count(cfg["num_attention_heads"])
    w.add_head_count_kv(cfg["num_key_value_heads"])
    w.add_rope_freq_base(rope_theta)
    w.add_layer_norm_rms_eps(cfg["rms_norm_eps"])

    ids = tok.get_vocab()
    vocab = {i: t for t, i in ids.items()}
    assert sorted(vocab) == list(range(cfg["vocab_size"])), "GGUF needs one token per embedding row"
    specials = {i for i, t in tok.added_tokens_decoder.items() if t.special}
    merges = json.loads(tok.backend_tokenizer.to_str())["model"]["merges"]
    w.add_tokenizer_model("gpt2")  # llama.cpp's name for byte-level BPE
    w.add_tokenizer_pre("qwen2")
    w.add_token_list([vocab[i] for i in range(len(vocab))])
    # CONTROL is llama.cpp's "special": matched in text only when asked, dropped when decoding
    w.add_token_types([gguf.TokenType.CONTROL if i in specials else gguf.TokenType.NORMAL for i in range(len(vocab))])
    w.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in merges])
    w.add_eos_token_id(cfg["eos_token_id"])
    w.add_pad_token_id(cfg["pad_token_id"])
    # Qwen's own GGUFs name <|endoftext|> as BOS; without the key llama.cpp defaults to id 11,
    # here the byte token ")". add_bos false keeps it out of prompts either way.
    w.add_bos_token_id(ids["<|endoftext|>"])
    w.add_add_bos_token(False)
    if tok.chat_template:
        w.add_chat_template(tok.chat_template)

    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.QWEN2, cfg["num_hidden_layers"])
    for name, array in load_file(str(hf_folder / "model.safetensors")).items():
        gguf_name = names.get_name(name, try_suffixes=(".weight", ".bias"))
        assert gguf_name is not None, f"no GGUF name for {name}"
        # numpy's [out, in] order is what GGUFWriter expects; it reverses the shape for ggml itself
        w.add_tensor(gguf_name, array.astype("float32"))
    # a tied lm_head is not saved, and llama.cpp then reuses token_embd for the output as well

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return out
