"""Live A/B between variants: which variant serves a request, and what the server saw of each.

Plain Python (no Ray), so the routing and the statistics are tested in a plain process.
The ingress keeps one ``Router`` and one ``ABStats`` per replica; with several ingress
replicas GET /v1/ab reports the replica that answered it (Ray's metrics carry the totals).
"""

from __future__ import annotations

import hashlib
import math
import random
import time
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from backends.base import short_repr
from backends.errors import InvalidRequest
from graph.stage_checks import ConfigError, check_weights


def key_point(key: str) -> float:
    """A client key's fixed point in [0, 1): the same key always lands on the same variant."""
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


class Router:
    """Chooses a variant: forced by name, sticky by client key, or at random by weight."""

    def __init__(
        self, weights: Mapping[str, float], shadows: Mapping[str, float] | None = None, *, seed: int | None = None
    ) -> None:
        self._rng = random.Random(seed)
        self.shadows: dict[str, float] = dict(shadows or {})
        self.set_weights(weights)

    def set_weights(self, weights: Mapping[str, float], where: str = "weights") -> None:
        """Replaces the weights (live, from user_config); unknown or missing names are errors."""
        if hasattr(self, "weights"):
            unknown = set(weights) - set(self.weights)
            if unknown:
                raise ConfigError(f"{where}: unknown variants {sorted(unknown)}; valid: {', '.join(self.weights)}")
            weights = {**self.weights, **weights}
        check_weights(dict(weights), where)
        self.weights: dict[str, float] = {k: float(v) for k, v in weights.items()}
        total = sum(self.weights.values())
        acc = 0.0
        self._cuts: list[tuple[float, str]] = []
        for name, w in self.weights.items():
            if w > 0:
                acc += w / total
                self._cuts.append((acc, name))

    def _at(self, point: float) -> str:
        for cut, name in self._cuts:
            if point < cut:
                return name
        return self._cuts[-1][1]

    def choose(self, key: str | None = None, forced: str | None = None) -> tuple[str, str]:
        """Returns (variant, how) where how is 'forced', 'sticky' or 'random'."""
        if forced:
            if forced not in self.weights:
                raise InvalidRequest(
                    f"variant {short_repr(forced)} does not exist; valid: {', '.join(self.weights)}",
                    status=400,
                    field="variant",
                )
            return forced, "forced"
        if key:
            return self._at(key_point(key)), "sticky"
        return self._at(self._rng.random()), "random"

    def shadow_targets(self) -> list[str]:
        """The shadow variants that get a copy of this request (each by its own rate)."""
        return [name for name, rate in self.shadows.items() if rate > 0 and self._rng.random() < rate]


