"""Training a CIFAR ResNet with one normalization scheme: ``fit(ResNetConfig(...))``.

One run writes one run directory (see ``normlab.train.rundir``)::

    config.json    {"kind": "resnet", "config": every setting, "env": torch/device, "data": split and stats}
    metrics.jsonl  one line per epoch (keys in METRIC_KEYS)
    train.log      the fixed-column table printed to stdout, plus warnings
    best.pt        checkpoint with the best validation accuracy
    last.pt        checkpoint after the latest epoch (``resume=True`` continues from it)
    curves.png     train and validation error against epoch
    quantiles.png  1st/20th/80th/99th percentile of the penultimate features on the validation set
    summary.json   written last: status, and accuracy/micro F1/macro F1/loss on
                   train, val and test from the best checkpoint

The recipe follows He et al. 2016 §4.2 (SGD, momentum 0.9, lr 0.1, batch 128,
pad-4 crop + flip augmentation) over the study's 100-epoch budget. The test
split is read only after training, for the summary.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import statistics
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal, Optional, get_args

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from normlab.config import dataclass_from_dict
from normlab.config import flag as option
from normlab.train import rundir
from normlab.train.metrics import classification_metrics
from normlab.train.plots import plot_error_curves, plot_quantiles

Schedule = Literal["cosine", "step"]
LrScaling = Literal["none", "linear"]
CompileMode = Literal["auto", "on", "off"]
ShortcutKind = Literal["A", "projection"]

# The batch size at which ``lr`` is meant; ``lr_scaling="linear"`` scales lr by batch_size / this.
REFERENCE_BATCH_SIZE = 128

# One metrics.jsonl line per epoch; ``lr`` is the peak-group lr at the epoch's first step,
# ``seconds`` the wall time of its training and validation, train_* running averages over
# its augmented batches.
METRIC_KEYS = ("epoch", "step", "lr", "seconds", "train_loss", "train_accuracy", "train_error",
               "val_loss", "val_accuracy", "val_error", "val_micro_f1", "val_macro_f1", "quantiles")
QUANTILES = {"q01": 0.01, "q20": 0.20, "q80": 0.80, "q99": 0.99}
LOG = "train.log"


@dataclass
class ResNetConfig:
    """Every setting of one ResNet training run (saved whole in config.json and every checkpoint)."""

    # --- model ---
    n: int = 2  # 6n+2 layers; the study trains n=2 (ResNet-14)
    # A name of normlab.norms.NORM_NAMES, or "module:Class", the import path of the user's own layer
    # (normlab.norms.custom). Construction checks only its spelling; fit imports and tries the class.
    norm: str = "bn"
    gn_groups: int | None = None  # groups of gn; None takes normlab.norms.DEFAULT_GN_GROUPS (ignored by other norms)
    shortcut: ShortcutKind = "A"  # the paper's parameter-free CIFAR shortcut; "projection" is option B
    # --- data ---
    data: str = "cifar10"  # "cifar10" or a path (official archive/folder, image folder, or its zip)
    data_dir: str | None = None  # where "cifar10" is looked for / downloaded; None: $NORMLAB_DATA or a home cache
    val_size: int = 10000  # carved from the training images before anything else
    # Fixed apart from ``seed`` so that runs with different seeds share one validation set
    # (their spread then measures training noise, not split noise).
    split_seed: int = 0
    limit_train: int | None = None  # use only N of the non-validation training images (quick looks, tests)
    # --- optimization ---
    epochs: int = 100
    batch_size: int = 128
    lr: float = 0.1  # at batch 128; see lr_scaling
    lr_scaling: LrScaling = "none"  # "linear": lr * batch_size / 128 (Goyal et al. 2017)
    momentum: float = 0.9
    # 5e-4 rather than the paper's 1e-4: the paper trains ~182 epochs, the study 100; with
    # normalized (scale-invariant) convs a larger decay raises the effective step size and
    # converges within the shorter budget, and it is the usual value for 100-200 epoch CIFAR runs.
    weight_decay: float = 5e-4
    schedule: Schedule = "cosine"  # "cosine": to 0 over the epoch budget, per step; "step": x0.1 at 50% and 75%
    # He et al. warm up only ResNet-110; the default keeps the study's plain lr 0.1 from step 0.
    warmup_epochs: float = 0.0
    # Cross-entropy against (1 - e) one-hot + e uniform targets in training (Szegedy et al. 2016);
    # 0 is the study's plain loss. Validation and test losses stay plain.
    label_smoothing: float = 0.0
    patience: int = 20  # epochs without a new best val accuracy before stopping; 0 turns early stopping off
    bin_gate_lr_mult: float = 10.0  # lr multiplier of BIN's gates rho, as Nam & Kim's code does
    seed: int = 0
    # --- runtime ---
    device: str = "auto"  # auto: CUDA, then MPS, then CPU
    # "auto": torch.compile where it works, else eager with a warning. On our 2-core CPU the
    # from-scratch bn only matches nn.BatchNorm2d's speed when compiled (benchmarks/README.md).
    compile: CompileMode = "auto"
    # NHWC memory layout. None (auto): NHWC when the model is compiled, NCHW in eager mode.
    # Measured on a 2-core AVX-512 CPU (benchmarks/README.md): compiled, NHWC is the fastest
    # layout for every norm; eager, our from-scratch norms are much slower on NHWC tensors.
    # On CUDA NHWC feeds the tensor cores.
    channels_last: Optional[bool] = None
    bf16: bool = False  # bfloat16 autocast for the forward pass (CUDA; loss and metrics stay float32)
    eval_batch_size: int = 256  # beat 1000 on our CPU (cache-sized batches); any size works on a GPU
    out: str = "runs/resnet"
    resume: bool = False

    def __post_init__(self) -> None:
        self._validate()

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ResNetConfig":
        """Build a config from a dict, refusing unknown keys by name."""
        return dataclass_from_dict(cls, d)

    def _validate(self) -> None:
        from normlab.norms import NORM_NAMES, is_norm_spec

        def integer(name: str, low: int, allow_none: bool = False) -> None:
            v = getattr(self, name)
            if v is None and allow_none:
                return
            if not isinstance(v, int) or isinstance(v, bool) or v < low:
                raise ValueError(f"expected {option(name)} to be an integer >= {low}, got {v!r}")

        def number(name: str, low: float, strict: bool) -> None:
            v = getattr(self, name)
            ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            if not ok or (v <= low if strict else v < low):
                raise ValueError(f"expected {option(name)} to be a finite number {'>' if strict else '>='} {low}, got {v!r}")

        def choice(name: str, options) -> None:
            v = getattr(self, name)
            if v not in options:
                raise ValueError(f"expected {option(name)} to be one of {', '.join(map(str, options))}, got {v!r}")

        def flag(name: str) -> None:
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"expected {option(name)} to be True or False, got {getattr(self, name)!r}")

        integer("n", 1)
        if self.norm not in NORM_NAMES and not is_norm_spec(self.norm):
            raise ValueError(f"expected --norm to be one of {', '.join(NORM_NAMES)}, or a 'module:Class' "
                             f"import path of your own layer, got {self.norm!r}")
        integer("gn_groups", 1, allow_none=True)
        if self.norm == "gn" and self.gn_groups is not None and 16 % self.gn_groups:
            raise ValueError(f"expected --gn-groups to divide the 16, 32 and 64 channels of the network "
                             f"(1, 2, 4, 8 or 16), got {self.gn_groups}")
        choice("shortcut", get_args(ShortcutKind))
        if not isinstance(self.data, str) or not self.data:
            raise ValueError(f"expected --data to be 'cifar10' or a path, got {self.data!r}")
        if self.data_dir is not None and not isinstance(self.data_dir, str):
            raise ValueError(f"expected --data-dir to be a path string or None, got {self.data_dir!r}")
        integer("val_size", 1)
        integer("split_seed", 0)
        integer("limit_train", 1, allow_none=True)
        integer("epochs", 1)
        integer("batch_size", 1)
        number("lr", 0.0, strict=True)
        choice("lr_scaling", get_args(LrScaling))
        number("momentum", 0.0, strict=False)
        if self.momentum >= 1:
            raise ValueError(f"expected --momentum to be in [0, 1), got {self.momentum!r}")
        number("weight_decay", 0.0, strict=False)
        choice("schedule", get_args(Schedule))
        number("warmup_epochs", 0.0, strict=False)
        number("label_smoothing", 0.0, strict=False)
        if self.label_smoothing >= 1:
            raise ValueError(f"expected label_smoothing in [0, 1), got {self.label_smoothing!r}")
        if self.warmup_epochs >= self.epochs:
            raise ValueError(f"expected --warmup-epochs below --epochs ({self.epochs}), got {self.warmup_epochs!r}")
        integer("patience", 0)
        number("bin_gate_lr_mult", 0.0, strict=True)
        integer("seed", 0)
        if not isinstance(self.device, str) or not self.device:
            raise ValueError(f"expected --device to be auto, cpu, cuda, cuda:N or mps, got {self.device!r}")
        choice("compile", get_args(CompileMode))
        if self.channels_last is not None:
            flag("channels_last")
        flag("bf16")
        integer("eval_batch_size", 1)
        if not isinstance(self.out, (str, Path)) or not str(self.out):
            raise ValueError(f"expected --out to be a folder path, got {self.out!r}")
        flag("resume")

    @property
    def effective_lr(self) -> float:
        """The peak learning rate after ``lr_scaling``."""
        if self.lr_scaling == "linear":
            return self.lr * self.batch_size / REFERENCE_BATCH_SIZE
        return self.lr


# ---------------------------------------------------------------------------
# pieces


def build_model(cfg: ResNetConfig, num_classes: int, in_channels: int = 3) -> nn.Module:
    from normlab.models.resnet import ResNet

    norm_kwargs = {"num_groups": cfg.gn_groups} if cfg.norm == "gn" else {}
    return ResNet(cfg.n, num_classes, norm=cfg.norm, in_channels=in_channels,
                  shortcut=cfg.shortcut, norm_kwargs=norm_kwargs)


def build_optimizer(cfg: ResNetConfig, model: nn.Module) -> torch.optim.SGD:
    """SGD with momentum; BIN's gates get no weight decay and ``bin_gate_lr_mult`` times the lr."""
    from normlab.norms import gate_parameters

    gate_ids = {id(p) for p in gate_parameters(model)}
    gates = [p for p in model.parameters() if id(p) in gate_ids]
    others = [p for p in model.parameters() if id(p) not in gate_ids]
    groups = [{"params": others, "weight_decay": cfg.weight_decay, "lr": cfg.effective_lr}]
    if gates:
        groups.append({"params": gates, "weight_decay": 0.0, "lr": cfg.effective_lr * cfg.bin_gate_lr_mult})
    return torch.optim.SGD(groups, lr=cfg.effective_lr, momentum=cfg.momentum)


