"""The timing loop every benchmark shares: contenders interleaved, medians reported."""

from __future__ import annotations

import statistics
import time
from typing import Callable

import torch


def _sync(device: torch.device | None) -> None:
    if device is not None and device.type == "cuda":
        torch.cuda.synchronize()


def race(fns: dict[str, Callable[[], None]], repeats: int, inner: int = 1,
         device: torch.device | None = None, warmup: int = 2) -> dict[str, float]:
    """Median seconds per call of each fn. Samples alternate between contenders
    (a, b, a, b, ...) so that the load of a shared machine falls on all alike;
    each sample times ``inner`` calls. The warm-up calls also trigger compilation."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    samples: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            _sync(device)
            t0 = time.perf_counter()
            for _ in range(inner):
                fn()
            _sync(device)
            samples[name].append((time.perf_counter() - t0) / inner)
    return {k: statistics.median(v) for k, v in samples.items()}
