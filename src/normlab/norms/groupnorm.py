"""Group normalization, from scratch."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ._core import normalize, validate_input

# 8 groups: 2/4/8 channels per group on the CIFAR ResNet's 16/32/64-channel layers. The
# paper's G=32 does not divide 16 channels (and at G=C it is InstanceNorm, its worst
# setting, 28.4% vs 24.1% error in Wu & He's Table 3); their sweeps show G from 4 to 32
# and 2 to 64 channels per group within about 0.6% of each other, so any G between LN (1)
# and IN (C) that divides 16 works: 8 is the largest that keeps at least 2 channels a group.
DEFAULT_GN_GROUPS = 8


class GroupNorm2d(nn.Module):
    r"""Group normalization of NCHW activations (Wu & He, 2018/2020, eqs. 1-2 with S_i of eq. 7).

    The C channels are split into G groups of C/G consecutive channels; per sample b and
    group k, over its C/G * H * W values:

        y_bc = gamma_c * (x_bc - mu_bk) / sqrt(sigma_bk^2 + eps) + beta_c,   c in group k,

    mu_bk and sigma_bk^2 the mean and biased variance, in training and eval alike; per-channel
    affine. Equals ``nn.GroupNorm(G, C)``. G=1 is LayerNorm, G=C InstanceNorm.

    Args:
        num_channels: C.
        num_groups: G, dividing C; default ``DEFAULT_GN_GROUPS`` (8, see there for why).
        eps: added to the variance.

    Shape: input and output (B, C, H, W).
    """

    def __init__(self, num_channels: int, num_groups: int = DEFAULT_GN_GROUPS, eps: float = 1e-5):
        super().__init__()
        if num_groups < 1 or num_channels % num_groups != 0:
            raise ValueError(
                f"expected num_groups to be a positive divisor of num_channels={num_channels}, got num_groups={num_groups}"
            )
        self.num_channels = num_channels
        self.num_groups = num_groups
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))
        # (G, C): row k is 1 on group k's channels. Not saved (a function of G and C).
        self.register_buffer("_member", torch.repeat_interleave(torch.eye(num_groups), num_channels // num_groups, dim=1),
                             persistent=False)

    def _coefs(self, mean: Tensor, var: Tensor, weight: Tensor, bias: Tensor) -> tuple[Tensor, Tensor]:
        # mean, var: (B, C) per cell, or (B, G) per group already (compiled NCHW path).
        # Groups are pooled and broadcast back to channels by matrix products with ``_member``,
        # not by (B, G, C/G) views: under torch.compile a view makes every full-size loop of the
        # forward and backward index the group statistics as [b, c // (C/G)], which inductor's
        # CPU code cannot vectorize; an mm gives (B, C) tensors read contiguously. ResNet-14
        # training step, compiled NHWC, 1 thread: 1.18x -> 0.93x nn.BatchNorm2d's time
        # (benchmarks/README.md). The statistics are the same: law of total variance per group.
        member = self._member.to(mean.dtype)
        if mean.shape[1] == self.num_channels:
            avg = member.t() / (self.num_channels // self.num_groups)  # shape: (C, G)
            mu = mean @ avg  # shape: (B, G)
            sigma2 = (var + (mean - mu @ member).square()) @ avg
        else:
            mu, sigma2 = mean, var
        scale = weight * (torch.rsqrt(sigma2 + self.eps) @ member)  # shape: (B, C)
        return scale, bias - (mu @ member) * scale

    def forward(self, x: Tensor) -> Tensor:
        validate_input(x, self.num_channels, type(self).__name__)
        return normalize(x, self._coefs, self.weight, self.bias, groups=self.num_groups)[0]

    def extra_repr(self) -> str:
        return f"{self.num_channels}, num_groups={self.num_groups}, eps={self.eps}"