def lr_factor(cfg: ResNetConfig, steps_per_epoch: int) -> Callable[[int], float]:
    """The multiplier of the peak lr before optimizer step ``step`` (0-based), stepped per batch."""
    total = cfg.epochs * steps_per_epoch
    warm = int(round(cfg.warmup_epochs * steps_per_epoch))
    milestones = [int(cfg.epochs * f) * steps_per_epoch for f in (0.5, 0.75)]

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        if cfg.schedule == "cosine":
            progress = (step - warm) / max(1, total - warm)
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
        return 0.1 ** sum(step >= m for m in milestones)

    return factor


def _as_tensor(a) -> torch.Tensor:
    return a if torch.is_tensor(a) else torch.as_tensor(np.asarray(a))


def _take(a, idx: np.ndarray) -> torch.Tensor:
    """Rows ``idx`` of an array or tensor, as a tensor."""
    return _as_tensor(a)[torch.as_tensor(idx, dtype=torch.long)]


def _data_generator(device: torch.device, seed: int) -> torch.Generator:
    # The device itself, index included: a generator on cuda:0 for data on cuda:1 would copy every draw.
    gen = torch.Generator(device=device if device.type != "mps" else "cpu")
    gen.manual_seed(seed)
    return gen


def _autocast(cfg: ResNetConfig, device: torch.device):
    if cfg.bf16:
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


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


