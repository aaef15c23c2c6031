"""Layer normalization for conv nets, from scratch."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ._core import normalize, pool_stats, validate_input


class LayerNorm2d(nn.Module):
    r"""Layer normalization of NCHW activations (Ba, Kiros & Hinton, 2016, eq. 4), as the
    GroupNorm paper applies it to conv nets (Wu & He 2018, Fig. 2: statistics over C, H, W).

    Per sample b, over all its C*H*W values:

        y_bc = gamma_c * (x_bc - mu_b) / sqrt(sigma_b^2 + eps) + beta_c,

    mu_b and sigma_b^2 the mean and biased variance, in training and eval alike, with a
    per-channel (not per-element) affine. Equals ``nn.GroupNorm(1, C)``.

    Shape: input and output (B, C, H, W).
    """

    def __init__(self, num_channels: int, eps: float = 1e-5):
        super().__init__()
        self.num_channels = num_channels
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))

    def _coefs(self, mean: Tensor, var: Tensor, weight: Tensor, bias: Tensor) -> tuple[Tensor, Tensor]:
        # mean, var: (B, C) per cell, or (B, 1) per sample already (compiled path)
        mu, sigma2 = pool_stats(mean, var, dim=1)  # shape: (B, 1)
        scale = weight * torch.rsqrt(sigma2 + self.eps)  # shape: (B, C)
        return scale, bias - mu * scale

    def forward(self, x: Tensor) -> Tensor:
        validate_input(x, self.num_channels, type(self).__name__)
        return normalize(x, self._coefs, self.weight, self.bias, groups=1)[0]

    def extra_repr(self) -> str:
        return f"{self.num_channels}, eps={self.eps}"
