"""Fault injection on the synthetic backends (echo, tone): the options other tests build on."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import numpy as np
import pytest

from backends import InvalidRequest, Speaker, Translator, create_speaker, create_translator
from backends.base import Backend
from backends.errors import BackendUnavailable, HayakuError
from backends.synthetic import InjectedFault


def _echo(**options: object) -> Translator:
    backend = create_translator("echo", options=options)
    backend.load()
    return backend


def _tone(**options: object) -> Speaker:
    backend = create_speaker("tone", options=options)
    backend.load()
    return backend


def test_defaults_are_healthy_and_non_blocking() -> None:
    echo, tone = _echo(), _tone()
    assert echo.blocking is False and tone.blocking is False
    assert echo.health()["ok"] and tone.health()["ok"]
    assert echo.translate(["Hi there."])[0].text == "Hi there."
    assert np.isfinite(tone.synthesize("こんにちは").audio).all()


@pytest.mark.parametrize("make", [_echo, _tone], ids=["echo", "tone"])
def test_raise_is_an_injected_hayaku_error_and_health_says_so(make: Callable[..., Backend]) -> None:
    backend = make(fault="raise")
    with pytest.raises(InjectedFault, match="injected fault") as info:
        if isinstance(backend, Translator):
            backend.translate(["Hello."])
        else:
            assert isinstance(backend, Speaker)
            backend.synthesize("はい")
    assert isinstance(info.value, HayakuError) and isinstance(info.value, BackendUnavailable)
    health = backend.health()
    assert health["ok"] is False and "injected" in health["reason"]


def test_fault_every_nth_call() -> None:
    echo = _echo(fault="raise", fault_every=3)
    outcomes = []
    for _ in range(6):
        try:
            echo.translate(["Hello."])
            outcomes.append("ok")
        except InjectedFault:
            outcomes.append("fault")
    assert outcomes == ["ok", "ok", "fault", "ok", "ok", "fault"]


def test_fault_for_s_recovers_and_restarts_at_load() -> None:
    tone = _tone(fault="raise", fault_for_s=0.3)
    with pytest.raises(InjectedFault):
        tone.synthesize("はい")
    time.sleep(0.35)
    assert tone.health()["ok"] is True
    assert len(tone.synthesize("はい").audio) > 0
    tone.close()
    tone.load()  # the fault window and the call count start again at each load
    assert tone.health()["ok"] is True
    with pytest.raises(InjectedFault):
        tone.synthesize("はい")
    assert tone.health()["ok"] is False


def test_health_is_ok_until_a_fault_strikes() -> None:
    echo = _echo(fault="garbage", fault_every=2)
    assert echo.translate(["Hello."])[0].text == "Hello."
    assert echo.health()["ok"] is True
    assert echo.translate(["Hello."])[0].text == ""
    assert echo.health()["ok"] is False


def test_garbage_echo_returns_empty_and_tone_nan_is_caught() -> None:
    assert _echo(fault="garbage").translate(["Hello."])[0].text == ""
    with pytest.raises(RuntimeError, match="non-finite"):
        _tone(fault="garbage").synthesize("はい")


def test_hang_blocks_and_is_declared_blocking(monkeypatch: pytest.MonkeyPatch) -> None:
    import backends.synthetic

    slept: list[float] = []

    class Clock:  # the module's clock, with a sleep that records instead of waiting
        def __getattr__(self, name: str) -> object:
            return getattr(time, name)

        @staticmethod
        def sleep(seconds: float) -> None:
            slept.append(seconds)

    monkeypatch.setattr(backends.synthetic, "time", Clock())
    echo = _echo(fault="hang", hang_s=0.2, fault_every=2)
    assert echo.blocking is True
    assert echo.translate(["Hello."])[0].text == "Hello." and slept == []  # call 1: no fault
    # call 2 blocks the calling thread for hang_s, then answers normally
    assert echo.translate(["Hello."])[0].text == "Hello." and slept == [0.2]


def test_work_ms_burns_cpu_time_and_is_blocking() -> None:
    tone = _tone(work_ms=30)
    assert tone.blocking is True
    start_cpu = time.thread_time()
    tone.synthesize("はい")
    assert time.thread_time() - start_cpu >= 0.03  # busy, not sleeping


def test_calls_from_threads_are_counted_once_each() -> None:
    echo = _echo(fault="raise", fault_every=1000)
    threads = [threading.Thread(target=lambda: [echo.translate(["a"]) for _ in range(50)]) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert echo.faults.calls == 200


@pytest.mark.parametrize(
    "options",
    [{"fault": "explode"}, {"fault_every": 0}, {"hang_s": -1}, {"work_ms": -5}, {"fault_for_s": 0}],
)
def test_bad_fault_options_are_rejected(options: dict[str, object]) -> None:
    with pytest.raises(InvalidRequest, match="options"):
        create_translator("echo", options=options)