class _Log:
    """Print to stdout and append to ``train.log`` in the run directory."""

    def __init__(self, path: Path, echo: bool = True) -> None:
        self.path, self.echo = path, echo

    def __call__(self, line: str, err: bool = False, echo: bool = True) -> None:
        if self.echo and echo:
            print(line, file=sys.stderr if err else sys.stdout, flush=True)
        with rundir.writing(self.path), open(self.path, "a") as f:
            f.write(line + "\n")


HEADER = (f"{'epoch':>5} {'step':>7} {'lr':>9} {'train_loss':>10} {'train_err':>9} "
          f"{'val_loss':>8} {'val_err':>7} {'val_acc':>7} {'val_mF1':>7} {'sec':>7}")


def _row(r: dict) -> str:
    return (f"{r['epoch']:>5d} {r['step']:>7d} {r['lr']:>9.5f} {r['train_loss']:>10.4f} {r['train_error']:>9.4f} "
            f"{r['val_loss']:>8.4f} {r['val_error']:>7.4f} {r['val_accuracy']:>7.4f} {r['val_macro_f1']:>7.4f} "
            f"{r['seconds']:>7.1f}")


@torch.no_grad()
def evaluate(net: nn.Module, x: torch.Tensor, y: torch.Tensor, mean, std, cfg: ResNetConfig,
             device: torch.device, features: bool = False, channels_last: Optional[bool] = None) -> dict:
    """Loss, metrics and (optionally) the feature percentiles of ``net`` in eval mode.

    x: uint8 images (N, C, H, W) on ``device``; y: labels (N,). The images are
    normalized but not augmented.
    """
    from normlab.data.images import iterate_batches

    net.eval()
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    preds, feats = [], []
    if channels_last is None:
        channels_last = bool(cfg.channels_last)
    for xb, yb in iterate_batches(x, y, cfg.eval_batch_size, shuffle=False, augment=False, mean=mean, std=std):
        if channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        with _autocast(cfg, device):
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


