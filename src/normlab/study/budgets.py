"""Budgets: named sets of study settings sized for a kind of machine (``--budget``).

A budget is data: an epoch cap and config overrides (field -> value) merged into every run's
config (``ResNetConfig`` / ``NERConfig``), beside the variant's own. A study saves the overrides
it ran with in ``study.json`` (``settings.overrides``), and ``budget_of`` finds the budget again
from them, so that a report describes what ran even after a budget's name was given new settings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

# The seed's ResNet budget: 100 epochs at batch 128 with lr 0.1. A study with
# fewer epochs (or --limit-train) is a shortened study, and its report says so.
RESNET_FULL_EPOCHS = 100
# `normlab ner train` stops on its own (early stopping on val entity F1) within at
# most 50 epochs, its default; a NER study capped below that is a shortened one.
NER_FULL_EPOCHS = 50
# The NER `cpu` budget stops each run on a validation plateau, not at a cap. Two runs trained to
# 40 epochs with patience 10 (docs/results/ner-curves) were both still creeping up at the cap
# (`crf` about 0.2 points of validation entity F1 per 10 epochs), so plain patience never stops
# them: an epoch resets the patience only when it beats the last such epoch by more than
# NER_CPU_MIN_DELTA (0.2 points, about the curves' evaluation-to-evaluation jitter). Replayed on
# those curves, the rule stops `crf` after epoch 22 and `random` after epoch 23; the cap of 60
# epochs is a safety net that no run should reach (the report names any run that does). The first
# shipped studies used caps of 8 and 15 epochs (patience 3), where every run was still improving.
NER_CPU_EPOCHS = 60
NER_CPU_PATIENCE = 5
NER_CPU_MIN_DELTA = 0.002


@dataclass(frozen=True)
class Budget:
    """A named set of study settings sized for a kind of machine.

    ``epochs``: per run (None: the single-run command's default, the study's own);
    ``overrides``: config fields set for every run; ``sanity_seeds``: seeds of the ResNet
    sanity-check variants (``settings.SANITY_VARIANTS``); ``cost``: what it was measured to cost.
    ``saved_as``: the flags studies saved for it before runs were data (``study.json``'s
    ``extra_args``), to read those studies; never parsed, only compared. ``saturates``: every run
    trains until its validation score plateaus, which is the study's own length for NER ("train till
    the learning saturates"), so a study at this budget is not a shortened one.
    """

    name: str
    epochs: Optional[int]
    overrides: dict = field(hash=False)
    sanity_seeds: int
    summary: str
    cost: str
    saved_as: tuple[str, ...] = ()
    saturates: bool = False


# Measured costs: docs/results/README.md (2-core AMD EPYC / Xeon with AVX-512, torch 2.13 CPU);
# on a GPU: benchmarks/results/gpu-h200-2026-11-30.json (one H200, torch 2.11 CUDA 13).
BUDGETS: dict[str, dict[str, Budget]] = {
    "resnet": {
        "full": Budget("full", RESNET_FULL_EPOCHS, {}, 3,
                       "the study's own: 100 epochs per run, cosine-annealed, early stopping on validation",
                       "on one H200 about 4 min per batch-128 run and 37 min per batch-8 run, the 13 runs about "
                       "40 min with 4 sharing the GPU (estimated from benchmarks/gpu.py's measurements, "
                       "benchmarks/README.md); days on a CPU"),
        "cpu": Budget("cpu", 20, {"label_smoothing": 0.1, "warmup_epochs": 1.0}, 3,
                      "every run on the full data (40,000 / 10,000 / 10,000 images) for 20 epochs, the cosine "
                      "schedule annealed over those 20 after a 1-epoch warm-up, label smoothing 0.1 (the same "
                      "recipe for every variant)",
                      "about 5 hours for the 13 runs of the default grid on a 2-core AVX-512 CPU, two runs at a "
                      "time (measured: 92 s per epoch for a run alone, 107-147 s for two sharing the CPU; see "
                      "docs/results/README.md)",
                      saved_as=("--label-smoothing", "0.1", "--warmup-epochs", "1")),
    },
    "ner": {
        "full": Budget("full", None, {}, 1,
                       f"the study's own: up to {NER_FULL_EPOCHS} epochs, early stopping (patience 5) on "
                       "validation entity F1", "on one H200 at most 25 min per run (17-29 s an epoch, most of it "
                       "evaluation), the 8 runs at most about 25 min with 8 sharing the GPU (estimated from "
                       "benchmarks/gpu.py, benchmarks/README.md); about 3 hours on a 2-core CPU"),
        "cpu": Budget("cpu", NER_CPU_EPOCHS, {"patience": NER_CPU_PATIENCE, "min_delta": NER_CPU_MIN_DELTA}, 1,
                      f"every run on the full GMB split until its validation entity F1 plateaus: stopped after "
                      f"{NER_CPU_PATIENCE} epochs without a gain of more than {NER_CPU_MIN_DELTA * 100:g} points "
                      f"(at most {NER_CPU_EPOCHS} epochs)",
                      "5-30 minutes per run of the grid, 14.7 on average (measured on the 42 runs of "
                      "docs/results/ner-plateau: one thread each, two runs at a time on a 2-core AVX-512 CPU "
                      "shared with other work), so about 1.7 hours for the grid's 14 variants with one seed and "
                      "about 5 hours with 3 (see docs/results/README.md)",
                      saved_as=("--patience", str(NER_CPU_PATIENCE), "--min-delta", repr(NER_CPU_MIN_DELTA)),
                      saturates=True),
    },
}


# Budgets a shipped study ran under before its named budget changed. A study folder keeps the
# budget's name and the overrides it was given (study.json), and its report must describe what ran.
RETIRED_BUDGETS: dict[tuple[str, str], tuple[Budget, ...]] = {
    ("ner", "cpu"): (Budget("cpu", 15, {"patience": 3}, 1,
                            "every run on the full GMB split for at most 15 epochs, early stopping (patience 3) on "
                            "validation entity F1",
                            "about 70 minutes on a 2-core AVX-512 CPU, at most 2 hours (see docs/results/README.md)",
                            saved_as=("--patience", "3")),),
}


def get_budget(kind: str, name: str) -> Budget:
    """The budget ``name`` of study ``kind``; an unknown name lists the valid ones."""
    table = BUDGETS.get(kind)
    if table is None:
        raise ValueError(f"expected study kind 'resnet' or 'ner', got {kind!r}")
    if name not in table:
        raise ValueError(f"expected --budget among {', '.join(table)}, got {name!r}")
    return table[name]


def budgets_named(kind: str, name: str) -> tuple[Budget, ...]:
    """Today's budget ``name`` of ``kind``, then the retired ones of that name."""
    return (get_budget(kind, name), *RETIRED_BUDGETS.get((kind, name), ()))


