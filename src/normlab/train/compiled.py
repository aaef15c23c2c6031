"""Running a model as fast as the device allows, and still where it cannot compile.

``CompiledModel`` runs ``torch.compile`` of the model when asked and working, else the
eager model (``compile="auto"`` falls back with one warning); ``compile_mode`` picks CUDA
graphs for small batches on a GPU; ``autocast`` is the bfloat16 forward pass of ``--bf16``.
"""

from __future__ import annotations

import contextlib
import warnings
from typing import Any, Callable

import torch
from torch import nn


def autocast(bf16: bool, device: torch.device):
    """bfloat16 autocast of the forward pass when ``bf16``, else nothing."""
    if bf16:
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


# Batches up to this size train under CUDA graphs on a GPU (``torch.compile(mode="reduce-overhead")``):
# a batch-8 step of ResNet-14 is bound by kernel launches, 27.6 ms eager and 4.3 ms with CUDA graphs
# on an H200 (benchmarks/results/gpu-h200-2026-11-30.json); at batch 128 plain compile is as fast.
CUDA_GRAPHS_MAX_BATCH = 32


def compile_mode(device: torch.device, batch_size: int) -> str:
    """torch.compile's mode for a run: CUDA graphs for small batches on a GPU, else the default."""
    return "reduce-overhead" if device.type == "cuda" and batch_size <= CUDA_GRAPHS_MAX_BATCH else "default"


class CompiledModel:
    """The module the loop calls: compiled when asked and working, else the eager model.

    With ``compile="auto"`` the first call in each mode (train/eval) runs under a
    guard: if torch.compile cannot compile (no C++ compiler, no backend, an
    unsupported op), the run warns once and continues eagerly, from the same
    state (a failed call changes no weights: the optimizer steps only after it).
    """

    def __init__(self, model: nn.Module, mode: str, log: Callable[..., None], channels_last: bool,
                 auto_layout: bool = False, torch_mode: str = "default") -> None:
        self.model, self.mode, self.log = model, mode, log
        # The layout in use; with ``auto_layout`` it falls back to NCHW with eager mode.
        self.channels_last, self.auto_layout = channels_last, auto_layout
        self.compiled = None
        self.cuda_graphs = mode != "off" and torch_mode == "reduce-overhead"
        if mode != "off":
            self.compiled = torch.compile(model, mode=torch_mode)
        self._proved: set[str] = set()

    @property
    def is_compiled(self) -> bool:
        return self.compiled is not None

    def guarded(self, fn: Callable[[nn.Module], Any], kind: str) -> Any:
        """Run ``fn(module)``; on the first use of each ``kind`` (train, eval), fall back to eager if compiling fails."""
        if self.compiled is None:
            return fn(self.model)
        if kind in self._proved:
            return fn(self.compiled)
        try:
            result = fn(self.compiled)
        except Exception as e:  # noqa: BLE001 - any compiler failure
            if self.mode == "on":
                raise ValueError(f"--compile on: torch.compile failed ({type(e).__name__}: {str(e)[:300]}); "
                                 "use --compile auto or off") from e
            first = str(e).splitlines()[0][:200] if str(e) else ""
            msg = (f"warning: torch.compile is not usable here ({type(e).__name__}: {first}); "
                   "training in eager mode, several times slower (on a GPU about 4x for batch 128 and 6x for "
                   "batch 8: benchmarks/README.md); --compile on makes this an error")
            warnings.warn(msg, RuntimeWarning, stacklevel=2)
            self.log(msg, err=True, echo=False)  # the warning itself is shown once, by warnings
            self.compiled, self.cuda_graphs = None, False
            for p in self.model.parameters():
                p.grad = None
            if self.auto_layout and self.channels_last:
                self.channels_last = False
                self.model.to(memory_format=torch.contiguous_format)
            return fn(self.model)
        self._proved.add(kind)
        return result