# Batches up to this size train under CUDA graphs on a GPU (``torch.compile(mode="reduce-overhead")``):
# a batch-8 step of ResNet-14 is bound by kernel launches, 27.6 ms eager and 4.3 ms with CUDA graphs
# on an H200 (benchmarks/results/gpu-h200-2026-11-30.json); at batch 128 plain compile is as fast.
CUDA_GRAPHS_MAX_BATCH = 32


def compile_mode(device: torch.device, batch_size: int) -> str:
    """torch.compile's mode for a run: CUDA graphs for small batches on a GPU, else the default."""
    return "reduce-overhead" if device.type == "cuda" and batch_size <= CUDA_GRAPHS_MAX_BATCH else "default"


class _Net:
    """The module the loop calls: compiled when asked and working, else the eager model.

    With ``compile="auto"`` the first call in each mode (train/eval) runs under a
    guard: if torch.compile cannot compile (no C++ compiler, no backend, an
    unsupported op), the run warns once and continues eagerly, from the same
    state (a failed call changes no weights: the optimizer steps only after it).
    """

    def __init__(self, model: nn.Module, mode: CompileMode, log: _Log, channels_last: bool,
                 auto_layout: bool = False, torch_mode: str = "default") -> None:
        self.model, self.mode, self.log = model, mode, log
        # The layout in use; with ``auto_layout`` it falls back to NCHW with eager mode.
        self.channels_last, self.auto_layout = channels_last, auto_layout
        self.compiled = None
        self.cuda_graphs = mode != "off" and torch_mode == "reduce-overhead"
        if mode != "off":
            self.compiled = torch.compile(model, mode=torch_mode)
        self._proved: set[str] = set()

    @property
    def is_compiled(self) -> bool:
        return self.compiled is not None

    def guarded(self, fn: Callable[[nn.Module], Any], kind: str) -> Any:
        """Run ``fn(module)``; on the first use of each ``kind`` (train, eval), fall back to eager if compiling fails."""
        if self.compiled is None:
            return fn(self.model)
        if kind in self._proved:
            return fn(self.compiled)
        try:
            result = fn(self.compiled)
        except Exception as e:  # noqa: BLE001 - any compiler failure
            if self.mode == "on":
                raise ValueError(f"--compile on: torch.compile failed ({type(e).__name__}: {str(e)[:300]}); "
                                 "use --compile auto or off") from e
            first = str(e).splitlines()[0][:200] if str(e) else ""
            msg = (f"warning: torch.compile is not usable here ({type(e).__name__}: {first}); "
                   "training in eager mode, several times slower (on a GPU about 4x for batch 128 and 6x for "
                   "batch 8: benchmarks/README.md); --compile on makes this an error")
            warnings.warn(msg, RuntimeWarning, stacklevel=2)
            self.log(msg, err=True, echo=False)  # the warning itself is shown once, by warnings
            self.compiled, self.cuda_graphs = None, False
            for p in self.model.parameters():
                p.grad = None
            if self.auto_layout and self.channels_last:
                self.channels_last = False
                self.model.to(memory_format=torch.contiguous_format)
            return fn(self.model)
        self._proved.add(kind)
        return result


