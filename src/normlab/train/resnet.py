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

``fit`` reads as prepare (``resnet_data``: the images; the model, ``resnet_optim``: the
optimizer and schedule; a new run or ``--resume``), epochs (train, then evaluate on the
validation set, ``resnet_eval``), finish (the best checkpoint's metrics); the steps both
trainers share are in ``normlab.train.loop``, compiling in ``normlab.train.compiled``.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Optional, get_args

import torch
import torch.nn.functional as F
from torch import nn

from normlab import files
from normlab.config import dataclass_from_dict
from normlab.config import flag as option
from normlab.data.image_batches import iterate_batches
from normlab.train import loop, rundir
from normlab.train.compiled import CompiledModel, autocast, compile_mode
from normlab.train.plots import plot_error_curves, plot_quantiles
from normlab.train.resnet_data import ImageData, data_generator, load_data
from normlab.train.resnet_eval import evaluate
from normlab.train.resnet_optim import build_optimizer, lr_factor

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


HEADER = (f"{'epoch':>5} {'step':>7} {'lr':>9} {'train_loss':>10} {'train_err':>9} "
          f"{'val_loss':>8} {'val_err':>7} {'val_acc':>7} {'val_mF1':>7} {'sec':>7}")


def _row(r: dict) -> str:
    return (f"{r['epoch']:>5d} {r['step']:>7d} {r['lr']:>9.5f} {r['train_loss']:>10.4f} {r['train_error']:>9.4f} "
            f"{r['val_loss']:>8.4f} {r['val_error']:>7.4f} {r['val_accuracy']:>7.4f} {r['val_macro_f1']:>7.4f} "
            f"{r['seconds']:>7.1f}")


# The training state of a new run, saved in every checkpoint.
FRESH_STATE = {"epoch": 0, "step": 0, "best_val_accuracy": None, "best_epoch": None, "bad_epochs": 0}


@dataclass
class _Run:
    """One run in training: what the steps of ``fit`` share."""

    cfg: ResNetConfig
    out: Path
    device: torch.device
    show_bar: bool  # a tqdm bar per epoch
    log: loop.RunLog
    data: ImageData
    model: nn.Module
    optimizer: torch.optim.SGD
    scheduler: torch.optim.lr_scheduler.LambdaLR
    gen: torch.Generator  # batch order and augmentation
    state: dict  # FRESH_STATE's keys
    records: list[dict]  # the metrics.jsonl lines so far
    net: Optional[CompiledModel] = None  # the module the loop calls

    def evaluate(self, x: torch.Tensor, y: torch.Tensor, features: bool = False) -> dict:
        return self.net.guarded(lambda m: evaluate(
            m, x, y, self.data.mean, self.data.std, batch_size=self.cfg.eval_batch_size, device=self.device,
            bf16=self.cfg.bf16, channels_last=self.net.channels_last, features=features), "eval")


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
    if is_norm_spec(cfg.norm):  # the user's own layer: it imports, takes num_channels, keeps the shape
        check_norm(cfg.norm)
    if cfg.norm == "gn" and cfg.gn_groups is None:
        cfg = dataclasses.replace(cfg, gn_groups=DEFAULT_GN_GROUPS)
    out = Path(cfg.out)
    device = rundir.select_device(cfg.device)
    with loop.locked(out):  # one writer per run folder
        run = _prepare(cfg, out, device, progress)
        status, message = _train(run)
        return _finish(run, status, message)


# --- prepare


def _prepare(cfg: ResNetConfig, out: Path, device: torch.device, progress: bool) -> _Run:
    """Data, model, optimizer and schedule; a new run writes config.json, a resumed one loads last.pt."""
    resuming = loop.start(out, files.to_jsonable(cfg), cfg.resume, [cfg.data])
    log = loop.RunLog(out / files.LOG)
    data = load_data(cfg, device)
    rundir.seed_everything(cfg.seed)
    model = build_model(cfg, data.num_classes, data.in_channels).to(device)
    channels_last = cfg.channels_last if cfg.channels_last is not None else cfg.compile != "off"
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(cfg, model)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(cfg, data.steps_per_epoch))
    run = _Run(cfg, out, device, progress and sys.stderr.isatty(), log, data, model, optimizer, scheduler,
               data_generator(device, cfg.seed), dict(FRESH_STATE), [])
    if resuming:
        _resume(run)
    else:
        loop.begin(out, {
            "kind": "resnet", "config": cfg, "env": rundir.environment_info(device), "data": data.info,
            "derived": {"effective_lr": cfg.effective_lr, "steps_per_epoch": data.steps_per_epoch,
                        "parameters": sum(p.numel() for p in model.parameters())},
        })
        log(f"normlab resnet: ResNet-{6 * cfg.n + 2} norm={cfg.norm} on {data.source} "
            f"({len(data.train_y)} train / {len(data.val_y)} val images), device {device}, out {out}")
    run.net = CompiledModel(model, cfg.compile, log, channels_last, auto_layout=cfg.channels_last is None,
                            torch_mode=compile_mode(device, cfg.batch_size))
    return run


