#!/usr/bin/env bash
# Installs everything (scripts/setup.sh) and runs the tests: first the fast suite on tiny
# models the tests build, then the `slow` suite on the real offline models (built once by
# `hayaku models prepare`, a few minutes on a fresh machine).
#   scripts/test.sh            everything (what CI runs)
#   scripts/test.sh --fast     only `pytest -m "not slow"`
#   extra arguments after --fast/-- go to pytest
set -euo pipefail
cd "$(dirname "$0")/.."
fast=0
if [ "${1:-}" = "--fast" ]; then fast=1; shift; fi
if [ "${1:-}" = "--" ]; then shift; fi

scripts/setup.sh
.venv/bin/python -m pytest -m "not slow" "$@"
if [ "$fast" = 0 ]; then
  .venv/bin/hayaku models prepare
  # The three-node cluster suite (tests/cluster) takes 5-15 minutes on 2 cores: run it with
  #   .venv/bin/pytest tests/cluster -m slow
  .venv/bin/python -m pytest -m "slow and not cluster" "$@"
fi