def _checkpoint(cfg, model, optimizer, scheduler, gen, state: dict) -> dict:
    return {
        "kind": "resnet",
        "config": rundir.to_jsonable(cfg),
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "data_rng": gen.get_state(),
        "rng": rundir.rng_state_for_checkpoint(),
        **state,
    }


# ---------------------------------------------------------------------------
# the run


def fit(cfg: ResNetConfig, progress: bool = True) -> dict:
    """Train one ResNet as ``cfg`` says and return its summary (also written to ``summary.json``).

    ``progress`` shows a tqdm bar per epoch when stderr is a terminal; the
    per-epoch table is printed either way.
    """
    from normlab.norms import DEFAULT_GN_GROUPS, check_norm, is_norm_spec

    if not isinstance(cfg, ResNetConfig):
        raise ValueError(f"expected a ResNetConfig, got {type(cfg).__name__}")
    cfg._validate()
    if is_norm_spec(cfg.norm):  # the user's own layer: it imports, takes num_channels, keeps the shape
        check_norm(cfg.norm)
    if cfg.norm == "gn" and cfg.gn_groups is None:
        cfg = dataclasses.replace(cfg, gn_groups=DEFAULT_GN_GROUPS)
    out = Path(cfg.out)
    device = rundir.select_device(cfg.device)
    rundir.check_out_dir(out)
    rundir.check_not_a_study(out)
    with rundir.RunLock(out):  # one writer per run folder
        return _fit(cfg, out, device, progress)


