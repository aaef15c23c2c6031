"""The CIFAR ResNet of He et al. 2016, §4.2, with the normalization layer as an argument.

6n+2 weighted layers: a 3x3 conv with 16 filters; three stages of n basic
blocks (two 3x3 convs each, an identity connection around each block) with
16, 32 and 64 filters on 32x32, 16x16 and 8x8 maps, downsampling by a stride-2
conv at the first block of stages 2 and 3; a normalization right after every
conv; global mean pool; a linear layer to ``num_classes``.

When a block changes shape, its shortcut is the paper's option A (parameter
free: take every other pixel, zero-pad the new channels), or option B
(``shortcut="projection"``: a 1x1 stride-2 conv followed by a norm).

Parameter counts with ``norm="bn"`` and option A (tested against the paper's
Table 6: 0.27M, 0.46M and 0.85M for ResNet-20, -32 and -56)::

    resnet14 (n=2)   172,506        resnet20 (n=3)   269,722
    resnet32 (n=5)   464,154        resnet56 (n=9)   853,018

Option B adds 2,752 (two 1x1 convs and their norms) at any depth.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from normlab.norms import make_norm

Shortcut = Literal["A", "projection"]
SHORTCUTS = ("A", "projection")


class PadShortcut(nn.Module):
    """Option A of He et al. 2016: subsample by ``stride`` and zero-pad channels to ``out_channels``.

    Input (B, C_in, H, W) -> output (B, C_out, H/stride, W/stride); the new
    channels are split evenly before and after the old ones. No parameters.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        assert out_channels >= in_channels, "option A only widens"
        self.stride = stride
        extra = out_channels - in_channels
        self.pad_before, self.pad_after = extra // 2, extra - extra // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]  # shape: (B, C_in, H/s, W/s)
        # F.pad pads the last dims first: (W, W, H, H, C, C).
        return F.pad(x, (0, 0, 0, 0, self.pad_before, self.pad_after))  # shape: (B, C_out, H/s, W/s)


class BasicBlock(nn.Module):
    """conv3x3-norm-relu-conv3x3-norm, plus the shortcut, then relu (He et al. 2016, Fig. 2)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, norm: str,
                 shortcut: Shortcut, norm_kwargs: dict[str, Any]) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.norm1 = make_norm(norm, out_channels, **norm_kwargs)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1, bias=False)
        self.norm2 = make_norm(norm, out_channels, **norm_kwargs)
        if stride == 1 and in_channels == out_channels:
            self.shortcut: nn.Module = nn.Identity()
        elif shortcut == "A":
            self.shortcut = PadShortcut(in_channels, out_channels, stride)
        else:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                make_norm(norm, out_channels, **norm_kwargs),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """CIFAR ResNet with 6n+2 layers (He et al. 2016, §4.2).

    Args:
        n: blocks per stage (n=2 is ResNet-14, n=3 ResNet-20, ...).
        num_classes: output units r.
        norm: a name of ``normlab.norms.make_norm`` (``bn in bin ln gn nn torch_bn``, or a
            user's layer as ``"module:Class"``), used right after every convolution.
        in_channels: channels of the input images.
        shortcut: ``"A"`` (parameter-free, the paper's CIFAR choice) or
            ``"projection"`` (option B) where a block changes shape.
        norm_kwargs: extra keyword arguments for every norm (e.g. ``{"num_groups": 8}`` for gn).

    ``forward(x)`` takes x of shape (B, in_channels, H, W) (32x32 for CIFAR)
    and returns logits (B, num_classes); with ``return_features=True`` it
    returns ``(logits, features)`` where features (B, 64) are the pooled
    penultimate activations.
    """

    widths = (16, 32, 64)

    def __init__(self, n: int, num_classes: int, norm: str = "bn", in_channels: int = 3,
                 shortcut: Shortcut = "A", norm_kwargs: dict[str, Any] | None = None) -> None:
        super().__init__()
        self._validate(n, num_classes, in_channels, shortcut)
        norm_kwargs = dict(norm_kwargs or {})
        self.n, self.num_classes, self.norm_name, self.shortcut_kind = n, num_classes, norm, shortcut
        self.conv = nn.Conv2d(in_channels, self.widths[0], 3, padding=1, bias=False)
        self.norm = make_norm(norm, self.widths[0], **norm_kwargs)
        stages = []
        channels = self.widths[0]
        for i, width in enumerate(self.widths):
            blocks = []
            for j in range(n):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(BasicBlock(channels, width, stride, norm, shortcut, norm_kwargs))
                channels = width
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.fc = nn.Linear(channels, num_classes)
        self.num_features = channels
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                # He et al. 2015 ("Delving deep"), as the paper says it initializes.
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    @staticmethod
    def _validate(n: int, num_classes: int, in_channels: int, shortcut: str) -> None:
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ValueError(f"expected n to be an integer >= 1, got {n!r}")
        if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 2:
            raise ValueError(f"expected num_classes to be an integer >= 2, got {num_classes!r}")
        if not isinstance(in_channels, int) or isinstance(in_channels, bool) or in_channels < 1:
            raise ValueError(f"expected in_channels to be an integer >= 1, got {in_channels!r}")
        if shortcut not in SHORTCUTS:
            raise ValueError(f"expected shortcut to be one of {', '.join(SHORTCUTS)}, got {shortcut!r}")

    @property
    def depth(self) -> int:
        return 6 * self.n + 2

    def forward(self, x: torch.Tensor, return_features: bool = False):
        x = F.relu(self.norm(self.conv(x)))  # shape: (B, 16, H, W)
        x = self.stages(x)  # shape: (B, 64, H/4, W/4)
        features = x.mean(dim=(2, 3))  # shape: (B, 64)
        logits = self.fc(features)  # shape: (B, num_classes)
        return (logits, features) if return_features else logits


def _factory(n: int):
    def make(num_classes: int = 10, **kw) -> ResNet:
        return ResNet(n, num_classes, **kw)

    make.__name__ = f"resnet{6 * n + 2}"
    make.__doc__ = f"ResNet-{6 * n + 2} (n={n}) of He et al. 2016 §4.2; keyword arguments go to ``ResNet``."
    return make


resnet8 = _factory(1)
resnet14 = _factory(2)
resnet20 = _factory(3)
resnet32 = _factory(5)
resnet44 = _factory(7)
resnet56 = _factory(9)
resnet110 = _factory(18)
