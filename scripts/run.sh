#!/usr/bin/env bash
# Set up everything on a fresh machine and run the main job.
# Arguments go to `normlab`; without any, runs both studies on the data in
# ../shared/data (or $NORMLAB_SHARED_DATA): the ResNet study (CIFAR-10 JPEG zip)
# and the NER study (GMB CSV zip, GloVe 6B 50d), each ending in a report under
# studies/. The budget is picked for the machine (--budget auto): the study's own
# settings where a GPU is found, else the `cpu` budget (full data, fewer epochs:
# about 4 h + 2 h on a 2-core CPU); each study says which and why and prints an
# estimate of its wall time before it starts. Rerunning resumes where it stopped.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_setup.sh
setup_venv glove
if [ "$#" -gt 0 ]; then
  exec .venv/bin/normlab "$@"
fi
DATA=${NORMLAB_SHARED_DATA:-../shared/data}
.venv/bin/normlab study resnet --data "$DATA/cifar10-jpeg.zip" --out studies/resnet
.venv/bin/normlab study ner --data "$DATA/gmb/ner_dataset.csv.zip" --embeddings glove-6b-50d --out studies/ner
