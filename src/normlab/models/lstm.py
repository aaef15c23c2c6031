"""A layer-normalized LSTM cell (Ba et al. 2016) and a bidirectional layer over padded batches.

``LayerNormLSTMCell`` is called like ``nn.LSTMCell`` and, with
``layer_norm=False``, computes exactly what ``nn.LSTMCell`` computes from the
same weights (same parameter names and shapes, gate order i, f, g, o).

``BiLSTM`` runs one cell forwards and one backwards over a right-padded batch.
For speed it does not call the cells step by step: the input projections of all
time steps (and their layer norm) are one matrix product, and both directions
advance together as one batched step. With ``layer_norm=False`` it equals
``nn.LSTM(bidirectional=True, batch_first=True)`` over a packed sequence.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Optional, Sequence

import torch
from torch import nn
from torch.nn import functional as F


def layer_norm(x: torch.Tensor, gain: torch.Tensor, bias: torch.Tensor | None = None, eps: float = 1e-5) -> torch.Tensor:
    """Layer norm over the last dim (Ba et al. 2016, eq. 4): ``gain * (x - mu) / sqrt(var + eps) + bias``.

    ``mu`` and ``var`` (biased) are taken over the last dim of ``x[..., N]``; ``gain`` and
    ``bias`` are ``(N,)`` or broadcast to ``x``. Written out, not ``F.layer_norm``: the study
    asks for the cell from scratch (``tests/test_lstm.py`` checks it against ``F.layer_norm``).
    """
    centred = x - x.mean(dim=-1, keepdim=True)
    var = centred.square().mean(dim=-1, keepdim=True)  # shape: (..., 1); 3x faster than var_mean's backward
    y = centred * torch.rsqrt(var + eps) * gain
    return y if bias is None else y + bias


def _lstm_step(pre_ih, h, c, weight_hh_t, hh_gain, cell_gain, cell_bias, eps):
    """One LSTM step from the (normalized, biased) input pre-activation ``pre_ih[..., 4H]``.

    ``h, c``: ``(..., H)``; ``weight_hh_t``: ``(..., H, 4H)`` (transposed ``weight_hh``).
    ``hh_gain`` / ``cell_gain`` are ``None`` without layer norm. Shared by the cell and
    by ``BiLSTM``, whose leading dim stacks the two directions.
    """
    hh = torch.matmul(h, weight_hh_t)  # shape: (..., 4H)
    if hh_gain is not None:
        hh = layer_norm(hh, hh_gain, None, eps)
    gates = pre_ih + hh  # shape: (..., 4H)
    H = h.shape[-1]
    # split, not slicing: its backward is one cat, where each slice's backward would
    # fill a zero tensor of the full size.
    if_gates, g, o = gates.split([2 * H, H, H], dim=-1)
    i, f = torch.sigmoid(if_gates).split(H, dim=-1)  # i and f in one call
    g, o = torch.tanh(g), torch.sigmoid(o)
    c = f * c + i * g
    h = o * torch.tanh(c if cell_gain is None else layer_norm(c, cell_gain, cell_bias, eps))
    return h, c


class Direction(NamedTuple):
    """The weights of one direction of a bidirectional LSTM (``nn.LSTM``'s names, transposed nowhere).

    ``weight_ih[4H, in]``, ``weight_hh[4H, H]``, ``bias[4H]`` (``b_ih + b_hh``, or ``None``); the
    four layer-norm parameters are ``None`` for a plain LSTM.
    """

    weight_ih: torch.Tensor
    weight_hh: torch.Tensor
    bias: Optional[torch.Tensor] = None
    ln_ih_gain: Optional[torch.Tensor] = None
    ln_hh_gain: Optional[torch.Tensor] = None
    ln_cell_gain: Optional[torch.Tensor] = None
    ln_cell_bias: Optional[torch.Tensor] = None
    eps: float = 1e-5


def _sum_biases(bias_ih: Optional[torch.Tensor], bias_hh: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    return None if bias_ih is None else bias_ih + bias_hh


def packed_bilstm(
    x: torch.Tensor, lengths: torch.Tensor, directions: Sequence[Direction]
) -> tuple[torch.Tensor, torch.Tensor]:
    """A bidirectional LSTM over ``x[B, T, in]`` with ``lengths[B]`` (long, in ``[0, T]``), packed.

    Returns ``(out[B, T, 2H], last[B, 2H])`` as ``BiLSTM.forward``. ``directions`` = (forward,
    backward). The work is that of ``nn.LSTM`` over a packed sequence, in a few large
    operations: the rows are sorted by length (longest first) and both directions run
    time-major, so step ``t`` advances only the ``n_t`` rows still inside their sequence
    (a prefix: padding is never computed); the backward direction reads each sequence
    reversed within its own length, so it too starts at step 0. The input pre-activations of
    every real position and both directions are one batched matrix product (and one layer
    norm) before the loop, cut into steps with ``split`` (its backward is one ``cat``); the
    outputs go back to their padded places with one ``index_select``. Two host syncs per
    call (the longest length, the step sizes), none per step.
    """
    B, T, _ = x.shape
    H = directions[0].weight_hh.shape[1]
    steps = int(lengths.max()) if B else 0  # nothing to run past the longest sequence
    if steps == 0:
        return x.new_zeros(B, T, 2 * H), x.new_zeros(B, 2 * H)
    dev = x.device
    sorted_len, order = lengths.sort(descending=True, stable=True)  # shape: (B,) each
    pos = torch.arange(steps, device=dev)
    active = pos.unsqueeze(1) < sorted_len.unsqueeze(0)  # shape: (steps, B); a prefix of each row
    batch_sizes = active.sum(dim=1)  # shape: (steps,); n_t, non-increasing
    t_idx, r_idx = active.nonzero(as_tuple=True)  # shape: (N,) each; packed (time-major) order
    rows = order[r_idx]  # original row of each packed position
    fwd_at = rows * steps + t_idx  # shape: (N,); flat padded index read (and written) by the forward direction
    bwd_at = rows * steps + (lengths[rows] - 1 - t_idx)  # the same for the backward direction
    flat = x[:, :steps].reshape(B * steps, -1)  # shape: (B * steps, in)
    xs = torch.stack([flat.index_select(0, fwd_at), flat.index_select(0, bwd_at)])  # shape: (2, N, in)
    w_ih_t = torch.stack([d.weight_ih.t() for d in directions])  # shape: (2, in, 4H)
    pre = torch.bmm(xs, w_ih_t)  # shape: (2, N, 4H)
    fwd, bwd = directions
    if fwd.ln_ih_gain is not None:
        pre = layer_norm(pre, torch.stack([fwd.ln_ih_gain, bwd.ln_ih_gain]).unsqueeze(1), None, fwd.eps)
    if fwd.bias is not None:
        pre = pre + torch.stack([fwd.bias, bwd.bias]).unsqueeze(1)
    sizes = batch_sizes.tolist()
    pre = pre.split(sizes, dim=1)  # steps x (2, n_t, 4H)
    weight_hh_t = torch.stack([fwd.weight_hh.t(), bwd.weight_hh.t()])  # shape: (2, H, 4H)
    if fwd.ln_hh_gain is not None:
        hh_gain = torch.stack([fwd.ln_hh_gain, bwd.ln_hh_gain]).unsqueeze(1)  # shape: (2, 1, 4H)
        cell_gain = torch.stack([fwd.ln_cell_gain, bwd.ln_cell_gain]).unsqueeze(1)  # shape: (2, 1, H)
        cell_bias = torch.stack([fwd.ln_cell_bias, bwd.ln_cell_bias]).unsqueeze(1)  # shape: (2, 1, H)
    else:
        hh_gain = cell_gain = cell_bias = None
    h = c = x.new_zeros(2, sizes[0], H)
    hs = []
    for t, n in enumerate(sizes):
        if n < h.shape[1]:  # rows whose sequence ended leave the batch
            h, c = h[:, :n], c[:, :n]
        h, c = _lstm_step(pre[t], h, c, weight_hh_t, hh_gain, cell_gain, cell_bias, fwd.eps)
        hs.append(h)
    hs = torch.cat(hs, dim=1)  # shape: (2, N, H); packed order
    N = hs.shape[1]
    # Each padded position reads its packed row, or the zero row N (padding, past the longest).
    hs = F.pad(hs, (0, 0, 0, 1))  # shape: (2, N + 1, H)
    where = torch.full((2, B * T), N, dtype=torch.long, device=dev)
    row_t = rows * T  # padded index in (B, T), not (B, steps)
    where[0].index_copy_(0, row_t + t_idx, torch.arange(N, device=dev))
    where[1].index_copy_(0, row_t + (lengths[rows] - 1 - t_idx), torch.arange(N, device=dev))
    out = torch.cat([hs[0].index_select(0, where[0]), hs[1].index_select(0, where[1])], dim=1)  # (B * T, 2H)
    # Each direction's final state: the packed row of step lengths - 1 of each row.
    starts = torch.cumsum(batch_sizes, 0) - batch_sizes  # shape: (steps,); packed offset of each step
    rank = torch.empty_like(order)
    rank[order] = torch.arange(B, device=dev)  # row b is rank[b]-th longest
    last_at = torch.where(lengths > 0, starts[(lengths - 1).clamp(min=0)] + rank, N)  # shape: (B,)
    last = torch.cat([hs[0].index_select(0, last_at), hs[1].index_select(0, last_at)], dim=1)  # shape: (B, 2H)
    return out.view(B, T, 2 * H), last


class LayerNormLSTMCell(nn.Module):
    """LSTM cell with layer normalization (Ba et al. 2016, §3.1 and Supplementary "LN-LSTM").

    With ``layer_norm=True`` (Ba et al.'s equations, gate order i, f, g, o)::

        gates = LN(W_ih x; a_ih) + LN(W_hh h; a_hh) + b_ih + b_hh
        c'    = sigmoid(f) * c + sigmoid(i) * tanh(g)
        h'    = sigmoid(o) * tanh(LN(c'; a_c, b_c))

    ``W_ih x`` and ``W_hh h`` are each normalized as one ``4H`` vector, as in the paper
    (not gate by gate). Gains start at 1 and LN biases at 0. The two input LNs have
    gains only: their shift would duplicate ``bias_ih`` / ``bias_hh``, which play the
    role of the paper's ``b`` and keep ``nn.LSTMCell``'s names. The cell-state LN has a
    gain ``ln_cell_gain`` and a bias ``ln_cell_bias``. ``c'`` itself is not normalized
    (it carries over to the next step as is).

    With ``layer_norm=False`` it is ``nn.LSTMCell``: ``gates = W_ih x + b_ih + W_hh h + b_hh``.

    Call: ``cell(x[B, in], (h[B, H], c[B, H])) -> (h'[B, H], c'[B, H])``; the state is
    optional (zeros). Initialization as ``nn.LSTMCell``: every weight and bias uniform
    in ``(-1/sqrt(H), 1/sqrt(H))``.
    """

    def __init__(self, input_size: int, hidden_size: int, layer_norm: bool = True, bias: bool = True, eps: float = 1e-5):
        super().__init__()
        for name, value in (("input_size", input_size), ("hidden_size", hidden_size)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"expected {name} to be a positive int, got {value!r}")
        self.input_size, self.hidden_size = input_size, hidden_size
        self.layer_norm, self.bias, self.eps = layer_norm, bias, eps
        H = hidden_size
        self.weight_ih = nn.Parameter(torch.empty(4 * H, input_size))
        self.weight_hh = nn.Parameter(torch.empty(4 * H, H))
        if bias:
            self.bias_ih = nn.Parameter(torch.empty(4 * H))
            self.bias_hh = nn.Parameter(torch.empty(4 * H))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        if layer_norm:
            self.ln_ih_gain = nn.Parameter(torch.ones(4 * H))
            self.ln_hh_gain = nn.Parameter(torch.ones(4 * H))
            self.ln_cell_gain = nn.Parameter(torch.ones(H))
            self.ln_cell_bias = nn.Parameter(torch.zeros(H))
        else:
            for name in ("ln_ih_gain", "ln_hh_gain", "ln_cell_gain", "ln_cell_bias"):
                self.register_parameter(name, None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in (self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh):
            if p is not None:
                nn.init.uniform_(p, -bound, bound)
        if self.layer_norm:
            for p in (self.ln_ih_gain, self.ln_hh_gain, self.ln_cell_gain):
                nn.init.ones_(p)
            nn.init.zeros_(self.ln_cell_bias)

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}, layer_norm={self.layer_norm}, bias={self.bias}"

    def input_preactivation(self, x: torch.Tensor) -> torch.Tensor:
        """``LN(W_ih x) + b_ih + b_hh`` for ``x[..., in]`` (any leading dims): ``(..., 4H)``.

        Independent of the recurrent state, so a layer computes it for all time steps at once.
        """
        pre = torch.matmul(x, self.weight_ih.t())  # shape: (..., 4H)
        if self.layer_norm:
            pre = layer_norm(pre, self.ln_ih_gain, None, self.eps)
        if self.bias:
            pre = pre + (self.bias_ih + self.bias_hh)
        return pre

    def forward(
        self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``x[B, in]``, ``state = (h[B, H], c[B, H])`` or ``None`` -> ``(h', c')``."""
        if x.dim() != 2 or x.shape[1] != self.input_size:
            raise ValueError(f"expected x of shape (B, {self.input_size}), got {tuple(x.shape)}")
        B, H = x.shape[0], self.hidden_size
        if state is None:
            zeros = x.new_zeros(B, H)
            state = (zeros, zeros)
        h, c = state
        if tuple(h.shape) != (B, H) or tuple(c.shape) != (B, H):
            raise ValueError(f"expected h and c of shape {(B, H)}, got {tuple(h.shape)} and {tuple(c.shape)}")
        return _lstm_step(
            self.input_preactivation(x), h, c, self.weight_hh.t(),
            self.ln_hh_gain, self.ln_cell_gain, self.ln_cell_bias, self.eps,
        )