def mann_whitney(a: Iterable[float], b: Iterable[float]) -> dict[str, float | None]:
    """Two-sided Mann-Whitney U test (normal approximation with tie correction).

    Returns U of ``a``, z, the p-value and the common-language effect size
    P(a > b) + P(a = b)/2; None values when a side has fewer than 2 samples.
    """
    x, y = np.asarray(list(a), dtype=float), np.asarray(list(b), dtype=float)
    n1, n2 = len(x), len(y)
    if n1 < 2 or n2 < 2:
        return {"u": None, "z": None, "p_value": None, "p_a_slower": None}
    allv = np.concatenate([x, y])
    order = np.argsort(allv, kind="mergesort")
    ranks = np.empty(len(allv))
    sorted_v = allv[order]
    i = 0
    ties = 0.0
    while i < len(sorted_v):
        j = i
        while j + 1 < len(sorted_v) and sorted_v[j + 1] == sorted_v[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0 + 1.0
        t = j - i + 1
        ties += t**3 - t
        i = j + 1
    u1 = float(ranks[:n1].sum() - n1 * (n1 + 1) / 2.0)
    n = n1 + n2
    mu = n1 * n2 / 2.0
    sigma = math.sqrt(n1 * n2 / 12.0 * ((n + 1) - ties / (n * (n - 1))))
    if sigma == 0:
        return {"u": u1, "z": 0.0, "p_value": 1.0, "p_a_slower": u1 / (n1 * n2)}
    z = (u1 - mu - math.copysign(0.5, u1 - mu)) / sigma if u1 != mu else 0.0
    p = math.erfc(abs(z) / math.sqrt(2.0))
    return {"u": u1, "z": round(z, 4), "p_value": min(1.0, p), "p_a_slower": round(u1 / (n1 * n2), 4)}


def median_ratio_ci(
    num: Iterable[float],
    den: Iterable[float],
    *,
    paired: bool = False,
    n: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float, float] | None:
    """``median(num) / median(den)`` with a bootstrap confidence interval: ``(ratio, low, high)``.

    ``paired``: ``num[i]`` and ``den[i]`` were measured together (the same text, back to back), so
    each resample draws the same indices from both; otherwise each side is resampled on its own.
    The interval is the central ``level`` of the resampled ratios, widened where needed to hold the
    full-sample ratio (a skewed bootstrap may leave it just outside). None when a side is empty or
    ``median(den)`` is 0; a ValueError when ``paired`` samples differ in length.
    """
    x, y = np.asarray(list(num), dtype=float), np.asarray(list(den), dtype=float)
    if paired and len(x) != len(y):
        raise ValueError(f"need paired samples of one length; got {len(x)} and {len(y)}")
    if len(x) == 0 or len(y) == 0 or np.median(y) == 0:
        return None
    ratio = float(np.median(x) / np.median(y))
    rng = np.random.default_rng(seed)
    if paired:
        idx = rng.integers(0, len(x), size=(n, len(x)))
        mx, my = np.median(x[idx], axis=1), np.median(y[idx], axis=1)
    else:
        mx = np.median(rng.choice(x, (n, len(x))), axis=1)
        my = np.median(rng.choice(y, (n, len(y))), axis=1)
    ratios = mx / np.where(my == 0, np.nan, my)
    lo, hi = np.nanquantile(ratios, [(1 - level) / 2, 1 - (1 - level) / 2])
    return ratio, float(min(lo, ratio)), float(max(hi, ratio))


def _ratio_report(a: Sequence[float], b: Sequence[float]) -> dict[str, float | None]:
    """median(a) / median(b) for GET /v1/ab, with its 95% interval; None values below 2 samples a side."""
    r = median_ratio_ci(a, b) if len(a) >= 2 and len(b) >= 2 else None
    if r is None:
        return {"ratio": None, "ci_low": None, "ci_high": None}
    return {"ratio": round(r[0], 4), "ci_low": round(r[1], 4), "ci_high": round(r[2], 4)}


@dataclass
class _VariantStats:
    window: int
    requests: int = 0
    errors: int = 0
    fallbacks: int = 0
    dropped: int = 0
    latency: deque[float] = field(default_factory=deque)
    stages: dict[str, deque[float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.latency = deque(maxlen=self.window)


def _pct(values: Iterable[float], q: float) -> float | None:
    arr = np.asarray(list(values), dtype=float)
    return round(float(np.percentile(arr, q)), 3) if len(arr) else None


class ABStats:
    """Per-variant request counts, error counts and latest latencies (end to end and per stage)."""

    def __init__(self, variants: Iterable[str], window: int = 5000, shadows: Iterable[str] = ()) -> None:
        self.window = window
        self.shadows = set(shadows)
        self.started = time.time()
        self.v: dict[str, _VariantStats] = {name: _VariantStats(window) for name in [*variants, *self.shadows]}

    def record(
        self, variant: str, ok: bool, total_ms: float, stages: Mapping[str, float] | None = None, fallback: bool = False
    ) -> None:
        s = self.v[variant]
        s.requests += 1
        s.fallbacks += int(fallback)
        if not ok:
            s.errors += 1
            return
        s.latency.append(total_ms)
        for name, ms in (stages or {}).items():
            s.stages.setdefault(name, deque(maxlen=self.window)).append(ms)

    def drop(self, variant: str) -> None:
        self.v[variant].dropped += 1

    def report(self, weights: Mapping[str, float]) -> dict[str, Any]:
        """What GET /v1/ab returns: per variant counts, p50/p95, error rate; pairwise tests vs the first variant."""
        out: dict[str, Any] = {"since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.started)), "variants": {}}
        total = sum(weights.values()) or 1.0
        for name, s in self.v.items():
            out["variants"][name] = {
                "weight": weights.get(name),
                "share_configured": round(weights[name] / total, 4) if name in weights else None,
                "shadow": name in self.shadows,
                "requests": s.requests,
                "errors": s.errors,
                "error_rate": round(s.errors / s.requests, 4) if s.requests else None,
                "fallbacks": s.fallbacks,
                "shadow_dropped": s.dropped,
                "latency_ms": {"n": len(s.latency), "p50": _pct(s.latency, 50), "p95": _pct(s.latency, 95)},
                "stages_ms": {k: {"p50": _pct(d, 50), "p95": _pct(d, 95)} for k, d in s.stages.items()},
            }
        served = sum(s.requests for n, s in self.v.items() if n not in self.shadows)
        for name, s in self.v.items():
            if name not in self.shadows:
                out["variants"][name]["share_observed"] = round(s.requests / served, 4) if served else None
        names = list(self.v)
        comparisons = []
        if len(names) >= 2:
            base = names[0]
            for other in names[1:]:
                a, b = self.v[other].latency, self.v[base].latency
                test = mann_whitney(a, b)
                p = test["p_value"]
                comparisons.append(
                    {
                        "a": other,
                        "b": base,
                        "test": "mann-whitney-u (two-sided)",
                        **test,
                        "median_ratio_a_over_b": _ratio_report(a, b),
                        "significant_at_0.05": bool(p is not None and p < 0.05),
                    }
                )
        out["comparisons"] = comparisons
        return out
