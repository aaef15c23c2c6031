"""How long a study will take, from a quick timing of a few training steps, and how long is left.

Before a study starts, ``estimate_study`` times a few training steps of each distinct kind of
run in the grid (a ResNet per norm and batch size, a tagger per head/char/layer-norm setting)
on random data of the real shapes, in eager mode, on the device the runs will use (the GPU on a
GPU machine, slowed by the measured cost of sharing it) with the CPU threads each run will get, and
scales them by the run's steps (epochs x steps per epoch, plus the validation passes). It is
an estimate: compiling, the data pipeline and early stopping are not timed, and a machine
shared with other work runs slower. While a study runs, ``backends.Progress`` rescales the
estimate of the runs left by how the finished runs compared with theirs.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

from normlab.study.grids import Variant
from normlab.study.runs import run_config
from normlab.study.settings import StudySettings

# The real sizes the grid trains on, when no --limit-train / --val-size says otherwise.
CIFAR_TRAIN, CIFAR_VAL = 40000, 10000
GMB_SENTENCES, GMB_TRAIN_SHARE, GMB_MEAN_LENGTH = 47959, 0.6, 22
# Without an epoch cap a NER run stops early; this many epochs is what the estimate assumes.
NER_EXPECTED_EPOCHS = 15


@dataclass
class Estimate:
    """Seconds per run (by run name ``variant-seedS``), and the study's wall time with ``jobs`` at once."""

    per_run: dict[str, float] = field(default_factory=dict)
    jobs: int = 1
    device: str = "cpu"  # where the steps were timed: the device the runs will use

    @property
    def total(self) -> float:
        return wall_time(list(self.per_run.values()), self.jobs)


def wall_time(seconds: list[float], jobs: int) -> float:
    """Wall time of runs of these lengths on ``jobs`` slots, longest first (greedy)."""
    slots = [0.0] * max(1, jobs)
    for s in sorted(seconds, reverse=True):
        slots[slots.index(min(slots))] += s
    return max(slots)


def _time_steps(step: Callable[[], None], warmup: int = 1, steps: int = 3) -> float:
    """Median seconds of one call of ``step`` after ``warmup`` calls."""
    for _ in range(warmup):
        step()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2]


def _synced(step: Callable[[], None], device) -> Callable[[], None]:
    """``step`` followed by a wait for the device, so that a GPU's queued work is timed too."""
    import torch

    if getattr(device, "type", "cpu") != "cuda":
        return step

    def run() -> None:
        step()
        torch.cuda.synchronize(device)

    return run


def resnet_step_seconds(norm: str, batch_size: int, device=None) -> tuple[float, float]:
    """(training step, evaluation of 256 images) seconds of ResNet-14 with ``norm``, eager, NCHW, on ``device``."""
    import torch
    import torch.nn.functional as F

    from normlab.models.resnet import ResNet
    from normlab.norms import DEFAULT_GN_GROUPS

    torch.manual_seed(0)
    device = device or torch.device("cpu")
    model = ResNet(2, 10, norm=norm, norm_kwargs={"num_groups": DEFAULT_GN_GROUPS} if norm == "gn" else {}).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch_size, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (batch_size,), device=device)

    def train_step():
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    train = _time_steps(_synced(train_step, device))
    model.eval()
    xe = torch.randn(256, 3, 32, 32, device=device)

    def eval_step():
        with torch.no_grad():
            model(xe)

    return train, _time_steps(_synced(eval_step, device), warmup=1, steps=1)


