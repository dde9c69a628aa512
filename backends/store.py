"""Model store: where built artefacts are cached, and what a local path or a hub id points at.

Everything hayaku builds (conversions, exports, joined weights) lives under one home,
``HAYAKU_HOME`` (default ``~/.cache/hayaku``), keyed by model, revision and settings.

This is the bottom of the model code: it knows local folders and the Hugging Face hub, not the
bundled models (``backends.bundled`` builds those into this cache) nor which kind a ``model:``
value is (``backends.model_spec`` decides that).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backends.errors import InvalidRequest

_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*/[A-Za-z0-9][A-Za-z0-9_.\-]*$")


def home() -> Path:
    """The one cache root for everything hayaku builds."""
    return Path(os.environ.get("HAYAKU_HOME") or Path.home() / ".cache" / "hayaku").expanduser()


def cache_dir(kind: str, *key_parts: Any) -> Path:
    """A stable folder under ``home()/kind`` for an artefact identified by ``key_parts``."""
    safe_kind = re.sub(r"[^a-z0-9_\-]", "_", kind.lower())
    blob = json.dumps([str(p) for p in key_parts], sort_keys=True)
    digest = hashlib.sha256(blob.encode()).hexdigest()[:16]
    label = re.sub(r"[^A-Za-z0-9_.\-]+", "_", str(key_parts[0]) if key_parts else "x")[-48:].strip("._") or "model"
    return home() / safe_kind / f"{label}-{digest}"


@contextmanager
def building(target: Path) -> Iterator[Path]:
    """Builds into a temporary sibling and renames it into place only on success.

    A half-written cache entry (killed process, full disk) is never mistaken for a good one.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        yield tmp
        (tmp / ".complete").write_text("ok\n")
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def is_built(target: Path) -> bool:
    return (target / ".complete").is_file()


def progress(message: str) -> None:
    """Progress of long builds goes to stderr, so stdout stays clean for results."""
    print(f"[hayaku] {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class ModelRef:
    """A resolved model: what the user wrote, what kind it is, and a local folder or file."""

    spec: str
    kind: str  # "bundled" | "local" | "hub"
    path: Path
    revision: str = "local"


def local_path(spec: str) -> Path | None:
    """``spec`` as a local path with ``~`` expanded, or None where it cannot name one
    (``~nosuchuser/...``, a NUL byte)."""
    if "\x00" in spec:
        return None
    try:
        return Path(spec).expanduser()
    except RuntimeError:  # "~user" for a user this machine does not have
        return None


def existing_path(spec: str) -> Path | None:
    """The local file or folder ``spec`` names, if it exists; never raises (a name too long for the
    file system, ``~nosuchuser``, NUL: all just "not a local path")."""
    path = local_path(spec)
    try:
        return path if path is not None and path.exists() else None
    except (OSError, ValueError):
        return None


def is_hub_id(spec: str) -> bool:
    return bool(_HUB_ID.match(spec)) and existing_path(spec) is None


def check_spec(spec: str) -> str:
    if not isinstance(spec, str) or not spec.strip():
        raise InvalidRequest(f"model must be a non-empty string, got {spec!r}")
    if "\x00" in spec or "://" in spec:
        raise InvalidRequest(f"model {spec!r} is not a bundled name, a local folder or a hub id (org/name)")
    return spec.strip()


def hf_cached_snapshot(repo_id: str, revision: str | None = None) -> Path | None:
    """The local HF cache folder of ``repo_id``, if it is already downloaded."""
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        return None
    try:
        return Path(snapshot_download(repo_id, revision=revision, local_files_only=True))
    except Exception:
        return None


_HUB_STATE: dict[str, bool] = {}


def hub_reachable(timeout_s: float = 2.0) -> bool:
    """True when huggingface.co (or HF_ENDPOINT) answers; cached for the process."""
    if os.environ.get("HF_HUB_OFFLINE") in ("1", "true", "True"):
        return False
    if "ok" in _HUB_STATE:
        return _HUB_STATE["ok"]
    import socket
    from urllib.parse import urlparse

    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    parsed = urlparse(endpoint)
    host, port = parsed.hostname or "huggingface.co", parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            ok = True
    except OSError:
        ok = False
    _HUB_STATE["ok"] = ok
    return ok


def local_ref(spec: str, path: Path) -> ModelRef:
    """The model at the existing local ``path`` that ``spec`` names, with a fingerprint as its revision."""
    return ModelRef(spec, "local", path.resolve(), revision=_local_revision(path))


def hub_ref(spec: str, allow_download: bool = True) -> ModelRef | None:
    """The hub model ``spec`` from the local HF cache, else downloaded where allowed and the hub is
    reachable; None when it is neither cached nor downloadable."""
    cached = hf_cached_snapshot(spec)
    if cached is not None:
        return ModelRef(spec, "hub", cached, revision=cached.name)
    if not allow_download or not hub_reachable():
        return None
    from huggingface_hub import snapshot_download

    progress(f"downloading {spec} from the hub ...")
    local = Path(snapshot_download(spec))
    return ModelRef(spec, "hub", local, revision=local.name)


#: files a local model's fingerprint looks at, at most: a model folder has a few dozen
REVISION_FILES = 200


def _local_revision(path: Path) -> str:
    """A cheap fingerprint of a local model: names, sizes and mtimes of its first files.

    The walk stops after REVISION_FILES files, so a spec like ``/`` costs no more than a model folder.
    """
    h = hashlib.sha256()
    files: list[Path] = []
    if path.is_file():
        files = [path]
    else:
        for folder, dirs, names in os.walk(path):
            dirs.sort()  # a stable order, so the fingerprint is too
            files.extend(Path(folder) / n for n in sorted(names))
            if len(files) >= REVISION_FILES:
                break
    for f in files[:REVISION_FILES]:
        try:
            st = f.stat()
        except OSError:  # vanished or unreadable: its name still counts
            h.update(f"{f.name}:?".encode())
            continue
        h.update(f"{f.name}:{st.st_size}:{int(st.st_mtime)}".encode())
    return h.hexdigest()[:12]
