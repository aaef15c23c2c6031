"""What the machine has, and whether torch can use it: GPUs for the studies' defaults.

``python -m normlab.hardware`` prints what torch sees and what the driver sees, and exits
with status 3 when the driver (``nvidia-smi``) sees GPUs that torch cannot use (a CPU build
of torch on a GPU machine, or a driver older than torch's CUDA): the set-up scripts run it
right after installing torch, so that a GPU machine never runs the CPU budget by mistake.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

# Runs that share one GPU by default (``--jobs`` on GPUs, Ray's fraction of a GPU per run).
# Measured on an H200 (benchmarks/results/gpu-h200-2026-11-30.json, `sharing`): K processes
# training ResNet-14 together reached 1.80x / 3.56x / 3.55x the batch-128 throughput of one
# at K = 2 / 4 / 8, and 2.0x / 3.9x / 7.8x at batch 8: 4 fills the GPU for batch 128.
RUNS_PER_GPU = 4
# Aggregate speed-up of K runs sharing one GPU over one alone (batch 128, the same measurement).
SHARING_SPEEDUP = {1: 1.0, 2: 1.80, 4: 3.56, 8: 3.55}


def driver_gpu_count(timeout: float = 10.0) -> int:
    """GPUs that ``nvidia-smi -L`` lists (0 without nvidia-smi, or when it fails)."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return 0
    try:
        r = subprocess.run([exe, "-L"], capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.SubprocessError):
        return 0
    if r.returncode != 0:
        return 0
    return sum(1 for line in r.stdout.splitlines() if line.startswith("GPU "))


def torch_gpu_count(device: str = "auto") -> int:
    """GPUs a run on ``device`` would use: 0 for cpu/mps or without CUDA, 1 for ``cuda:N``,
    every visible GPU for ``auto`` and ``cuda``."""
    if device not in ("auto", "cuda") and not re.fullmatch(r"cuda:\d+", device):
        return 0
    try:
        import torch

        if not torch.cuda.is_available():
            return 0
        visible = torch.cuda.device_count()
    except Exception:  # noqa: BLE001 - a torch without CUDA support
        return 0
    if device.startswith("cuda:"):
        return 1 if int(device.split(":")[1]) < visible else 0
    return visible


def unusable_gpus_message() -> str | None:
    """A one-line explanation when the driver sees GPUs that torch cannot use, else None."""
    seen = driver_gpu_count()
    if seen == 0 or torch_gpu_count("cuda") > 0:
        return None
    import torch

    build = torch.version.cuda and f"CUDA {torch.version.cuda} build" or "CPU-only build"
    return (f"nvidia-smi sees {seen} GPU(s) but torch {torch.__version__} ({build}) cannot use them: "
            "install a CUDA build of torch (remove .venv and rerun scripts/run.sh, which installs one where "
            "nvidia-smi finds a GPU), or check that the driver supports this CUDA version")


def main() -> int:
    import torch

    message = unusable_gpus_message()
    print(f"torch {torch.__version__} (CUDA {torch.version.cuda or 'none'}): {torch_gpu_count('cuda')} usable GPU(s); "
          f"nvidia-smi: {driver_gpu_count()} GPU(s)")
    if message:
        print(f"error: {message}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
