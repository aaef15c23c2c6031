"""The one computation every normalization here shares, done in few full-size passes.

Every layer in this package normalizes NCHW activations over a union of *cells*, a cell
being one (sample, channel) plane of H*W values: BatchNorm pools a channel's cells over the
batch, InstanceNorm uses each cell alone, LayerNorm pools all cells of a sample, GroupNorm
the cells of a channel group. Since all cells hold the same number of values, the statistics
of a union follow exactly from the per-cell mean m and biased variance v (law of total
variance):

    mu = mean(m),    sigma^2 = mean(v) + mean((m - mu)^2)

so the per-cell statistics (a mean pass, then a squared-deviation pass, over H, W) give
every statistic, and the rest is arithmetic on (B, C) tensors. A layer then reduces to a
per-cell scale and shift,

    y = x * scale[b, c] + shift[b, c],

one fused multiply-add pass (``torch.addcmul``), whatever the normalization (BIN's two
halves fold into the same pair).

Eager mode (``_eager_forward``, ``_CellAffine``): on this project's 2-core CPU a fresh
full-size tensor costs more than a pass over one, so the forward allocates only y, and the
backward only dx: two reductions (sum of g and of g*x per cell), then dx = g*scale + x*q + r
in place, back-propagating through the small (B, C)-sized graph of scale/shift with
``torch.autograd.grad`` (autograd through the plain ops takes about a dozen full-size
passes and allocations). Under ``torch.compile`` plain differentiable ops are traced
instead, with each group's statistics taken in one reduction (``group_stats``), so the
compiler sees and fuses the whole graph. Timings: benchmarks/README.md.
"""

from __future__ import annotations

from typing import Callable, Literal, Union

import torch
from torch import Tensor

# Maps per-cell (mean, var), each (B, C), and the layer's parameters to (scale, shift), each (B, C).
CoefFn = Callable[..., "tuple[Tensor, Tensor]"]
Groups = Union[Literal["cell"], int]

_is_compiling = getattr(getattr(torch, "compiler", None), "is_compiling", None) or torch._dynamo.is_compiling


def validate_input(x: Tensor, num_channels: int, layer: str) -> None:
    """Refuse anything but an NCHW tensor with ``num_channels`` channels."""
    if x.ndim != 4:
        raise ValueError(f"expected a 4-D (B, C, H, W) input to {layer}, got a {x.ndim}-D tensor of shape {tuple(x.shape)}")
    if x.shape[1] != num_channels:
        raise ValueError(f"expected {num_channels} channels in the input to {layer}, got {x.shape[1]} (shape {tuple(x.shape)})")


def cell_stats(x: Tensor) -> tuple[Tensor, Tensor]:
    """Per-cell mean and biased variance of ``x`` (B, C, H, W), each of shape (B, C).

    Plain differentiable ops (eager torch 2.13 on CPU runs ``var_mean`` 10-100x slower than
    ``_eager_forward``'s two passes; inductor makes it a one-pass Welford reduction).
    """
    var, mean = torch.var_mean(x, dim=(2, 3), correction=0)
    return mean, var


def group_stats(x: Tensor, groups: Groups) -> tuple[Tensor, Tensor]:
    """Statistics for ``coefs`` under ``torch.compile``: per cell, or per group directly.

    ``groups``: "cell" gives the per-cell mean and biased variance, each (B, C); an int G
    gives those of each sample's G groups of C/G consecutive channels, each (B, G), which
    the layer's ``coefs`` takes as already pooled. One reduction over
    the whole group compiled to code 1.7x faster (LN, (128, 32, 16, 16), fwd+bwd) than cells
    then groups. BatchNorm keeps cells: inductor's reduction over (0, 2, 3) measured slower.
    """
    if groups == "cell" or x.is_contiguous(memory_format=torch.channels_last):
        # channels_last: a group's values are strided over H*W, and the (B, G, -1) view
        # would copy x; per-cell reductions read it in place and the layer pools them.
        return cell_stats(x)
    var, mean = torch.var_mean(x.reshape(x.shape[0], groups, -1), dim=2, correction=0)  # shape: (B, G)
    return mean, var


def _eager_forward(x: Tensor, coefs: CoefFn, params) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """``cell_stats`` + ``y = x * scale + shift`` allocating one full-size tensor (y).

    On CPU a fresh full-size tensor costs more than a pass over one (page faults), and
    torch 2.13's ``torch.var_mean`` (a Welford loop) is 10-100x slower than a ``mean`` plus a
    ``vector_norm``; so y first holds x - mean, whose norm gives the variance, and is then
    turned into the output in place: y = (x - m) * scale + (shift + m * scale).
    """
    h, w = x.shape[2:]
    with torch.no_grad():
        mean = x.mean(dim=(2, 3))  # shape: (B, C)
        y = x - _plane(mean)
        var = torch.linalg.vector_norm(y, dim=(2, 3)).square_().div_(h * w)  # shape: (B, C)
    scale, shift = coefs(mean, var, *params)  # shape: (B, C) each
    with torch.no_grad():
        torch.addcmul(_plane(torch.addcmul(shift, mean, scale)), y, _plane(scale), out=y)
    return y, mean, var, scale, shift


def pool_stats(mean: Tensor, var: Tensor, dim: int | tuple[int, ...]) -> tuple[Tensor, Tensor]:
    """Mean and biased variance of the union of equal-sized cells along ``dim`` (kept, size 1)."""
    var_of_means, pooled_mean = torch.var_mean(mean, dim=dim, correction=0, keepdim=True)
    return pooled_mean, var.mean(dim=dim, keepdim=True) + var_of_means


