#!/usr/bin/env bash
# Set up everything on a fresh machine and run the main job.
# Arguments go to `normlab`; without any, trains ResNet-14 with our BatchNorm
# on the CIFAR-10 copy in ../shared/data (or $NORMLAB_DATA).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check torch==2.13.0 -e '.[glove]'
if [ "$#" -eq 0 ]; then
  set -- resnet train --n 2 --norm bn --data "${NORMLAB_DATA:-../shared/data}/cifar10-jpeg.zip" --out runs/resnet-bn
fi
exec .venv/bin/normlab "$@"
