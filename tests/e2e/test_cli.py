"""The `hayaku` command as a user runs it: a subprocess, real files, real exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from backends.audio import decode_wav, rms

ROOT = Path(__file__).resolve().parents[2]
HAYAKU = [sys.executable, "-m", "serve.cli"]


def run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*HAYAKU, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def test_say_writes_wav_and_prints_translation(tmp_path: Path) -> None:
    out = tmp_path / "hello.wav"
    p = run(
        "say",
        "Hello there. How are you?",
        "-o",
        str(out),
        "--translator",
        "echo",
        "-O",
        "prefix=JA:",
        "--speaker",
        "tone",
    )
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip().splitlines()[-1] == "JA:Hello there.JA:How are you?"
    assert "translate" in p.stderr and "synthesize" in p.stderr
    samples, rate = decode_wav(out.read_bytes())
    assert rate == 24000 and rms(samples) > 0.1


def test_say_flac_from_suffix(tmp_path: Path) -> None:
    import soundfile as sf

    out = tmp_path / "a.flac"
    p = run("say", "Hi.", "-o", str(out), "--translator", "echo", "--speaker", "tone")
    assert p.returncode == 0, p.stderr
    data, rate = sf.read(out)
    assert rate == 24000 and len(data) > 0


@pytest.mark.parametrize(
    "args,needle",
    [
        (["say", "Hi", "--translator", "nope", "--speaker", "tone"], "'nope'"),
        (["say", "Hi", "--translator", "echo", "-O", "bogus=1", "--speaker", "tone"], "bogus"),
        (["say", "   ", "--translator", "echo", "--speaker", "tone"], "empty"),
        (["say", "Hi", "--translator", "echo", "--speaker", "tone", "--voice", "../../etc/passwd"], "voice"),
        (["graph", "does/not/exist.yaml"], "no such file"),
    ],
)
def test_errors_exit_2_with_message(args: list[str], needle: str, tmp_path: Path) -> None:
    p = run(*args, "-o", str(tmp_path / "x.wav")) if args[0] == "say" else run(*args)
    assert p.returncode == 2, (p.stdout, p.stderr)
    assert needle in p.stderr and "Traceback" not in p.stderr


def test_backends_lists_every_backend_with_status() -> None:
    from backends.registry import SPEAKERS, TRANSLATORS

    p = run("backends", "--json")
    assert p.returncode == 0, p.stderr
    rows = json.loads(p.stdout)
    assert {r["name"] for r in rows} == set(TRANSLATORS) | set(SPEAKERS)
    say = next(r for r in rows if r["name"] == "say")
    if sys.platform != "darwin":
        assert not say["available"] and "Darwin" in say["reason"]
    human = run("backends")
    assert "echo" in human.stdout and "available" in human.stdout


def test_graph_resolves_tiny_config() -> None:
    p = run("graph", "configs/tiny.yaml")
    assert p.returncode == 0, p.stderr
    info = json.loads(p.stdout)
    assert info["translator"]["backend"] == "echo" and info["speaker"]["backend"] == "tone"


def test_serve_subcommand_rejects_bad_config_at_once(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text((ROOT / "configs" / "tiny.yaml").read_text().replace("backend: echo", "backend: nope", 1))
    p = run("serve", str(bad), timeout=60)
    assert p.returncode == 2
    assert "applications[0].args.translator" in p.stderr and "'nope'" in p.stderr


def test_help() -> None:
    p = run("--help")
    assert p.returncode == 0 and "say" in p.stdout and "backends" in p.stdout


@pytest.mark.slow
def test_say_with_embedded_defaults(tmp_path: Path) -> None:
    """The issue's done-when: English in, a Japanese WAV out, with the offline defaults."""
    out = tmp_path / "hello.wav"
    p = run("say", "Hello, how are you today?", "-o", str(out), timeout=900)
    assert p.returncode == 0, p.stderr
    translation = p.stdout.strip().splitlines()[-1]
    assert any("\u3040" <= ch <= "\u30ff" or "\u4e00" <= ch <= "\u9fff" for ch in translation), translation
    samples, rate = decode_wav(out.read_bytes())
    assert rms(samples) > 0.01 and len(samples) / rate > 0.5
