"""Converting a transformers causal LM into a CTranslate2 folder for the ``llm`` backend's ``ctranslate2``
runtime, cached in the store (the bundled model's folders are built by ``backends.bundled``)."""

from __future__ import annotations

from pathlib import Path

from backends import store

#: where a converted CTranslate2 folder keeps its tokenizer, and which files make one
TOKENIZER_SUBDIR = "tokenizer"
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "generation_config.json",
    "vocab.json",
    "merges.txt",
    "tokenizer.model",
)


def ct2_storage_quantization(compute_type: str) -> str:
    """The weight type to convert to for ``compute_type``.

    CTranslate2 casts weights at load time, so one int8 folder serves every int8_* compute type
    (and default/auto); float compute types get weights of exactly that type.
    """
    if compute_type in ("default", "auto") or compute_type.startswith("int8"):
        return "int8"
    return compute_type


def is_ct2_folder(path: Path) -> bool:
    """A folder that CTranslate2 already converted (model.bin next to its config)."""
    return path.is_dir() and (path / "model.bin").is_file() and (path / "config.json").is_file()


def write_ct2_folder(source: Path, dest: Path, quantization: str) -> None:
    """Converts the transformers causal LM in ``source`` into the empty folder ``dest``.

    The tokenizer goes into ``dest/tokenizer``, so the folder is self-contained; a subfolder
    because transformers mistakes a tokenizer next to CTranslate2's config.json (which has no
    ``transformers_version``) for an old Mistral one and warns.
    """
    import shutil

    from ctranslate2.converters import TransformersConverter

    staging = dest / "model"  # the converter refuses an existing folder
    TransformersConverter(str(source), low_cpu_mem_usage=True).convert(str(staging), quantization=quantization)
    for item in staging.iterdir():
        item.rename(dest / item.name)
    staging.rmdir()
    tok = dest / TOKENIZER_SUBDIR
    tok.mkdir()
    for name in TOKENIZER_FILES:
        if (source / name).is_file():
            shutil.copy2(source / name, tok / name)


def convert_to_ct2(ref: store.ModelRef, quantization: str) -> Path:
    """Converts a transformers causal LM once into the cache; returns the CTranslate2 folder."""
    target = store.cache_dir("ct2-llm", ref.spec, ref.revision, quantization)
    if store.is_built(target):
        return target
    store.progress(f"converting {ref.spec} to CTranslate2 {quantization} ...")
    with store.building(target) as tmp:
        write_ct2_folder(ref.path, tmp, quantization)
    store.progress(f"CTranslate2 folder ready: {target}")
    return target
