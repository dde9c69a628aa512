"""The schema of the application's ``args`` in a Ray Serve YAML, and its validation.

A hayaku YAML is Ray Serve's own config file; the part hayaku owns is
``applications[i].args`` of an application whose ``import_path`` is ``serve.app:build``::

    args:
      source_lang: en
      target_lang: ja
      colocate: false
      translator: {backend: auto, model: null, options: {}, batch: {max_batch_size: 8}}
      speaker: {backend: kokoro, voice: jf_alpha, options: {}}
      limits: {max_chars: 2000, max_body_bytes: 1048576, request_timeout_s: 60}

Everything is checked before any replica starts: the shape (pydantic, unknown keys are
errors), backend names against the registry, ``options`` against the backend's own
``Options`` class, the voice against the speaker's voices. Every message names the YAML
path of the bad field, quotes the value and says what would be valid.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from backends import registry
from backends.base import DEFAULT_MAX_CHARS, format_validation_error, parse_options
from backends.errors import InvalidRequest
from backends.languages import normalize_lang

AUTO = "auto"
IMPORT_PATH = "serve.app:build"
#: deployment names of the graph, as the YAML's ``deployments:`` list must spell them
DEPLOYMENT_NAMES = ("Ingress", "Translator", "Speaker")


class ConfigError(InvalidRequest):
    """A config value is wrong; the message names its YAML path and what would be valid."""

    kind = "config_error"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class BatchConfig(_Strict):
    """How the translator groups concurrent requests (``@serve.batch``)."""

    max_batch_size: int = Field(8, ge=1, le=256, description="Most sentences translated in one backend call.")
    batch_wait_timeout_s: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="How long a batch waits to fill. 0 takes whatever is queued: no added latency for a lone "
        "request, and batches still form under load while the previous batch runs.",
    )


class TranslatorStage(_Strict):
    """The translation stage: which backend, which model, which options."""

    backend: str = Field(AUTO, description="A translator backend name (see `hayaku backends`) or 'auto'.")
    model: str | None = Field(
        None,
        description="Bundled model name, local folder or hub id (org/name); None takes the backend's default.",
    )
    options: dict[str, Any] = Field(
        default_factory=dict, description="The backend's own options, validated against its Options class."
    )
    batch: BatchConfig = Field(
        default_factory=lambda: BatchConfig.model_validate({}), description="Request batching in the translator."
    )


class SpeakerStage(_Strict):
    """The speech stage: which backend, model, voice and options."""

    backend: str = Field(AUTO, description="A speaker backend name (see `hayaku backends`) or 'auto'.")
    model: str | None = Field(None, description="Model name or path where the speaker takes one; None for default.")
    voice: str | None = Field(None, description="Default voice; None takes the speaker's default voice.")
    options: dict[str, Any] = Field(
        default_factory=dict, description="The backend's own options, validated against its Options class."
    )


class Limits(_Strict):
    """Guards on what one request may ask for."""

    max_chars: int = Field(DEFAULT_MAX_CHARS, ge=1, le=100_000, description="Longest text accepted (413 above).")
    max_body_bytes: int = Field(
        1_048_576, ge=1024, le=64 * 1_048_576, description="Largest request body; larger ones get 413 unread."
    )
    request_timeout_s: float = Field(
        60.0, gt=0, le=3600, description="Deadline for one request through the graph; past it the answer is 503."
    )


class GraphArgs(_Strict):
    """The ``args`` of ``serve.app:build``: the whole graph's configuration."""

    translator: TranslatorStage = Field(
        default_factory=lambda: TranslatorStage.model_validate({}), description="Translation stage."
    )
    speaker: SpeakerStage = Field(default_factory=lambda: SpeakerStage.model_validate({}), description="Speech stage.")
    source_lang: str = Field("en", description="Default source language (ISO 639-1) of requests.")
    target_lang: str = Field("ja", description="Default target language: translated into and spoken in.")
    limits: Limits = Field(default_factory=lambda: Limits.model_validate({}), description="Per-request limits.")
    colocate: bool = Field(
        False,
        description="Run translator and speaker inside the ingress replica: no handle hops (lowest latency), "
        "but the stages can no longer scale or be placed separately.",
    )


class StageUpdate(_Strict):
    """A deployment's ``user_config``: fields given replace the stage's, the rest stay."""

    backend: str | None = Field(None, description="Switch to another backend (or 'auto').")
    model: str | None = Field(None, description="Switch the model.")
    voice: str | None = Field(None, description="Speaker only: switch the default voice.")
    options: dict[str, Any] | None = Field(None, description="Replace the backend options as a whole.")
    batch: BatchConfig | None = Field(None, description="Translator only: change batching.")


def _pydantic_message(err: ValidationError, where: str) -> str:
    return format_validation_error(err, where)


def parse_args(raw: Any, where: str = "args") -> GraphArgs:
    """Validates the shape of ``raw`` (a dict or GraphArgs) and the stage settings it names.

    Raises ConfigError whose message starts with the YAML path of the first bad field.
    """
    if isinstance(raw, GraphArgs):
        args = raw
    else:
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise ConfigError(f"{where}: must be a mapping, got {raw!r}")
        try:
            args = GraphArgs.model_validate(raw)
        except ValidationError as err:
            raise ConfigError(_pydantic_message(err, where)) from None
    updates: dict[str, Any] = {}
    for field in ("source_lang", "target_lang"):
        try:
            updates[field] = normalize_lang(getattr(args, field))
        except InvalidRequest as exc:
            raise ConfigError(f"{where}.{field}: {exc}") from None
    if updates["source_lang"] == updates["target_lang"]:
        raise ConfigError(
            f"{where}.target_lang: same as source_lang ({updates['source_lang']!r}); nothing to translate"
        )
    args = args.model_copy(update=updates)
    check_stage("translator", args.translator.model_dump(), f"{where}.translator", args.limits.max_chars)
    check_stage("speaker", args.speaker.model_dump(), f"{where}.speaker", args.limits.max_chars)
    return args