def _plane(t: Tensor) -> Tensor:
    # shape: (B, C) -> (B, C, 1, 1)
    return t[:, :, None, None]


class _CellAffine(torch.autograd.Function):
    """y = x * scale + shift with (scale, shift) = coefs(cell mean, cell var, *params).

    Outputs (y, cell mean, cell var); the statistics are non-differentiable side outputs
    (for running averages). First-order gradients only.
    """

    @staticmethod
    def forward(ctx, x: Tensor, coefs: CoefFn, *params: Tensor):  # type: ignore[override]
        # The small (B, C) graph from cell statistics to scale and shift is recorded, on leaves.
        with torch.enable_grad():
            ps = [p.detach().requires_grad_(p.requires_grad) for p in params]
            leaves = []

            def recorded(mean: Tensor, var: Tensor, *ps: Tensor):
                leaves[:] = [mean.requires_grad_(), var.requires_grad_()]
                return coefs(*leaves, *ps)

            y, mean, var, scale, shift = _eager_forward(x, recorded, ps)
        m, v = leaves
        ctx.save_for_backward(x)
        ctx.small_graph = (m, v, ps, scale, shift)
        mean, var = mean.detach(), var.detach()
        ctx.mark_non_differentiable(mean, var)
        return y, mean, var

    @staticmethod
    def backward(ctx, gy: Tensor, _gmean, _gvar):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        m, v, ps, scale, shift = ctx.small_graph
        gy = gy.contiguous()
        b, c, h, w = x.shape
        # Two reductions over each cell; g * x is computed into dx's buffer, reused below
        # (one full-size allocation; a batched dot via bmm measured slower).
        g_shift = gy.sum(dim=(2, 3))  # shape: (B, C)
        buf = torch.mul(gy, x)
        g_scale = buf.sum(dim=(2, 3))
        wrt = [m, v] + [p for p in ps if p.requires_grad]
        # retain_graph: the small graph lives with ctx, so backward may run more than once (gradcheck).
        grads = torch.autograd.grad((scale, shift), wrt, (g_scale, g_shift), allow_unused=True, retain_graph=True)
        grads = [torch.zeros_like(t) if g is None else g for t, g in zip(wrt, grads)]
        g_m, g_v, param_grads = grads[0], grads[1], iter(grads[2:])

        dx = None
        if ctx.needs_input_grad[0]:
            # d var_mean: dx = g_v * 2 (x - m) / n + g_m / n, plus the direct path g * scale.
            n = h * w
            q = g_v * (2.0 / n)
            r = g_m / n - q * m.detach()
            dx = torch.addcmul(_plane(r), x, _plane(q), out=buf)
            dx.addcmul_(gy, _plane(scale.detach()))
        out = [dx, None]
        for p in ps:
            out.append(next(param_grads) if p.requires_grad else None)
        return tuple(out)


def _autocast_on(device_type: str) -> bool:
    try:
        return torch.is_autocast_enabled(device_type)
    except TypeError:  # torch < 2.4 takes no device type
        return torch.is_autocast_enabled() if device_type == "cuda" else torch.is_autocast_cpu_enabled()


def normalize(x: Tensor, coefs: CoefFn, *params: Tensor, groups: Groups = "cell") -> tuple[Tensor, Tensor, Tensor]:
    """Apply ``y = x * scale + shift`` with (scale, shift) = coefs(cell_mean, cell_var, *params).

    Args:
        x: (B, C, H, W) activations.
        coefs: maps per-cell mean and biased variance, each (B, C), and ``params`` to the
            per-cell scale and shift, each (B, C); plain differentiable torch code.
        params: the layer's learnable tensors, passed on to ``coefs``.
        groups: the cells ``coefs`` pools (see ``group_stats``); under ``torch.compile``
            their statistics are computed directly, and ``coefs`` gets them per cell.

    Returns:
        y (B, C, H, W), and the detached per-cell mean and variance, each (B, C) (under
        ``torch.compile`` with int ``groups``: per group, (B, G)).
    """
    if x.dtype in (torch.float16, torch.bfloat16) or _autocast_on(x.device.type):
        # Statistics in float32, as autocast runs nn.BatchNorm2d and nn.GroupNorm: a bf16 mean
        # is off by up to |mean| * 2^-8, a shift of 0.15 sigma per cell at |mean| / sigma = 40,
        # and autocast would run GroupNorm's pooling matmuls in bf16. The output keeps x's dtype.
        with torch.autocast(device_type=x.device.type, enabled=False):
            y, mean, var = normalize(x.float(), coefs, *params, groups=groups)
        return y.to(x.dtype), mean, var
    needs_grad = torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in params))
    if _is_compiling():
        mean, var = group_stats(x, groups)
        scale, shift = coefs(mean, var, *params)
        return torch.addcmul(_plane(shift), x, _plane(scale)), mean.detach(), var.detach()
    if needs_grad:
        return _CellAffine.apply(x, coefs, *params)
    y, mean, var, _, _ = _eager_forward(x, coefs, params)
    return y, mean, var


def affine(x: Tensor, scale: Tensor, shift: Tensor) -> Tensor:
    """y = x * scale + shift with per-channel (C,) scale and shift (eval-mode BatchNorm)."""
    return torch.addcmul(shift.view(1, -1, 1, 1), x, scale.view(1, -1, 1, 1))
