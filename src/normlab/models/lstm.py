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
        B, T, _ = x.shape
        H = self.hidden_size
        steps = int(lengths.max()) if B else 0  # nothing to run past the longest sequence
        if steps == 0:
            return x.new_zeros(B, T, 2 * H), x.new_zeros(B, 2 * H)
        x = x[:, :steps]
        pos = torch.arange(steps, device=x.device)
        inside = pos < lengths.unsqueeze(1)  # shape: (B, steps)
        # rev[b, t] = lengths[b] - 1 - t inside the sequence, t on padding: its own inverse.
        rev = torch.where(inside, lengths.unsqueeze(1) - 1 - pos, pos)  # shape: (B, steps)
        x_rev = x.gather(1, rev.unsqueeze(2).expand_as(x))  # shape: (B, steps, in)

        cells = (self.forward_cell, self.backward_cell)
        # Input pre-activations of both directions and all steps at once.
        pre = torch.stack([cell.input_preactivation(xs) for cell, xs in zip(cells, (x, x_rev))])  # (2, B, steps, 4H)
        # unbind, not pre[t]: each pre[t]'s backward would fill a zero tensor of the full size.
        pre = pre.permute(2, 0, 1, 3).unbind(0)  # steps x (2, B, 4H)
        weight_hh_t = torch.stack([cell.weight_hh.t() for cell in cells])  # shape: (2, H, 4H)
        if self.layer_norm:
            hh_gain = torch.stack([cell.ln_hh_gain for cell in cells]).unsqueeze(1)  # shape: (2, 1, 4H)
            cell_gain = torch.stack([cell.ln_cell_gain for cell in cells]).unsqueeze(1)  # shape: (2, 1, H)
            cell_bias = torch.stack([cell.ln_cell_bias for cell in cells]).unsqueeze(1)  # shape: (2, 1, H)
        else:
            hh_gain = cell_gain = cell_bias = None
        h = c = x.new_zeros(2, B, H)
        hs = []
        for t in range(steps):
            h, c = _lstm_step(pre[t], h, c, weight_hh_t, hh_gain, cell_gain, cell_bias, self.forward_cell.eps)
            hs.append(h)
        hs = torch.stack(hs, dim=2)  # shape: (2, B, steps, H)

        fwd = hs[0]
        bwd = hs[1].gather(1, rev.unsqueeze(2).expand_as(hs[1]))  # back in reading order
        both = torch.cat([fwd, bwd], dim=2).masked_fill(~inside.unsqueeze(2), 0)  # shape: (B, steps, 2H)
        out = F.pad(both, (0, 0, 0, T - steps))  # shape: (B, T, 2H); zeros past the longest
        # Each direction's final state sits at (its own) step lengths - 1.
        final_idx = (lengths - 1).clamp(min=0).view(1, B, 1, 1).expand(2, B, 1, H)
        final = hs.gather(2, final_idx).squeeze(2)  # shape: (2, B, H)
        last = torch.cat([final[0], final[1]], dim=1).masked_fill((lengths == 0).unsqueeze(1), 0)  # shape: (B, 2H)
        return out, last
