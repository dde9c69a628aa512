"""The tuner: quality rejection, ranking, failures, profile round-trip, and a tiny end-to-end sweep."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from benchmarks import common, tune
from graph import auto, hardware

CREATED = "2025-06-01T12:00:00Z"


@pytest.fixture()
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HAYAKU_HOME", str(tmp_path))
    monkeypatch.setattr(common, "RESULTS", tmp_path / "results")
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


def test_speaker_tiers_keep_espeak_for_last() -> None:
    ts = tune.judge([trow("float32", 40.0, [10, 10, 10], reference=True)])
    espeak = {**srow("espeak", [1, 1, 1]), "backend": "espeak"}
    jtalk = {**srow("openjtalk", [50, 50, 50]), "backend": "openjtalk"}
    combos = tune.combine(ts, [espeak, jtalk])
    assert [c["speaker"] for c in combos] == ["openjtalk", "espeak"]  # 50x slower, still first for Japanese
    assert [c["tier"] for c in combos] == [0, 1]
    profile, _ = tune.build_profile(ts, [espeak, jtalk], {"key": "k"}, CREATED)
    assert profile is not None and profile["speaker"]["backend"] == "openjtalk"
    # espeak is a tier, not a ban: alone, it is chosen
    profile, _ = tune.build_profile(ts, [espeak], {"key": "k"}, CREATED)
    assert profile is not None and profile["speaker"]["backend"] == "espeak"
    assert tune.speaker_tier(espeak, "en") == 0


def test_pick_is_never_slower_than_a_config() -> None:
    ts = tune.judge(
        [
            trow("float32", 40.0, [90, 90, 90], reference=True),
            trow("swept", 40.0, [30, 30, 30]),
            # a config's translator that lost 3 chrF points: the sweep rejects it, the rule still compares it
            trow("shipped", 37.0, [10, 10, 10]),
        ]
    )
    ss = [srow("sp", [5, 5, 5])]
    cfgs = [
        {"config": "cpu.yaml", "ok": True, "translator": "shipped", "speaker": "sp"},
        {"config": "cuda.yaml", "ok": False, "reason": "ConfigError: no GPU"},
    ]
    assert not ts[2]["accepted"]
    profile, text = tune.build_profile(ts, ss, {"key": "k"}, CREATED, cfgs)
    assert profile is not None and profile["translator"]["options"] == {"dtype": "shipped"}
    assert "configs/cpu.yaml" in text and "35 ms" in text  # the sweep's best it beat
    recorded = {c["config"]: c for c in profile["measurements"]["configs"]}
    assert recorded["cpu.yaml"]["p50_ms"] == 15 and recorded["cuda.yaml"]["reason"] == "ConfigError: no GPU"
    # a slower config leaves the sweep's winner in place
    ts[2]["ms"] = [60, 60, 60]
    profile, text = tune.build_profile(ts, ss, {"key": "k"}, CREATED, cfgs)
    assert profile is not None and profile["translator"]["options"] == {"dtype": "swept"}
    assert "configs/" not in text
    # rows left out of the ranking run (ranked False) are no one's figure
    ts[2].update(ms=[1, 1, 1], ranked=False)
    assert tune.config_combos(cfgs, ts, ss) == []


def test_candidates_merge_with_configs() -> None:
    swept = tune.Candidate("translator", "llm", {"runtime": "ctranslate2", "threads": 2}, "m")
    same = tune.Candidate("translator", "llm", {"threads": 2, "runtime": "ctranslate2"}, "m", configs=["fast.yaml"])
    other = tune.Candidate("translator", "llm", {"runtime": "ctranslate2"}, "m", configs=["cpu.yaml"])
    merged = tune.merge([swept], [same, other])
    assert merged == [swept, other] and swept.configs == ["fast.yaml"]
    rows = [{"config": "fast.yaml", "ok": True, "translator": same.key()}]
    tune.name_configs(rows, merged)
    assert rows[0]["translator"] == swept.label


def test_ranking_run_is_interleaved_and_never_partial() -> None:
    from benchmarks.quality import load_corpus

    pairs = load_corpus("en-ja", 4)
    cands = {
        "echo": tune.Candidate("translator", "echo", label="echo"),
        "boom": tune.Candidate("translator", "echo", {"fault": "raise", "fault_every": 3}, label="boom"),
        "tone": tune.Candidate("speaker", "tone", label="tone"),
    }
    rows = [{"role": c.role, "label": k, "ok": True, "ms": [9.0], "p50_ms": 9.0} for k, c in cands.items()]
    say = tune.Progress(60, 1)
    tune.ranking_run(rows[:2], rows[2:], cands, pairs, time.monotonic() + 60, say)
    echo, boom, tone = rows
    assert echo["ranked"] and tone["ranked"] and len(echo["ms"]) == len(tone["ms"]) == len(pairs)
    assert echo["first_ms"] == [9.0]
    # a backend that crashes mid-run is a failed row with the reason; the others go on
    assert not boom["ok"] and not boom["ranked"] and "ranking run" in boom["reason"]
    fresh = [{"role": "translator", "label": "echo", "ok": True, "ms": [9.0], "p50_ms": 9.0}]
    with pytest.raises(tune.OutOfBudget):
        tune.ranking_run(fresh, [], cands, pairs, time.monotonic() - 1, say)
    assert "ranked" not in fresh[0]


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


def _config(path: Path, translator: dict[str, Any], speaker: dict[str, Any]) -> None:
    app = {"name": "hayaku", "import_path": "serve.app:build", "args": {"translator": translator, "speaker": speaker}}
    path.write_text(yaml.safe_dump({"applications": [app]}))


def test_tiny_end_to_end_sweep(
    home: Path, tiny_marian: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _espeak_or_skip()
    configs = tmp_path / "configs"
    configs.mkdir()
    shipped = {"backend": "transformers", "model": str(tiny_marian), "options": {"max_new_tokens": 8}}
    _config(configs / "good.yaml", shipped, {"backend": "espeak"})
    _config(configs / "broken.yaml", {"backend": "nosuch"}, {"backend": "espeak"})
    _config(configs / "test.yaml", {"backend": "echo"}, {"backend": "tone"})
    argv = ["--no-bundled", "--model", str(tiny_marian), "--model", str(tmp_path / "missing-model"),
            "--speaker", "espeak", "--speaker", "tone", "--speaker", "nosuch", "--configs", str(configs),
            "--limit", "3", "--max-tokens", "8"]  # fmt: skip
    assert tune.main([*argv, "--budget-s", "600"]) == 0
    key = hardware.probe(with_runtimes=False)["key"]
    text = auto.profile_path(key).read_text()
    assert text.startswith("# Tuned by `hayaku tune`") and "| translator |" in text and "| config |" in text
    data = yaml.safe_load(text)
    rows = data["measurements"]["translator"]
    # 6 settings per model, twice, plus the config's own setting
    assert len(rows) == 13 and rows[0]["reference"] and rows[0]["ok"] and rows[0]["accepted"]
    missing = [r for r in rows if r["model"] and "missing-model" in r["model"]]
    # the model that does not exist fails all 6 settings, each saying why; every other setting is measured
    assert len(missing) == 6 and all(not r["ok"] and r["reason"] for r in missing), missing
    failed = [(r["model"], r.get("options"), r.get("reason")) for r in rows if not r["ok"] and r not in missing]
    assert not failed, failed
    assert sum("its float32 reference failed" in r["reason"] for r in missing) == 5
    assert any(r.get("configs") == ["good.yaml"] and r["ranked"] for r in rows)
    assert data["speaker"]["backend"] == "espeak"  # tone is synthetic: measured, never chosen
    speakers = {r["label"]: r for r in data["measurements"]["speaker"]}
    assert set(speakers) == {"espeak", "tone", "nosuch"} and "nosuch" in speakers["nosuch"]["reason"]
    cfgs = {c["config"]: c for c in data["measurements"]["configs"]}
    assert cfgs["good.yaml"]["ok"] and cfgs["good.yaml"]["p50_ms"] > 0
    assert not cfgs["broken.yaml"]["ok"] and "nosuch" in cfgs["broken.yaml"]["reason"]
    assert "test backends" in cfgs["test.yaml"]["reason"]
    assert data["translator"]["reason"].startswith(f"tuned on {data['created'][:10]}: ")
    record = (home / "results" / "tune.md").read_text()
    assert "| translator |" in record and "Winner (3 corpus sentences" in record
    graph = auto.resolve_graph({}, hardware.probe(with_runtimes=False))
    assert graph.translator.source == "profile" and data["translator"]["reason"] in graph.translator.reason


def test_exhausted_budget_writes_no_profile(home: Path, tiny_marian: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--no-bundled", "--model", str(tiny_marian), "--speaker", "tone", "--limit", "3", "--budget-s", "0",
            "--no-configs"]  # fmt: skip
    assert tune.main(argv) == 1
    assert "no profile written" in capsys.readouterr().err
    assert "No profile written" in (home / "results" / "tune.md").read_text()
    assert not auto.profile_path(hardware.probe(with_runtimes=False)["key"]).exists()


def test_sweep_file_settings_are_measured_and_bad_ones_are_failed_rows(
    home: Path, tiny_marian: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sweep = tmp_path / "sweep.yaml"
    m = str(tiny_marian)
    sweep.write_text(yaml.safe_dump({
        "translators": [
            {"backend": "ctranslate2", "model": m, "options": {"compute_type": "int8", "max_decoding_length": 8}},
            {"backend": "nosuch", "model": m},
            {"backend": "transformers", "model": m, "options": {"dtype": "float32", "warp_speed": 9}},
            {"backend": "transformers", "model": m, "options": {"dtype": "float32", "max_new_tokens": 8},
             "reference": True},
        ],
        "speakers": [{"backend": "tone"}],
    }))  # fmt: skip
    code = tune.main(["--no-bundled", "--no-configs", "--sweep", str(sweep), "--speaker", "tone", "--limit", "2"])
    assert code == 1  # tone is synthetic, never a pick: the rows are recorded, no profile is written
    assert not auto.profile_path(hardware.probe(with_runtimes=False)["key"]).exists()
    translators, speakers, _ = json.loads((home / "results" / "tune.json").read_text())
    by = {r["label"]: r for r in translators}
    ref = "transformers dtype=float32 max_new_tokens=8"
    assert next(iter(by)) == ref, "the reference is measured first"
    assert by[ref]["ok"] and by[ref]["accepted"]
    assert by["ctranslate2 compute_type=int8 max_decoding_length=8"]["ok"]
    assert not by["nosuch"]["ok"] and "nosuch" in by["nosuch"]["reason"]
    bad = by["transformers dtype=float32 warp_speed=9"]
    assert not bad["ok"] and "warp_speed" in bad["reason"]
    assert [s["label"] for s in speakers] == ["tone"] and speakers[0]["ok"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("- just a list\n", "expected a mapping"),
        ("translators: []\nvoices: []\n", "unknown key(s) voices"),
        ("translators: {backend: llm}\n", "expected a list"),
        ("translators:\n  - {model: x}\n", "translators[0]: expected a mapping with a backend"),
        ("speakers:\n  - {backend: tone, speed: 2}\n", "speakers[0]: unknown key(s) speed"),
        ("speakers:\n  - {backend: tone, options: [1]}\n", "speakers[0].options: expected a mapping"),
        ("translators: [\n", "cannot read it as YAML"),
    ],
)
def test_malformed_sweep_file_is_a_clear_error(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, message: str
) -> None:
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(content)
    assert tune.main(["--no-bundled", "--sweep", str(sweep), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert str(sweep) in err and message in err
