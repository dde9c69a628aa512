"""Language codes: ISO 639-1 in the API, mapped to each model family's own codes."""

from __future__ import annotations

from backends.errors import InvalidRequest

#: ISO 639-1 -> (English name, NLLB-200/FLORES code)
LANGUAGES: dict[str, tuple[str, str]] = {
    "en": ("English", "eng_Latn"),
    "ja": ("Japanese", "jpn_Jpan"),
    "zh": ("Chinese", "zho_Hans"),
    "ko": ("Korean", "kor_Hang"),
    "fr": ("French", "fra_Latn"),
    "de": ("German", "deu_Latn"),
    "es": ("Spanish", "spa_Latn"),
    "it": ("Italian", "ita_Latn"),
    "pt": ("Portuguese", "por_Latn"),
    "ru": ("Russian", "rus_Cyrl"),
    "ar": ("Arabic", "arb_Arab"),
    "hi": ("Hindi", "hin_Deva"),
    "vi": ("Vietnamese", "vie_Latn"),
    "th": ("Thai", "tha_Thai"),
    "id": ("Indonesian", "ind_Latn"),
    "nl": ("Dutch", "nld_Latn"),
    "pl": ("Polish", "pol_Latn"),
    "tr": ("Turkish", "tur_Latn"),
    "uk": ("Ukrainian", "ukr_Cyrl"),
    "sv": ("Swedish", "swe_Latn"),
}
_ALIASES = {code.lower(): iso for iso, (_, code) in LANGUAGES.items()}
_ALIASES.update({name.lower(): iso for iso, (name, _) in LANGUAGES.items()})


def normalize_lang(code: str) -> str:
    """Accepts 'ja', 'JA', 'ja-JP', 'jpn_Jpan' or 'Japanese'; returns 'ja'."""
    if not isinstance(code, str) or not code.strip():
        raise InvalidRequest(f"language code must be a non-empty string, got {code!r}")
    c = code.strip()
    low = c.lower()
    if low in LANGUAGES:
        return low
    if low in _ALIASES:
        return _ALIASES[low]
    base = low.replace("_", "-").split("-")[0]
    if base in LANGUAGES and len(base) == 2:
        return base
    raise InvalidRequest(f"unknown language {code!r}; valid codes: {', '.join(sorted(LANGUAGES))}")


def language_name(iso: str) -> str:
    return LANGUAGES[normalize_lang(iso)][0]
