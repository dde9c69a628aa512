"""Fallback chains in plain Python, driven by the synthetic backends' injected faults."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

from backends import InvalidRequest, Speaker, Translator, create_speaker, create_translator
from backends.errors import BackendUnavailable
from backends.fallback import FallbackSpeaker, FallbackTranslator

CLOSE: list[Any] = []


@pytest.fixture(autouse=True)
def _close_chains() -> Iterator[None]:
    yield
    while CLOSE:
        CLOSE.pop().close()  # stops each chain's prober thread


def _speak_probe(s: Speaker) -> Any:
    return s.synthesize("はい", "ja")


def _translate_probe(t: Translator) -> Any:
    return t.translate(["Hello."], "en", "ja")


def speakers(*options: dict[str, Any], **chain: Any) -> FallbackSpeaker:
    """A loaded chain of tone speakers, one per options dict (the first is the primary)."""
    members = [create_speaker("tone", options=o) for o in options]
    built = FallbackSpeaker(members, probe=_speak_probe, **chain)
    built.load()
    CLOSE.append(built)
    return built


def translators(*options: dict[str, Any], **chain: Any) -> FallbackTranslator:
    members = [create_translator("echo", options=o) for o in options]
    built = FallbackTranslator(members, probe=_translate_probe, **chain)
    built.load()
    CLOSE.append(built)
    return built


def wait_for(cond: Callable[[], bool], timeout_s: float = 10.0) -> bool:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.02)
    return cond()


def states(chain: FallbackSpeaker | FallbackTranslator) -> list[str]:
    return [b["state"] for b in chain.health()["backends"]]


def test_healthy_primary_serves_without_fallback_from() -> None:
    chain = speakers({"frequency": 440}, {"frequency": 660})
    result = chain.synthesize("こんにちは")
    assert result.backend == "tone" and result.options["frequency"] == 440
    assert result.fallback_from is None
    assert chain.health()["ok"] and states(chain) == ["healthy", "healthy"]


def test_raise_falls_back_and_says_from_what() -> None:
    chain = speakers({"fault": "raise"}, {"frequency": 660})
    result = chain.synthesize("こんにちは")
    assert result.options["frequency"] == 660
    assert np.isfinite(result.audio).all() and len(result.audio) > 0
    assert result.fallback_from is not None
    assert result.fallback_from["backend"] == "tone"
    assert "injected" in result.fallback_from["reason"]
    health = chain.health()
    assert health["ok"] is True and health["degraded"] is True and health["serving"] == "tone#1"
    primary = health["backends"][0]
    assert primary["state"] == "unhealthy" and "injected" in primary["reason"] and primary["since"] <= time.time()


def test_hang_times_out_then_fallback_serves_and_the_hung_backend_is_skipped() -> None:
    # fault_every=2: the warm-up probe (call 1) passes, the first request (call 2) hangs for 60 s.
    chain = speakers({"fault": "hang", "hang_s": 60.0, "fault_every": 2}, {"frequency": 660}, attempt_timeout_s=0.3)
    assert chain.blocking is True  # so a replica calls it off its event loop
    primary = chain.chain.backends[0]
    result = chain.synthesize("こんにちは")
    # the fallback served while the primary's call is still hanging: the call was abandoned, not awaited
    assert result.options["frequency"] == 660
    assert result.fallback_from == {"backend": "tone", "reason": "tone did not answer within 0.3 s (attempt_timeout_s)"}
    assert primary.faults.calls == 2 and chain.chain._busy[0].locked(), "the hung call should still be running"
    assert chain.chain.states[0].timed_out and states(chain) == ["unhealthy", "healthy"]
    # marked unhealthy after a hang: the next request is not sent to it (nor waited for), the fallback serves
    again = chain.synthesize("もう一度")
    assert again.options["frequency"] == 660 and again.fallback_from == result.fallback_from
    assert primary.faults.calls == 2, "a backend that hung must not be tried again before it is restored"


def test_garbage_translation_falls_back() -> None:
    chain = translators({"fault": "garbage"}, {"prefix": "[fb] "})
    [result] = chain.translate(["Good morning."])
    assert result.text == "[fb] Good morning."
    assert result.fallback_from is not None and "empty translation" in result.fallback_from["reason"]


def test_garbage_audio_falls_back() -> None:
    chain = speakers({"fault": "garbage", "fault_every": 2}, {"frequency": 660})
    # The warm-up probe was call 1 (clean); call 2 returns NaN audio.
    result = chain.synthesize("こんにちは")
    assert result.options["frequency"] == 660 and np.isfinite(result.audio).all()
    assert result.fallback_from is not None and "non-finite" in result.fallback_from["reason"]


def test_every_backend_failing_is_a_503_naming_each() -> None:
    chain = speakers({"fault": "raise"}, {"fault": "garbage"})
    assert chain.health()["ok"] is False
    with pytest.raises(BackendUnavailable) as info:
        chain.synthesize("こんにちは")
    message = str(info.value)
    assert "tone:" in message and "tone#1:" in message and "injected" in message
    assert "every backend failed (2)" in message


def test_restored_by_the_probe_once_the_fault_passes() -> None:
    chain = speakers({"fault": "raise", "fault_for_s": 0.5}, {"frequency": 660}, probe_interval_s=0.1)
    served = chain.synthesize("こんにちは")
    assert served.options["frequency"] == 660 and served.fallback_from is not None
    assert served.fallback_from["backend"] == "tone" and "injected fault" in served.fallback_from["reason"]
    assert wait_for(lambda: states(chain)[0] == "healthy"), chain.health()
    result = chain.synthesize("こんにちは")
    assert result.options["frequency"] == 440 and result.fallback_from is None
    assert chain.health()["degraded"] is False


def test_hung_backend_is_restored_only_after_its_call_returns() -> None:
    loaded = time.monotonic()
    chain = speakers(
        {"fault": "hang", "hang_s": 2.0, "fault_for_s": 0.2},
        {"frequency": 660},
        attempt_timeout_s=0.1,
        probe_interval_s=0.05,
    )
    # The warm-up probe hung and was abandoned: the primary starts unhealthy.
    assert states(chain)[0] == "unhealthy"
    assert chain.synthesize("こんにちは").options["frequency"] == 660
    time.sleep(max(0.0, loaded + 0.6 - time.monotonic()))
    # The fault window is over and probes ran, but the abandoned call still holds the backend.
    assert states(chain)[0] == "unhealthy"
    assert wait_for(lambda: states(chain)[0] == "healthy")
    assert chain.synthesize("こんにちは").fallback_from is None


def test_last_resort_retries_an_unhealthy_backend_whose_health_passes() -> None:
    chain = speakers({"fault": "raise", "fault_for_s": 0.3}, {"fault": "raise"}, probe_interval_s=3600)
    with pytest.raises(BackendUnavailable):
        chain.synthesize("こんにちは")
    time.sleep(0.35)  # the primary's fault is over, but no probe has run
    result = chain.synthesize("こんにちは")
    assert result.fallback_from is None and states(chain)[0] == "healthy"


def test_request_errors_pass_through_and_mark_nothing() -> None:
    chain = speakers({}, {"frequency": 660})
    with pytest.raises(InvalidRequest, match="empty"):
        chain.synthesize("   ")
    with pytest.raises(InvalidRequest, match="unknown voice"):
        chain.synthesize("はい", voice="nobody")
    tchain = translators({}, {"prefix": "x"})
    with pytest.raises(InvalidRequest):
        tchain.translate(["Hello."], "en", "en")
    assert states(chain) == ["healthy", "healthy"] and states(tchain) == ["healthy", "healthy"]


def test_request_voice_goes_to_a_fallback_that_has_it() -> None:
    chain = speakers({"fault": "raise"}, {"frequency": 660})
    assert chain.synthesize("はい", voice="square").voice == "square"


def test_describe_lists_each_backend_with_options_and_state() -> None:
    chain = translators({"fault": "raise"}, {"prefix": "[fb] "}, attempt_timeout_s=2.0)
    described = chain.describe()
    assert described["backend"] == "echo"
    members = described["fallback"]["backends"]
    assert [m["state"] for m in members] == ["unhealthy", "healthy"]
    assert members[1]["options"]["prefix"] == "[fb] " and described["fallback"]["attempt_timeout_s"] == 2.0


def test_a_fallback_unavailable_here_fails_load_with_its_path() -> None:
    say = create_speaker("say")  # macOS only
    if say.unavailable_reason() is None:
        pytest.skip("say is available on this machine (macOS): nothing unavailable to test with")
    chain = FallbackSpeaker([create_speaker("tone"), say], probe=_speak_probe, where="args.speaker")
    with pytest.raises(BackendUnavailable, match=r"args\.speaker\.fallbacks\[0\] \(say\) cannot run here"):
        chain.load()
