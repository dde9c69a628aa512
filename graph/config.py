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
path of the bad field, quotes the value and says what would be valid. Reading the YAML file
and finding the hayaku applications in it is ``graph.yaml_files``.
"""

from __future__ import annotations

import copy
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from backends.base import DEFAULT_MAX_CHARS, format_validation_error, short_repr
from backends.errors import InvalidRequest
from backends.languages import normalize_lang
from graph.stage_checks import AUTO, ConfigError, check_shape, check_stage, check_weights


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class BatchConfig(_Strict):
    """How the translator groups concurrent requests into one backend call (graph.stages.TranslateStage)."""

    max_batch_size: int = Field(8, ge=1, le=256, description="Most sentences translated in one backend call.")
    batch_wait_timeout_s: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="How long a batch waits to fill. 0 takes whatever is queued: no added latency for a lone "
        "request, and batches still form under load while the previous batch runs.",
    )


#: the per-attempt timeout of a stage with fallbacks when the YAML gives none
DEFAULT_ATTEMPT_TIMEOUT_S = 30.0


class TranslatorFallback(_Strict):
    """A translator tried when the ones before it in the stage fail."""

    backend: str = Field(..., description="A translator backend name (see `hayaku backends`); not 'auto'.")
    model: str | None = Field(None, description="Model name, local folder or hub id; None takes the default.")
    options: dict[str, Any] = Field(default_factory=dict, description="The backend's own options.")


VOICES_DESCRIPTION = (
    "Aliases -> this speaker's voices, e.g. {alloy: jf_nezumi}. OpenAI's voice names (alloy, ash, ballad, coral, "
    "echo, fable, nova, onyx, sage, shimmer, verse) are aliases already, mapped by the backend (names it leaves out "
    "take `voice`); entries here override them or add names of your own."
)


class SpeakerFallback(_Strict):
    """A speaker tried when the ones before it in the stage fail."""

    backend: str = Field(..., description="A speaker backend name (see `hayaku backends`); not 'auto'.")
    model: str | None = Field(None, description="Model name or path where the speaker takes one.")
    voice: str | None = Field(None, description="This speaker's voice; None takes its default voice.")
    voices: dict[str, str] = Field(default_factory=dict, description=VOICES_DESCRIPTION)
    options: dict[str, Any] = Field(default_factory=dict, description="The backend's own options.")


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
    fallbacks: list[TranslatorFallback] = Field(
        default_factory=list,
        description="Backends tried in order when the one above fails (raises, times out, fails its health "
        "check or returns an empty translation).",
    )
    attempt_timeout_s: float | None = Field(
        None,
        gt=0,
        le=3600,
        description="Per-attempt timeout: a call past it is abandoned, its backend marked unhealthy until a probe "
        f"passes and the next one tried. None: {DEFAULT_ATTEMPT_TIMEOUT_S:g} s when fallbacks are listed, no "
        "timeout otherwise (setting it on a stage without fallbacks guards its single backend the same way).",
    )
    probe_interval_s: float = Field(
        10.0, gt=0, le=3600, description="How often an unhealthy backend is probed (health + one tiny call)."
    )
    nice: int | None = Field(
        19,
        ge=-20,
        le=19,
        description="CPU niceness of the translator's own replica process (Ray starts workers at 15). 19, the "
        "lowest priority, lets speech and the HTTP path, which the listener waits for, run before decoding that "
        "keeps every core busy. Below 15 needs CAP_SYS_NICE; None keeps Ray's. Not applied when colocated.",
    )


class SpeakerStage(_Strict):
    """The speech stage: which backend, model, voice and options."""

    backend: str = Field(AUTO, description="A speaker backend name (see `hayaku backends`) or 'auto'.")
    model: str | None = Field(None, description="Model name or path where the speaker takes one; None for default.")
    voice: str | None = Field(None, description="Default voice; None takes the speaker's default voice.")
    voices: dict[str, str] = Field(default_factory=dict, description=VOICES_DESCRIPTION)
    options: dict[str, Any] = Field(
        default_factory=dict, description="The backend's own options, validated against its Options class."
    )
    fallbacks: list[SpeakerFallback] = Field(
        default_factory=list,
        description="Speakers tried in order when the one above fails (raises, times out, fails its health "
        "check or returns empty or non-finite audio).",
    )
    attempt_timeout_s: float | None = Field(
        None, gt=0, le=3600, description="Per-attempt timeout; see the translator stage's attempt_timeout_s."
    )
    probe_interval_s: float = Field(
        10.0, gt=0, le=3600, description="How often an unhealthy backend is probed (health + one tiny call)."
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
    max_inflight: int | None = Field(
        None,
        ge=1,
        le=100_000,
        description="Most POST requests one ingress replica works on at once; more are answered 503 with "
        "Retry-After at once instead of queueing. None: no limit here (the deployment's max_ongoing_requests "
        "and max_queued_requests still bound it, with Ray's plain-text 503).",
    )


class SecurityConfig(_Strict):
    """Who may call the API, from which web origins, and what the logs may hold."""

    api_key_env: str = Field(
        "HAYAKU_API_KEY",
        pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$",
        description="Environment variable (of the ingress replica) holding the API key. Set and non-empty: every "
        "route but /healthz and / needs `Authorization: Bearer <key>` or `X-API-Key: <key>`. Unset: no auth.",
    )
    require_api_key: bool = Field(
        False, description="Refuse to start when the api_key_env variable is unset or empty (fail closed)."
    )
    public_docs: bool = Field(
        False, description="Serve /docs and /openapi.json without the API key (they need it by default)."
    )
    cors_origins: list[str] = Field(
        default_factory=list,
        description="Web origins allowed to call the API from a browser (e.g. https://app.example.com, or '*'). "
        "Empty: CORS closed, no Access-Control-Allow-Origin header is ever sent.",
    )
    cors_allow_headers: list[str] = Field(
        default_factory=lambda: ["authorization", "content-type", "x-api-key", "x-request-id", "x-hayaku-key"],
        description="Request headers a browser on an allowed origin may send.",
    )
    log_request_text: bool = Field(
        False,
        description="Let logs quote request text (in exception messages). Off: logs show lengths and ids only, "
        "unless the logger is at DEBUG.",
    )


class VariantConfig(_Strict):
    """One arm of a live A/B test: a whole translator + speaker combination and its share of traffic."""

    name: str = Field(
        ...,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$",
        description="Variant name (letters, digits, _ . -), returned in X-Hayaku-Variant.",
    )
    weight: float = Field(
        1.0,
        ge=0,
        le=1_000_000,
        description="Share of traffic, relative to the other variants' weights. For a shadow variant: the "
        "fraction (0..1) of requests copied to it.",
    )
    translator: TranslatorStage | None = Field(None, description="This variant's translator; None: the graph's.")
    speaker: SpeakerStage | None = Field(None, description="This variant's speaker; None: the graph's.")
    shadow: bool = Field(
        False,
        description="Receives a copy of traffic whose answers are measured (GET /v1/ab) but never returned.",
    )


class ABConfig(_Strict):
    """How requests are assigned to variants and how much history GET /v1/ab keeps."""

    sticky: bool = Field(
        True, description="Requests with a client key (X-Hayaku-Key header or `user` field) always get one variant."
    )
    window: int = Field(5000, ge=10, le=1_000_000, description="Latest latencies kept per variant for GET /v1/ab.")
    shadow_max_inflight: int = Field(
        4, ge=0, le=1024, description="Shadow copies running at once; more are dropped (and counted), not queued."
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
    variants: list[VariantConfig] = Field(
        default_factory=list,
        description="Live A/B: whole translator+speaker combinations with weights. Empty: one variant, 'default'.",
    )
    ab: ABConfig = Field(default_factory=lambda: ABConfig.model_validate({}), description="Variant routing.")
    security: SecurityConfig = Field(
        default_factory=lambda: SecurityConfig.model_validate({}),
        description="API key, CORS and log redaction of the HTTP ingress.",
    )


class StageUpdate(_Strict):
    """A deployment's ``user_config``: fields given replace the stage's, the rest stay."""

    backend: str | None = Field(None, description="Switch to another backend (or 'auto').")
    model: str | None = Field(None, description="Switch the model.")
    voice: str | None = Field(None, description="Speaker only: switch the default voice.")
    options: dict[str, Any] | None = Field(None, description="Replace the backend options as a whole.")
    batch: BatchConfig | None = Field(None, description="Translator only: change batching.")
    nice: int | None = Field(None, ge=-20, le=19, description="Translator only: change its replica's CPU niceness.")


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
            raise ConfigError(f"{where}: must be a mapping, got {short_repr(raw)}")
        check_shape(raw, where)
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
            f"{where}.target_lang: same as source_lang ({short_repr(updates['source_lang'])}); nothing to translate"
        )
    args = args.model_copy(update=updates)
    check_stage("translator", args.translator.model_dump(), f"{where}.translator", args.limits.max_chars)
    check_stage("speaker", args.speaker.model_dump(), f"{where}.speaker", args.limits.max_chars)
    _check_variants(args, where)
    return args


DEFAULT_VARIANT = "default"


def variant_list(args: GraphArgs) -> list[VariantConfig]:
    """The graph's variants with their stages filled in (one 'default' variant when none are declared)."""
    declared = args.variants or [VariantConfig.model_validate({"name": DEFAULT_VARIANT})]
    return [
        v.model_copy(update={"translator": v.translator or args.translator, "speaker": v.speaker or args.speaker})
        for v in declared
    ]


