"""SIGTERM on `hayaku serve` (configs/tiny.yaml, slow echo) with requests in flight: they complete with 200."""

from __future__ import annotations

from benchmarks import reliability as rel


def test_sigterm_drains_in_flight_requests() -> None:
    d = rel.drain_run(hayaku=True, requests=3, work_ms=800)
    assert not d["problems"], d
    assert d["in_flight_at_sigterm"] == 3 and d["in_flight_statuses"] == {"200": 3}, d
    assert d["exit_code"] == 0, d