def _within(small: dict, big: dict) -> bool:
    return all(k in big and big[k] == v for k, v in small.items())


def budget_of(settings) -> Optional[Budget]:
    """The budget a study (``StudySettings``) ran under: today's of its name, or a retired one whose
    overrides it was given."""
    if not settings.budget:
        return None
    named = budgets_named(settings.kind, settings.budget)
    for b in named:
        if _within(b.overrides, settings.overrides):
            return b
    return named[0]  # overrides changed by hand (or a warm-up left out): the name is what the study asked for


def budget_overrides(budget: Budget, epochs: Optional[int], say: Callable[[str], None] = print) -> dict:
    """The budget's overrides for a study of ``epochs`` (None: the budget's own): a warm-up as long as
    the epochs is left out (quick looks with ``--epochs 1``), and ``say`` says so."""
    out = dict(budget.overrides)
    warmup = out.get("warmup_epochs")
    if epochs is not None and warmup is not None and warmup >= epochs:
        say(f"study: leaving out the budget's warmup_epochs {warmup:g}: not below --epochs {epochs}")
        del out["warmup_epochs"]
    return out


def from_saved_flags(kind: str, name: Optional[str], extra_args: list) -> tuple[dict, list[str]]:
    """A study.json written before runs were data keeps ``extra_args``, flags for every run: the
    overrides of the budget they begin with (``Budget.saved_as``, compared, not parsed), and the
    flags after those (a ``--run-arg``), which no current study can run."""
    extra = [str(a) for a in extra_args]
    for b in budgets_named(kind, name) if name and kind in BUDGETS and name in BUDGETS[kind] else ():
        if b.saved_as and extra[:len(b.saved_as)] == list(b.saved_as):
            return dict(b.overrides), extra[len(b.saved_as):]
    return {}, extra


def choose_budget(gpu_count: int) -> tuple[str, str]:
    """The budget a study takes when none is named, and why: ``full`` with a GPU, else ``cpu``."""
    if gpu_count > 0:
        return "full", f"{gpu_count} GPU{'s' * (gpu_count != 1)} found: running the study's own settings"
    return "cpu", ("no GPU found: running the CPU budget (the full data, fewer epochs); "
                   "name --budget full to run the study's own settings anyway")
