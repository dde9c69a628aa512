"""The speaker benchmark: every voice asked for, first audio from the first sentence, a table and a chart."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from backends.registry import create_speaker
from benchmarks import common, speak


def test_speak_benchmark_rows_and_chart(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(common, "RESULTS", tmp_path / "results")
    argv = ["--speaker", "tone", "--include-synthetic", "--all-voices", "--rounds", "1"]
    assert speak.main(argv) == 0
    out = tmp_path / "results"
    rows = json.loads((out / "speak.json").read_text())
    voices = create_speaker("tone").list_voices() or ("default",)
    assert len(rows) == 2 * len(voices)
    assert {(r["voice"], r["text"]) for r in rows} == {(v, k) for v in voices for k in speak.TEXTS}
    for r in rows:
        assert r["audio s"] > 0 and r["total ms"] > 0 and r["RTF"] == pytest.approx(r["total ms"] / 1000 / r["audio s"])
        if r["text"] == "short":  # one sentence: its first audio is the whole synthesis
            assert r["first audio ms"] == r["total ms"]
        else:
            assert r["first audio ms"] > 0
    assert "| first audio ms |" in (out / "speak.md").read_text()
    assert (out / "speak.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_speak_benchmark_default_voice_only_and_bad_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(common, "RESULTS", tmp_path / "results")
    assert speak.main(["--speaker", "tone", "--include-synthetic", "--rounds", "1"]) == 0
    assert len(json.loads((tmp_path / "results" / "speak.json").read_text())) == 2
    # tone is a synthetic backend: measured only when asked for, so nothing is left to run
    assert speak.main(["--speaker", "tone", "--rounds", "1"]) == 2
    with pytest.raises(SystemExit) as exc:
        speak.main(["--speaker", "nosuch"])
    assert exc.value.code == 2
