"""Hostile input in a plain process: text through the pipeline, voice and model names, configs.

Properties (hypothesis): text never makes the pipeline fail with anything but a clear 4xx
InvalidRequest; names never resolve to a file outside the store or raise anything but a 4xx
or BackendUnavailable; configs never fail with anything but a ConfigError that names its path.
Each test has a ``long`` variant (marked slow) with LONG_FACTOR times the examples.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from hypothesis import strategies as st

from backends import model_spec, registry
from backends.errors import BackendUnavailable, InvalidRequest
from benchmarks.hostile import (
    DASH_TEXT,
    DEEP,
    HOSTILE_NAMES,
    MEGABYTE_TEXT,
    NAMES,
    SURROGATE_TEXT,
    TEXT,
    VALUES,
    YAML_VALUES,
    budget,
    check,
)
from graph.config import ConfigError, GraphArgs, parse_args
from graph.pipeline import Pipeline, local_pipeline
from graph.yaml_files import load_app_args

DEPTHS = [pytest.param("quick", id="quick"), pytest.param("long", id="long", marks=pytest.mark.slow)]

# -- files opened and network reached while a property runs (an audit hook: it sees every open() and
# every socket connect or name lookup, whoever makes it) ----------------------------------------------

_OPENED: list[str] | None = None
_NETWORK: list[str] | None = None


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if _OPENED is not None and event == "open" and args and isinstance(args[0], (str, bytes, Path)):
        _OPENED.append(str(args[0]))
    if _NETWORK is not None and event in ("socket.connect", "socket.getaddrinfo"):
        _NETWORK.append(f"{event} {args[1] if event == 'socket.connect' else args[:2]}")


sys.addaudithook(_audit)


@pytest.fixture
def opened() -> Iterator[list[str]]:
    """Paths opened by this process while the test runs."""
    global _OPENED
    _OPENED = []
    try:
        yield _OPENED
    finally:
        _OPENED = None


@pytest.fixture
def network() -> Iterator[list[str]]:
    """Socket connects and name lookups made by this process while the test runs."""
    global _NETWORK
    _NETWORK = []
    try:
        yield _NETWORK
    finally:
        _NETWORK = None


def _no_secret_opened(opened: list[str], *needles: str) -> None:
    hits = [p for p in opened if any(n in p for n in ("passwd", "shadow", "id_rsa", "win.ini", *needles))]
    assert not hits, f"opened outside the store: {hits[:5]}"


# -- text through the in-process pipeline ------------------------------------------------------------


def _pipeline(speaker: str = "tone", max_chars: int = 5000, **speaker_kw: Any) -> Pipeline:
    reason = registry.speaker_class(speaker).unavailable_reason(None)
    if reason:
        pytest.skip(f"{speaker} unavailable here: {reason}")
    translator = registry.create_translator("echo", max_chars=max_chars)
    spk = registry.create_speaker(speaker, max_chars=max_chars, **speaker_kw)
    return local_pipeline(translator, spk, source_lang="en", target_lang="ja", max_chars=max_chars)


def _speaks_or_refuses(p: Pipeline, text: str) -> None:
    try:
        out = p.run_sync(text)
    except InvalidRequest as exc:
        assert 400 <= exc.status < 500 and str(exc), (exc.status, str(exc))
        return
    assert out.sample_rate > 0 and len(out.samples) > 0
    assert np.all(np.isfinite(out.samples))
    # echo translates to its input: no character may be lost or changed on the way (whitespace aside)
    assert "".join(out.translation.split()) == "".join(text.split())


@pytest.mark.parametrize("depth", DEPTHS)
def test_any_text_is_spoken_or_refused(depth: str) -> None:
    p = _pipeline()
    check("text.pipeline.echo+tone", TEXT, lambda t: _speaks_or_refuses(p, t), budget(150, depth))


@pytest.mark.parametrize("depth", DEPTHS)
def test_text_starting_with_a_dash(depth: str) -> None:
    p = _pipeline()
    check("text.pipeline.dash", DASH_TEXT, lambda t: _speaks_or_refuses(p, t), budget(40, depth))


@pytest.mark.parametrize("depth", DEPTHS)
def test_lone_surrogates_are_refused_or_kept(depth: str) -> None:
    p = _pipeline()
    check("text.pipeline.surrogates", SURROGATE_TEXT, lambda t: _speaks_or_refuses(p, t), budget(30, depth))


@pytest.mark.parametrize("depth", DEPTHS)
def test_megabyte_text_is_a_413(depth: str, monkeypatch: pytest.MonkeyPatch) -> None:
    p = _pipeline(max_chars=100_000)  # the largest limit a config may set
    # refusing must not process the text first: neither backend sees any of it (not even a sentence of it)
    from backends.synthetic import EchoTranslator, ToneSpeaker

    calls: list[str] = []
    translate, synthesize = EchoTranslator._translate, ToneSpeaker._synthesize
    monkeypatch.setattr(EchoTranslator, "_translate", lambda self, *a: calls.append("translate") or translate(self, *a))
    monkeypatch.setattr(ToneSpeaker, "_synthesize", lambda self, *a: calls.append("synthesize") or synthesize(self, *a))

    def prop(text: str) -> None:
        with pytest.raises(InvalidRequest) as exc:
            p.run_sync(text)
        assert exc.value.status == 413 and "max_chars=100000" in str(exc.value)
        assert len(str(exc.value)) < 200, "the message must not quote the text"
        assert calls == [], f"the backends were called before the refusal: {calls}"

    check("text.pipeline.1mb", MEGABYTE_TEXT, prop, budget(4, depth))


@pytest.mark.parametrize("depth", DEPTHS)
def test_any_text_through_espeak(depth: str) -> None:
    p = _pipeline("espeak")
    check("text.pipeline.echo+espeak", TEXT, lambda t: _speaks_or_refuses(p, t), budget(15, depth))


# -- voice and model names -----------------------------------------------------------------------


def _speakers() -> list[str]:
    out = []
    for name in sorted(registry.SPEAKERS):
        try:
            registry.speaker_class(name)
        except ImportError:
            continue
        out.append(name)
    return out


@pytest.mark.parametrize("depth", DEPTHS)
def test_hostile_voice_names_are_a_422(depth: str, opened: list[str]) -> None:
    speakers = _speakers()

    def prop(voice: str) -> None:
        for name in speakers:
            try:
                sp = registry.create_speaker(name, voice=voice)
            except InvalidRequest as exc:
                assert exc.status == 422 and "voice" in str(exc)
                continue
            if voice == "":
                continue  # no voice: the speaker's default
            # accepted: a plain name, and one of the speaker's voices or aliases where it lists them
            assert voice == voice.strip() and "/" not in voice and "\\" not in voice and "\x00" not in voice
            assert not voice.startswith((".", "-"))
            valid = sp.list_voices()
            assert not valid or voice in valid or voice in sp.voice_aliases() or name == "xtts"
            assert sp.voice in valid or not valid or name == "xtts"
        _no_secret_opened(opened)

    check("names.voice.create_speaker", NAMES, prop, budget(60, depth))


@pytest.mark.parametrize("depth", DEPTHS)
def test_hostile_voice_at_synthesis(depth: str, opened: list[str]) -> None:
    speaker = registry.create_speaker("tone")
    speaker.load()

    def prop(voice: str) -> None:
        try:
            r = speaker.synthesize("テスト", "ja", voice=voice)
        except InvalidRequest as exc:
            assert exc.status == 422
            return
        # a voice of its own speaks as itself, an alias (OpenAI's names) as the voice it stands for
        aliases = speaker.voice_aliases()
        assert voice in ("sine", "square", "") or voice in aliases
        assert r.voice == (aliases.get(voice) if voice in aliases else voice or "sine")
        _no_secret_opened(opened)

    check("names.voice.synthesize", NAMES, prop, budget(60, depth))


@pytest.mark.parametrize("depth", DEPTHS)
def test_hostile_model_specs(
    depth: str, opened: list[str], network: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # hub-like names must fail here at once, not try the network

    def prop(spec: str) -> None:
        reason = model_spec.unavailable_reason(spec)
        try:
            ref = model_spec.resolve(spec, allow_download=False)
        except (InvalidRequest, BackendUnavailable) as exc:
            assert str(exc)
            # the cheap check agrees: a spec that does not resolve has a reason
            assert isinstance(reason, str) and reason, (spec, str(exc))
            if "\x00" in spec or "://" in spec:
                assert isinstance(exc, InvalidRequest)
        else:
            assert reason is None, (spec, reason)  # and one that resolves has none
            # only what the spec names: a bundled model or an existing local path (an operator's choice)
            assert ref.kind in ("bundled", "local"), ref
            if ref.kind == "local":
                assert ref.path == Path(spec.strip()).expanduser().resolve()
        for name in _speakers():
            # never raises: the speaker can run with the spec (None) or says why not
            speaker_reason = registry.speaker_class(name).unavailable_reason(spec)
            assert speaker_reason is None or (isinstance(speaker_reason, str) and speaker_reason.strip()), name
        assert not network, f"{spec!r} reached for the network: {network[:3]}"
        _no_secret_opened(opened, "/etc/")

    check("names.model.store", NAMES, prop, budget(40, depth))


def test_every_listed_hostile_name_is_refused_as_a_voice() -> None:
    for voice in HOSTILE_NAMES:
        if voice == "":
            continue  # no voice: the default one
        with pytest.raises(InvalidRequest) as exc:
            registry.create_speaker("tone", voice=voice)
        assert exc.value.status == 422
        plain = voice in ("SINE", "org/name") or voice.isalnum()
        assert plain or "not a path" in str(exc.value), (voice, str(exc.value))


# -- configs --------------------------------------------------------------------------------------

VALID_ARGS: dict[str, Any] = {
    "translator": {"backend": "echo", "options": {"prefix": ""}, "batch": {"max_batch_size": 4}},
    "speaker": {"backend": "tone", "voice": "sine", "options": {"frequency": 300.0}},
    "source_lang": "en",
    "target_lang": "ja",
    "limits": {"max_chars": 2000, "max_body_bytes": 65536, "request_timeout_s": 30},
    "colocate": True,
    "security": {"cors_origins": ["https://app.example"], "log_request_text": False},
}


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out.extend(_paths(v, (*prefix, k)))
    return out


PATHS = [p for p in _paths(VALID_ARGS) if p]
EXTRA_KEYS = ["nope", "__class__", "options", "backend", "", "\x00", "../x", "$(id)"]


def _mutate(path: tuple[Any, ...], new_key: str | None, value: Any) -> dict[str, Any]:
    import copy

    args = copy.deepcopy(VALID_ARGS)
    parent: Any = args
    for k in path[:-1]:
        parent = parent[k]
    if new_key is not None and isinstance(parent.get(path[-1]), dict):
        parent[path[-1]][new_key] = value  # an unknown key (or a known one) inside a mapping
    else:
        parent[path[-1]] = value
    return args


MUTATED = st.builds(_mutate, st.sampled_from(PATHS), st.none() | st.sampled_from(EXTRA_KEYS), VALUES | DEEP)
#: mutations a YAML dumper can write (deep nesting comes as raw YAML text instead)
MUTATED_SHALLOW = st.builds(_mutate, st.sampled_from(PATHS), st.none() | st.sampled_from(EXTRA_KEYS), YAML_VALUES)


def _config_error_or_valid(raw: Any, where: str = "args") -> None:
    try:
        out = parse_args(raw, where)
    except ConfigError as exc:
        msg = str(exc)
        assert msg.startswith(where), msg[:200]
        assert len(msg) < 4000, f"a {len(msg)}-character message"
        return
    assert isinstance(out, GraphArgs)


@pytest.mark.parametrize("depth", DEPTHS)
def test_mutated_args_fail_with_a_path(depth: str) -> None:
    check("config.args.mutated", MUTATED, _config_error_or_valid, budget(150, depth))


@pytest.mark.parametrize("depth", DEPTHS)
def test_arbitrary_args_fail_with_a_path(depth: str) -> None:
    check("config.args.arbitrary", VALUES | DEEP, _config_error_or_valid, budget(60, depth))


def _yaml_text() -> st.SearchStrategy[str]:
    doc = st.fixed_dictionaries(
        {
            "applications": st.lists(
                st.fixed_dictionaries(
                    {"name": st.text(max_size=8), "import_path": st.just("serve.app:build"), "args": MUTATED_SHALLOW},
                    optional={"deployments": YAML_VALUES, "route_prefix": YAML_VALUES},
                ),
                min_size=1,
                max_size=2,
            )
        },
        optional={"http_options": YAML_VALUES},
    )
    dumped = doc.map(lambda d: yaml.safe_dump(d, allow_unicode=True))
    raw = st.one_of(
        st.text(max_size=200),
        st.sampled_from(
            [
                "[" * 400 + "]" * 400,  # PyYAML recurses per level: past ~330 levels, a RecursionError
                "{a: " * 400 + "}" * 400,
                "a:\n" + "".join(" " * i + "- \n" for i in range(1, 60)),
                "x: " + "9" * 5000,
                "applications:\n- import_path: serve.app:build\n  args: {limits: {max_chars: " + "9" * 5000 + "}}\n",
                "applications:\n- import_path: serve.app:build\n  args: &a {translator: *a}\n",
                "applications:\n- import_path: serve.app:build\n"
                "  args: {translator: {backend: echo, options: &o {p: *o}}}\n",
                "applications: &x [*x]\n",
                "!!python/object/apply:os.system ['id']\n",
                "a: !!binary AAAA\n",
                "\x00",
                "\ufeffapplications: []\n",
            ]
        ),
    )
    return st.one_of(dumped, raw)


@pytest.mark.parametrize("depth", DEPTHS)
def test_yaml_files_fail_with_their_path(depth: str, tmp_path: Path) -> None:
    path = tmp_path / "hostile.yaml"

    def prop(text: str) -> None:
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        try:
            apps = load_app_args(path)
        except ConfigError as exc:
            assert str(exc).startswith(str(path)), str(exc)[:200]
            assert len(str(exc)) < 4000, f"a {len(str(exc))}-character message"
            return
        assert apps and all(isinstance(a.args, GraphArgs) for a in apps)

    check("config.yaml.file", _yaml_text(), prop, budget(80, depth))


def test_what_the_long_runs_found_in_configs_fails_clearly(tmp_path: Path) -> None:
    # a 10,000-character backend name was quoted back whole; `deployments: true` was a TypeError
    with pytest.raises(ConfigError) as exc:
        parse_args({"translator": {"backend": "a" * 10_000}}, "args")
    assert str(exc.value).startswith("args.translator.backend: unknown translator backend 'aaa")
    assert len(str(exc.value)) < 400 and "valid: auto" in str(exc.value)
    path = tmp_path / "x.yaml"
    path.write_text("applications:\n- import_path: serve.app:build\n  deployments: true\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"applications\[0\]\.deployments: expected a list, got True"):
        load_app_args(path)


def test_a_megabyte_of_whitespace_is_too_long_before_it_is_empty() -> None:
    # found by the long run: 1 MB of "\r" was a 400 quoting the whole text back
    from backends.text import check_text

    with pytest.raises(InvalidRequest) as exc:
        check_text("\r" * 1_000_001, 100_000)
    assert exc.value.status == 413 and len(str(exc.value)) < 200
    with pytest.raises(InvalidRequest) as exc:
        check_text(" \n" * 40_000, 100_000)
    assert exc.value.status == 400 and len(str(exc.value)) < 200
    with pytest.raises(InvalidRequest) as exc:
        _pipeline(max_chars=100_000).run_sync("\r" * 1_000_001)
    assert exc.value.status == 413
