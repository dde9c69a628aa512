"""A/B routing and statistics (graph.abtest) and the variants part of the config, in a plain process."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import pytest

from backends.errors import InvalidRequest
from graph.abtest import ABStats, Router, key_point, mann_whitney, median_ratio_ci
from graph.config import ConfigError, deployment_names, parse_args, variant_list

ECHO = {"backend": "echo"}
TONE = {"backend": "tone"}


def _args(variants: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"translator": ECHO, "speaker": TONE, "variants": variants, **extra}


def test_random_shares_follow_weights() -> None:
    router = Router({"a": 0.7, "b": 0.3}, seed=7)
    counts = Counter(router.choose()[0] for _ in range(1000))
    assert abs(counts["a"] / 1000 - 0.7) <= 0.03
    assert abs(counts["b"] / 1000 - 0.3) <= 0.03


def test_sticky_keys_always_get_the_same_variant_and_split_by_weight() -> None:
    router = Router({"a": 0.7, "b": 0.3})
    first = {f"user-{i}": router.choose(f"user-{i}")[0] for i in range(2000)}
    for _ in range(3):
        assert all(router.choose(k) == (v, "sticky") for k, v in first.items())
    share_a = sum(v == "a" for v in first.values()) / len(first)
    assert abs(share_a - 0.7) <= 0.03
    # Another router (another replica, a restart) agrees: the key's hash decides, not process state.
    other = Router({"a": 0.7, "b": 0.3}, seed=99)
    assert all(other.choose(k)[0] == v for k, v in first.items())
    assert 0 <= key_point("x") < 1


def test_forced_variant_and_unknown_one() -> None:
    router = Router({"a": 1, "b": 0})
    assert router.choose(forced="b") == ("b", "forced")
    assert all(router.choose()[0] == "a" for _ in range(50)), "a zero weight never serves unless forced"
    with pytest.raises(InvalidRequest, match="variant 'c' does not exist; valid: a, b") as err:
        router.choose(forced="c")
    assert err.value.status == 400


def test_live_weights_are_validated() -> None:
    router = Router({"a": 0.5, "b": 0.5})
    router.set_weights({"a": 0.0})
    assert router.weights == {"a": 0.0, "b": 0.5}
    assert {router.choose()[0] for _ in range(50)} == {"b"}
    with pytest.raises(ConfigError, match="unknown variants \\['z'\\]"):
        router.set_weights({"z": 1})
    with pytest.raises(ConfigError, match="sum to 0"):
        router.set_weights({"b": 0})
    with pytest.raises(ConfigError, match=">= 0"):
        router.set_weights({"a": -1})
    assert router.weights == {"a": 0.0, "b": 0.5}, "a refused change leaves the weights as they were"


def test_shadow_targets_by_rate() -> None:
    router = Router({"a": 1}, {"s": 0.25}, seed=3)
    hits = sum(bool(router.shadow_targets()) for _ in range(2000))
    assert 0.2 < hits / 2000 < 0.3


def test_mann_whitney_matches_the_textbook_values() -> None:
    # U = 0 for fully separated samples; the asymptotic two-sided p with continuity correction
    # for n1 = n2 = 3 is 0.0809 (as scipy.stats.mannwhitneyu(method="asymptotic") gives).
    r = mann_whitney([1, 2, 3], [4, 5, 6])
    assert r["u"] == 0.0
    assert r["p_value"] == pytest.approx(0.0809, abs=5e-4)
    same = mann_whitney([1, 2, 3, 4], [1, 2, 3, 4])
    assert same["p_value"] == pytest.approx(1.0)
    assert mann_whitney([1.0], [2.0, 3.0])["p_value"] is None
    rng = np.random.default_rng(0)
    slow, fast = rng.normal(120, 10, 300), rng.normal(100, 10, 300)
    sig = mann_whitney(slow, fast)
    assert sig["p_value"] is not None and sig["p_value"] < 1e-6
    assert sig["p_a_slower"] is not None and sig["p_a_slower"] > 0.8


def test_median_ratio_ci_covers_the_true_ratio() -> None:
    rng = np.random.default_rng(1)
    r = median_ratio_ci(rng.normal(200, 5, 400), rng.normal(100, 5, 400))  # median(num) / median(den)
    assert r is not None
    ratio, lo, hi = r
    assert lo < 2.0 < hi and lo <= ratio <= hi
    assert hi - lo < 0.1
    assert median_ratio_ci([1.0, 2.0], []) is None
    assert median_ratio_ci([1.0, 2.0], [0.0, 0.0, 1.0]) is None  # median(den) is 0


def test_paired_median_ratio_ci_brackets_the_estimate() -> None:
    a = [10.0 + (i % 5) for i in range(30)]
    b = [2 * x + (i % 3) for i, x in enumerate(a)]  # b[i] timed together with a[i]
    r = median_ratio_ci(b, a, paired=True)
    assert r is not None
    ratio, lo, hi = r
    assert ratio == pytest.approx(25.0 / 12.0)
    assert lo <= ratio <= hi and lo > 1.5 and hi < 3.0
    assert median_ratio_ci(b, a, paired=True) == (ratio, lo, hi)  # fixed seed
    assert median_ratio_ci(a, a, paired=True) == (1.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="paired"):
        median_ratio_ci(b[:10], a, paired=True)


def test_stats_report_counts_errors_and_compares_variants() -> None:
    stats = ABStats(["a", "b"], window=100, shadows=["s"])
    for i in range(60):
        stats.record("a", True, 100 + i % 7, {"translate": 40.0})
        stats.record("b", True, 140 + i % 5)
    stats.record("b", False, 0.0)
    stats.record("s", True, 80.0)
    stats.drop("s")
    rep = stats.report({"a": 0.5, "b": 0.5, "s": 1.0})
    a, b, s = (rep["variants"][k] for k in "abs")
    assert a["requests"] == 60 and a["errors"] == 0 and a["latency_ms"]["n"] == 60
    assert b["requests"] == 61 and b["errors"] == 1 and b["error_rate"] == pytest.approx(1 / 61, abs=1e-4)
    assert a["stages_ms"]["translate"]["p50"] == 40.0
    assert a["share_observed"] + b["share_observed"] == pytest.approx(1.0)
    assert s["shadow"] and s["shadow_dropped"] == 1 and "share_observed" not in s
    cmp_b = next(c for c in rep["comparisons"] if c["a"] == "b")
    assert cmp_b["b"] == "a" and cmp_b["significant_at_0.05"]
    assert cmp_b["median_ratio_a_over_b"]["ratio"] > 1.3


def test_window_keeps_only_the_latest() -> None:
    stats = ABStats(["a"], window=10)
    for i in range(100):
        stats.record("a", True, float(i))
    assert stats.report({"a": 1})["variants"]["a"]["latency_ms"]["p50"] == pytest.approx(94.5)


@pytest.mark.parametrize(
    ("variants", "needle"),
    [
        ([{"name": "a"}, {"name": "a"}], "variants[1].name: duplicate variant name 'a'"),
        ([{"name": "a", "weight": 0}, {"name": "b", "weight": 0}], "sum to 0"),
        ([{"name": "a", "weight": -1}], "variants.0.weight"),
        ([{"name": "a", "shadow": True}], "every variant is a shadow"),
        ([{"name": "a"}, {"name": "s", "shadow": True, "weight": 2}], "fraction of requests"),
        ([{"name": "bad name"}], "variants.0.name"),
        ([{"name": "a", "speaker": {"backend": "nope"}}], "variants[0].speaker.backend: unknown speaker backend"),
        ([{"name": "a", "translator": {"backend": "echo", "options": {"x": 1}}}], "variants[0].translator.options"),
    ],
)
def test_bad_variants_name_the_field(variants: list[dict[str, Any]], needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_args(_args(variants))
    assert needle in str(err.value)


def test_variants_share_deployments_when_their_stages_match() -> None:
    args = parse_args(
        _args([{"name": "a"}, {"name": "b", "speaker": {"backend": "tone", "voice": "square"}}, {"name": "c"}])
    )
    assert deployment_names(args) == ("Ingress", "Translator", "Speaker", "Speaker_b")
    filled = variant_list(args)
    assert [v.name for v in filled] == ["a", "b", "c"]
    assert all(v.translator == args.translator for v in filled)
    assert parse_args({"translator": ECHO, "speaker": TONE}).variants == []
    assert [v.name for v in variant_list(parse_args({"translator": ECHO, "speaker": TONE}))] == ["default"]
