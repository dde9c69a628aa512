"""Offline A/B: the B/A ratio and its interval, and two tiny graphs compared end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from benchmarks import common, compare
from graph.abtest import median_ratio_ci

ROOT = Path(__file__).resolve().parents[2]


def test_summary_ratio_is_b_over_a_with_a_paired_interval() -> None:
    a = [10.0 + (i % 5) for i in range(30)]
    b = [2 * x + (i % 3) for i, x in enumerate(a)]
    runs = {k: {"ms": {s: xs for s in compare.STAGES}, "outputs": ["x"]} for k, xs in (("A", a), ("B", b))}
    st = compare.summarize(runs, ["x"], "A", "B")["stages"]["total"]
    assert st["ratio"] == pytest.approx(25.0 / 12.0)  # B is about twice as slow: B/A
    assert (st["ratio"], *st["ci"]) == median_ratio_ci(b, a, paired=True)
    assert st["ci"][0] <= st["ratio"] <= st["ci"][1]


def test_compare_two_tiny_graphs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(common, "RESULTS", tmp_path / "results")
    config = yaml.safe_load((ROOT / "configs" / "tiny.yaml").read_text())
    config["applications"][0]["args"]["translator"]["options"] = {"prefix": "ですか？ください。ます。"}
    other = tmp_path / "tiny-upper.yaml"
    other.write_text(yaml.safe_dump(config))
    assert compare.main([str(ROOT / "configs" / "tiny.yaml"), str(other), "--limit", "4", "--rounds", "2"]) == 0
    out = tmp_path / "results"
    data = json.loads((out / "compare-tiny-tiny-upper.json").read_text())
    assert data["n"] == 8
    for stage in compare.STAGES:
        st = data["stages"][stage]
        assert set(st) == {"A:tiny", "B:tiny-upper", "ratio", "ci"}
        assert st["ci"][0] <= st["ratio"] <= st["ci"][1]
        assert st["A:tiny"]["p50"] <= st["A:tiny"]["p95"]
    # echo returns English: a Japanese prefix shares character n-grams with the references
    assert data["chrf_delta"] == pytest.approx(data["chrf"]["B:tiny-upper"] - data["chrf"]["A:tiny"])
    assert data["chrf_delta"] > 0
    md = (out / "compare-tiny-tiny-upper.md").read_text()
    assert "B/A median (95% CI)" in md and "chrF vs corpus references" in md
    png = out / "compare-tiny-tiny-upper.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 1000
