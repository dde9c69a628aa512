"""SIGTERM on `hayaku serve` (configs/tiny.yaml, slow echo) with requests in flight: they complete with 200."""

from __future__ import annotations

from benchmarks import reliability as rel


def test_sigterm_drains_in_flight_requests() -> None:
    d = rel.drain_run(hayaku=True, requests=3, work_ms=800)
    assert "in_flight_at_sigterm" in d, f"hayaku serve did not start: {d}"
    # all three requests were in flight when SIGTERM came, and all three completed
    assert d["in_flight_at_sigterm"] == 3 and d["in_flight_statuses"] == {"200": 3}, d
    assert d["statuses"] == {"200": 3}, d
    # and then the process exited by itself, cleanly (the drain gives up after 90 s: exit_code stays None)
    assert d["exit_code"] == 0, d
