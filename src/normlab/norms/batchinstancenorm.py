"""Batch-instance normalization, from scratch, and the helpers its gate needs in training."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ._core import normalize, pool_stats, validate_input
from .batchnorm import update_running_stats


class BatchInstanceNorm2d(nn.Module):
    r"""Batch-instance normalization of NCHW activations (Nam & Kim, NeurIPS 2018, eq. 5).

    A per-channel gate rho_c mixes the batch- and the instance-normalized response:

        y_bc = gamma_c * (rho_c * xhat^BN_bc + (1 - rho_c) * xhat^IN_bc) + beta_c,

    xhat^BN normalized with the channel's batch statistics in training and running averages
    in eval (exactly as ``BatchNorm2d``: momentum, unbiased running variance), xhat^IN with
    the plane's own statistics always. As in the authors' code, rho starts at 1 (pure BN) and
    must be kept in [0, 1] by ``clip_gates_`` after every optimizer step; it should get no
    weight decay (``gate_parameters`` finds the gates for a separate parameter group; the
    authors also give them a 10x learning rate). Both halves fold into one per-plane scale
    and shift, so this costs the same full-size passes as BatchNorm.

    Args:
        num_channels: C.
        eps: added to both variances.
        momentum: running-average factor of the BN half; None for a cumulative average.

    Shape: input and output (B, C, H, W), H*W > 1 (the instance half needs it).
    """

    def __init__(self, num_channels: int, eps: float = 1e-5, momentum: float | None = 0.1):
        super().__init__()
        self.num_channels = num_channels
        self.eps = eps
        self.momentum = momentum
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))
        self.rho = nn.Parameter(torch.ones(num_channels))
        self.register_buffer("running_mean", torch.zeros(num_channels))
        self.register_buffer("running_var", torch.ones(num_channels))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def _mix(self, mean, var, mu_bn, rstd_bn, weight, bias, rho):
        # mean, var: (B, C) per plane; mu_bn, rstd_bn: (1, C); weight, bias, rho: (C,)
        rstd_in = torch.rsqrt(var + self.eps)  # shape: (B, C)
        gate_in = 1.0 - rho
        scale = weight * (rho * rstd_bn + gate_in * rstd_in)
        shift = bias - weight * (rho * mu_bn * rstd_bn + gate_in * mean * rstd_in)
        return scale, shift

    def _coefs_train(self, mean: Tensor, var: Tensor, weight: Tensor, bias: Tensor, rho: Tensor):
        mu, sigma2 = pool_stats(mean, var, dim=0)  # shape: (1, C)
        return self._mix(mean, var, mu, torch.rsqrt(sigma2 + self.eps), weight, bias, rho)

    def _coefs_eval(self, mean: Tensor, var: Tensor, weight: Tensor, bias: Tensor, rho: Tensor):
        rstd_bn = torch.rsqrt(self.running_var + self.eps).view(1, -1)
        return self._mix(mean, var, self.running_mean.view(1, -1), rstd_bn, weight, bias, rho)

    def forward(self, x: Tensor) -> Tensor:
        validate_input(x, self.num_channels, type(self).__name__)
        b, _, h, w = x.shape
        if h * w <= 1:
            raise ValueError(f"expected more than 1 spatial element per plane, got input of shape {tuple(x.shape)}")
        if not self.training:
            return normalize(x, self._coefs_eval, self.weight, self.bias, self.rho)[0]
        y, mean, var = normalize(x, self._coefs_train, self.weight, self.bias, self.rho)
        mu, sigma2 = pool_stats(mean, var, dim=0)
        update_running_stats(self, mu.view(-1), sigma2.view(-1), b * h * w)
        return y

    def extra_repr(self) -> str:
        return f"{self.num_channels}, eps={self.eps}, momentum={self.momentum}"


def gate_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Every BatchInstanceNorm2d gate rho in ``model``, for their own optimizer parameter group."""
    return [m.rho for m in model.modules() if isinstance(m, BatchInstanceNorm2d)]


def clip_gates_(model: nn.Module) -> None:
    """Clamp every BatchInstanceNorm2d gate in ``model`` to [0, 1], in place; call after each optimizer step."""
    with torch.no_grad():
        for rho in gate_parameters(model):
            rho.clamp_(0.0, 1.0)
