"""One contract for every registered translator, run against real tiny models.

Each backend says how it is exercised here with a class attribute
``contract_cases: tuple[(fixture name or None, options), ...]``: the session fixture
that builds its test model (``tiny_marian``, ``tiny_nllb``, ``tiny_llm``; None for no
model) and the options to run it with. Backends without the attribute fall back to
``DEFAULT_CASES`` below. A backend that cannot run on this machine is skipped with the
reason it gives itself (``unavailable_reason()``), which must name the platform, package or
model that is missing. Everything else is a failure, never a skip: a backend module that
does not import, a ``load()`` that raises although ``unavailable_reason()`` said the backend
can run here, a case naming a fixture tests/conftest.py does not define.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from backends.base import Translator
from backends.errors import BackendUnavailable, InvalidRequest
from backends.languages import LANGUAGES
from backends.registry import TRANSLATORS, create_translator, translator_class
from backends.types import TranslationResult

#: for backends that do not (yet) declare ``contract_cases``
DEFAULT_CASES: dict[str, tuple[tuple[str | None, dict[str, Any]], ...]] = {
    "echo": ((None, {}),),
    "onnx": (("tiny_marian", {"max_new_tokens": 12}),),
    "coreml": (("tiny_marian", {"max_new_tokens": 12}),),
    "llm": (("tiny_gguf", {"max_new_tokens": 12}), ("tiny_llm", {"runtime": "ctranslate2", "max_new_tokens": 12})),
}

TEXTS = ["Hello, how are you today?", "Thank you.", "Where is the nearest train station, please?"]
#: what a reason for skipping must name: a platform ("runs only on macOS"), a package (an install
#: command) or a model
MISSING = re.compile(r"only on \w+|pip install|apt(-get)? install|brew install|not on PATH|\bmodel\b")


def _cases() -> list[Any]:
    params = []
    for name in TRANSLATORS:
        try:
            cls: type[Translator] | None = translator_class(name)
            cases = getattr(cls, "contract_cases", None) or DEFAULT_CASES.get(name, ((None, {}),))
        except Exception as exc:  # reported by each of this backend's tests (a failure), not at collection
            cls, cases = None, ((None, {"__import_error__": f"{type(exc).__name__}: {exc}"}),)
        for fixture, options in cases:
            params.append(pytest.param(name, fixture, options, id=f"{name}-{fixture or 'nomodel'}"))
    return params


CASES = _cases()


@pytest.fixture(scope="module")
def tiny_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Conversions of the per-session tiny models go to a throw-away HAYAKU_HOME."""
    return tmp_path_factory.mktemp("hayaku-home")


_LOADED: dict[tuple[str, str | None, str], Translator] = {}
TINY = ("tiny_marian", "tiny_nllb")


@contextmanager
def _home_for(fixture: str | None, home: Path) -> Iterator[None]:
    """Only the tiny models' artefacts go to the temporary home; real models keep the real cache."""
    old = os.environ.get("HAYAKU_HOME")
    if fixture in TINY:
        os.environ["HAYAKU_HOME"] = str(home)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("HAYAKU_HOME", None)
        else:
            os.environ["HAYAKU_HOME"] = old


def _imports(name: str, options: dict[str, Any]) -> None:
    """Fails when the backend's module did not import: it must, without its runtime (heavy imports go in load())."""
    if "__import_error__" in options:
        pytest.fail(f"{name} backend module does not import: {options['__import_error__']}")


def skip_unavailable(name: str, reason: str) -> None:
    """Skips with the backend's own reason, which must say which platform, package or model is missing."""
    if not MISSING.search(reason):
        pytest.fail(f"{name} says it cannot run here without naming a missing platform, package or model: {reason!r}")
    pytest.skip(f"{name} unavailable here: {reason}")


def _model(request: pytest.FixtureRequest, name: str, fixture: str | None) -> str | None:
    if fixture is None:
        return None
    try:
        return str(request.getfixturevalue(fixture))
    except pytest.FixtureLookupError:
        pytest.fail(f"{name}'s contract case names the test model fixture {fixture!r}, which tests/conftest.py lacks")


def build(
    request: pytest.FixtureRequest,
    name: str,
    fixture: str | None,
    options: dict[str, Any],
    home: Path,
    fresh: bool = False,
) -> Translator:
    """Creates and loads the backend on its test model, or skips with the backend's reason."""
    _imports(name, options)
    model = _model(request, name, fixture)
    reason = translator_class(name).unavailable_reason(model, options)
    if reason:
        skip_unavailable(name, reason)
    key = (name, fixture, repr(sorted(options.items())))
    if not fresh and key in _LOADED:
        return _LOADED[key]
    translator = create_translator(name, model=model, options=options)
    try:
        with _home_for(fixture, home):
            translator.load()
    except BackendUnavailable as exc:  # unavailable_reason() said it can run here: load() must keep that promise
        pytest.fail(f"{name} said it can run here (unavailable_reason() is None), but load() raised: {exc}")
    if not fresh:
        _LOADED[key] = translator
    return translator


@pytest.fixture(scope="module", autouse=True)
def _close_all() -> Iterator[None]:
    yield
    for t in _LOADED.values():
        t.close()
    _LOADED.clear()


def _pair(t: Translator) -> tuple[str, str]:
    langs = t.supported_languages()
    if langs is None or {"en", "ja"} <= langs:
        return "en", "ja"
    src, tgt = sorted(langs)[:2]
    return src, tgt


