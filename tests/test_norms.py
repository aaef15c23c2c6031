"""normlab.norms against PyTorch's built-in layers (the slow, obviously correct references)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from normlab.norms import (
    DEFAULT_GN_GROUPS,
    NORM_NAMES,
    BatchInstanceNorm2d,
    BatchNorm2d,
    GroupNorm2d,
    InstanceNorm2d,
    LayerNorm2d,
    clip_gates_,
    gate_parameters,
    make_norm,
)

C = 8
# (name, kwargs, reference factory, shapes where the layer is defined in training)
SHAPES = [(4, C, 5, 5), (1, C, 3, 3), (3, C, 7, 2), (6, C, 1, 1)]
CASES = [
    ("bn", {}, lambda: nn.BatchNorm2d(C), SHAPES),
    ("in", {}, lambda: nn.InstanceNorm2d(C, affine=True), SHAPES[:3]),
    ("ln", {}, lambda: nn.GroupNorm(1, C), SHAPES),
    ("gn", {"num_groups": 2}, lambda: nn.GroupNorm(2, C), SHAPES),
    # one channel a group on a 1x1 map is InstanceNorm of one value (which PyTorch's
    # InstanceNorm refuses): var = 0 and the folded x*scale + shift, scale = 1/sqrt(eps),
    # is off by rounding (~1e-4), so that shape is left out here.
    ("gn", {"num_groups": 8}, lambda: nn.GroupNorm(8, C), SHAPES[:3]),
    ("gn", {}, lambda: nn.GroupNorm(DEFAULT_GN_GROUPS, C), SHAPES[:3]),  # G = C here too
]
CASE_IDS = [f"{n}{kw.get('num_groups', '')}" for n, kw, _, _ in CASES]


def _randomize_affine(module: nn.Module, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.rand(p.shape, generator=gen, dtype=p.dtype) + 0.5)


def _pair(name, kw, ref_factory, dtype):
    ours = make_norm(name, C, **kw).to(dtype)
    ref = ref_factory().to(dtype)
    _randomize_affine(ours, seed=1)
    ref.load_state_dict(ours.state_dict(), strict=False)
    return ours, ref


def _fwd_bwd(module, x, grad, owner=None):
    """Output, input gradient and parameter gradients (of ``owner``, default ``module``)."""
    x = x.detach().clone().requires_grad_()
    y = module(x)
    y.backward(grad)
    return y.detach(), x.grad, {n: p.grad.clone() for n, p in (owner or module).named_parameters()}


def _assert_same(ours, ref, x, grad, tol):
    y1, gx1, gp1 = _fwd_bwd(ours, x, grad)
    y2, gx2, gp2 = _fwd_bwd(ref, x, grad)
    torch.testing.assert_close(y1, y2, atol=tol, rtol=tol)
    torch.testing.assert_close(gx1, gx2, atol=tol, rtol=tol)
    for n in ("weight", "bias"):
        torch.testing.assert_close(gp1[n], gp2[n], atol=tol, rtol=tol)


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float64, 1e-10)])
@pytest.mark.parametrize("name,kw,ref_factory,shapes", CASES, ids=CASE_IDS)
def test_matches_pytorch_in_training(name, kw, ref_factory, shapes, dtype, tol):
    for i, shape in enumerate(shapes):
        ours, ref = _pair(name, kw, ref_factory, dtype)
        gen = torch.Generator().manual_seed(10 + i)
        x = (torch.randn(shape, generator=gen, dtype=dtype) * 3 + 2)
        grad = torch.randn(shape, generator=gen, dtype=dtype)
        _assert_same(ours.train(), ref.train(), x, grad, tol)
        with torch.no_grad():  # the no-grad path computes the same output
            torch.testing.assert_close(ours(x), ref(x), atol=tol, rtol=tol)


@pytest.mark.parametrize("name,kw,ref_factory,shapes", CASES, ids=CASE_IDS)
def test_matches_pytorch_in_eval_after_training_steps(name, kw, ref_factory, shapes):
    ours, ref = _pair(name, kw, ref_factory, torch.float32)
    gen = torch.Generator().manual_seed(3)
    for _ in range(5):
        x = torch.randn(4, C, 6, 6, generator=gen) * 2 - 1
        ours(x), ref(x)
    for key, value in ref.state_dict().items():
        torch.testing.assert_close(ours.state_dict()[key], value, atol=1e-5, rtol=1e-5)
    x = torch.randn(4, C, 6, 6, generator=gen)
    _assert_same(ours.eval(), ref.eval(), x, torch.randn_like(x), 1e-5)


def test_batchnorm_state_dict_is_pytorchs():
    ours, ref = BatchNorm2d(C), nn.BatchNorm2d(C)
    assert list(ours.state_dict()) == list(ref.state_dict())
    _randomize_affine(ref, seed=2)
    ref.running_mean.normal_()
    ref.running_var.uniform_(0.5, 2.0)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(3, C, 4, 4)
    torch.testing.assert_close(ours.eval()(x), ref.eval()(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("momentum", [0.1, 0.5, None])
def test_batchnorm_running_stats_match_pytorch(momentum):
    ours, ref = BatchNorm2d(C, momentum=momentum), nn.BatchNorm2d(C, momentum=momentum)
    gen = torch.Generator().manual_seed(4)
    for shape in [(4, C, 5, 5), (1, C, 2, 3), (7, C, 1, 1), (2, C, 9, 9)]:
        x = torch.randn(shape, generator=gen) * 4 + 3
        ours(x.requires_grad_()).sum().backward()
        ref(x).sum().backward()
    assert ours.num_batches_tracked.item() == ref.num_batches_tracked.item() == 4
    torch.testing.assert_close(ours.running_mean, ref.running_mean, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours.running_var, ref.running_var, atol=1e-5, rtol=1e-5)


def test_gradcheck_float64():
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(3, 4, 3, 2, generator=gen, dtype=torch.float64, requires_grad=True)
    layers = [BatchNorm2d(4), InstanceNorm2d(4), LayerNorm2d(4), GroupNorm2d(4, num_groups=2), BatchInstanceNorm2d(4)]
    for layer in layers:
        layer = layer.double()
        _randomize_affine(layer, seed=6)
        if isinstance(layer, BatchInstanceNorm2d):
            with torch.no_grad():
                layer.rho.uniform_(0.2, 0.8)
        assert torch.autograd.gradcheck(lambda x, layer=layer: layer(x), (x,))
        for name, p in layer.named_parameters():  # each parameter, swapped in as a leaf

            def f(value, layer=layer, name=name):
                return torch.func.functional_call(layer, {name: value}, (x.detach(),))

            assert torch.autograd.gradcheck(f, (p.detach().clone().requires_grad_(),))


def _bin_reference(x, layer: BatchInstanceNorm2d, bn: nn.BatchNorm2d):
    """y = gamma (rho xhat_BN + (1 - rho) xhat_IN) + beta with PyTorch's layers for the halves."""
    view = lambda t: t.view(1, -1, 1, 1)  # noqa: E731
    xhat_bn = bn(x)
    xhat_in = F.instance_norm(x, eps=layer.eps)
    return view(layer.weight) * (view(layer.rho) * xhat_bn + (1 - view(layer.rho)) * xhat_in) + view(layer.bias)


