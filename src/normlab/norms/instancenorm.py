"""Instance normalization, from scratch."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ._core import normalize, validate_input


class InstanceNorm2d(nn.Module):
    r"""Instance normalization of NCHW activations (Ulyanov, Vedaldi & Lempitsky, 2016, eq. 2).

    Per sample b and channel c, over the H*W spatial positions:

        y_bc = gamma_c * (x_bc - mu_bc) / sqrt(sigma_bc^2 + eps) + beta_c,

    mu_bc and sigma_bc^2 the mean and biased variance of that one plane, in training and
    eval alike; a learnable per-channel affine and no running statistics, as
    ``nn.InstanceNorm2d(C, affine=True)``.

    Shape: input and output (B, C, H, W), H*W > 1.
    """

    def __init__(self, num_channels: int, eps: float = 1e-5):
        super().__init__()
        self.num_channels = num_channels
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))

    def _coefs(self, mean: Tensor, var: Tensor, weight: Tensor, bias: Tensor) -> tuple[Tensor, Tensor]:
        scale = weight * torch.rsqrt(var + self.eps)  # shape: (B, C)
        return scale, bias - mean * scale

    def forward(self, x: Tensor) -> Tensor:
        validate_input(x, self.num_channels, type(self).__name__)
        if x.shape[2] * x.shape[3] <= 1:
            raise ValueError(f"expected more than 1 spatial element per plane, got input of shape {tuple(x.shape)}")
        return normalize(x, self._coefs, self.weight, self.bias)[0]

    def extra_repr(self) -> str:
        return f"{self.num_channels}, eps={self.eps}"
