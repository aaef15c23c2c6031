"""Your own normalization layer for ``normlab resnet train --norm examples.rmsnorm:RMSNorm2d``
(run from the repository root with ``PYTHONPATH=.``; docs/resnet.md, "Your own normalization layer")."""

import torch
from torch import nn


class RMSNorm2d(nn.Module):
    r"""RMSNorm (Zhang & Sennrich 2019, eq. 4) of NCHW activations, per sample over (C, H, W):

        y_bchw = gamma_c * x_bchw / sqrt(mean_{c,h,w}(x_b^2) + eps) + beta_c

    LayerNorm (``--norm ln``) without the mean subtraction; per-channel gain and bias.
    Shape: input and output (B, C, H, W).
    """

    def __init__(self, num_channels: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(num_channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(num_channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ms = x.square().mean(dim=(1, 2, 3), keepdim=True)  # shape: (B, 1, 1, 1)
        return x * torch.rsqrt(ms + self.eps) * self.weight + self.bias
