"""Reading an HF seq2seq MT model folder without loading it: its family and its languages.

Which family a folder is (NLLB, M2M100, Marian, T5: from config.json, the tokenizer config and the
declared tokens) and which language pair or languages it translates (Marian from its name or
tokenizer config). Only JSON is parsed here; ``backends.hf_seq2seq`` builds the tokenizer and the
translator on top.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backends import store
from backends.errors import BackendUnavailable, InvalidRequest
from backends.languages import LANGUAGES, normalize_lang

FAMILIES = ("nllb", "m2m100", "marian", "t5")

#: three-letter codes seen in Marian model names and tokenizer configs -> ISO 639-1
_ISO3 = {code.split("_")[0]: iso for iso, (_, code) in LANGUAGES.items()}
_ISO3.update({"jap": "ja", "cmn": "zh", "ara": "ar", "ger": "de", "fre": "fr", "dut": "nl"})
_MARIAN_NAME = re.compile(r"opus-mt(?:-tc)?(?:-big)?-([a-z]{2,3})-([a-z]{2,3})(?:$|[^a-z])")

#: T5 was trained with these task prefixes only (Romanian is outside hayaku's language table)
T5_TARGETS = ("de", "fr")

NO_MODEL_MESSAGE = (
    "the {name} backend needs a model: a local folder of an HF seq2seq MT model "
    "(NLLB/M2M100, Marian or T5), a hub id such as facebook/nllb-200-distilled-600M "
    "or Helsinki-NLP/opus-mt-en-jap, or a bundled model name"
)


def iso_from_any(code: str) -> str | None:
    """'ja', 'jpn', 'jap', 'jpn_Jpan' or 'Japanese' -> 'ja'; None when unknown."""
    low = code.strip().lower()
    if low in _ISO3:
        return _ISO3[low]
    try:
        return normalize_lang(code)
    except InvalidRequest:
        return None


@dataclass(frozen=True)
class ModelInfo:
    """A model folder as the runtimes see it: family, languages, limits. JSON only."""

    spec: str
    path: Path
    revision: str
    family: str
    model_type: str
    #: ISO codes the model translates between
    languages: frozenset[str]
    #: Marian's fixed (source, target) direction; None for many-to-many models
    pair: tuple[str, str] | None = None
    max_source_tokens: int = 512
    max_target_tokens: int = 512
    config: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def check_pair(self, src: str, tgt: str) -> None:
        """Raises InvalidRequest when the model cannot translate ``src`` -> ``tgt``."""
        if self.pair is not None and (src, tgt) != self.pair:
            raise InvalidRequest(
                f"model {self.spec!r} translates {self.pair[0]}->{self.pair[1]} only, not {src}->{tgt}; "
                f"use an NLLB/M2M100 model for other pairs"
            )
        if self.family == "t5" and (src != "en" or tgt not in T5_TARGETS):
            raise InvalidRequest(
                f"T5 model {self.spec!r} translates en->{', en->'.join(T5_TARGETS)} only, not {src}->{tgt}"
            )


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise BackendUnavailable(f"cannot read {path}: {exc}") from None
    return data if isinstance(data, dict) else {}


def _declared_tokens(folder: Path) -> set[str]:
    """Special/added token strings a tokenizer folder declares (language codes live here)."""
    tokens: set[str] = set()
    tc = _read_json(folder / "tokenizer_config.json")
    for key in ("extra_special_tokens", "additional_special_tokens"):
        value = tc.get(key)
        if isinstance(value, list):
            tokens.update(str(t.get("content", "")) if isinstance(t, dict) else str(t) for t in value)
    decoder = tc.get("added_tokens_decoder")
    if isinstance(decoder, dict):
        tokens.update(str(v.get("content", "")) for v in decoder.values() if isinstance(v, dict))
    tj = _read_json(folder / "tokenizer.json")
    for t in tj.get("added_tokens") or []:
        if isinstance(t, dict):
            tokens.add(str(t.get("content", "")))
    return tokens


def detect_family(config: dict[str, Any], tokenizer_config: dict[str, Any], tokens: set[str]) -> str | None:
    """'nllb' | 'm2m100' | 'marian' | 't5', or None for a model hayaku cannot translate with."""
    model_type = str(config.get("model_type", "")).lower()
    if model_type in ("m2m_100", "m2m100", "nllb-moe", "nllb_moe"):
        tok_class = str(tokenizer_config.get("tokenizer_class") or config.get("tokenizer_class") or "")
        if tok_class.lower().startswith("nllb") or "eng_Latn" in tokens or model_type.startswith("nllb"):
            return "nllb"
        return "m2m100"
    if model_type == "marian":
        return "marian"
    if model_type == "t5":
        return "t5"
    return None


def _marian_pair(
    spec: str, folder: Path, config: dict[str, Any], tokenizer_config: dict[str, Any], languages: Sequence[str] | None
) -> tuple[str, str]:
    if languages:
        src, tgt = (normalize_lang(c) for c in languages)
        return src, tgt
    s, t = tokenizer_config.get("source_lang"), tokenizer_config.get("target_lang")
    if isinstance(s, str) and isinstance(t, str):
        src_iso, tgt_iso = iso_from_any(s), iso_from_any(t)
        if src_iso and tgt_iso:
            return src_iso, tgt_iso
    for name in (spec, folder.name, str(config.get("_name_or_path", "")), str(folder)):
        m = _MARIAN_NAME.search(name.lower())
        if m:
            src_iso, tgt_iso = iso_from_any(m.group(1)), iso_from_any(m.group(2))
            if src_iso and tgt_iso:
                return src_iso, tgt_iso
    raise InvalidRequest(
        f"Marian model {spec!r} does not say which languages it translates (no source_lang/target_lang "
        f"in tokenizer_config.json and no opus-mt-xx-yy name); set options.languages: [en, ja]"
    )


def inspect_model(ref: store.ModelRef, languages: Sequence[str] | None = None) -> ModelInfo:
    """Reads a resolved model folder's JSON files: family, languages, token limits."""
    folder = ref.path
    if not folder.is_dir():
        raise InvalidRequest(f"model {ref.spec!r} resolves to {folder}, which is not a model folder")
    config = _read_json(folder / "config.json")
    if not config:
        raise InvalidRequest(f"model {ref.spec!r}: {folder} has no config.json; is it an HF model folder?")
    tokenizer_config = _read_json(folder / "tokenizer_config.json")
    tokens = _declared_tokens(folder)
    family = detect_family(config, tokenizer_config, tokens)
    model_type = str(config.get("model_type", "?"))
    if family is None:
        raise InvalidRequest(
            f"model {ref.spec!r} is a {model_type!r} model; seq2seq translation backends take NLLB/M2M100, "
            f"Marian or T5 models (for decoder-only instruct models use the llm backend)"
        )
    pair: tuple[str, str] | None = None
    if family == "nllb":
        langs = {iso for iso, (_, code) in LANGUAGES.items() if code in tokens} or set(LANGUAGES)
    elif family == "m2m100":
        langs = {iso for iso in LANGUAGES if f"__{iso}__" in tokens} or set(LANGUAGES)
    elif family == "marian":
        pair = _marian_pair(ref.spec, folder, config, tokenizer_config, languages)
        langs = set(pair)
    else:
        langs = {"en", *T5_TARGETS}
    if languages and family != "marian":
        wanted = {normalize_lang(c) for c in languages}
        if not wanted <= langs:
            raise InvalidRequest(
                f"options.languages {list(languages)!r} includes codes model {ref.spec!r} lacks; "
                f"it has: {', '.join(sorted(langs))}"
            )
        langs = wanted
    positions = int(config.get("max_position_embeddings") or config.get("n_positions") or 512)
    if family == "t5":  # relative positions: no hard limit, but keep requests bounded
        positions = 512
    return ModelInfo(
        spec=ref.spec,
        path=folder,
        revision=ref.revision,
        family=family,
        model_type=model_type,
        languages=frozenset(langs),
        pair=pair,
        max_source_tokens=positions,
        max_target_tokens=positions,
        config=config,
    )