def ner_step_seconds(settings: dict, batch_size: int = 128, length: int = GMB_MEAN_LENGTH,
                     device=None) -> tuple[float, float]:
    """(training step, evaluation of one batch) seconds of the tagger ``settings`` describe, on ``device``."""
    import torch

    from normlab.models.tagger import BiLSTMTagger, TaggerBatch

    tags = ["O"] + [f"{p}-{t}" for t in ("geo", "gpe", "per", "org", "tim", "art", "nat", "eve") for p in "BI"]
    torch.manual_seed(0)
    char = bool(settings.get("char"))
    dim = 50 if settings.get("embeddings") == "glove" else int(settings.get("word_dim", 100))
    model = BiLSTMTagger(num_words=30000, num_tags=len(tags), num_chars=100 if char else 0, word_dim=dim,
                         hidden=100, char_dim=25, char_hidden=25, dropout=0.5,
                         layer_norm=bool(settings.get("layer_norm")), crf=bool(settings.get("crf")),
                         tag_names=tags)
    device = device or torch.device("cpu")
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    lengths = torch.randint(max(1, length // 2), length * 3 // 2 + 1, (batch_size,))
    T = int(lengths.max())
    mask = torch.arange(T)[None, :] < lengths[:, None]
    batch = TaggerBatch(words=torch.randint(2, 30000, (batch_size, T)), mask=mask,
                        chars=torch.randint(1, 100, (batch_size, T, 8)) if char else None,
                        tags=torch.randint(0, len(tags), (batch_size, T)))
    model, batch = model.to(device), batch.to(device)

    def train_step():
        loss = model.loss(batch, reduction="sum")
        opt.zero_grad()
        loss.backward()
        opt.step()

    train = _time_steps(_synced(train_step, device))
    model.eval()

    def eval_step():
        with torch.no_grad():
            model.decode(model.emissions(batch), batch.mask)

    return train, _time_steps(_synced(eval_step, device), warmup=1, steps=1)


def run_seconds(settings: StudySettings, variant: Variant, timer=None) -> float:
    """Estimated seconds of one run of ``variant``, from its config (``timer`` as
    ``resnet_step_seconds`` / ``ner_step_seconds``, injectable for tests)."""
    cfg = run_config(settings, variant, settings.first_seed, check_files=False)
    if settings.kind == "resnet":
        timer = timer or resnet_step_seconds
        train_step, eval_256 = timer(cfg.norm, cfg.batch_size)
        n_train = cfg.limit_train or CIFAR_TRAIN
        n_val = cfg.val_size
        per_epoch = (n_train // cfg.batch_size) * train_step + math.ceil(n_val / 256) * eval_256
        # the summary evaluates train, val and test once with the best checkpoint
        final = math.ceil((n_train + n_val + 10000) / 256) * eval_256
        return cfg.epochs * per_epoch + final
    timer = timer or ner_step_seconds
    train_step, eval_batch = timer({"embeddings": "glove" if cfg.embeddings else "random", "word_dim": cfg.word_dim,
                                    "char": cfg.char, "layer_norm": cfg.layer_norm, "crf": cfg.crf})
    n_train = cfg.limit_train or int(GMB_SENTENCES * GMB_TRAIN_SHARE)
    n_val = int(GMB_SENTENCES * (1 - GMB_TRAIN_SHARE) / 2)
    epochs = min(cfg.epochs, NER_EXPECTED_EPOCHS)
    updates = math.ceil(n_train / cfg.batch_size)
    evals_per_epoch = (updates // cfg.eval_every if cfg.eval_every else 0) + 1
    per_eval = math.ceil((n_val + cfg.train_eval_size) / cfg.batch_size) * eval_batch
    final = math.ceil((n_train + 2 * n_val) / cfg.batch_size) * eval_batch
    return epochs * (updates * train_step + evals_per_epoch * per_eval) + final


# What a ResNet run's first epoch costs beyond the others (compiling, the first pass over the
# data), where the study has no finished run to measure it from: on the 2-core CPU the compile
# took about 140 s (docs/resnet.md); on an H200 the first epoch of a real fit took 11.6 s
# against 1.4 s (benchmarks/results/gpu-h200-2026-11-30.json).
COLD_START_SECONDS = {"cpu": 150.0, "cuda": 10.0}


def cold_start_seconds(settings: StudySettings, device_type: str) -> float:
    """Seconds a run's cold first epoch adds: measured on the study's finished ResNet runs
    (their first epoch less the median of the others, median over runs), else
    ``COLD_START_SECONDS``. NER runs compile nothing: 0."""
    import statistics
    from pathlib import Path

    from normlab.files import SUMMARY, read_jsonl

    if settings.kind != "resnet":
        return 0.0
    extra = []
    for metrics in sorted(Path(settings.out).glob("runs/*/seed*/metrics.jsonl")):
        if not (metrics.parent / SUMMARY).exists():
            continue
        try:
            secs = [float(r["seconds"]) for r in read_jsonl(metrics) if r.get("seconds") is not None]
        except (ValueError, OSError, TypeError, KeyError):
            continue  # a broken file is the report's to name; the estimate does without it
        if len(secs) >= 3:
            extra.append(max(0.0, secs[0] - statistics.median(secs[1:])))
    if extra:
        return statistics.median(extra)
    return COLD_START_SECONDS.get(device_type, COLD_START_SECONDS["cpu"])


def estimate_study(settings: StudySettings, tasks, threads: int, timer=None,
                   cold_start: Optional[float] = None) -> Estimate:
    """Seconds of each of ``tasks`` (the runner's unfinished runs), timed with ``threads`` threads.

    Each distinct kind of run is timed once (a few steps) and the timing reused. A run that
    starts afresh also pays its cold first epoch (``cold_start``, default ``cold_start_seconds``);
    a resumed one has paid it.
    """
    import functools

    import torch

    from normlab.hardware import SHARING_SPEEDUP, torch_gpu_count
    from normlab.train.rundir import select_device

    device = select_device(settings.device)  # the runs' device: a GPU machine's estimate times the GPU
    if timer is None:
        timer = functools.partial(resnet_step_seconds if settings.kind == "resnet" else ner_step_seconds,
                                  device=device)
    # Runs sharing a GPU each go slower: k runs on one GPU went SHARING_SPEEDUP[k] times as fast as one.
    per_gpu = settings.jobs / max(1, torch_gpu_count(settings.device)) if device.type == "cuda" else 1
    k = max((n for n in SHARING_SPEEDUP if n <= per_gpu), default=1)
    slowdown = k / SHARING_SPEEDUP[k]
    old = torch.get_num_threads()
    torch.set_num_threads(max(1, threads))
    try:
        cache: dict[tuple, float] = {}
        est = Estimate(jobs=settings.jobs, device=str(device))
        cold = cold_start_seconds(settings, device.type) if cold_start is None else cold_start
        for t in tasks:
            key = tuple(sorted((k, str(v)) for k, v in t.variant.overrides.items()))
            if key not in cache:
                cache[key] = run_seconds(settings, t.variant, timer) * slowdown
            est.per_run[t.name] = cache[key] + (0.0 if t.resume else cold)
        return est
    finally:
        torch.set_num_threads(old)