def stage_deployment(role: str, args: GraphArgs, variant: VariantConfig) -> str:
    """Deployment name serving ``role`` for ``variant``: variants with the graph's own stage share it."""
    base = "Translator" if role == "translator" else "Speaker"
    own = variant.translator if role == "translator" else variant.speaker
    graph_stage = args.translator if role == "translator" else args.speaker
    return base if own is None or own == graph_stage else f"{base}_{variant.name}"


def deployment_names(args: GraphArgs) -> tuple[str, ...]:
    """Every deployment the graph has, in the order ``build`` binds them (the YAML may configure each)."""
    if args.colocate:
        return ("Ingress",)
    names = ["Ingress"]
    for v in args.variants or [VariantConfig.model_validate({"name": DEFAULT_VARIANT})]:
        for role in ("translator", "speaker"):
            name = stage_deployment(role, args, v)
            if name not in names:
                names.append(name)
    return tuple(names)


def _check_variants(args: GraphArgs, where: str) -> None:
    seen: set[str] = set()
    for i, v in enumerate(args.variants):
        if v.name in seen:
            raise ConfigError(
                f"{where}.variants[{i}].name: duplicate variant name {short_repr(v.name)}; names must be unique"
            )
        seen.add(v.name)
        if v.shadow and v.weight > 1:
            raise ConfigError(
                f"{where}.variants[{i}].weight: {v.weight!r} for a shadow variant is the fraction of requests "
                "copied to it; use 0..1"
            )
        if v.translator is not None:
            check_stage(
                "translator", v.translator.model_dump(), f"{where}.variants[{i}].translator", args.limits.max_chars
            )
        if v.speaker is not None:
            check_stage("speaker", v.speaker.model_dump(), f"{where}.variants[{i}].speaker", args.limits.max_chars)
    if args.variants:
        check_weights({v.name: v.weight for v in args.variants if not v.shadow}, f"{where}.variants")


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
    if role == "speaker" and upd.nice is not None:
        raise ConfigError(f"{where}.nice: only the translator's priority is set")
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
