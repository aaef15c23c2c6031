# Sourced by run.sh and test.sh: create .venv and install torch 2.13.0 that can use this
# machine's GPU, then normlab with the extras named in $1. Says which torch it got.
#
# Where nvidia-smi lists a GPU, torch comes from PyPI, whose Linux x86_64 wheel is the CUDA
# build (and a CPU build left in an earlier .venv is replaced); elsewhere the plain pin, which
# on our CI machines takes the CPU build from the machine's disk (a multi-GB CUDA download
# otherwise). `python -m normlab.hardware` then stops the script (status 3) when the driver
# sees a GPU that this torch cannot use, with a one-line message saying how to fix it.
setup_venv() {
  local extras=$1 py=${PYTHON:-python3} gpus=0
  [ -x .venv/bin/python ] || "$py" -m venv .venv
  if command -v nvidia-smi >/dev/null 2>&1; then
    gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU ' || true)
  fi
  local pip=(.venv/bin/pip install -q --disable-pip-version-check)
  if [ "$gpus" -gt 0 ]; then
    if .venv/bin/python -c 'import torch, sys; sys.exit(0 if "+cpu" in torch.__version__ else 1)' 2>/dev/null; then
      echo "setup: nvidia-smi lists $gpus GPU(s): replacing the CPU build of torch in .venv with the CUDA build"
      "${pip[@]}" --force-reinstall --no-deps --index-url https://pypi.org/simple torch==2.13.0
    fi
    "${pip[@]}" --extra-index-url https://pypi.org/simple torch==2.13.0 -e ".[$extras]"
  else
    "${pip[@]}" torch==2.13.0 -e ".[$extras]"
  fi
  echo -n "setup: "
  .venv/bin/python -m normlab.hardware
}
