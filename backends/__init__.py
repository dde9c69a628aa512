"""hayaku backends: plain-Python translators and speakers behind one interface (no Ray here)."""

from backends.base import BackendOptions, Speaker, Translator
from backends.errors import BackendTimeout, BackendUnavailable, HayakuError, InvalidRequest
from backends.registry import SPEAKERS, TRANSLATORS, create_speaker, create_translator
from backends.types import SpeechResult, TranslationResult

__all__ = [
    "SPEAKERS",
    "TRANSLATORS",
    "BackendOptions",
    "BackendTimeout",
    "BackendUnavailable",
    "HayakuError",
    "InvalidRequest",
    "Speaker",
    "SpeechResult",
    "TranslationResult",
    "Translator",
    "create_speaker",
    "create_translator",
]
