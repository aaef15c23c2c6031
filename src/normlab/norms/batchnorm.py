"""Batch normalization, from scratch."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ._core import affine, normalize, pool_stats, validate_input


def update_running_stats(module: nn.Module, mean: Tensor, var: Tensor, count: int) -> None:
    """Fold one batch's per-channel mean and biased variance (C,) into the running averages.

    As ``nn.BatchNorm2d``: the running variance is the *unbiased* one (var * n / (n - 1)),
    the factor is ``momentum``, or 1 / num_batches_tracked (a cumulative average) when
    ``momentum`` is None.
    """
    with torch.no_grad():
        module.num_batches_tracked.add_(1)
        if module.momentum is None:
            factor = 1.0 / module.num_batches_tracked.item()
        else:
            factor = module.momentum
        module.running_mean.lerp_(mean.to(module.running_mean.dtype), factor)
        unbiased = var * (count / (count - 1))
        module.running_var.lerp_(unbiased.to(module.running_var.dtype), factor)


class BatchNorm2d(nn.Module):
    r"""Batch normalization of NCHW activations (Ioffe & Szegedy, 2015, Algorithm 1).

    In training, per channel c over the batch and spatial positions (n = B*H*W values):

        y = gamma_c * (x - mu_c) / sqrt(sigma_c^2 + eps) + beta_c,

    mu_c and sigma_c^2 the batch mean and biased variance. Running averages
    (running_mean, and running_var of the *unbiased* batch variance, factor ``momentum``)
    replace the batch statistics in eval mode, as in ``nn.BatchNorm2d``, whose parameter
    and buffer names (weight, bias, running_mean, running_var, num_batches_tracked) this
    layer shares, so state dicts are interchangeable.

    Args:
        num_channels: C.
        eps: added to the variance.
        momentum: running-average factor; None for a cumulative average.

    Shape: input and output (B, C, H, W); in training B*H*W must exceed 1.
    """

    def __init__(self, num_channels: int, eps: float = 1e-5, momentum: float | None = 0.1):
        super().__init__()
        self.num_channels = num_channels
        self.eps = eps
        self.momentum = momentum
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))
        self.register_buffer("running_mean", torch.zeros(num_channels))
        self.register_buffer("running_var", torch.ones(num_channels))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def _coefs(self, mean: Tensor, var: Tensor, weight: Tensor, bias: Tensor) -> tuple[Tensor, Tensor]:
        # mean, var: (B, C) per cell -> batch statistics (1, C) -> scale, shift (B, C)
        mu, sigma2 = pool_stats(mean, var, dim=0)
        scale = weight * torch.rsqrt(sigma2 + self.eps)  # shape: (1, C)
        shift = bias - mu * scale
        return scale.expand_as(mean), shift.expand_as(mean)

    def forward(self, x: Tensor) -> Tensor:
        validate_input(x, self.num_channels, type(self).__name__)
        if not self.training:
            scale = self.weight * torch.rsqrt(self.running_var + self.eps)  # shape: (C,)
            return affine(x, scale, self.bias - self.running_mean * scale)
        b, _, h, w = x.shape
        if b * h * w <= 1:
            raise ValueError(f"expected more than 1 value per channel when training, got input of shape {tuple(x.shape)}")
        y, mean, var = normalize(x, self._coefs, self.weight, self.bias)
        mu, sigma2 = pool_stats(mean, var, dim=0)
        update_running_stats(self, mu.view(-1), sigma2.view(-1), b * h * w)
        return y

    def extra_repr(self) -> str:
        return f"{self.num_channels}, eps={self.eps}, momentum={self.momentum}"
