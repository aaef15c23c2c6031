"""`normlab resnet train`: parse arguments, build a ``ResNetConfig``, call ``normlab.train.resnet.fit``."""

from __future__ import annotations

import argparse
from pathlib import Path

TRAIN_HELP = """\
Train a CIFAR ResNet with 6n+2 layers (He et al. 2016, section 4.2) using one
normalization scheme, and write a run directory (--out):

  config.json    every setting, torch version, device, the validation split
  metrics.jsonl  one line per epoch: lr, seconds, train/val loss, accuracy, error,
                 val micro/macro F1, and the 1st/20th/80th/99th percentiles of the
                 penultimate-layer features over the validation set
  train.log      the per-epoch table printed while training
  best.pt        checkpoint with the best validation accuracy; last.pt: the latest epoch
  curves.png     train and validation error against epoch
  quantiles.png  the four feature percentiles against epoch
  summary.json   written last: status (finished, early_stopped or diverged), and
                 accuracy, micro F1, macro F1 and loss on train, val and test from
                 the best checkpoint (the test split is read only here)

Recipe: SGD with momentum, He et al. augmentation (4-pixel pad, random crop,
horizontal flip) done on whole batches on the device, a validation set drawn
from the training images, early stopping on validation accuracy. A non-finite
training loss stops the run (status "diverged"), keeping the best checkpoint.
See docs/resnet.md for the choices and their reasons.

--config FILE trains the run a config.json describes (a run directory's, as a
study writes it before starting each run, or a JSON object of settings); flags
given beside it override the file's values (--out, --resume, --device, ...).
"""

# What each --norm means (the keys must be normlab.norms.NORM_NAMES; a test checks it).
NORM_HELP = {
    "bn": "BatchNorm (Ioffe & Szegedy 2015), from scratch",
    "in": "InstanceNorm (Ulyanov et al. 2016)",
    "bin": "Batch-Instance Norm (Nam & Kim 2018), gated mix of bn and in",
    "ln": "LayerNorm over (C, H, W) (Ba et al. 2016)",
    "gn": "GroupNorm (Wu & He 2018), see --gn-groups",
    "nn": "no normalization",
    "torch_bn": "PyTorch's nn.BatchNorm2d (reference for bn)",
}


