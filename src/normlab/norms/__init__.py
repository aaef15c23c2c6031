"""Normalization layers written from scratch, and a registry that builds them by name.

Every layer takes ``num_channels`` first and normalizes NCHW activations, so any of them can
replace BatchNorm in a network: ``make_norm(name, num_channels, **kw)``.

| name       | layer                                   | PyTorch counterpart             |
| ---------- | --------------------------------------- | ------------------------------- |
| `bn`       | ``BatchNorm2d``                         | ``nn.BatchNorm2d``              |
| `in`       | ``InstanceNorm2d``                      | ``nn.InstanceNorm2d(affine=True)`` |
| `bin`      | ``BatchInstanceNorm2d`` (gate ``rho``)  | (none)                          |
| `ln`       | ``LayerNorm2d`` over (C, H, W)          | ``nn.GroupNorm(1, C)``          |
| `gn`       | ``GroupNorm2d`` (``num_groups``)        | ``nn.GroupNorm(G, C)``          |
| `nn`       | no normalization (``nn.Identity``)      |                                 |
| `torch_bn` | PyTorch's ``nn.BatchNorm2d`` itself     | the study's sanity check        |

A name spelled ``"module:Class"`` (``mypkg.norms:RMSNorm2d``) is a user's own layer: the class
is imported when such a name is made, built as ``Class(num_channels=C, **kw)``, and
``check_norm`` tries it before a run starts (``normlab.norms.custom``).
"""

from __future__ import annotations

import inspect
from typing import Callable

from torch import nn

from .batchinstancenorm import BatchInstanceNorm2d, clip_gates_, gate_parameters
from .batchnorm import BatchNorm2d
from .custom import build_norm, check_norm, import_norm, is_norm_spec
from .groupnorm import DEFAULT_GN_GROUPS, GroupNorm2d
from .instancenorm import InstanceNorm2d
from .layernorm import LayerNorm2d


def _identity(num_channels: int) -> nn.Module:
    return nn.Identity()


def _torch_bn(num_channels: int, eps: float = 1e-5, momentum: float | None = 0.1) -> nn.Module:
    return nn.BatchNorm2d(num_channels, eps=eps, momentum=momentum)


_REGISTRY: dict[str, Callable[..., nn.Module]] = {
    "bn": BatchNorm2d,
    "in": InstanceNorm2d,
    "bin": BatchInstanceNorm2d,
    "ln": LayerNorm2d,
    "gn": GroupNorm2d,
    "nn": _identity,
    "torch_bn": _torch_bn,
}

NORM_NAMES: tuple[str, ...] = tuple(_REGISTRY)


def make_norm(name: str, num_channels: int, **kw) -> nn.Module:
    """Build the normalization layer called ``name`` for ``num_channels`` channels.

    Args:
        name: one of ``NORM_NAMES``, or a user's layer as ``"module:Class"`` (see ``build_norm``).
        num_channels: C of the (B, C, H, W) activations it will normalize.
        kw: the layer's options (e.g. ``num_groups`` for ``gn``, ``eps``, ``momentum``).

    Raises:
        ValueError: for an unknown name, a non-positive channel count, or an option the
            layer does not take (for a user's layer: the errors of ``build_norm``).
    """
    if name not in _REGISTRY and not is_norm_spec(name):
        raise ValueError(f"expected a normalization name in {', '.join(NORM_NAMES)} or a 'module:Class' "
                         f"import path, got {name!r}")
    if not isinstance(num_channels, int) or num_channels < 1:
        raise ValueError(f"expected a positive integer num_channels, got {num_channels!r}")
    if name not in _REGISTRY:
        return build_norm(name, num_channels, **kw)
    factory = _REGISTRY[name]
    options = [p for p in inspect.signature(factory).parameters if p != "num_channels"]
    unknown = sorted(set(kw) - set(options))
    if unknown:
        raise ValueError(
            f"expected options for {name!r} among ({', '.join(options) or 'none'}), got {', '.join(unknown)}"
        )
    return factory(num_channels, **kw)


__all__ = [
    "DEFAULT_GN_GROUPS",
    "NORM_NAMES",
    "BatchInstanceNorm2d",
    "BatchNorm2d",
    "GroupNorm2d",
    "InstanceNorm2d",
    "LayerNorm2d",
    "build_norm",
    "check_norm",
    "clip_gates_",
    "gate_parameters",
    "import_norm",
    "is_norm_spec",
    "make_norm",
]