class BiLSTM(nn.Module):
    """Bidirectional one-layer LSTM of ``LayerNormLSTMCell``s over right-padded batches.

    ``forward(x[B, T, in], mask[B, T] or lengths=[B]) -> (out[B, T, 2H], last[B, 2H])``:
    ``out[b, t] = [h_fwd(t), h_bwd(t)]`` for ``t < lengths[b]`` and zeros at padding;
    ``last[b] = [h_fwd at the last token, h_bwd at the first token]`` (the final states
    of both directions, e.g. a word's features from its characters, Lample et al. §4.1),
    zeros for a sequence of length 0. The backward direction starts at each sequence's
    own last token: every sequence is reversed within its length (a gather), run
    forwards, and reversed back. Padding never reaches a real position.
    """

    def __init__(self, input_size: int, hidden_size: int, layer_norm: bool = True, bias: bool = True, eps: float = 1e-5):
        super().__init__()
        self.input_size, self.hidden_size, self.layer_norm = input_size, hidden_size, layer_norm
        self.forward_cell = LayerNormLSTMCell(input_size, hidden_size, layer_norm, bias, eps)
        self.backward_cell = LayerNormLSTMCell(input_size, hidden_size, layer_norm, bias, eps)

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}, layer_norm={self.layer_norm}"

    def _validate(self, x, lengths, mask) -> torch.Tensor:
        """Check the inputs; return the lengths ``(B,)`` (long)."""
        if not torch.is_tensor(x) or x.dim() != 3 or x.shape[2] != self.input_size:
            shape = tuple(x.shape) if torch.is_tensor(x) else type(x).__name__
            raise ValueError(f"expected x of shape (B, T, {self.input_size}), got {shape}")
        B, T, _ = x.shape
        if lengths is not None and mask is not None:
            raise ValueError("expected lengths or mask, got both")
        if mask is not None:
            if tuple(mask.shape) != (B, T):
                raise ValueError(f"expected mask of shape (B, T) = {(B, T)}, got {tuple(mask.shape)}")
            mask = mask.bool()
            if T > 1:
                gaps = (mask[:, 1:] & ~mask[:, :-1]).any(dim=1).nonzero().flatten().tolist()
                if gaps:
                    raise ValueError(
                        "expected left-aligned masks (True for the first tokens, then only False), "
                        f"got a True after a False in row(s) {gaps[:10]}"
                    )
            return mask.sum(dim=1)
        if lengths is None:
            return torch.full((B,), T, dtype=torch.long, device=x.device)
        lengths = torch.as_tensor(lengths, device=x.device)
        if tuple(lengths.shape) != (B,) or lengths.is_floating_point():
            raise ValueError(f"expected integer lengths of shape ({B},), got {lengths.dtype} {tuple(lengths.shape)}")
        if B and (lengths.min() < 0 or lengths.max() > T):
            raise ValueError(f"expected lengths in [0, T={T}], got values from {int(lengths.min())} to {int(lengths.max())}")
        return lengths.long()

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None = None, lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``x[B, T, in]`` with ``mask[B, T]`` (left-aligned) or ``lengths[B]`` (neither: full
        length) -> ``(out[B, T, 2H], last[B, 2H])``, see the class docstring."""
        lengths = self._validate(x, lengths, mask)
        cells = (self.forward_cell, self.backward_cell)
        directions = [Direction(c.weight_ih, c.weight_hh, _sum_biases(c.bias_ih, c.bias_hh), c.ln_ih_gain,
                                c.ln_hh_gain, c.ln_cell_gain, c.ln_cell_bias, c.eps) for c in cells]
        return packed_bilstm(x, lengths, directions)
