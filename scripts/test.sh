#!/usr/bin/env bash
# Set up everything on a fresh machine and run the test suite.
# Creates .venv, installs the CPU build of torch 2.13.0 (pinned: a plain
# `torch` would pull a multi-GB CUDA build), normlab with its test extras,
# then runs pytest. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check torch==2.13.0 -e '.[test,glove]'
exec .venv/bin/python -m pytest -q "$@"