def register(sub) -> None:
    from typing import get_args

    from normlab.cli import HelpFormatter, RawHelpFormatter, finite_float, track_given
    from normlab.norms import DEFAULT_GN_GROUPS, NORM_NAMES
    from normlab.train.resnet import (REFERENCE_BATCH_SIZE, CompileMode, LrScaling, ResNetConfig, Schedule,
                                      ShortcutKind)

    d = ResNetConfig()
    p = sub.add_parser("resnet", help="CIFAR ResNets with different normalization layers: train",
                       formatter_class=HelpFormatter,
                       description="CIFAR ResNets (6n+2 layers) with different normalization layers.")
    rsub = p.add_subparsers(dest="resnet_command", metavar="SUBCOMMAND", required=True)
    t = rsub.add_parser("train", help="train one ResNet and write a run directory", description=TRAIN_HELP,
                        formatter_class=RawHelpFormatter)

    m = t.add_argument_group("model")
    m.add_argument("--n", type=int, default=d.n, metavar="N", help=f"blocks per stage: 6n+2 layers (default {d.n}: ResNet-14)")
    # No argparse choices: the config refuses a name that is neither built in nor module:Class.
    m.add_argument("--norm", default=d.norm, metavar="{" + ",".join(NORM_NAMES) + ",MODULE:CLASS}",
                   help="normalization after every conv: "
                        + "; ".join(f"{k}: {NORM_HELP[k]}" for k in NORM_NAMES)
                        + "; or MODULE:CLASS, your own layer (e.g. mypkg.norms:RMSNorm2d), built as "
                          "CLASS(num_channels=C) and mapping (B, C, H, W) to the same shape; MODULE is imported "
                          "from sys.path: an installed package, or a folder on PYTHONPATH (python -m normlab "
                          f"also looks in the current directory); see docs/resnet.md (default {d.norm})")
    m.add_argument("--gn-groups", type=int, default=d.gn_groups, metavar="G",
                   help=f"groups of --norm gn; must divide 16, 32 and 64 (default {DEFAULT_GN_GROUPS})")
    m.add_argument("--shortcut", choices=get_args(ShortcutKind), default=d.shortcut,
                   help="shortcut where a block changes shape: A, parameter-free subsample and zero-pad "
                        f"(the paper's CIFAR choice), or projection, a 1x1 conv + norm (default {d.shortcut})")

    g = t.add_argument_group("data")
    g.add_argument("--data", default=d.data, metavar="{cifar10|PATH}",
                   help="'cifar10' (the official set, found in or downloaded to --data-dir), or a path: "
                        "cifar-10-python.tar.gz or its extracted folder, an image folder "
                        f"(train/<class>/*, test/<class>/*) or a .zip of one (default {d.data})")
    g.add_argument("--data-dir", default=d.data_dir, metavar="DIR",
                   help="where --data cifar10 is looked for and downloaded (default $NORMLAB_DATA, "
                        "else ~/.cache/normlab/data)")
    g.add_argument("--val-size", type=int, default=d.val_size, metavar="N",
                   help=f"validation images drawn at random from the training images (default {d.val_size})")
    g.add_argument("--split-seed", type=int, default=d.split_seed,
                   help=f"seed of the validation draw, fixed across --seed (default {d.split_seed})")
    g.add_argument("--limit-train", type=int, default=d.limit_train, metavar="N",
                   help="train on only N training images, drawn at random with --split-seed from those left "
                        "after the validation draw (the same N for every --seed; quick looks; default: all)")

    o = t.add_argument_group("optimization")
    o.add_argument("--epochs", type=int, default=d.epochs, metavar="N", help=f"epoch budget (default {d.epochs})")
    o.add_argument("--batch-size", type=int, default=d.batch_size, metavar="N", help=f"images per step (default {d.batch_size})")
    o.add_argument("--lr", type=finite_float, default=d.lr, help=f"peak SGD learning rate (default {d.lr})")
    o.add_argument("--lr-scaling", choices=get_args(LrScaling), default=d.lr_scaling,
                   help=f"none: use --lr as given; linear: --lr x batch-size / {REFERENCE_BATCH_SIZE} "
                        f"(Goyal et al. 2017; for small batches such as 8) (default {d.lr_scaling})")
    o.add_argument("--momentum", type=finite_float, default=d.momentum, help=f"SGD momentum (default {d.momentum})")
    o.add_argument("--weight-decay", type=finite_float, default=d.weight_decay,
                   help=f"L2 weight decay, not applied to bin's gates (default {d.weight_decay})")
    o.add_argument("--schedule", choices=get_args(Schedule), default=d.schedule,
                   help="cosine: lr decays to 0 over the epoch budget, every step; step: lr x0.1 at 50%% "
                        f"and 75%% of the epochs (default {d.schedule})")
    o.add_argument("--warmup-epochs", type=finite_float, default=d.warmup_epochs,
                   help=f"linear lr warm-up from 0 over this many epochs (default {d.warmup_epochs:g}: none)")
    o.add_argument("--patience", type=int, default=d.patience, metavar="N",
                   help="stop after this many epochs without a better validation accuracy; 0: never stop "
                        f"early (default {d.patience})")
    o.add_argument("--bin-gate-lr-mult", type=finite_float, default=d.bin_gate_lr_mult,
                   help=f"learning-rate multiplier of bin's gates, as in Nam & Kim's code (default {d.bin_gate_lr_mult:g})")
    o.add_argument("--seed", type=int, default=d.seed,
                   help=f"seed of initialization, batch order and augmentation (default {d.seed})")

    r = t.add_argument_group("runtime")
    r.add_argument("--device", default=d.device,
                   help=f"auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:1, mps (default {d.device})")
    r.add_argument("--compile", choices=get_args(CompileMode), default=d.compile,
                   help="torch.compile the model: auto compiles and falls back to eager with a warning when "
                        "no compiler works; on fails instead; off stays eager (the first compiled epoch "
                        f"pays a one-off compile time) (default {d.compile})")
    r.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                   help="NHWC memory layout (--no-channels-last: NCHW). Default: NHWC when compiled (the fastest "
                        "layout compiled, on CPU and CUDA), NCHW in eager mode (default auto)")
    o.add_argument("--label-smoothing", type=finite_float, default=d.label_smoothing, metavar="E",
                   help="train against (1-E) one-hot + E uniform targets; 0 is the study's plain "
                        f"cross-entropy (default {d.label_smoothing})")
    r.add_argument("--bf16", action="store_true", help="bfloat16 autocast for the forward pass (CUDA)")
    r.add_argument("--eval-batch-size", type=int, default=d.eval_batch_size, metavar="N",
                   help=f"images per batch when evaluating (default {d.eval_batch_size})")
    r.add_argument("--out", default=d.out, metavar="DIR",
                   help=f"run directory; must not hold a run unless --resume (default {d.out})")
    r.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its last.pt; the settings must be the saved ones, "
                        "except --device, --compile and --no-progress (a folder without a checkpoint is "
                        "started afresh)")
    r.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    t.add_argument("--config", default=None, metavar="FILE",
                   help="take every setting from FILE, a run's config.json (or a JSON object of settings); "
                        "flags given beside it override the file's values (default: the flags alone)")
    track_given(t)
    t.set_defaults(func=_train)


def config_from_args(args: argparse.Namespace):
    """The ``ResNetConfig`` the parsed flags (and ``--config FILE``) ask for (validated)."""
    import dataclasses

    from normlab.cli import config_settings
    from normlab.config import dataclass_from_dict
    from normlab.train.resnet import ResNetConfig

    names = {f.name for f in dataclasses.fields(ResNetConfig)}
    where = f"--config {args.config}" if getattr(args, "config", None) else None
    return dataclass_from_dict(ResNetConfig, config_settings(args, names, "resnet"), where)


def _train(args: argparse.Namespace) -> int:
    from normlab.train.resnet import fit

    cfg = config_from_args(args)
    fit(cfg, progress=args.progress)  # prints the per-epoch table and the outcome
    names = ("summary.json", "metrics.jsonl", "curves.png", "quantiles.png", "best.pt")
    held = [n for n in names if (Path(cfg.out) / n).exists()]  # a run diverged in epoch 1 has no best.pt
    print(f"run directory: {cfg.out} ({', '.join(held)})")
    # A diverged run is a result of the study (status "diverged" in summary.json), not a failure.
    return 0
