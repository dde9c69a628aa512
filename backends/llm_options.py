"""Options of the ``llm`` translator (``backends.llm_mt``): runtime, decoding, prompt and quality levers.

Kept apart from the backend so the options a config may set read as one list; the validators
here are the checks that need no model (a memory file that exists, a lever the runtime has).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from backends.base import BackendOptions

#: what each ``quality`` preset sets, measured on the held-out test part in one interleaved run
#: (benchmarks/results/quality-test-all.md): every one bans English words left in (no_latin: 12 of
#: 180 -> 0, chrF 30.1 -> 30.9, at 1.02x the time: a grammar checked against the chosen token; it needs
#: llama.cpp, so it is set only there); balanced adds hints (31.7 at 1.23x); best retrieves examples
#: (34.9 at 1.93x)
QUALITY_PRESETS: dict[str, dict[str, Any]] = {
    "fast": {"no_latin": True},
    "balanced": {"hints": 3, "no_latin": True},
    "best": {"retrieve": 2, "no_latin": True},
}


class LLMOptions(BackendOptions):
    runtime: Literal["llama.cpp", "ctranslate2", "transformers"] = Field(
        "llama.cpp",
        description=(
            "Inference runtime: llama.cpp (the GGUF file directly: parallel slots, prompt cache), ctranslate2"
            " (Generator on a converted, cached folder) or transformers."
        ),
    )
    compute_type: Literal[
        "default",
        "auto",
        "int8",
        "int8_float32",
        "int8_float16",
        "int8_bfloat16",
        "int16",
        "float16",
        "bfloat16",
        "float32",
    ] = Field("int8", description="CTranslate2 compute type (runtime ctranslate2 only).")
    dtype: Literal["float32", "bfloat16", "float16"] = Field(
        "float32", description="torch dtype of the weights (runtime transformers only)."
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="Where the model runs; auto picks cuda when a GPU is visible, else cpu."
    )
    max_new_tokens: int = Field(
        256, ge=1, le=4096, description="Upper bound on generated tokens per text (the turn usually ends first)."
    )
    max_length_ratio: float = Field(
        3.0,
        ge=0,
        le=100,
        description=(
            "Bounds generated tokens to ratio x input tokens + 16 (within max_new_tokens), so a model that"
            " rambles or repeats stops early; 0 disables the bound."
        ),
    )
    threads: int = Field(0, ge=0, le=256, description="CPU threads for the runtime (0: the runtime's default).")
    parallel: int = Field(
        4,
        ge=1,
        le=64,
        description=(
            "Sequences decoded together (llama.cpp slots, runtime llama.cpp only): concurrent requests share each"
            " step's weight reads instead of queueing."
        ),
    )
    context: int = Field(
        2048,
        ge=256,
        le=131072,
        description="Context tokens per slot (runtime llama.cpp only): prompt, examples, text and translation.",
    )
    prompt_cache: bool = Field(
        True,
        description=(
            "Reuse the model state after the fixed prompt prefix (system prompt and examples) across calls"
            " (CTranslate2 static_prompt). Same outputs in float32; int8 rounds the cached state"
            " differently, so a near-tie can rarely flip a token (runtime ctranslate2 only)."
        ),
    )
    few_shot: int = Field(
        4,
        ge=0,
        le=4,  # the en->ja examples written in backends.llm_mt.FEW_SHOT (a test keeps the two in step)
        description=(
            "Example translations shown before the text, for language pairs that have them (en->ja); 0 shows none."
        ),
    )
    quality: Literal["fast", "balanced", "best"] = Field(
        "fast",
        description=(
            "A preset of quality levers; options given explicitly win. Each sets no_latin on llama.cpp (no"
            " English words left in, 1.02-1.04x the time). fast: nothing more. balanced: hints 3 (+0.8 chrF, ~1.2x"
            " the time a sentence). best: retrieve 2 (+4 chrF, ~1.9x the time)."
        ),
    )
    retrieve: int = Field(
        0,
        ge=0,
        le=8,
        description=(
            "Examples picked per text from the translation memory (those sharing its rarest words), shown after"
            " the fixed ones: better words for the text, at the cost of prefilling them on every call"
            " (about 30 prompt tokens each); 0 shows none."
        ),
    )
    hints: int = Field(
        0,
        ge=0,
        le=8,
        description=(
            "Dictionary words (JMdict, backends/dictionary.py) for up to this many nouns of the text, shown as"
            " word -> word example turns just before it; prefilled on every call (about 12 prompt tokens each)."
            " Needs jamdict (pip install 'hayaku[hints]'); 0 shows none."
        ),
    )
    memory: str | None = Field(
        None,
        min_length=1,
        description=(
            "Translation memory for retrieve: a TSV file with a header naming the two language columns"
            " (default: the pairs bundled for the language pair, backends/memory/)."
        ),
    )
    japanese_kanji_only: bool = Field(
        True,
        description=(
            "For Japanese targets, never generate tokens containing Han characters outside the Japanese"
            " repertoire (simplified-Chinese forms such as 过 or 场) or letters of other scripts (Cyrillic,"
            " Hangul, Greek ...); Latin letters stay allowed (see no_latin)."
        ),
    )
    no_latin: bool = Field(
        False,
        description=(
            "For Japanese targets (runtime llama.cpp), never generate Latin letters except in the names and"
            " acronyms of the source (capitalised words, 'PDF'), so English words are not left in (a grammar)."
            " Every quality preset sets it on llama.cpp; false turns it off."
        ),
    )
    repetition_penalty: float = Field(
        1.0, ge=1.0, le=10.0, description="Penalty (>1) on tokens already generated; 1 disables it."
    )
    no_repeat_ngram_size: int = Field(
        0, ge=0, le=64, description="Forbid repeating any n-gram of this many tokens; 0 disables it."
    )
    system_prompt: str | None = Field(
        None,
        min_length=1,
        max_length=4000,
        description="Replaces the default system prompt; {source} and {target} become language names.",
    )

    @field_validator("memory")
    @classmethod
    def _memory_exists(cls, value: str | None) -> str | None:
        if value is not None and not Path(value).expanduser().is_file():
            raise ValueError(f"memory {value!r} is not a file (a TSV of example pairs)")
        return value

    @model_validator(mode="before")
    @classmethod
    def _quality_preset(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        # the default preset applies too: a config that names no quality gets fast's levers
        quality = data.get("quality", "fast")
        if quality not in QUALITY_PRESETS:
            return data
        preset = dict(QUALITY_PRESETS[quality])
        if data.get("runtime", "llama.cpp") != "llama.cpp":
            preset.pop("no_latin", None)
        return {**preset, **data}

    @model_validator(mode="after")
    def _runtime_supports(self) -> LLMOptions:
        if self.runtime == "llama.cpp" and self.no_repeat_ngram_size:
            raise ValueError("no_repeat_ngram_size is not available with runtime llama.cpp; use repetition_penalty")
        if self.no_latin and self.runtime != "llama.cpp":
            raise ValueError(f"no_latin is only available with runtime llama.cpp, not {self.runtime}")
        return self