@pytest.mark.parametrize("name,fixture,options", CASES)
def test_translate_returns_one_result_per_input_in_order(
    request: pytest.FixtureRequest, tiny_home: Path, name: str, fixture: str | None, options: dict[str, Any]
) -> None:
    t = build(request, name, fixture, options, tiny_home)
    src, tgt = _pair(t)
    results = t.translate(TEXTS, src, tgt)
    assert len(results) == len(TEXTS)
    for text, r in zip(TEXTS, results, strict=True):
        assert isinstance(r, TranslationResult)
        assert r.source_text == text
        assert isinstance(r.text, str) and r.text.strip(), f"{name} returned an empty translation for {text!r}"
        assert (r.source_lang, r.target_lang) == (src, tgt)
        assert r.backend == name
        assert r.options == t.options.model_dump()
        assert r.timings_ms.get("translate", 0.0) > 0.0
        assert r.output_tokens is None or r.output_tokens > 0


@pytest.mark.parametrize("name,fixture,options", CASES)
def test_batch_equals_one_by_one(
    request: pytest.FixtureRequest, tiny_home: Path, name: str, fixture: str | None, options: dict[str, Any]
) -> None:
    t = build(request, name, fixture, options, tiny_home)
    src, tgt = _pair(t)
    batched = [r.text for r in t.translate(TEXTS, src, tgt)]
    single = [t.translate([text], src, tgt)[0].text for text in TEXTS]
    assert batched == single, "padding in a batch changed a translation"
    reordered = [r.text for r in t.translate(TEXTS[::-1], src, tgt)]
    assert reordered == single[::-1]


@pytest.mark.parametrize("name,fixture,options", CASES)
def test_unsupported_language_pair_names_the_valid_ones(
    request: pytest.FixtureRequest, tiny_home: Path, name: str, fixture: str | None, options: dict[str, Any]
) -> None:
    t = build(request, name, fixture, options, tiny_home)
    langs = t.supported_languages()
    if langs is None:
        pytest.skip(f"{name} declares no language limits for this model, so no pair is unsupported")
    src, _ = _pair(t)
    outside = sorted(set(LANGUAGES) - langs)
    if not outside:
        pytest.skip(f"{name} model supports every language hayaku knows")
    with pytest.raises(InvalidRequest) as exc:
        t.translate(["Hello."], src, outside[0])
    msg = str(exc.value)
    assert repr(outside[0]) in msg
    for code in langs:
        assert re.search(rf"\b{code}\b", msg), f"message does not name supported language {code!r}: {msg}"
    with pytest.raises(InvalidRequest):
        t.translate(["Hello."], src, src)


@pytest.mark.parametrize("name,fixture,options", CASES)
def test_bad_option_type_quotes_the_value(name: str, fixture: str | None, options: dict[str, Any]) -> None:
    _imports(name, options)
    cls = translator_class(name)
    bogus = "not-a-valid-value"
    field = None
    for candidate in cls.Options.model_fields:
        try:
            cls.Options(**{candidate: bogus})
        except ValidationError:
            field = candidate
            break
    if field is None:
        pytest.skip(f"{name} has no option that rejects a string")
    with pytest.raises(InvalidRequest) as exc:
        create_translator(name, model=None, options={**options, field: bogus})
    assert repr(bogus) in str(exc.value) and field in str(exc.value)
    with pytest.raises(InvalidRequest) as exc:
        create_translator(name, model=None, options={"no_such_option": 1})
    assert "no_such_option" in str(exc.value)


@pytest.mark.parametrize("name,fixture,options", CASES)
def test_empty_text_is_refused(
    request: pytest.FixtureRequest, tiny_home: Path, name: str, fixture: str | None, options: dict[str, Any]
) -> None:
    t = build(request, name, fixture, options, tiny_home)
    src, tgt = _pair(t)
    with pytest.raises(InvalidRequest) as exc:
        t.translate(["   "], src, tgt)
    assert "empty" in str(exc.value)


@pytest.mark.parametrize("name,fixture,options", CASES)
def test_health_after_load_and_close(
    request: pytest.FixtureRequest, tiny_home: Path, name: str, fixture: str | None, options: dict[str, Any]
) -> None:
    t = build(request, name, fixture, options, tiny_home, fresh=True)
    health = t.health()
    assert health["ok"] is True and health["backend"] == name
    src, tgt = _pair(t)
    first = t.translate(["Good night."], src, tgt)[0].text
    t.close()
    assert t.health()["ok"] is False
    # A closed backend loads again on the next request and answers the same.
    with _home_for(fixture, tiny_home):
        again = t.translate(["Good night."], src, tgt)[0].text
    assert again == first
    t.close()


def test_every_registered_translator_has_a_case() -> None:
    assert {p.values[0] for p in CASES} == set(TRANSLATORS)


@pytest.mark.parametrize("name", [n for n in TRANSLATORS if n != "echo"])
def test_missing_model_is_a_clear_error(name: str) -> None:
    cls = translator_class(name)  # a module that does not import fails here
    reason = cls.unavailable_reason("/nonexistent/hayaku-model")
    assert reason is not None, f"{name} accepts a model path that does not exist"
    if "/nonexistent/hayaku-model" not in reason:
        # Only a platform or package this machine lacks may come before the model check: then the
        # reason is the same whatever the model, and says what is missing.
        assert reason == cls.unavailable_reason(None), f"{name}: the missing model's reason does not name it: {reason}"
        skip_unavailable(name, reason)
    assert "/nonexistent/hayaku-model" in reason
