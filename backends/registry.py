"""Every backend, one line each, as lazy ``"module:Class"`` paths.

Choosing a backend imports only its own module; its heavy dependencies load in
``load()``. An unknown name fails with the list of valid names.
"""

from __future__ import annotations

import importlib
from typing import Any

from backends.base import Backend, Speaker, Translator
from backends.errors import InvalidRequest

TRANSLATORS: dict[str, str] = {
    "transformers": "backends.transformers_mt:TransformersTranslator",
    "ctranslate2": "backends.ctranslate2_mt:CTranslate2Translator",
    "onnx": "backends.onnx_mt:OnnxTranslator",
    "coreml": "backends.coreml_mt:CoreMLTranslator",
    "llm": "backends.llm_mt:LLMTranslator",
    "echo": "backends.synthetic:EchoTranslator",
}

SPEAKERS: dict[str, str] = {
    "kokoro": "backends.kokoro_tts:KokoroSpeaker",
    "openjtalk": "backends.openjtalk_tts:OpenJTalkSpeaker",
    "espeak": "backends.espeak_tts:EspeakSpeaker",
    "say": "backends.say_tts:SaySpeaker",
    "xtts": "backends.xtts_tts:XTTSSpeaker",
    "tone": "backends.synthetic:ToneSpeaker",
}

ROLES: dict[str, dict[str, str]] = {"translator": TRANSLATORS, "speaker": SPEAKERS}


def _resolve(role: str, name: str) -> type[Backend]:
    table = ROLES[role]
    if name not in table:
        raise InvalidRequest(f"unknown {role} backend {name!r}; valid: {', '.join(sorted(table))}")
    module, _, attr = table[name].partition(":")
    cls = getattr(importlib.import_module(module), attr)
    return cls  # type: ignore[no-any-return]


def translator_class(name: str) -> type[Translator]:
    cls = _resolve("translator", name)
    assert issubclass(cls, Translator)
    return cls


def speaker_class(name: str) -> type[Speaker]:
    cls = _resolve("speaker", name)
    assert issubclass(cls, Speaker)
    return cls


def create_translator(name: str, model: str | None = None, options: Any = None, **kw: Any) -> Translator:
    """Builds (does not load) the named translator; bad options raise InvalidRequest."""
    return translator_class(name)(model=model, options=options, **kw)


def create_speaker(
    name: str, model: str | None = None, options: Any = None, voice: str | None = None, **kw: Any
) -> Speaker:
    """Builds (does not load) the named speaker; bad options or voice raise InvalidRequest."""
    return speaker_class(name)(model=model, options=options, voice=voice, **kw)


def status() -> list[dict[str, Any]]:
    """One row per registered backend: role, name, available, reason."""
    rows = []
    for role, table in ROLES.items():
        for name in table:
            try:
                cls = _resolve(role, name)
                reason = cls.unavailable_reason(None)
                synthetic = cls.synthetic
            except Exception as exc:  # a broken backend module is reported, not fatal
                reason, synthetic = f"import failed: {exc}", False
            rows.append(
                {
                    "role": role,
                    "name": name,
                    "available": reason is None,
                    "reason": reason or "",
                    "synthetic": synthetic,
                }
            )
    return rows