def test_batch_instance_norm_matches_its_equation_with_gradients():
    gen = torch.Generator().manual_seed(7)
    ours = BatchInstanceNorm2d(C)
    _randomize_affine(ours, seed=8)
    with torch.no_grad():
        ours.rho.copy_(torch.rand(C, generator=gen))
    ref = BatchInstanceNorm2d(C)
    ref.load_state_dict(ours.state_dict())
    bn = nn.BatchNorm2d(C, affine=False)
    for step in range(4):
        x = torch.randn(5, C, 4, 6, generator=gen) * 2 + 1
        grad = torch.randn_like(x)
        x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
        for p in (*ours.parameters(), *ref.parameters()):
            p.grad = None
        y1 = ours(x1)
        y2 = _bin_reference(x2, ref, bn)
        y1.backward(grad)
        y2.backward(grad)
        torch.testing.assert_close(y1, y2, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(x1.grad, x2.grad, atol=1e-5, rtol=1e-5)
        for n in ("weight", "bias", "rho"):
            torch.testing.assert_close(getattr(ours, n).grad, getattr(ref, n).grad, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours.running_mean, bn.running_mean, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours.running_var, bn.running_var, atol=1e-5, rtol=1e-5)
    ours.eval(), bn.eval()
    x = torch.randn(2, C, 4, 4, generator=gen)
    torch.testing.assert_close(ours(x), _bin_reference(x, ref, bn), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("rho,ref_factory", [(1.0, lambda: BatchNorm2d(C)), (0.0, lambda: InstanceNorm2d(C))], ids=["rho1-bn", "rho0-in"])
def test_batch_instance_norm_limits(rho, ref_factory):
    ours, ref = BatchInstanceNorm2d(C), ref_factory()
    _randomize_affine(ours, seed=9)
    with torch.no_grad():
        ours.rho.fill_(rho)
    ref.load_state_dict(ours.state_dict(), strict=False)
    gen = torch.Generator().manual_seed(11)
    for _ in range(3):
        x = torch.randn(4, C, 5, 3, generator=gen) + 2
        _assert_same(ours.train(), ref.train(), x, torch.randn_like(x), 1e-5)
    if rho == 1.0:
        torch.testing.assert_close(ours.running_var, ref.running_var, atol=1e-5, rtol=1e-5)
    x = torch.randn(4, C, 5, 3, generator=gen)
    _assert_same(ours.eval(), ref.eval(), x, torch.randn_like(x), 1e-5)


def test_gates_start_at_one_and_clip_to_unit_interval():
    model = nn.Sequential(nn.Conv2d(3, C, 3), make_norm("bin", C), nn.ReLU(), nn.Conv2d(C, 4, 1), make_norm("bin", 4), make_norm("bn", 4))
    gates = gate_parameters(model)
    assert [g.shape for g in gates] == [(C,), (4,)]
    assert all(isinstance(g, nn.Parameter) and torch.equal(g, torch.ones_like(g)) for g in gates)
    with torch.no_grad():
        gates[0].copy_(torch.linspace(-1.0, 2.0, C))
        gates[1].copy_(torch.tensor([0.3, 1.5, -0.2, 1.0]))
    clip_gates_(model)
    assert gates[0].min().item() == 0.0 and gates[0].max().item() == 1.0
    torch.testing.assert_close(gates[1], torch.tensor([0.3, 1.0, 0.0, 1.0]))
    assert gates[0].requires_grad  # still a trainable parameter, changed in place
    assert gate_parameters(nn.Sequential(make_norm("bn", C))) == []


def test_registry_names_and_builtins():
    assert NORM_NAMES == ("bn", "in", "bin", "ln", "gn", "nn", "torch_bn")
    assert isinstance(make_norm("nn", C), nn.Identity)
    torch_bn = make_norm("torch_bn", C)
    assert type(torch_bn) is nn.BatchNorm2d and torch_bn.eps == 1e-5 and torch_bn.momentum == 0.1
    expected = {"bn": BatchNorm2d, "in": InstanceNorm2d, "bin": BatchInstanceNorm2d, "ln": LayerNorm2d, "gn": GroupNorm2d}
    for name, cls in expected.items():
        layer = make_norm(name, 16)
        assert type(layer) is cls and layer.eps == 1e-5
    assert make_norm("gn", 16).num_groups == DEFAULT_GN_GROUPS
    assert make_norm("gn", 64, num_groups=4).num_groups == 4


def test_registry_refuses_unknown_name_listing_valid_ones():
    with pytest.raises(ValueError, match=r"expected a normalization name in bn, in, bin, ln, gn, nn, torch_bn or a "
                                         r"'module:Class' import path, got 'batchnorm'"):
        make_norm("batchnorm", C)


def test_registry_refuses_options_the_layer_does_not_take():
    with pytest.raises(ValueError, match=r"expected options for 'bn' among \(eps, momentum\), got num_groups"):
        make_norm("bn", C, num_groups=2)


def test_registry_refuses_bad_channel_count():
    with pytest.raises(ValueError, match="expected a positive integer num_channels, got 0"):
        make_norm("ln", 0)


def test_groupnorm_state_dict_is_pytorchs_and_loads_into_nn_groupnorm():
    """The group-membership matrix is not saved: checkpoints stay nn.GroupNorm's (weight, bias)."""
    ours = make_norm("gn", 16, num_groups=4)
    assert set(ours.state_dict()) == set(nn.GroupNorm(4, 16).state_dict()) == {"weight", "bias"}
    nn.GroupNorm(4, 16).load_state_dict(ours.state_dict())


@pytest.mark.parametrize("groups", [1, 2, 16])
def test_groupnorm_extreme_group_counts_match_pytorch_with_gradients(groups):
    """G=1 (LayerNorm) and G=C (InstanceNorm) through the same pooling, eager and on NHWC compiled."""
    ours, ref = make_norm("gn", 16, num_groups=groups), nn.GroupNorm(groups, 16)
    _randomize_affine(ours, seed=groups)
    ref.load_state_dict(ours.state_dict())
    x = torch.randn(4, 16, 3, 3)
    grad = torch.randn_like(x)
    y0, gx0, gp0 = _fwd_bwd(ref, x, grad)
    for fn, inp in ((ours, x), (torch.compile(ours, backend="aot_eager", fullgraph=True),
                               x.contiguous(memory_format=torch.channels_last))):
        ours.zero_grad(set_to_none=True)
        y, gx, gp = _fwd_bwd(fn, inp, grad, owner=ours)
        torch.testing.assert_close(y, y0, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(gx, gx0, atol=1e-5, rtol=1e-5)
        for key in gp0:
            torch.testing.assert_close(gp[key], gp0[key], atol=1e-4, rtol=1e-5)
    torch._dynamo.reset()


def test_groupnorm_refuses_groups_not_dividing_channels():
    with pytest.raises(ValueError, match=r"expected num_groups to be a positive divisor of num_channels=16, got num_groups=32"):
        make_norm("gn", 16, num_groups=32)


@pytest.mark.parametrize("name", ["bn", "in", "bin", "ln", "gn"])
def test_refuses_wrong_rank_and_channel_count(name):
    layer = make_norm(name, C)
    with pytest.raises(ValueError, match=r"expected a 4-D \(B, C, H, W\) input to \w+, got a 3-D tensor of shape \(2, 8, 5\)"):
        layer(torch.randn(2, C, 5))
    with pytest.raises(ValueError, match=r"expected 8 channels in the input to \w+, got 4 \(shape \(2, 4, 3, 3\)\)"):
        layer(torch.randn(2, 4, 3, 3))


@pytest.mark.parametrize("name", ["bn", "bin"])
def test_batch_statistics_need_more_than_one_value(name):
    with pytest.raises(ValueError, match=r"expected more than 1 (value per channel when training|spatial element per plane), got input of shape \(1, 8, 1, 1\)"):
        make_norm(name, C).train()(torch.randn(1, C, 1, 1))


@pytest.mark.parametrize("name", ["in", "bin"])
def test_instance_statistics_need_more_than_one_pixel(name):
    with pytest.raises(ValueError, match=r"expected more than 1 spatial element per plane, got input of shape \(4, 8, 1, 1\)"):
        make_norm(name, C).eval()(torch.randn(4, C, 1, 1))


FORBIDDEN = [
    (F, "batch_norm"), (F, "instance_norm"), (F, "layer_norm"), (F, "group_norm"),
    (torch, "batch_norm"), (torch, "instance_norm"), (torch, "layer_norm"), (torch, "group_norm"),
    (torch, "native_batch_norm"), (torch, "native_layer_norm"), (torch, "native_group_norm"),
]


def test_no_builtin_normalization_is_called(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("a built-in normalization function was called")

    for owner, attr in FORBIDDEN:
        monkeypatch.setattr(owner, attr, forbidden)
    # the patch works: PyTorch's own layer now fails
    with pytest.raises(AssertionError, match="built-in normalization"):
        nn.GroupNorm(2, C)(torch.randn(2, C, 3, 3))
    for name in ["bn", "in", "bin", "ln", "gn"]:
        layer = make_norm(name, C)
        assert not any(isinstance(m, nn.modules.batchnorm._NormBase) or isinstance(m, (nn.GroupNorm, nn.LayerNorm)) for m in layer.modules())
        for mode in (True, False):
            x = torch.randn(3, C, 4, 4, requires_grad=True)
            layer.train(mode)(x).sum().backward()
            assert x.grad is not None and torch.isfinite(x.grad).all()


@pytest.mark.parametrize("name", ["bn", "in", "bin", "ln", "gn"])
def test_traces_as_one_graph_for_torch_compile(name):
    """Dynamo captures forward (train and eval) without a graph break; AOT autograd (the
    compiler's front end, minus code generation) gives the eager results and running stats."""
    import torch._dynamo

    layer = make_norm(name, C)
    x = torch.randn(3, C, 4, 4)
    for mode in (True, False):
        explanation = torch._dynamo.explain(layer.train(mode))(x)
        assert explanation.graph_break_count == 0 and explanation.graph_count == 1, explanation.break_reasons
    torch._dynamo.reset()
    eager, compiled = make_norm(name, C), make_norm(name, C)
    _randomize_affine(eager, seed=12)
    compiled.load_state_dict(eager.state_dict())
    fn = torch.compile(compiled, backend="aot_eager", fullgraph=True)
    grad = torch.randn_like(x)
    y1, gx1, gp1 = _fwd_bwd(eager, x, grad)
    y2, gx2, gp2 = _fwd_bwd(fn, x, grad, owner=compiled)
    torch.testing.assert_close(y2, y1, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(gx2, gx1, atol=1e-5, rtol=1e-5)
    for key in gp1:
        torch.testing.assert_close(gp2[key], gp1[key], atol=1e-5, rtol=1e-5)
    for key, value in eager.state_dict().items():
        torch.testing.assert_close(compiled.state_dict()[key], value, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["ln", "gn"])
def test_compiled_on_channels_last_matches_pytorch(name):
    """Compiled on NHWC tensors (the trainer's default layout when compiling), LN and GN take
    per-cell statistics instead of a (B, G, -1) view; output and gradients stay PyTorch's."""
    groups = 1 if name == "ln" else 8
    ours = make_norm(name, 32, **({"num_groups": groups} if name == "gn" else {}))
    ref = nn.GroupNorm(groups, 32)
    _randomize_affine(ours, seed=3)
    with torch.no_grad():
        ref.weight.copy_(ours.weight)
        ref.bias.copy_(ours.bias)
    x = torch.randn(6, 32, 5, 5).contiguous(memory_format=torch.channels_last)
    grad = torch.randn(6, 32, 5, 5)
    y1, gx1, gp1 = _fwd_bwd(ref, x, grad)
    y2, gx2, gp2 = _fwd_bwd(torch.compile(ours, backend="aot_eager", fullgraph=True), x, grad, owner=ours)
    torch.testing.assert_close(y2, y1, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(gx2, gx1, atol=1e-5, rtol=1e-5)
    for key in gp1:
        torch.testing.assert_close(gp2[key], gp1[key], atol=1e-4, rtol=1e-5)
