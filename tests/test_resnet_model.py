"""The CIFAR ResNet against He et al. 2016 §4.2: layer layout, parameter counts, shapes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from normlab.models import resnet as R
from normlab.norms import NORM_NAMES


def count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("factory, paper_millions", [(R.resnet20, 0.27), (R.resnet32, 0.46),
                                                      (R.resnet44, 0.66), (R.resnet56, 0.85)])
def test_parameter_counts_match_the_paper_table(factory, paper_millions):
    # He et al. 2016, Table 6 (BN, option A shortcuts), rounded to 0.01M.
    assert round(count(factory(norm="torch_bn")) / 1e6, 2) == paper_millions


def test_parameter_count_of_n2_by_hand():
    # n=2: conv 3->16, then per stage 2n 3x3 convs (the first of stages 2, 3 widening),
    # a BN (2C) after each conv, and the 64->10 linear layer.
    convs = 3 * 16 * 9 + 4 * 16 * 16 * 9 + (16 * 32 + 3 * 32 * 32) * 9 + (32 * 64 + 3 * 64 * 64) * 9
    norms = 2 * (16 + 4 * 16 + 4 * 32 + 4 * 64)
    fc = 64 * 10 + 10
    assert count(R.resnet14()) == convs + norms + fc == 172_506
    assert count(R.ResNet(2, 10, norm="bn")) == count(R.ResNet(2, 10, norm="torch_bn"))


def test_projection_shortcut_adds_two_1x1_convs_and_their_norms():
    extra = 16 * 32 + 2 * 32 + 32 * 64 + 2 * 64
    assert count(R.ResNet(2, 10, shortcut="projection")) - count(R.ResNet(2, 10)) == extra


def test_layer_layout_is_6n_plus_2():
    for n in (1, 2, 3):
        model = R.ResNet(n, 10)
        convs = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
        linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
        assert len(convs) + len(linears) == 6 * n + 2 == model.depth
        assert [c.out_channels for c in convs] == [16] + [16] * 2 * n + [32] * 2 * n + [64] * 2 * n
        strides = [c.stride[0] for c in convs]
        assert strides.count(2) == 2 and strides[1 + 2 * n] == 2 and strides[1 + 4 * n] == 2
        assert all(c.bias is None for c in convs)  # the norm after each conv supplies the shift


@pytest.mark.parametrize("shortcut", ["A", "projection"])
@pytest.mark.parametrize("norm", NORM_NAMES)
def test_every_norm_and_shortcut_trains_one_step(norm, shortcut):
    torch.manual_seed(0)
    kw = {"num_groups": 4} if norm == "gn" else {}
    model = R.ResNet(1, 7, norm=norm, shortcut=shortcut, norm_kwargs=kw)
    x = torch.randn(4, 3, 16, 16)  # small, to keep 14 cases fast; every stage still downsamples
    logits, feats = model(x, return_features=True)
    assert logits.shape == (4, 7) and feats.shape == (4, 64)
    logits.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    model.eval()
    with torch.no_grad():
        one = model(x[:1])
    assert one.shape == (1, 7) and torch.isfinite(one).all()


def test_norm_sits_after_every_conv():
    model = R.ResNet(2, 10, norm="gn", norm_kwargs={"num_groups": 8})
    from normlab.norms import GroupNorm2d

    norms = [m for m in model.modules() if isinstance(m, GroupNorm2d)]
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(norms) == len(convs) == 13
    assert all(g.num_groups == 8 for g in norms)


def test_features_are_the_pooled_input_of_the_classifier():
    torch.manual_seed(0)
    model = R.resnet14(num_classes=10).eval()
    x = torch.randn(3, 3, 32, 32)
    logits, feats = model(x, return_features=True)
    torch.testing.assert_close(model.fc(feats), logits)
    assert (feats >= 0).all()  # mean of post-ReLU maps


def test_option_a_shortcut_subsamples_and_zero_pads():
    sc = R.PadShortcut(16, 32, 2)
    x = torch.randn(2, 16, 8, 8)
    y = sc(x)
    assert y.shape == (2, 32, 4, 4)
    torch.testing.assert_close(y[:, 8:24], x[:, :, ::2, ::2])
    assert y[:, :8].abs().sum() == 0 and y[:, 24:].abs().sum() == 0
    assert count(sc) == 0


def test_other_input_sizes_and_channels():
    model = R.ResNet(1, 3, in_channels=1)
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 3)


def test_conv_weights_use_he_initialization():
    torch.manual_seed(0)
    model = R.ResNet(2, 10)
    w = model.stages[2][1].conv2.weight  # 64 out channels, fan_out = 64 * 9
    assert abs(w.std().item() - (2 / (64 * 9)) ** 0.5) < 0.003


def test_factories_are_named_by_depth():
    assert R.resnet14().n == 2 and R.resnet20().n == 3 and R.resnet110().depth == 110
    assert R.resnet20.__name__ == "resnet20"
    assert R.resnet20(num_classes=100, norm="ln").fc.out_features == 100


@pytest.mark.parametrize("kwargs, message", [
    (dict(n=0, num_classes=10), "expected n to be an integer >= 1, got 0"),
    (dict(n=2.0, num_classes=10), "expected n to be an integer >= 1, got 2.0"),
    (dict(n=2, num_classes=1), "expected num_classes to be an integer >= 2, got 1"),
    (dict(n=2, num_classes=10, in_channels=0), "expected in_channels to be an integer >= 1, got 0"),
    (dict(n=2, num_classes=10, shortcut="B"), "expected shortcut to be one of A, projection, got 'B'"),
    (dict(n=2, num_classes=10, norm="batch"), "expected a normalization name in"),
])
def test_bad_arguments_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        R.ResNet(**kwargs)
