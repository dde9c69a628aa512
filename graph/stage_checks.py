"""The checks of a config that need more than its shape: a stage's backend, options and voice against
the registry, A/B weights, and the nesting and size of the raw YAML value.

``graph.config`` (the schema) runs them before any replica starts; ``graph.auto`` checks a stage again
once ``auto`` is resolved, ``graph.abtest`` checks live weight changes. Every message names the YAML path.
"""

from __future__ import annotations

from typing import Any

from backends import registry
from backends.base import DEFAULT_MAX_CHARS, parse_options, short_repr
from backends.errors import InvalidRequest

AUTO = "auto"


class ConfigError(InvalidRequest):
    """A config value is wrong; the message names its YAML path and what would be valid."""

    kind = "config_error"


def check_weights(weights: dict[str, float], where: str) -> None:
    """Routable variants need weights that sum to a positive number."""
    if not weights:
        raise ConfigError(f"{where}: every variant is a shadow; at least one must serve (shadow: false)")
    bad = {k: w for k, w in weights.items() if not isinstance(w, (int, float)) or w < 0 or w != w}
    if bad:
        raise ConfigError(f"{where}: weights must be numbers >= 0, got {bad}")
    if sum(weights.values()) <= 0:
        raise ConfigError(f"{where}: the weights {weights} sum to 0; give at least one variant a positive weight")


def check_stage(role: str, stage: dict[str, Any], where: str, max_chars: int = DEFAULT_MAX_CHARS) -> None:
    """Checks a stage's backend name, options and voice, then its fallbacks' (``auto`` is checked once resolved)."""
    for i, fallback in enumerate(stage.get("fallbacks") or []):
        at = f"{where}.fallbacks[{i}]"
        if not isinstance(fallback, dict):
            raise ConfigError(
                f"{at}: expected a mapping like {{backend: ..., options: {{}}}}, got {short_repr(fallback)}"
            )
        if (fallback.get("backend") or AUTO) == AUTO:
            raise ConfigError(f"{at}.backend: a fallback names its backend; 'auto' is only for the stage itself")
        check_stage(role, {**fallback, "fallbacks": []}, at, max_chars)
    name = stage.get("backend") or AUTO
    if name == AUTO:
        return
    table = registry.ROLES[role]
    if name not in table:
        valid = ", ".join(sorted(table))
        raise ConfigError(f"{where}.backend: unknown {role} backend {short_repr(name)}; valid: auto, {valid}")
    try:
        cls = registry.translator_class(name) if role == "translator" else registry.speaker_class(name)
    except ImportError as exc:
        raise ConfigError(f"{where}.backend: {short_repr(name)} could not be imported ({exc})") from None
    # parse_options prefixes every bad field with `where`, which makes it a YAML path.
    try:
        parse_options(cls.Options, stage.get("options"), where=f"{where}.options")
    except InvalidRequest as exc:
        raise ConfigError(str(exc)) from None
    if role == "speaker" and (stage.get("voice") or stage.get("voices")):
        try:
            registry.create_speaker(
                name,
                stage.get("model"),
                stage.get("options"),
                voice=stage.get("voice"),
                max_chars=max_chars,
                voice_map=stage.get("voices"),
            )
        except InvalidRequest as exc:
            # the voices mapping's own messages start with "voices.<alias>"
            raise ConfigError(f"{where}.{'' if str(exc).startswith('voices.') else 'voice: '}{exc}") from None


#: limits on a config's nesting and size: far beyond any real config, far below what breaks a parser
MAX_DEPTH, MAX_NODES = 32, 100_000


def check_shape(value: Any, where: str, depth: int = 0, _count: list[int] | None = None) -> None:
    """Refuses values nested deeper than MAX_DEPTH (a value containing itself nests for ever) or with
    more than MAX_NODES parts (YAML aliases can multiply a small file), naming the path where it happens."""
    count = [0] if _count is None else _count
    count[0] += 1
    if count[0] > MAX_NODES:
        raise ConfigError(f"{where}: the config has more than {MAX_NODES} values (YAML aliases?); simplify it")
    if depth > MAX_DEPTH:
        raise ConfigError(f"{where}: nested more than {MAX_DEPTH} levels deep (or contains itself)")
    if isinstance(value, dict):
        for k, v in value.items():
            check_shape(v, f"{where}.{str(k)[:40]}", depth + 1, count)
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            check_shape(v, f"{where}[{i}]", depth + 1, count)
