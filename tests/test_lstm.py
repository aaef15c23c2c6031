"""LayerNormLSTMCell and BiLSTM against PyTorch's nn.LSTMCell, nn.LSTM and F.layer_norm."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from normlab.models.lstm import BiLSTM, LayerNormLSTMCell, layer_norm


def test_layer_norm_matches_functional_layer_norm():
    torch.manual_seed(0)
    x = torch.randn(3, 5, 40, dtype=torch.float64, requires_grad=True)
    gain = torch.randn(40, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(40, dtype=torch.float64, requires_grad=True)
    ours = layer_norm(x, gain, bias)
    ref = F.layer_norm(x, (40,), gain, bias, eps=1e-5)
    torch.testing.assert_close(ours, ref)
    g = torch.randn_like(ref)
    torch.testing.assert_close(torch.autograd.grad(ours, [x, gain, bias], g), torch.autograd.grad(ref, [x, gain, bias], g))


def copy_cell(ours: LayerNormLSTMCell, ref) -> None:
    """Copy an nn.LSTMCell's (or an nn.LSTM direction's) weights into our cell."""
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(ours, name).copy_(ref[name] if isinstance(ref, dict) else getattr(ref, name))


def test_plain_cell_equals_nn_lstmcell_with_gradients():
    torch.manual_seed(1)
    ref = nn.LSTMCell(7, 6)
    ours = LayerNormLSTMCell(7, 6, layer_norm=False)
    assert {n: p.shape for n, p in ours.named_parameters()} == {n: p.shape for n, p in ref.named_parameters()}
    copy_cell(ours, ref)
    x = torch.randn(4, 7)
    h0, c0 = torch.randn(4, 6), torch.randn(4, 6)
    h, c = ours(x, (h0, c0))
    rh, rc = ref(x, (h0, c0))
    torch.testing.assert_close((h, c), (rh, rc))
    loss, ref_loss = (h * 2 + c).sum(), (rh * 2 + rc).sum()
    grads = torch.autograd.grad(loss, list(ours.parameters()))
    ref_grads = torch.autograd.grad(ref_loss, list(ref.parameters()))
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r)
    torch.testing.assert_close(ours(x), ref(x))  # no state: zeros


def test_layer_norm_cell_follows_ba_et_al():
    torch.manual_seed(2)
    cell = LayerNormLSTMCell(5, 4, layer_norm=True)
    with torch.no_grad():  # non-trivial gains and biases, so each one is checked
        for p in (cell.ln_ih_gain, cell.ln_hh_gain, cell.ln_cell_gain, cell.ln_cell_bias):
            p.normal_()
    x, h0, c0 = torch.randn(3, 5), torch.randn(3, 4), torch.randn(3, 4)
    gates = (
        F.layer_norm(x @ cell.weight_ih.t(), (16,), cell.ln_ih_gain)
        + F.layer_norm(h0 @ cell.weight_hh.t(), (16,), cell.ln_hh_gain)
        + cell.bias_ih + cell.bias_hh
    )
    i, f, g, o = gates.chunk(4, dim=1)
    c = torch.sigmoid(f) * c0 + torch.sigmoid(i) * torch.tanh(g)
    h = torch.sigmoid(o) * torch.tanh(F.layer_norm(c, (4,), cell.ln_cell_gain, cell.ln_cell_bias))
    torch.testing.assert_close(cell(x, (h0, c0)), (h, c))
    # Normalizing W_h h makes the step invariant to rescaling the recurrent weights.
    h1, _ = cell(x, (h0, c0))
    with torch.no_grad():
        cell.weight_hh.mul_(7.0)
    torch.testing.assert_close(cell(x, (h0, c0))[0], h1, rtol=1e-4, atol=1e-5)


def test_layer_norm_cell_parameters_and_init():
    cell = LayerNormLSTMCell(150, 100)
    shapes = {n: tuple(p.shape) for n, p in cell.named_parameters()}
    assert shapes == {
        "weight_ih": (400, 150), "weight_hh": (400, 100), "bias_ih": (400,), "bias_hh": (400,),
        "ln_ih_gain": (400,), "ln_hh_gain": (400,), "ln_cell_gain": (100,), "ln_cell_bias": (100,),
    }
    assert (cell.ln_ih_gain == 1).all() and (cell.ln_cell_bias == 0).all()
    assert cell.weight_hh.abs().max() <= 0.1  # uniform(-1/sqrt(H), 1/sqrt(H))
    no_bias = LayerNormLSTMCell(3, 2, layer_norm=False, bias=False)
    assert [n for n, _ in no_bias.named_parameters()] == ["weight_ih", "weight_hh"]


def ragged_batch(B=6, T=7, size=5, seed=3):
    torch.manual_seed(seed)
    lengths = torch.tensor([7, 1, 4, 6, 2, 7][:B])
    x = torch.randn(B, T, size)
    return x, lengths


def test_plain_bilstm_equals_packed_nn_lstm():
    x, lengths = ragged_batch()
    ref = nn.LSTM(5, 3, batch_first=True, bidirectional=True)
    ours = BiLSTM(5, 3, layer_norm=False)
    params = dict(ref.named_parameters())
    copy_cell(ours.forward_cell, {k: params[f"{k}_l0"] for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")})
    copy_cell(ours.backward_cell, {k: params[f"{k}_l0_reverse"] for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")})
    x = x.requires_grad_()
    out, last = ours(x, lengths=lengths)
    packed, (h_n, _) = ref(pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False))
    ref_out, _ = pad_packed_sequence(packed, batch_first=True, total_length=x.shape[1])
    torch.testing.assert_close(out, ref_out, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(last, torch.cat([h_n[0], h_n[1]], dim=1), rtol=1e-5, atol=1e-5)
    w = torch.randn_like(out)
    grads = torch.autograd.grad((out * w).sum() + last.sum(), [x, ours.backward_cell.weight_hh])
    ref_grads = torch.autograd.grad((ref_out * w).sum() + h_n.sum(), [x, ref.weight_hh_l0_reverse])
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("layer_norm_on", [True, False])
def test_bilstm_padding_does_not_leak(layer_norm_on):
    x, lengths = ragged_batch()
    model = BiLSTM(5, 3, layer_norm=layer_norm_on)
    mask = torch.arange(7) < lengths.unsqueeze(1)
    out, last = model(x, mask)  # a mask, positionally (as the tagger calls it)
    noisy = x.masked_fill(~mask.unsqueeze(2), 1e3)
    out2, last2 = model(noisy, lengths=lengths)
    torch.testing.assert_close(out2, out)
    torch.testing.assert_close(last2, last)
    assert (out[~mask] == 0).all() and (out[mask].abs().sum(dim=1) > 0).all()
    # A sentence alone gives what it gives inside the batch.
    alone, alone_last = model(x[2:3, :4])
    torch.testing.assert_close(alone, out[2:3, :4], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(alone_last, last[2:3], rtol=1e-5, atol=1e-6)


def test_layer_norm_bilstm_equals_its_cells_run_step_by_step():
    x, lengths = ragged_batch()
    model = BiLSTM(5, 3, layer_norm=True)
    with torch.no_grad():  # the two directions must not share values by accident
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    out, last = model(x, lengths=lengths)
    for b in (0, 1, 3):
        n = int(lengths[b])
        for cell, order, cols, final_col in (
            (model.forward_cell, range(n), slice(0, 3), slice(0, 3)),
            (model.backward_cell, reversed(range(n)), slice(3, 6), slice(3, 6)),
        ):
            state, outs = None, {}
            for t in order:
                state = cell(x[b : b + 1, t], state)
                outs[t] = state[0]
            torch.testing.assert_close(torch.cat([outs[t] for t in range(n)]), out[b, :n, cols], rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(state[0][0], last[b, final_col], rtol=1e-5, atol=1e-6)


def test_layer_norm_cell_gradcheck_float64():
    torch.manual_seed(4)
    cell = LayerNormLSTMCell(3, 2).double()
    x, h, c = (torch.randn(2, n, dtype=torch.float64, requires_grad=True) for n in (3, 2, 2))
    assert torch.autograd.gradcheck(lambda x, h, c: cell(x, (h, c)), [x, h, c])


def test_zero_lengths_give_zeros():
    model = BiLSTM(5, 3)
    out, last = model(torch.randn(3, 4, 5), lengths=torch.tensor([0, 2, 0]))
    assert out.shape == (3, 4, 6) and last.shape == (3, 6)
    assert (out[0] == 0).all() and (last[2] == 0).all() and (last[1] != 0).any()


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda m: m(torch.randn(2, 3)), r"x of shape \(B, T, 5\), got \(2, 3\)"),
        (lambda m: m(torch.randn(2, 3, 4)), r"x of shape \(B, T, 5\), got \(2, 3, 4\)"),
        (lambda m: m(torch.randn(2, 3, 5), torch.ones(2, 3), torch.tensor([1, 2])), "lengths or mask, got both"),
        (lambda m: m(torch.randn(2, 3, 5), lengths=torch.tensor([1, 4])), r"lengths in \[0, T=3\].* 1 to 4"),
        (lambda m: m(torch.randn(2, 3, 5), lengths=torch.tensor([1.0, 2.0])), "integer lengths of shape"),
        (lambda m: m(torch.randn(2, 3, 5), mask=torch.ones(2, 4)), r"mask of shape .*\(2, 3\).*\(2, 4\)"),
        (lambda m: m(torch.randn(2, 3, 5), mask=torch.tensor([[1, 0, 1], [1, 1, 0]])), r"left-aligned.*\[0\]"),
    ],
)
def test_bilstm_input_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call(BiLSTM(5, 3))


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: LayerNormLSTMCell(0, 3), "input_size to be a positive int, got 0"),
        (lambda: LayerNormLSTMCell(2, 3)(torch.randn(4, 3)), r"x of shape \(B, 2\), got \(4, 3\)"),
        (lambda: LayerNormLSTMCell(2, 3)(torch.randn(4, 2), (torch.zeros(4, 3), torch.zeros(4, 2))), r"h and c of shape \(4, 3\)"),
    ],
)
def test_cell_input_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()
