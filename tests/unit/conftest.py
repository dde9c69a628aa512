"""Unit tests run in a plain process: none may start Ray (tests that do belong in tests/integration/)."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest


def _ray_up() -> bool:
    ray = sys.modules.get("ray")
    return ray is not None and bool(ray.is_initialized())


@pytest.fixture(autouse=True)
def _no_ray_in_unit_tests() -> Iterator[None]:
    # A whole-suite run (what CI runs) reaches the unit tests with the integration tests' Ray still up:
    # only a unit test that starts Ray itself is at fault.
    before = _ray_up()
    yield
    if not before and _ray_up():
        sys.modules["ray"].shutdown()
        pytest.fail("this unit test started Ray (ray.init, serve.run or serve.start): move it to tests/integration/")