def _fit(cfg: ResNetConfig, out: Path, device: torch.device, progress: bool) -> dict:
    """``fit``'s body, run with the run folder locked."""
    from tqdm import tqdm

    from normlab.data.images import channel_stats, iterate_batches, load_images, train_val_split
    from normlab.norms import clip_gates_

    resuming = rundir.prepare_run_dir(out, rundir.to_jsonable(cfg), cfg.resume)
    if resuming:
        rundir.check_same_data(out, [cfg.data])
    log = _Log(out / LOG)

    # --- data: validation carved first, then the optional training limit, all seeded by split_seed
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
    mean, std = torch.tensor(mean_list), torch.tensor(std_list)
    tr_x, tr_y = torch.from_numpy(tr_x_np), _take(ds.train_y, train_idx)
    va_x, va_y = _take(ds.train_x, val_idx), _take(ds.train_y, val_idx)
    num_classes, in_channels = len(ds.classes), int(tr_x.shape[1])
    tr_x, tr_y, va_x, va_y = (t.to(device) for t in (tr_x, tr_y, va_x, va_y))
    # A short last batch (down to a single image) would give BN noisy statistics and an odd-sized
    # step; with reshuffling every epoch, dropping it still shows every image equally often.
    steps_per_epoch = len(tr_y) // cfg.batch_size
    data_info = {
        "source": ds.source, "file": rundir.file_fingerprint(cfg.data), "classes": list(ds.classes),
        "num_classes": num_classes,
        "sizes": {"train": int(len(tr_y)), "val": int(len(va_y)), "test": int(len(ds.test_y))},
        "val_seed": cfg.split_seed, "mean": mean_list, "std": std_list,
    }

    # --- model, optimizer, schedule
    rundir.seed_everything(cfg.seed)
    model = build_model(cfg, num_classes, in_channels).to(device)
    channels_last = cfg.channels_last if cfg.channels_last is not None else cfg.compile != "off"
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(cfg, model)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(cfg, steps_per_epoch))
    gen = _data_generator(device, cfg.seed)

    state = {"epoch": 0, "step": 0, "best_val_accuracy": None, "best_epoch": None, "bad_epochs": 0}
    if resuming:
        ckpt = rundir.load_checkpoint(out / rundir.LAST, map_location=device)
        rundir.load_weights(model, ckpt, out / rundir.LAST, f"{out / rundir.CONFIG}")
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        try:
            gen.set_state(ckpt["data_rng"].cpu())
        except RuntimeError:  # saved by a generator of another device type (--device changed)
            log("warning: the data order cannot be restored on this device; the resumed run will not "
                "repeat the uninterrupted one exactly", err=True)
        rundir.restore_rng_state(ckpt["rng"])
        state = {k: ckpt[k] for k in state}
        records, lost = rundir.recover(out, ckpt, "epoch", state["best_epoch"] == state["epoch"])
        log(f"resumed from {out / rundir.LAST} after epoch {state['epoch']}"
            + (f" (its metrics line, lost by the interruption, recovered from {rundir.LAST})" if lost else ""))
    else:
        rundir.atomic_write_json(out / rundir.CONFIG, {
            "kind": "resnet", "config": cfg, "env": rundir.environment_info(device), "data": data_info,
            "derived": {"effective_lr": cfg.effective_lr, "steps_per_epoch": steps_per_epoch,
                        "parameters": sum(p.numel() for p in model.parameters())},
        })
        records = []
        rundir.start_afresh(out)  # what a run that died before its first checkpoint left
        log(f"normlab resnet: ResNet-{6 * cfg.n + 2} norm={cfg.norm} on {ds.source} "
            f"({len(tr_y)} train / {len(va_y)} val images), device {device}, out {out}")

    net = _Net(model, cfg.compile, log, channels_last, auto_layout=cfg.channels_last is None,
               torch_mode=compile_mode(device, cfg.batch_size))
    show_bar = progress and sys.stderr.isatty()
    # A per-step .item() costs nothing on CPU but stalls an accelerator's queue.
    check_every = 1 if device.type == "cpu" else 25
    status, message = "finished", ""
    log(HEADER)

    def train_step(module: nn.Module, xb: torch.Tensor, yb: torch.Tensor):
        with _autocast(cfg, device):
            logits = module(xb)  # shape: (B, K)
        loss = F.cross_entropy(logits.float(), yb, label_smoothing=cfg.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        return logits.detach(), loss.detach()

    # A resumed run that had already stopped early goes straight to its summary.
    stop = cfg.patience > 0 and state["bad_epochs"] >= cfg.patience and state["epoch"] < cfg.epochs
    if stop:
        status = "early_stopped"
    while not stop and state["epoch"] < cfg.epochs:
        epoch = state["epoch"] + 1
        t0 = time.perf_counter()
        model.train()
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        correct = torch.zeros((), dtype=torch.int64, device=device)
        seen = 0
        lr_now = optimizer.param_groups[0]["lr"]
        bar = tqdm(total=steps_per_epoch, desc=f"epoch {epoch}/{cfg.epochs}", leave=False,
                   disable=not show_bar, file=sys.stderr, dynamic_ncols=True)
        diverged_at = None
        for i, (xb, yb) in enumerate(iterate_batches(tr_x, tr_y, cfg.batch_size, shuffle=True, augment=True,
                                                     mean=mean, std=std, generator=gen, drop_last=True)):
            if net.channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
            if net.cuda_graphs:  # a new training step: earlier graph outputs may be overwritten
                torch.compiler.cudagraph_mark_step_begin()
            logits, loss = net.guarded(lambda m: train_step(m, xb, yb), "train")
            optimizer.step()
            clip_gates_(model)
            scheduler.step()
            state["step"] += 1
            loss_sum += loss.double() * len(yb)
            correct += (logits.argmax(1) == yb).sum()
            seen += len(yb)
            bar.update(1)
            if (i + 1) % check_every == 0 or i + 1 == steps_per_epoch:
                if not torch.isfinite(loss_sum):
                    diverged_at = state["step"]
                    break
                if show_bar:
                    bar.set_postfix(loss=f"{float(loss_sum) / seen:.3f}", acc=f"{float(correct) / seen:.3f}")
        bar.close()
        if diverged_at is not None:
            status = "diverged"
            message = (f"the training loss became non-finite in epoch {epoch} (by step {diverged_at}, "
                       f"lr {lr_now:.4g}); stopped. ")
            message += (f"The best checkpoint (epoch {state['best_epoch']}) is kept and summarized."
                        if state["best_epoch"] is not None else
                        "No epoch finished, so there is no checkpoint and the summary metrics are null.")
            log(f"diverged: {message}", err=True)
            break

        val = net.guarded(lambda m: evaluate(m, va_x, va_y, mean, std, cfg, device, features=True,
                                             channels_last=net.channels_last), "eval")
        train_acc = float(correct) / seen
        record = {
            "epoch": epoch, "step": state["step"], "lr": lr_now, "seconds": time.perf_counter() - t0,
            "train_loss": float(loss_sum) / seen, "train_accuracy": train_acc, "train_error": 1.0 - train_acc,
            "val_loss": val["loss"], "val_accuracy": val["accuracy"], "val_error": 1.0 - val["accuracy"],
            "val_micro_f1": val["micro_f1"], "val_macro_f1": val["macro_f1"], "quantiles": val["quantiles"],
        }
        records.append(record)
        state["epoch"] = epoch
        improved = state["best_val_accuracy"] is None or val["accuracy"] > state["best_val_accuracy"]
        if improved:
            state["best_val_accuracy"], state["best_epoch"], state["bad_epochs"] = val["accuracy"], epoch, 0
        else:
            state["bad_epochs"] += 1
        rundir.commit(out, _checkpoint(cfg, model, optimizer, scheduler, gen, state), record, best=improved)
        log(_row(record))
        _plots(out, records, cfg)
        if cfg.patience > 0 and state["bad_epochs"] >= cfg.patience and epoch < cfg.epochs:
            status = "early_stopped"
            stop = True

    if status == "early_stopped" and not message:
        message = (f"early stopped after epoch {state['epoch']}: no better validation accuracy "
                   f"for {cfg.patience} epochs. ")
    if records:
        _plots(out, records, cfg)

    # --- summary from the best checkpoint; the test split is read only here
    metrics = None
    if (out / rundir.BEST).exists() and state["best_epoch"] is not None:
        best = rundir.load_checkpoint(out / rundir.BEST, map_location=device)
        rundir.load_weights(model, best, out / rundir.BEST, f"{out / rundir.CONFIG}")
        te_x, te_y = _as_tensor(ds.test_x).to(device), _as_tensor(ds.test_y).to(device)
        metrics = {}
        for split, (x, y) in {"train": (tr_x, tr_y), "val": (va_x, va_y), "test": (te_x, te_y)}.items():
            m = net.guarded(lambda mod: evaluate(mod, x, y, mean, std, cfg, device,
                                                 channels_last=net.channels_last), "eval")
            metrics[split] = {k: m[k] for k in ("accuracy", "micro_f1", "macro_f1", "loss")}
    if status == "finished":
        message = f"trained {state['epoch']} epoch{'s' if state['epoch'] != 1 else ''}. "
    if metrics is not None:
        message += (f"Best val accuracy {state['best_val_accuracy']:.4f} at epoch {state['best_epoch']}; "
                    f"test accuracy {metrics['test']['accuracy']:.4f}.")
    summary = {
        "kind": "resnet",
        "status": status,
        "diverged": status == "diverged",
        "message": message.strip(),
        "best_epoch": state["best_epoch"],
        "epochs_run": state["epoch"],
        # Median, so that the first epoch's compile time does not count as training speed.
        "seconds_per_epoch": statistics.median(r["seconds"] for r in records) if records else None,
        "best_val_accuracy": state["best_val_accuracy"],
        "compiled": net.is_compiled,
        "cuda_graphs": net.cuda_graphs,
        "channels_last": net.channels_last,
        "metrics": metrics,
    }
    rundir.atomic_write_json(out / rundir.SUMMARY, summary)
    log(f"{status}: {summary['message']}")
    log(f"results in {out}")
    return summary


def _plots(out: Path, records: list[dict], cfg: ResNetConfig) -> None:
    title = f"ResNet-{6 * cfg.n + 2}, norm={cfg.norm}, batch {cfg.batch_size}"
    plot_error_curves(out / "curves.png", records, title=title)
    plot_quantiles(out / "quantiles.png", records, title=title)
