"""The images of one ResNet run, on its device: the validation set carved from the training
images first, then the optional training limit, all seeded by ``split_seed``; the channel
statistics of the images trained on; the generator of batch order and augmentation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from normlab import files
from normlab.data.image_batches import channel_stats, train_val_split
from normlab.data.images import load_images

if TYPE_CHECKING:  # (normlab.train.resnet imports this module)
    from normlab.train.resnet import ResNetConfig


@dataclass
class ImageData:
    """A run's images: uint8 ``(N, C, H, W)`` and int64 labels; train and val on the device."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: np.ndarray  # read only for the summary, moved to the device then
    test_y: np.ndarray
    mean: torch.Tensor  # (C,) per-channel statistics of the training images, in [0, 1] units
    std: torch.Tensor
    source: str
    num_classes: int
    steps_per_epoch: int
    info: dict  # what config.json says of the data

    @property
    def in_channels(self) -> int:
        return int(self.train_x.shape[1])

    def test_on(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        return _as_tensor(self.test_x).to(device), _as_tensor(self.test_y).to(device)


def load_data(cfg: ResNetConfig, device: torch.device) -> ImageData:
    """Load ``cfg.data`` (decoded once, then cached), split and limit it as ``cfg`` says, move it to ``device``."""
    ds = load_images(cfg.data, cfg.data_dir, download=True)
    num_all = len(ds.train_y)
    check_data_sizes(cfg, num_all)
    train_idx, val_idx = train_val_split(num_all, val_size=cfg.val_size, seed=cfg.split_seed)
    train_idx, val_idx = np.asarray(train_idx), np.asarray(val_idx)
    if cfg.limit_train is not None:
        pick = np.random.default_rng(cfg.split_seed).permutation(len(train_idx))[: cfg.limit_train]
        train_idx = np.sort(train_idx[pick])
    tr_x_np = np.asarray(ds.train_x)[train_idx]
    mean_list, std_list = channel_stats(tr_x_np)  # of the images trained on
    tr_x, tr_y = torch.from_numpy(tr_x_np), _take(ds.train_y, train_idx)
    va_x, va_y = _take(ds.train_x, val_idx), _take(ds.train_y, val_idx)
    num_classes = len(ds.classes)
    tr_x, tr_y, va_x, va_y = (t.to(device) for t in (tr_x, tr_y, va_x, va_y))
    info = {
        "source": ds.source, "file": files.file_fingerprint(cfg.data), "classes": list(ds.classes),
        "num_classes": num_classes,
        "sizes": {"train": int(len(tr_y)), "val": int(len(va_y)), "test": int(len(ds.test_y))},
        "val_seed": cfg.split_seed, "mean": mean_list, "std": std_list,
    }
    # A short last batch (down to a single image) would give BN noisy statistics and an odd-sized
    # step; with reshuffling every epoch, dropping it still shows every image equally often.
    steps_per_epoch = len(tr_y) // cfg.batch_size
    return ImageData(tr_x, tr_y, va_x, va_y, ds.test_x, ds.test_y, torch.tensor(mean_list), torch.tensor(std_list),
                     ds.source, num_classes, steps_per_epoch, info)


def check_data_sizes(cfg: ResNetConfig, num_all: int) -> None:
    """Refuse a --val-size, --limit-train or --batch-size that ``num_all`` training images cannot give.

    Also used by ``normlab study resnet`` before its first run starts.
    """
    if cfg.val_size >= num_all:
        raise ValueError(f"expected --val-size below the {num_all} training images, got {cfg.val_size}")
    num_train = num_all - cfg.val_size
    if cfg.limit_train is not None:
        if cfg.limit_train > num_train:
            raise ValueError(f"expected --limit-train at most the {num_train} non-validation training images, "
                             f"got {cfg.limit_train}")
        num_train = cfg.limit_train
    if cfg.batch_size > num_train:
        raise ValueError(f"expected --batch-size at most the {num_train} training images, got {cfg.batch_size}")


def data_generator(device: torch.device, seed: int) -> torch.Generator:
    """The generator of a run's batch order and augmentation, on the data's device."""
    # The device itself, index included: a generator on cuda:0 for data on cuda:1 would copy every draw.
    gen = torch.Generator(device=device if device.type != "mps" else "cpu")
    gen.manual_seed(seed)
    return gen


def _as_tensor(a) -> torch.Tensor:
    return a if torch.is_tensor(a) else torch.as_tensor(np.asarray(a))


def _take(a, idx: np.ndarray) -> torch.Tensor:
    """Rows ``idx`` of an array or tensor, as a tensor."""
    return _as_tensor(a)[torch.as_tensor(idx, dtype=torch.long)]
