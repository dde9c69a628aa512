"""The tuner: quality rejection, ranking, failures, profile round-trip, and a tiny end-to-end sweep."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from benchmarks import tune
from serve import auto, hardware

CREATED = "2025-06-01T12:00:00Z"


@pytest.fixture()
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HAYAKU_HOME", str(tmp_path))
    return tmp_path


def trow(
    label: str, chrf: float, ms: list[float], ok: bool = True, reference: bool = False, model: str = "m"
) -> dict[str, Any]:
    row: dict[str, Any] = {"role": "translator", "label": label, "backend": "transformers", "model": model,
                           "options": {"dtype": label}, "reference": reference, "ok": ok}  # fmt: skip
    if ok:
        row.update(chrf=chrf, ms=ms, p50_ms=sorted(ms)[len(ms) // 2])
    else:
        row["reason"] = "RuntimeError: boom"
    return row


def srow(label: str, ms: list[float], ok: bool = True, synthetic: bool = False) -> dict[str, Any]:
    row: dict[str, Any] = {"role": "speaker", "label": label, "backend": label, "options": {}, "voice": None,
                           "ok": ok, "synthetic": synthetic}  # fmt: skip
    if ok:
        row.update(ms=ms, p50_ms=sorted(ms)[len(ms) // 2])
    else:
        row["reason"] = "unavailable"
    return row


def test_quality_rejection_at_one_chrf_point() -> None:
    rows = tune.judge(
        [
            trow("float32", 40.0, [9, 9, 9], reference=True),
            trow("worse", 38.99, [1, 1, 1]),
            trow("close", 39.01, [2, 2, 2]),
        ]
    )
    verdict = {r["label"]: r for r in rows}
    assert verdict["float32"]["accepted"] and verdict["close"]["accepted"]
    assert not verdict["worse"]["accepted"] and "rejected" in verdict["worse"]["verdict"]
    assert verdict["worse"]["chrf_delta"] == pytest.approx(-1.01)


def test_rank_by_median_end_to_end_and_failed_never_win() -> None:
    ts = tune.judge(
        [
            trow("float32", 40.0, [50, 50, 50], reference=True),
            # lower mean, higher median than "steady": the median decides
            trow("spiky", 40.0, [1, 30, 30]),
            trow("steady", 40.0, [20, 20, 100]),
            trow("broken", 0.0, [], ok=False),
        ]
    )
    ss = [srow("fast", [1, 1, 1]), srow("down", [], ok=False), srow("tone", [0, 0, 0], synthetic=True)]
    combos = tune.combine(ts, ss)
    assert [c["translator"] for c in combos] == ["steady", "spiky", "float32"]
    assert {c["speaker"] for c in combos} == {"fast"}
    profile, text = tune.build_profile(ts, ss, {"key": "k", "class": "cpu"}, CREATED)
    assert profile is not None and profile["translator"]["options"] == {"dtype": "steady"}
    assert profile["speaker"]["backend"] == "fast"
    assert profile["translator"]["reason"] == f"tuned on 2025-06-01: {text}" and "p50 21 ms" in text
    assert [r["label"] for r in profile["measurements"]["translator"]] == ["float32", "spiky", "steady", "broken"]
    assert "ms" not in profile["measurements"]["translator"][0]


def test_no_profile_without_a_reference() -> None:
    ts = tune.judge([trow("float32", 0.0, [], ok=False, reference=True), trow("fast", 40.0, [1, 1, 1])])
    assert not ts[1]["accepted"] and "no quality reference" in ts[1]["verdict"]
    profile, why = tune.build_profile(ts, [srow("sp", [1, 1, 1])], {"key": "k"}, CREATED)
    assert profile is None and "reference" in why
    profile, why = tune.build_profile(
        tune.judge([trow("float32", 40.0, [1], reference=True)]), [srow("sp", [], ok=False)], {}, CREATED
    )
    assert profile is None and "speaker" in why


def _espeak_or_skip() -> None:
    from backends.registry import speaker_class

    reason = speaker_class("espeak").unavailable_reason(None)
    if reason:
        pytest.skip(f"the round-trip needs a real speaker (espeak): {reason}")


def test_profile_round_trip_through_auto(home: Path, tiny_marian: Path) -> None:
    _espeak_or_skip()
    t = trow("float32", 40.0, [5, 5, 5], reference=True, model=str(tiny_marian))
    t["options"] = {"dtype": "float32", "num_beams": 1}
    ts = tune.judge([t])
    s = srow("espeak", [2, 2, 2])
    hw = hardware.probe(with_runtimes=False)
    profile, text = tune.build_profile(ts, [s], hw, CREATED)
    assert profile is not None
    path = auto.write_profile(hw["key"], profile, header="# measured table\n# | a | b |")
    assert path.read_text().startswith("# measured table\n")
    graph = auto.resolve_graph({}, hw)
    assert graph.translator.source == "profile" and graph.speaker.source == "profile"
    assert graph.translator.backend == "transformers" and graph.translator.model == str(tiny_marian)
    assert graph.translator.options == {"dtype": "float32", "num_beams": 1}
    assert f"tuned on 2025-06-01: {text}" in graph.to_dict()["translator"]["reason"]


def test_tiny_end_to_end_sweep(home: Path, tiny_marian: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _espeak_or_skip()
    argv = [
        "--no-bundled",
        "--model",
        str(tiny_marian),
        "--speaker",
        "espeak",
        "--speaker",
        "tone",
        "--limit",
        "3",
        "--max-tokens",
        "8",
    ]
    assert tune.main([*argv, "--budget-s", "300"]) == 0
    key = hardware.probe(with_runtimes=False)["key"]
    text = auto.profile_path(key).read_text()
    assert text.startswith("# Tuned by `hayaku tune`") and "| translator |" in text
    data = yaml.safe_load(text)
    rows = data["measurements"]["translator"]
    assert len(rows) == 4 and rows[0]["reference"] and rows[0]["ok"] and rows[0]["accepted"]
    assert all(r["ok"] or r["reason"] for r in rows)
    assert data["speaker"]["backend"] == "espeak"  # tone is synthetic: measured, never chosen
    assert {r["label"] for r in data["measurements"]["speaker"]} == {"espeak", "tone"}
    assert data["translator"]["reason"].startswith(f"tuned on {data['created'][:10]}: ")
    assert auto.resolve_graph({}, hardware.probe(with_runtimes=False)).translator.source == "profile"


def test_exhausted_budget_writes_no_profile(home: Path, tiny_marian: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--no-bundled", "--model", str(tiny_marian), "--speaker", "tone", "--limit", "3", "--budget-s", "0"]
    assert tune.main(argv) == 1
    assert "no profile written" in capsys.readouterr().err
    assert not auto.profile_path(hardware.probe(with_runtimes=False)["key"]).exists()
