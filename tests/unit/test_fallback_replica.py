"""The translator and speaker replicas (as plain classes, no Ray cluster) with fallback chains and faults."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("ray", reason="the replicas are Ray Serve deployments: pip install 'hayaku[serve]'")

from backends.errors import BackendUnavailable, HayakuError
from backends.synthetic import InjectedFault
from backends.types import SpeechResult, TranslationResult
from deployments.speaker import SpeakerReplica
from deployments.translator import TranslatorReplica
from graph.config import ConfigError, parse_args
from graph.yaml_files import load_app_args


def _speaker(stage: dict[str, Any]) -> SpeakerReplica:
    return SpeakerReplica(parse_args({"speaker": stage}).speaker.model_dump(), 2000, "ja")


def test_hung_primary_frees_the_replica_lock_and_a_fallback_serves() -> None:
    replica = _speaker(
        {
            "backend": "tone",
            "options": {"fault": "hang", "hang_s": 120, "fault_every": 2},  # warm-up passes, then it hangs
            "fallbacks": [{"backend": "tone", "options": {"frequency": 660}}],
            "attempt_timeout_s": 0.3,
        }
    )
    chain = replica._backend.chain
    primary = chain.backends[0]

    ticks = 0

    async def three() -> list[Any]:
        async def tick() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.01)

        ticker = asyncio.create_task(tick())
        speaking = asyncio.gather(*(replica.speak(f"文 {i}", "ja") for i in range(3)))
        try:  # a guard against a hang, not a speed claim: the 120 s hang must be abandoned, not awaited
            out = await asyncio.wait_for(speaking, timeout=60)
        except asyncio.TimeoutError:
            pytest.fail("the replica waited for the hung primary instead of abandoning it after attempt_timeout_s")
        ticker.cancel()
        return out

    results = asyncio.run(three())
    assert ticks >= 3, "the replica's event loop must keep running while an attempt hangs"
    assert all(isinstance(r, SpeechResult) and r.options["frequency"] == 660 for r in results), results
    # one call went to the primary and still hangs there (abandoned after 0.3 s); the others never waited for it
    assert primary.faults.calls == 2 and chain._busy[0].locked(), "the hung call should still be running"
    assert chain.states[0].timed_out
    health = replica.health()
    assert health["ok"] and health["degraded"] and "did not answer" in health["backends"][0]["reason"]
    replica._backend.close()


def test_every_backend_failing_is_returned_as_a_503_error_value() -> None:
    replica = _speaker(
        {
            "backend": "tone",
            "options": {"fault": "raise"},
            "fallbacks": [{"backend": "tone", "options": {"fault": "raise"}}],
        }
    )
    out = asyncio.run(replica.speak("はい", "ja"))
    assert isinstance(out, BackendUnavailable) and "every backend failed" in str(out)
    replica.check_health()  # the replica stays up: a restart would not fix its backends
    replica._backend.close()


def test_single_faulty_backend_starts_and_reports_its_errors() -> None:
    replica = _speaker({"backend": "tone", "options": {"fault": "raise"}})
    out = asyncio.run(replica.speak("はい", "ja"))
    assert isinstance(out, InjectedFault) and isinstance(out, HayakuError)
    assert replica.health()["ok"] is False
    replica.check_health()


def test_translator_replica_serves_from_the_fallback_and_describes_the_chain() -> None:
    stage = parse_args(
        {
            "translator": {
                "backend": "echo",
                "options": {"fault": "garbage"},
                "fallbacks": [{"backend": "echo", "options": {"prefix": "[fb] "}}],
            }
        }
    ).translator.model_dump()
    replica = TranslatorReplica(stage, 2000, "en", "ja")
    out = asyncio.run(replica.translate("Good night.", "en", "ja"))
    assert isinstance(out, TranslationResult) and out.text == "[fb] Good night."
    assert out.fallback_from is not None
    assert out.fallback_from["backend"] == "echo" and "empty translation" in out.fallback_from["reason"]
    chain = replica.describe()["fallback"]
    assert [b["state"] for b in chain["backends"]] == ["unhealthy", "healthy"]
    assert chain["attempt_timeout_s"] == 30.0  # the default when fallbacks are listed


@pytest.mark.parametrize(
    ("fallbacks", "needle"),
    [
        ([{"backend": "nope"}], r"args\.speaker\.fallbacks\[0\]\.backend: unknown speaker backend 'nope'"),
        ([{"backend": "tone", "options": {"fault": "boom"}}], r"args\.speaker\.fallbacks\[0\]\.options\.fault"),
        ([{"backend": "tone", "voice": "bob"}], r"args\.speaker\.fallbacks\[0\]\.voice: unknown voice 'bob'"),
        ([{"backend": "auto"}], r"fallbacks\[0\]\.backend: a fallback names its backend"),
        ([{"backend": "echo"}], r"fallbacks\[0\]\.backend: unknown speaker backend 'echo'"),
        ([{"backend": "tone"}, {"voice": "sine"}], r"fallbacks\.1\.backend: Field required"),
    ],
)
def test_bad_fallbacks_fail_validation_with_the_yaml_path(fallbacks: list[Any], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        parse_args({"speaker": {"backend": "tone", "fallbacks": fallbacks}})


def test_yaml_file_errors_name_file_and_path(tmp_path: Path) -> None:
    yaml = tmp_path / "bad.yaml"
    yaml.write_text(
        "applications:\n"
        "- name: x\n  import_path: serve.app:build\n  args:\n"
        "    translator: {backend: echo, fallbacks: [{backend: echo, options: {prefix: 3}}]}\n"
    )
    with pytest.raises(ConfigError, match=r"bad\.yaml: applications\[0\]\.args\.translator\.fallbacks\[0\]\.options"):
        load_app_args(yaml)
