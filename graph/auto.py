"""``backend: auto``: per stage, the fastest backend this machine can run, and why.

Resolution order for a stage whose backend is ``auto``:

1. A tuned profile for this hardware, ``HAYAKU_HOME/profiles/<hardware-key>.yaml``
   (key from ``graph.hardware.probe()["key"]``), if its choice can run here.
2. Else the preference order of this hardware class (``PREFERENCES``), skipping every
   candidate whose runtime is not installed, whose model is not on this machine, or whose
   options the installed backend rejects. Synthetic backends (echo, tone) are never chosen.

Each choice carries a human reason ("auto: cpu preference #2 ... skipped: ..."), which the
app logs at start and ``GET /v1/graph`` returns.

Tuned profile format (written by the tuner, read here; YAML, JSON is YAML too)::

    format: 1
    hardware_key: cpu-intel-xeon-cpu-2-20ghz-2c
    created: "2025-06-01T12:00:00Z"          # ISO 8601, UTC
    hardware: {cpu: ..., cores: 2, ...}        # graph.hardware.probe() at tuning time
    translator:                                # the choice for `translator: {backend: auto}`
      backend: ctranslate2
      model: facebook/nllb-200-distilled-600M
      options: {compute_type: int8}
      reason: "fastest within 1 chrF of float32: p50 41 ms"
    speaker:
      backend: openjtalk
      voice: null
      options: {}
      reason: "..."
    measurements:                              # the table the choice was made from
      translator:
        - {backend: ctranslate2, model: ..., options: {...}, p50_ms: 41.0, chrf: 38.2,
           chrf_delta: -0.3, accepted: true}
      speaker:
        - {backend: kokoro, voice: jf_alpha, options: {}, p50_ms: 120.0, accepted: true}

Only ``translator`` and ``speaker`` are read here (``backend`` required; ``model``,
``options``, ``voice``, ``reason`` optional); the rest is the record of how they were found.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from backends import registry, store
from backends.base import DEFAULT_MAX_CHARS, parse_options, short_repr
from backends.errors import InvalidRequest
from graph import hardware
from graph.config import GraphArgs, parse_args
from graph.pipeline import Pipeline
from graph.stage_checks import AUTO, ConfigError, check_stage
from graph.stages import SpeakStage, TranslateStage, build_speaker, build_translator

log = logging.getLogger("hayaku.auto")

PROFILE_FORMAT = 1
NLLB = "facebook/nllb-200-distilled-600M"
QWEN = "qwen2.5-coder-1.5b-instruct"


@dataclass(frozen=True)
class Candidate:
    backend: str
    model: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    voice: str | None = None
    note: str = ""

    def label(self) -> str:
        opts = ",".join(f"{k}={v}" for k, v in self.options.items())
        return f"{self.backend}" + (f"[{opts}]" if opts else "") + (f" {self.model}" if self.model else "")


# Ray sets OMP_NUM_THREADS=1 in every replica (it follows num_cpus), which CTranslate2's and
# torch's "default" thread count obey: a translator replica would decode on one core. `auto`
# therefore asks for the machine's cores explicitly (single-request latency is what it optimises).
_CORES = max(1, os.cpu_count() or 1)
_CPU_TRANSLATORS = [
    Candidate(
        "ctranslate2",
        NLLB,
        {"device": "cpu", "compute_type": "int8", "intra_threads": _CORES},
        note="int8 CTranslate2 NLLB",
    ),
    Candidate(
        "llm",
        QWEN,
        {"runtime": "llama.cpp", "threads": _CORES},
        note="bundled offline model, its GGUF file in llama.cpp (parallel slots, cached prompt prefix)",
    ),
    Candidate(
        "llm",
        QWEN,
        {"runtime": "ctranslate2", "compute_type": "int8", "threads": _CORES},
        note="bundled offline model, int8 CTranslate2",
    ),
    Candidate("transformers", NLLB, {"device": "cpu", "quantize": "int8", "num_beams": 1, "threads": _CORES}),
    Candidate("llm", QWEN, {"runtime": "transformers", "threads": _CORES}, note="bundled offline model, torch"),
]
_SPEAKERS_COMMON = [
    Candidate("kokoro", None, {}, "jf_alpha", note="natural Japanese voice, 82M int8 ONNX"),
    Candidate("openjtalk", None, {}, None, note="fastest Japanese speaker"),
    Candidate("espeak", None, {}, None, note="formant synthesis, last resort"),
]

#: hardware class -> role -> candidates, fastest first
PREFERENCES: dict[str, dict[str, list[Candidate]]] = {
    "cuda": {
        "translator": [
            Candidate("transformers", NLLB, {"device": "cuda", "dtype": "bfloat16", "num_beams": 1}),
            Candidate("ctranslate2", NLLB, {"device": "cuda", "compute_type": "float16"}),
            Candidate("llm", QWEN, {"runtime": "ctranslate2", "compute_type": "int8_float16", "device": "cuda"}),
            *_CPU_TRANSLATORS,
        ],
        "speaker": _SPEAKERS_COMMON,
    },
    "apple": {
        "translator": [
            Candidate(
                "transformers", NLLB, {"device": "mps", "dtype": "bfloat16", "num_beams": 1, "max_new_tokens": 256}
            ),
            Candidate("coreml", NLLB, {}),
            *_CPU_TRANSLATORS,
        ],
        "speaker": [
            _SPEAKERS_COMMON[0],
            Candidate("say", None, {}, "Kyoko", note="macOS built-in"),
            *_SPEAKERS_COMMON[1:],
        ],
    },
    # On a CPU machine Kokoro is about 8x slower than OpenJTalk (benchmarks/results/speak.md), so the
    # fastest natural Japanese voice leads; kokoro stays the choice where there is compute to spare.
    "cpu": {
        "translator": _CPU_TRANSLATORS,
        "speaker": [_SPEAKERS_COMMON[1], _SPEAKERS_COMMON[0], *_SPEAKERS_COMMON[2:]],
    },
}


@dataclass
class Choice:
    """A resolved stage: what runs, and why."""

    role: str
    backend: str
    model: str | None
    options: dict[str, Any]
    voice: str | None
    source: str  # "config" | "profile" | "preference"
    reason: str

    def stage(self, base: dict[str, Any]) -> dict[str, Any]:
        """The stage dict a deployment is built from: ``base`` with the resolved fields."""
        out = dict(base)
        out.update(backend=self.backend, model=self.model, options=dict(self.options))
        if self.role == "speaker":
            out["voice"] = self.voice
        return out


@dataclass
class ResolvedGraph:
    """The graph as it will run: validated args, concrete stages, the machine."""

    args: GraphArgs
    translator: Choice
    speaker: Choice
    hardware: dict[str, Any]
    profile: str | None = None

    def translator_stage(self) -> dict[str, Any]:
        return self.translator.stage(self.args.translator.model_dump())

    def speaker_stage(self) -> dict[str, Any]:
        return self.speaker.stage(self.args.speaker.model_dump())

    def pipeline(self) -> Pipeline:
        """The same graph in this process, built as a replica builds it (fallbacks, timeouts, warm-up):
        for the CLI and the benchmarks. Blocking: loads every backend."""
        a = self.args
        translator = build_translator(self.translator_stage(), a.limits.max_chars, a.source_lang, a.target_lang)
        speaker = build_speaker(self.speaker_stage(), a.limits.max_chars, a.target_lang)
        return Pipeline(
            TranslateStage(translator, a.translator.batch),
            SpeakStage(speaker),
            source_lang=a.source_lang,
            target_lang=a.target_lang,
            max_chars=a.limits.max_chars,
            timeout_s=a.limits.request_timeout_s,
        )

    def to_dict(self) -> dict[str, Any]:
        hw = {k: v for k, v in self.hardware.items() if k != "runtimes"}
        return {
            "translator": asdict(self.translator),
            "speaker": asdict(self.speaker),
            "source_lang": self.args.source_lang,
            "target_lang": self.args.target_lang,
            "colocate": self.args.colocate,
            "limits": self.args.limits.model_dump(),
            "security": self.args.security.model_dump(),
            "hardware": hw,
            "profile": self.profile,
        }

    def summary(self) -> str:
        t, s = self.translator, self.speaker
        return (
            f"translator: {t.backend} model={t.model} options={t.options} ({t.reason})\n"
            f"speaker: {s.backend} voice={s.voice} options={s.options} ({s.reason})"
        )


def profile_path(key: str) -> Path:
    return store.home() / "profiles" / f"{key}.yaml"


def load_profile(key: str) -> dict[str, Any] | None:
    """The tuned profile for hardware ``key``, or None; a malformed file is logged and ignored."""
    import yaml

    path = profile_path(key)
    if not path.is_file():
        return None
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        log.warning("ignoring tuned profile %s: %s", path, exc)
        return None
    if not isinstance(data, dict):
        log.warning("ignoring tuned profile %s: not a mapping", path)
        return None
    data["_path"] = str(path)
    return data


def write_profile(key: str, data: dict[str, Any], header: str = "") -> Path:
    """Writes a tuned profile atomically (for the tuner); returns its path.

    ``header`` (already ``#``-commented lines) goes above the YAML: the tuner's measured table.
    """
    import os
    import tempfile

    import yaml

    path = profile_path(key)
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {"format": PROFILE_FORMAT, "hardware_key": key, **{k: v for k, v in data.items() if k != "_path"}}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        if header:
            f.write(header.rstrip("\n") + "\n")
        yaml.safe_dump(body, f, sort_keys=False, allow_unicode=True)
    os.replace(tmp, path)
    return path


def _why_not(role: str, cand: Candidate, stage: dict[str, Any], max_chars: int) -> str | None:
    """None if ``cand`` can run here with the stage's overrides, else a short reason."""
    try:
        cls = registry.translator_class(cand.backend) if role == "translator" else registry.speaker_class(cand.backend)
    except InvalidRequest as exc:
        return str(exc)
    except Exception as exc:  # a backend module that fails to import is skipped, with the reason
        return f"import failed: {exc}"
    if cls.synthetic:
        return "synthetic backends are for tests"
    try:
        parse_options(cls.Options, {**cand.options, **(stage.get("options") or {})})
    except InvalidRequest as exc:
        return f"options rejected: {exc}"
    reason = cls.unavailable_reason(stage.get("model") or cand.model, {**cand.options, **(stage.get("options") or {})})
    if reason:
        return reason
    if role == "speaker":
        voice = stage.get("voice") or cand.voice
        try:
            registry.create_speaker(
                cand.backend,
                stage.get("model") or cand.model,
                {**cand.options, **(stage.get("options") or {})},
                voice=voice,
                max_chars=max_chars,
                voice_map=stage.get("voices"),
            )
        except InvalidRequest as exc:
            return str(exc)
    return None


def _short(reason: str, limit: int = 200) -> str:
    """First sentence of a skip reason: the reason string lists many of them."""
    first = reason.split(". ")[0]
    return first if len(first) <= limit else first[: limit - 3] + "..."


def _choose(role: str, cand: Candidate, stage: dict[str, Any], source: str, reason: str) -> Choice:
    return Choice(
        role=role,
        backend=cand.backend,
        model=stage.get("model") or cand.model,
        options={**cand.options, **(stage.get("options") or {})},
        voice=(stage.get("voice") or cand.voice) if role == "speaker" else None,
        source=source,
        reason=reason,
    )


def resolve_stage(
    role: str,
    stage: dict[str, Any],
    hw: dict[str, Any],
    profile: dict[str, Any] | None = None,
    where: str = "args",
    max_chars: int = DEFAULT_MAX_CHARS,
) -> Choice:
    """Resolves one stage. A named backend is checked to run here; ``auto`` is chosen as documented above."""
    where = f"{where}.{role}"
    name = stage.get("backend") or AUTO
    # A fallback that cannot run here would only show when the primary fails: refuse it at start.
    for i, fb in enumerate(stage.get("fallbacks") or []):
        fb_cls = (
            registry.translator_class(fb["backend"]) if role == "translator" else registry.speaker_class(fb["backend"])
        )
        fb_reason = fb_cls.unavailable_reason(fb.get("model"), fb.get("options"))
        if fb_reason:
            raise ConfigError(
                f"{where}.fallbacks[{i}].backend: {short_repr(fb['backend'])} cannot run on this machine: {fb_reason}"
            )
    if name != AUTO:
        check_stage(role, stage, where, max_chars)
        cls = registry.translator_class(name) if role == "translator" else registry.speaker_class(name)
        reason = cls.unavailable_reason(stage.get("model"), stage.get("options"))
        if reason:
            raise ConfigError(f"{where}.backend: {short_repr(name)} cannot run on this machine: {reason}")
        return _choose(role, Candidate(name), stage, "config", "set in config")
    skipped: list[str] = []
    pick = (profile or {}).get(role)
    if isinstance(pick, dict) and pick.get("backend"):
        cand = Candidate(str(pick["backend"]), pick.get("model"), dict(pick.get("options") or {}), pick.get("voice"))
        why = _why_not(role, cand, stage, max_chars)
        if why is None:
            why_chosen = pick.get("reason") or "measured fastest"
            return _choose(
                role, cand, stage, "profile", f"auto: tuned profile {(profile or {}).get('_path')}: {why_chosen}"
            )
        skipped.append(f"profile choice {cand.label()}: {_short(why)}")
    prefs = PREFERENCES.get(hw.get("class", "cpu"), PREFERENCES["cpu"])[role]
    for i, cand in enumerate(prefs, 1):
        why = _why_not(role, cand, stage, max_chars)
        if why is None:
            note = f" ({cand.note})" if cand.note else ""
            reason = f"auto: {hw.get('class', 'cpu')} preference #{i} {cand.label()}{note}"
            if skipped:
                reason += "; skipped: " + "; ".join(skipped)
            return _choose(role, cand, stage, "preference", reason)
        skipped.append(f"{cand.label()}: {_short(why)}")
    raise ConfigError(
        f"{where}.backend: 'auto' found no {role} that runs on this machine ({hw.get('key')}). Tried: "
        + "; ".join(skipped)
        + ". Install one (e.g. pip install 'hayaku[cpu,models]') or name a backend."
    )


def resolve_graph(
    args: GraphArgs | dict[str, Any], hw: dict[str, Any] | None = None, where: str = "args", use_profile: bool = True
) -> ResolvedGraph:
    """Validates ``args`` and resolves both stages; raises ConfigError naming the bad field.

    ``use_profile=False`` resolves ``auto`` by preference alone (the tuner measures configs so).
    """
    parsed = parse_args(args, where)
    hw = hw if hw is not None else hardware.probe(with_runtimes=False)
    needs_auto = AUTO in (parsed.translator.backend, parsed.speaker.backend)
    profile = load_profile(hw["key"]) if needs_auto and use_profile else None
    max_chars = parsed.limits.max_chars
    translator = resolve_stage("translator", parsed.translator.model_dump(), hw, profile, where, max_chars)
    speaker = resolve_stage("speaker", parsed.speaker.model_dump(), hw, profile, where, max_chars)
    graph = ResolvedGraph(parsed, translator, speaker, hw, (profile or {}).get("_path"))
    log.info("hayaku graph on %s:\n%s", hw.get("key"), graph.summary())
    return graph
