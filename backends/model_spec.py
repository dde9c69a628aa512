"""What a ``model:`` value names, and where that model is on this machine.

A model spec is one of
- a named bundled model (``qwen2.5-coder-1.5b-instruct``), built once from installed packages
  (``backends.bundled``);
- a local folder (``./models/my-marian`` or an absolute path);
- a hub id (``facebook/nllb-200-distilled-600M``): used from the local HF cache when it is
  there; otherwise downloaded for users who have the hub, and on a machine without it a
  fast, clear error that says how to provide the model instead (``backends.store``).
"""

from __future__ import annotations

from backends.bundled import BUNDLED, bundled_name
from backends.errors import BackendUnavailable, InvalidRequest
from backends.store import (
    ModelRef,
    check_spec,
    existing_path,
    hf_cached_snapshot,
    hub_reachable,
    hub_ref,
    is_hub_id,
    local_ref,
)


def unavailable_reason(spec: str | None) -> str | None:
    """Cheap check: can ``spec`` be resolved on this machine (without building it)?"""
    if spec is None:
        return None
    try:
        spec = bundled_name(check_spec(spec))
    except InvalidRequest as exc:
        return str(exc)
    if spec in BUNDLED:
        return BUNDLED[spec].unavailable()
    if existing_path(spec) is not None:
        return None
    if is_hub_id(spec):
        if hf_cached_snapshot(spec) is not None:
            return None
        if hub_reachable():
            return None
        return hub_missing_message(spec)
    return (
        f"model {spec!r} is not on this machine: not a bundled model ({', '.join(sorted(BUNDLED)) or 'none'}), "
        "not an existing folder, and not a hub id of the form org/name"
    )


def hub_missing_message(spec: str) -> str:
    return (
        f"model {spec!r} is not on this machine and the Hugging Face hub is not reachable. "
        f"Copy the model folder here and use its path (model: /path/to/folder), run "
        f"`huggingface-cli download {spec}` on a machine with the hub and copy ~/.cache/huggingface, "
        f"or use a bundled model: {', '.join(sorted(BUNDLED)) or '(none installed)'}"
    )


def resolve(spec: str, allow_download: bool = True) -> ModelRef:
    """Resolves ``spec`` to a local path, building bundled models on first use."""
    spec = bundled_name(check_spec(spec))
    if spec in BUNDLED:
        entry = BUNDLED[spec]
        reason = entry.unavailable()
        if reason:
            raise BackendUnavailable(reason)
        return ModelRef(spec, "bundled", entry.build(), revision="bundled")
    path = existing_path(spec)
    if path is not None:
        return local_ref(spec, path)
    if not is_hub_id(spec):
        raise BackendUnavailable(unavailable_reason(spec) or f"model {spec!r} not found")
    ref = hub_ref(spec, allow_download)
    if ref is None:
        raise BackendUnavailable(hub_missing_message(spec))
    return ref