def check_stage(role: str, stage: dict[str, Any], where: str, max_chars: int = DEFAULT_MAX_CHARS) -> None:
    """Checks a stage's backend name, options and voice (``auto`` stages are checked once resolved)."""
    name = stage.get("backend") or AUTO
    if name == AUTO:
        return
    table = registry.ROLES[role]
    if name not in table:
        raise ConfigError(f"{where}.backend: unknown {role} backend {name!r}; valid: auto, {', '.join(sorted(table))}")
    try:
        cls = registry.translator_class(name) if role == "translator" else registry.speaker_class(name)
    except ImportError as exc:
        raise ConfigError(f"{where}.backend: {name!r} could not be imported ({exc})") from None
    # parse_options prefixes every bad field with `where`, which makes it a YAML path.
    try:
        parse_options(cls.Options, stage.get("options"), where=f"{where}.options")
    except InvalidRequest as exc:
        raise ConfigError(str(exc)) from None
    if role == "speaker" and stage.get("voice"):
        try:
            registry.create_speaker(
                name, stage.get("model"), stage.get("options"), voice=stage["voice"], max_chars=max_chars
            )
        except InvalidRequest as exc:
            raise ConfigError(f"{where}.voice: {exc}") from None


def merge_update(stage: dict[str, Any], update: dict[str, Any] | None, role: str, where: str) -> dict[str, Any]:
    """Applies a ``user_config`` to a stage dict and validates the result."""
    try:
        upd = StageUpdate.model_validate(update or {})
    except ValidationError as err:
        raise ConfigError(_pydantic_message(err, where)) from None
    if role == "translator" and upd.voice is not None:
        raise ConfigError(f"{where}.voice: the translator has no voice")
    if role == "speaker" and upd.batch is not None:
        raise ConfigError(f"{where}.batch: only the translator batches")
    merged = copy.deepcopy(stage)
    for key, value in upd.model_dump(exclude_none=True).items():
        merged[key] = value
    if upd.backend is not None and upd.backend != stage.get("backend"):
        # A different backend does not inherit the old one's options or model.
        merged["options"] = upd.options or {}
        merged["model"] = upd.model
        if role == "speaker":
            merged["voice"] = upd.voice
    return merged


@dataclass(frozen=True)
class AppArgs:
    """One hayaku application found in a Ray Serve YAML, with its validated args."""

    name: str
    index: int
    where: str
    args: GraphArgs
    deployments: tuple[dict[str, Any], ...]


def read_yaml(path: str | Path) -> dict[str, Any]:
    import yaml

    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{p}: no such file") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(
            f"{p}: expected a Ray Serve config (a mapping with 'applications'), got {type(data).__name__}"
        )
    return data


def load_app_args(yaml_path: str | Path, *, check: Literal["shape", "full"] = "full") -> list[AppArgs]:
    """Validates every ``serve.app:build`` application's args in a Ray Serve YAML.

    ``check="full"`` also checks backend names, options and voices against the registry.
    Errors name the path, e.g. ``configs/x.yaml: applications[0].args.translator.options.num_beams: ...``.
    """
    data = read_yaml(yaml_path)
    apps = data.get("applications")
    if not isinstance(apps, list) or not apps:
        raise ConfigError(f"{yaml_path}: applications: expected a non-empty list of applications, got {apps!r}")
    found = []
    for i, app in enumerate(apps):
        where = f"applications[{i}]"
        if not isinstance(app, dict):
            raise ConfigError(f"{yaml_path}: {where}: expected a mapping, got {app!r}")
        if app.get("import_path") != IMPORT_PATH:
            continue
        try:
            args = parse_args(app.get("args"), f"{where}.args") if check == "full" else _shape_only(app, where)
        except ConfigError as exc:
            raise ConfigError(f"{yaml_path}: {exc}") from None
        deployments = app.get("deployments") or []
        for j, dep in enumerate(deployments):
            name = dep.get("name") if isinstance(dep, dict) else None
            valid = ("Ingress",) if args.colocate else DEPLOYMENT_NAMES
            if name not in valid:
                raise ConfigError(
                    f"{yaml_path}: {where}.deployments[{j}].name: {name!r} is not a deployment of {IMPORT_PATH}"
                    f"{' with colocate: true' if args.colocate else ''}; valid: {', '.join(valid)}"
                )
        found.append(AppArgs(str(app.get("name", "default")), i, f"{where}.args", args, tuple(deployments)))
    if not found:
        raise ConfigError(f"{yaml_path}: no application has import_path: {IMPORT_PATH}")
    return found


def _shape_only(app: dict[str, Any], where: str) -> GraphArgs:
    try:
        return GraphArgs.model_validate(app.get("args") or {})
    except ValidationError as err:
        raise ConfigError(_pydantic_message(err, f"{where}.args")) from None