def _resume(run: _Run) -> None:
    """Continue from last.pt: weights, optimizer, schedule, RNGs, data order and state; the metrics as they were."""
    ckpt = loop.resume(run.out, run.model, run.optimizer, run.device)
    run.scheduler.load_state_dict(ckpt["scheduler"])
    try:
        run.gen.set_state(ckpt["data_rng"].cpu())
    except RuntimeError:  # saved by a generator of another device type (--device changed)
        run.log("warning: the data order cannot be restored on this device; the resumed run will not "
                "repeat the uninterrupted one exactly", err=True)
    run.state = {k: ckpt[k] for k in FRESH_STATE}
    run.records, lost = rundir.recover(run.out, ckpt, "epoch", run.state["best_epoch"] == run.state["epoch"])
    run.log(f"resumed from {run.out / files.LAST} after epoch {run.state['epoch']}"
            + (f" (its metrics line, lost by the interruption, recovered from {files.LAST})" if lost else ""))


def _checkpoint(run: _Run) -> dict:
    return {"kind": "resnet", "config": files.to_jsonable(run.cfg), "model": run.model.state_dict(),
            "optimizer": run.optimizer.state_dict(), "scheduler": run.scheduler.state_dict(),
            "data_rng": run.gen.get_state(), "rng": rundir.rng_state_for_checkpoint(), **run.state}


# --- epochs


def _train(run: _Run) -> tuple[str, str]:
    """Epochs until the budget, early stopping or a diverged loss; the status and, when diverged, why."""
    cfg, state = run.cfg, run.state
    run.log(HEADER)
    if loop.out_of_patience(state["bad_epochs"], cfg.patience, state["epoch"], cfg.epochs):
        return "early_stopped", ""  # a resumed run that had already stopped early goes straight to its summary
    while state["epoch"] < cfg.epochs:
        epoch = state["epoch"] + 1
        t0 = time.perf_counter()
        lr_now = run.optimizer.param_groups[0]["lr"]
        sums, diverged_at = _epoch(run, epoch)
        if diverged_at is not None:
            message = (f"the training loss became non-finite in epoch {epoch} (by step {diverged_at}, "
                       f"lr {lr_now:.4g}); stopped. ")
            message += (f"The best checkpoint (epoch {state['best_epoch']}) is kept and summarized."
                        if state["best_epoch"] is not None else
                        "No epoch finished, so there is no checkpoint and the summary metrics are null.")
            run.log(f"diverged: {message}", err=True)
            return "diverged", message
        record = _evaluate(run, epoch, lr_now, t0, *sums)
        improved = state["best_val_accuracy"] is None or record["val_accuracy"] > state["best_val_accuracy"]
        if improved:
            state["best_val_accuracy"], state["best_epoch"], state["bad_epochs"] = record["val_accuracy"], epoch, 0
        else:
            state["bad_epochs"] += 1
        rundir.commit(run.out, _checkpoint(run), record, best=improved)
        run.log(_row(record))
        _plots(run.out, run.records, cfg)
        if loop.out_of_patience(state["bad_epochs"], cfg.patience, epoch, cfg.epochs):
            return "early_stopped", ""
    return "finished", ""


def _epoch(run: _Run, epoch: int) -> tuple[tuple[torch.Tensor, torch.Tensor, int], Optional[int]]:
    """Train one epoch: (summed loss, correct predictions, images seen), and the step by which the
    loss became non-finite (None: it did not)."""
    from tqdm import tqdm

    from normlab.norms import clip_gates_

    cfg, state, data, net, device = run.cfg, run.state, run.data, run.net, run.device
    run.model.train()
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    seen = 0
    bar = tqdm(total=data.steps_per_epoch, desc=f"epoch {epoch}/{cfg.epochs}", leave=False,
               disable=not run.show_bar, file=sys.stderr, dynamic_ncols=True)
    # A per-step .item() costs nothing on CPU but stalls an accelerator's queue.
    check_every = loop.check_every(device)
    diverged_at = None
    for i, (xb, yb) in enumerate(iterate_batches(data.train_x, data.train_y, cfg.batch_size, shuffle=True,
                                                 augment=True, mean=data.mean, std=data.std, generator=run.gen,
                                                 drop_last=True)):
        if net.channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        if net.cuda_graphs:  # a new training step: earlier graph outputs may be overwritten
            torch.compiler.cudagraph_mark_step_begin()
        logits, loss = net.guarded(lambda m: _train_step(run, m, xb, yb), "train")
        run.optimizer.step()
        clip_gates_(run.model)
        run.scheduler.step()
        state["step"] += 1
        loss_sum += loss.double() * len(yb)
        correct += (logits.argmax(1) == yb).sum()
        seen += len(yb)
        bar.update(1)
        if (i + 1) % check_every == 0 or i + 1 == data.steps_per_epoch:
            if not torch.isfinite(loss_sum):
                diverged_at = state["step"]
                break
            if run.show_bar:
                bar.set_postfix(loss=f"{float(loss_sum) / seen:.3f}", acc=f"{float(correct) / seen:.3f}")
    bar.close()
    return (loss_sum, correct, seen), diverged_at


