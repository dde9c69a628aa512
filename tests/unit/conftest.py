"""Unit tests run in a plain process: none may start Ray (tests that do belong in tests/integration/)."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _no_ray_in_unit_tests() -> Iterator[None]:
    yield
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        ray.shutdown()
        pytest.fail("this unit test started Ray (ray.init, serve.run or serve.start): move it to tests/integration/")
