"""Scoring a ResNet: loss, accuracy, micro/macro F1 and the penultimate features' percentiles."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from normlab.data.image_batches import iterate_batches
from normlab.files import QUANTILES
from normlab.train.compiled import autocast
from normlab.train.metrics import classification_metrics


@torch.no_grad()
def evaluate(net: nn.Module, x: torch.Tensor, y: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, *,
             batch_size: int, device: torch.device, bf16: bool = False, channels_last: bool = False,
             features: bool = False) -> dict:
    """Loss, metrics and (with ``features``) the percentiles ``QUANTILES`` of the penultimate features
    of ``net`` in eval mode.

    x: uint8 images (N, C, H, W) on ``device``; y: labels (N,). The images are
    normalized but not augmented.
    """
    net.eval()
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    preds, feats = [], []
    for xb, yb in iterate_batches(x, y, batch_size, shuffle=False, augment=False, mean=mean, std=std):
        if channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        with autocast(bf16, device):
            logits, f = net(xb, return_features=True)  # shape: (B, K), (B, 64)
        logits = logits.float()
        loss_sum += F.cross_entropy(logits, yb, reduction="sum").double()
        preds.append(logits.argmax(1))
        if features:  # a copy: under CUDA graphs the next batch overwrites the graph's output
            feats.append(f.float().clone())
    pred = torch.cat(preds).cpu().numpy()
    out = classification_metrics(y.cpu().numpy(), pred)
    out["loss"] = float(loss_sum) / len(y)
    if features:
        flat = torch.cat(feats).flatten()  # shape: (N * 64,)
        q = torch.quantile(flat.cpu(), torch.tensor(list(QUANTILES.values())))
        out["quantiles"] = {k: float(v) for k, v in zip(QUANTILES, q)}
    return out