def _train_step(run: _Run, module: nn.Module, xb: torch.Tensor, yb: torch.Tensor):
    """Forward and backward of one batch (the optimizer steps after, outside the compile guard)."""
    with autocast(run.cfg.bf16, run.device):
        logits = module(xb)  # shape: (B, K)
    loss = F.cross_entropy(logits.float(), yb, label_smoothing=run.cfg.label_smoothing)
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    return logits.detach(), loss.detach()


# --- evaluate


def _evaluate(run: _Run, epoch: int, lr: float, t0: float, loss_sum: torch.Tensor, correct: torch.Tensor,
              seen: int) -> dict:
    """The epoch's metrics line: its training averages and the validation set's metrics and feature percentiles."""
    val = run.evaluate(run.data.val_x, run.data.val_y, features=True)
    train_acc = float(correct) / seen
    record = {
        "epoch": epoch, "step": run.state["step"], "lr": lr, "seconds": time.perf_counter() - t0,
        "train_loss": float(loss_sum) / seen, "train_accuracy": train_acc, "train_error": 1.0 - train_acc,
        "val_loss": val["loss"], "val_accuracy": val["accuracy"], "val_error": 1.0 - val["accuracy"],
        "val_micro_f1": val["micro_f1"], "val_macro_f1": val["macro_f1"], "quantiles": val["quantiles"],
    }
    run.records.append(record)
    run.state["epoch"] = epoch
    return record


# --- finish


def _finish(run: _Run, status: str, message: str) -> dict:
    """Plots, then the summary from the best checkpoint (the test split is read only here); summary.json last."""
    cfg, state, data, out = run.cfg, run.state, run.data, run.out
    if status == "early_stopped" and not message:
        message = (f"early stopped after epoch {state['epoch']}: no better validation accuracy "
                   f"for {cfg.patience} epochs. ")
    if run.records:
        _plots(out, run.records, cfg)

    def split_metrics(split: str) -> dict:
        x, y = {"train": (data.train_x, data.train_y), "val": (data.val_x, data.val_y)}.get(split) \
            or data.test_on(run.device)
        m = run.evaluate(x, y)
        return {k: m[k] for k in ("accuracy", "micro_f1", "macro_f1", "loss")}

    metrics = loop.evaluate_best(out, run.model, run.device, split_metrics) if state["best_epoch"] is not None \
        else None
    if status == "finished":
        message = f"trained {state['epoch']} epoch{'s' if state['epoch'] != 1 else ''}. "
    if metrics is not None:
        message += (f"Best val accuracy {state['best_val_accuracy']:.4f} at epoch {state['best_epoch']}; "
                    f"test accuracy {metrics['test']['accuracy']:.4f}.")
    summary = loop.finish(out, {
        "kind": "resnet", "status": status, "diverged": status == "diverged", "message": message.strip(),
        "best_epoch": state["best_epoch"], "epochs_run": state["epoch"],
        # Median, so that the first epoch's compile time does not count as training speed.
        "seconds_per_epoch": statistics.median(r["seconds"] for r in run.records) if run.records else None,
        "best_val_accuracy": state["best_val_accuracy"], "compiled": run.net.is_compiled,
        "cuda_graphs": run.net.cuda_graphs, "channels_last": run.net.channels_last, "metrics": metrics,
    })
    run.log(f"{status}: {summary['message']}")
    run.log(f"results in {out}")
    return summary


def _plots(out: Path, records: list[dict], cfg: ResNetConfig) -> None:
    title = f"ResNet-{6 * cfg.n + 2}, norm={cfg.norm}, batch {cfg.batch_size}"
    plot_error_curves(out / files.CURVES, records, title=title)
    plot_quantiles(out / "quantiles.png", records, title=title)
