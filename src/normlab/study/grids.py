"""The experiment grids of the two studies: every run the seed asks for.

A study is a list of ``Variant``s (one per row of the report's table) run for
one or more seeds. Each variant knows the command-line arguments that make it
different from its neighbours; ``resnet_command`` / ``ner_command`` add the
settings the whole study shares (data, epochs, seed, output folder) and turn a
variant into the argv of one ``normlab resnet train`` / ``normlab ner train``
run, which a backend (``normlab.study.local`` or ``normlab.study.ray_backend``)
starts as its own process. The grid is data: which runs exist never depends on
the installed command (a cluster worker with another install would see another
grid).
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional, Union

from normlab.config import dataclass_from_dict
from normlab.files import STUDY

Kind = Literal["resnet", "ner"]

# The seed's ResNet budget: 100 epochs at batch 128 with lr 0.1. A study with
# fewer epochs (or --limit-train) is a shortened study, and its report says so.
RESNET_FULL_EPOCHS = 100
RESNET_BASE_BATCH = 128
RESNET_BASE_LR = 0.1
RESNET_SMALL_BATCH = 8
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
# The variants of the sanity check (our BN against nn.BatchNorm2d): run with several seeds
# in every budget, so that the report can tell their gap from seed noise.
SANITY_VARIANTS = ("torch_bn", "bn")


@dataclass(frozen=True)
class Budget:
    """A named set of study settings sized for a kind of machine.

    ``epochs``: per run (None: the single-run command's default, the study's own);
    ``run_args``: extra flags for every run; ``sanity_seeds``: seeds of the ResNet
    sanity-check variants (``SANITY_VARIANTS``); ``cost``: what it was measured to cost.
    """

    name: str
    epochs: Optional[int]
    run_args: tuple[str, ...]
    sanity_seeds: int
    summary: str
    cost: str


# Measured costs: docs/results/README.md (2-core AMD EPYC / Xeon with AVX-512, torch 2.13 CPU);
# on a GPU: benchmarks/results/gpu-h200-2026-11-30.json (one H200, torch 2.11 CUDA 13).
BUDGETS: dict[str, dict[str, Budget]] = {
    "resnet": {
        "full": Budget("full", RESNET_FULL_EPOCHS, (), 3,
                       "the study's own: 100 epochs per run, cosine-annealed, early stopping on validation",
                       "on one H200 about 4 min per batch-128 run and 37 min per batch-8 run, the 13 runs about "
                       "40 min with 4 sharing the GPU (estimated from benchmarks/gpu.py's measurements, "
                       "benchmarks/README.md); days on a CPU"),
        "cpu": Budget("cpu", 20, ("--label-smoothing", "0.1", "--warmup-epochs", "1"), 3,
                      "every run on the full data (40,000 / 10,000 / 10,000 images) for 20 epochs, the cosine "
                      "schedule annealed over those 20 after a 1-epoch warm-up, label smoothing 0.1 (the same "
                      "recipe for every variant)",
                      "about 4 hours on an idle 2-core AVX-512 CPU (see docs/results/README.md)"),
    },
    "ner": {
        "full": Budget("full", None, (), 1,
                       f"the study's own: up to {NER_FULL_EPOCHS} epochs, early stopping (patience 5) on "
                       "validation entity F1", "on one H200 at most 25 min per run (17-29 s an epoch, most of it "
                       "evaluation), the 8 runs at most about 25 min with 8 sharing the GPU (estimated from "
                       "benchmarks/gpu.py, benchmarks/README.md); about 3 hours on a 2-core CPU"),
        "cpu": Budget("cpu", NER_CPU_EPOCHS, ("--patience", str(NER_CPU_PATIENCE), "--min-delta",
                                              repr(NER_CPU_MIN_DELTA)), 1,
                      f"every run on the full GMB split until its validation entity F1 plateaus: stopped after "
                      f"{NER_CPU_PATIENCE} epochs without a gain of more than {NER_CPU_MIN_DELTA * 100:g} points "
                      f"(at most {NER_CPU_EPOCHS} epochs)",
                      "about 10 minutes per run on one core of an idle 2-core AVX-512 CPU, so about 2 hours for "
                      "the 8 variants with 3 seeds (replayed on docs/results/ner-curves; see "
                      "docs/results/README.md)"),
    },
}


# Budgets a shipped study ran under before its named budget changed. A study folder keeps the
# budget's name and the run flags it was given (study.json), and its report must describe what ran.
RETIRED_BUDGETS: dict[tuple[str, str], tuple[Budget, ...]] = {
    ("ner", "cpu"): (Budget("cpu", 15, ("--patience", "3"), 1,
                            "every run on the full GMB split for at most 15 epochs, early stopping (patience 3) on "
                            "validation entity F1",
                            "about 70 minutes on a 2-core AVX-512 CPU, at most 2 hours (see docs/results/README.md)"),),
}


def budget_of(settings: "StudySettings") -> Optional[Budget]:
    """The budget a study ran under: today's of its name, or a retired one whose run flags it was given."""
    if not settings.budget:
        return None
    now = get_budget(settings.kind, settings.budget)
    extra = list(settings.extra_args)
    for b in (now, *RETIRED_BUDGETS.get((settings.kind, settings.budget), ())):
        if extra[:len(b.run_args)] == list(b.run_args):
            return b
    return now  # flags changed by hand (or a warm-up left out): the name is what the study asked for


def get_budget(kind: str, name: str) -> Budget:
    """The budget ``name`` of study ``kind``; an unknown name lists the valid ones."""
    table = BUDGETS.get(kind)
    if table is None:
        raise ValueError(f"expected study kind 'resnet' or 'ner', got {kind!r}")
    if name not in table:
        raise ValueError(f"expected --budget among {', '.join(table)}, got {name!r}")
    return table[name]


def choose_budget(gpu_count: int) -> tuple[str, str]:
    """The budget a study takes when none is named, and why: ``full`` with a GPU, else ``cpu``."""
    if gpu_count > 0:
        return "full", f"{gpu_count} GPU{'s' * (gpu_count != 1)} found: running the study's own settings"
    return "cpu", ("no GPU found: running the CPU budget (the full data, fewer epochs); "
                   "name --budget full to run the study's own settings anyway")


@dataclass(frozen=True)
class Variant:
    """One row of a study: a name (also its run folder), a label for readers, its own flags."""

    name: str
    label: str
    args: tuple[str, ...]
    settings: dict = field(default_factory=dict, compare=False, hash=False)


def small_batch_lr(rule: str, base_lr: float = RESNET_BASE_LR, batch_size: int = RESNET_SMALL_BATCH) -> float:
    """Learning rate for the batch-8 runs.

    ``linear`` (the default) is the linear scaling rule of Goyal et al. 2017,
    lr = 0.1 * 8 / 128 = 0.00625, which Wu & He also use when they vary the
    batch size in the GroupNorm paper: the expected update per example stays
    the same, so the batch-8 runs differ from the batch-128 ones in batch size
    only, not in effective step size (at lr 0.1, batch-8 SGD takes 16x as many
    steps of the same size per epoch, and BN at batch 8 tends to blow up).
    ``same`` keeps lr 0.1, the seed's literal wording.
    """
    if rule == "linear":
        return base_lr * batch_size / RESNET_BASE_BATCH
    if rule == "same":
        return base_lr
    raise ValueError(f"expected small-batch lr rule 'linear' or 'same', got {rule!r}")


def resnet_variants(small_batch_rule: str = "linear") -> list[Variant]:
    """torch_bn (reference), the six variants at batch 128, BN and GN at batch 8."""
    out = []
    big = [
        ("torch_bn", "torch_bn: nn.BatchNorm2d (reference)"),
        ("bn", "BN (ours)"),
        ("in", "IN"),
        ("bin", "BIN"),
        ("ln", "LN"),
        ("gn", "GN"),
        ("nn", "NN (no normalization)"),
    ]
    for norm, label in big:
        out.append(Variant(norm, f"{label}, batch {RESNET_BASE_BATCH}",
                           ("--norm", norm, "--batch-size", str(RESNET_BASE_BATCH), "--lr", repr(RESNET_BASE_LR)),
                           settings={"norm": norm, "batch_size": RESNET_BASE_BATCH, "lr": RESNET_BASE_LR}))
    lr8 = small_batch_lr(small_batch_rule)
    for norm, label in (("bn", "BN (ours)"), ("gn", "GN")):
        out.append(Variant(f"{norm}_b{RESNET_SMALL_BATCH}", f"{label}, batch {RESNET_SMALL_BATCH}",
                           ("--norm", norm, "--batch-size", str(RESNET_SMALL_BATCH), "--lr", repr(lr8)),
                           settings={"norm": norm, "batch_size": RESNET_SMALL_BATCH, "lr": lr8}))
    return out


def ner_variants() -> list[Variant]:
    """The NER grid: random / GloVe / +chars / +layer norm, softmax and CRF heads.

    ``crf_free`` is the CRF without the BIO constraints on its transitions (the
    other CRF runs start impossible transitions such as O -> I-x at a large
    negative score): it answers what the chosen initialization changed.
    """
    G = ("--embeddings", "{embeddings}")
    rows = [
        ("random", "BiLSTM, random 100-d embeddings", (), {"embeddings": "random", "char": False, "layer_norm": False, "crf": False}),
        # GloVe 6B is 50-d here: a random run at 50-d compares pretrained vs random at one dimension.
        ("random50", "BiLSTM, random 50-d embeddings", ("--word-dim", "50"),
         {"embeddings": "random", "word_dim": 50, "char": False, "layer_norm": False, "crf": False}),
        ("glove", "BiLSTM, GloVe", G, {"embeddings": "glove", "char": False, "layer_norm": False, "crf": False}),
        ("glove_char", "BiLSTM, GloVe + chars", G + ("--char",), {"embeddings": "glove", "char": True, "layer_norm": False, "crf": False}),
        ("glove_char_ln", "BiLSTM (layer norm), GloVe + chars", G + ("--char", "--layer-norm"), {"embeddings": "glove", "char": True, "layer_norm": True, "crf": False}),
        ("crf", "BiLSTM-CRF, GloVe + chars", G + ("--char", "--crf"), {"embeddings": "glove", "char": True, "layer_norm": False, "crf": True}),
        ("crf_ln", "BiLSTM-CRF (layer norm), GloVe + chars", G + ("--char", "--layer-norm", "--crf"), {"embeddings": "glove", "char": True, "layer_norm": True, "crf": True}),
    ]
    out = [Variant(n, l, a, settings=s) for n, l, a, s in rows]
    out.append(Variant("crf_free", "BiLSTM-CRF, GloVe + chars, unconstrained transitions",
                       G + ("--char", "--crf", "--no-crf-constraints"),
                       settings={"embeddings": "glove", "char": True, "layer_norm": False, "crf": True, "crf_constraints": False}))
    return out


# The anomaly experiments (issue 14): variants of the studies run by the same command, but only when
# named with --variants, never by default (they answer why a result came out as it did, not the
# study's questions). The report reads them when present and says they have not been run otherwise.
RESNET_GN_GROUPS = (2, 4, 16)  # beside the default 8 (normlab.norms.DEFAULT_GN_GROUPS)
RESNET_ANOMALY_LR = 0.05  # one learning-rate point for the batch-independent norms, half the study's 0.1
# Element standard deviations of the initial word vectors (--embedding-std): the random initialization,
# uniform in +-sqrt(3/D), has 1/sqrt(D) (0.1414 at D = 50); GloVe 6B 50-d has 0.6441 (all 400,000
# vectors, measured with normlab.data.embeddings.load_pretrained).
RANDOM_50D_STD = 0.1414
GLOVE_6B_50D_STD = 0.6441
# Coverage: with few training sentences, the pretrained vectors carry words the training set lacks.
NER_FEW_SENTENCES = 3000


def resnet_anomaly_variants() -> list[Variant]:
    """Why do GN, LN and IN trail at this budget? A GN group-size sweep, and lr 0.05 for LN, GN, IN."""
    out = []
    for g in RESNET_GN_GROUPS:
        out.append(Variant(f"gn_g{g}", f"GN, {g} groups, batch {RESNET_BASE_BATCH}",
                           ("--norm", "gn", "--gn-groups", str(g), "--batch-size", str(RESNET_BASE_BATCH), "--lr",
                            repr(RESNET_BASE_LR)),
                           settings={"norm": "gn", "gn_groups": g, "batch_size": RESNET_BASE_BATCH,
                                     "lr": RESNET_BASE_LR}))
    tag = f"{RESNET_ANOMALY_LR:g}".replace("0.", "")
    for norm, label in (("ln", "LN"), ("gn", "GN"), ("in", "IN")):
        out.append(Variant(f"{norm}_lr{tag}", f"{label}, batch {RESNET_BASE_BATCH}, lr {RESNET_ANOMALY_LR:g}",
                           ("--norm", norm, "--batch-size", str(RESNET_BASE_BATCH), "--lr", repr(RESNET_ANOMALY_LR)),
                           settings={"norm": norm, "batch_size": RESNET_BASE_BATCH, "lr": RESNET_ANOMALY_LR}))
    return out


def ner_anomaly_variants() -> list[Variant]:
    """Why does GloVe not help here? The scale hypothesis both ways, and the coverage hypothesis."""
    G = ("--embeddings", "{embeddings}")
    base = {"char": False, "layer_norm": False, "crf": False}
    return [
        Variant("glove_small", f"BiLSTM, GloVe rescaled to the random init's spread (std {RANDOM_50D_STD:g})",
                G + ("--embedding-std", repr(RANDOM_50D_STD)),
                settings={"embeddings": "glove", "embedding_std": RANDOM_50D_STD, **base}),
        Variant("random50_large", f"BiLSTM, random 50-d embeddings at GloVe's spread (std {GLOVE_6B_50D_STD:g})",
                ("--word-dim", "50", "--embedding-std", repr(GLOVE_6B_50D_STD)),
                settings={"embeddings": "random", "word_dim": 50, "embedding_std": GLOVE_6B_50D_STD, **base}),
        Variant("glove_few", f"BiLSTM, GloVe, {NER_FEW_SENTENCES} training sentences",
                G + ("--limit-train", str(NER_FEW_SENTENCES)),
                settings={"embeddings": "glove", "limit_train": NER_FEW_SENTENCES, **base}),
        Variant("random50_few", f"BiLSTM, random 50-d embeddings, {NER_FEW_SENTENCES} training sentences",
                ("--word-dim", "50", "--limit-train", str(NER_FEW_SENTENCES)),
                settings={"embeddings": "random", "word_dim": 50, "limit_train": NER_FEW_SENTENCES, **base}),
    ]


def anomaly_variants(kind: Kind) -> list[Variant]:
    """The variants run only when named (``--variants``); see ``resnet_anomaly_variants``, ``ner_anomaly_variants``."""
    if kind == "resnet":
        return resnet_anomaly_variants()
    if kind == "ner":
        return ner_anomaly_variants()
    raise ValueError(f"expected study kind 'resnet' or 'ner', got {kind!r}")


def variants_for(kind: Kind, small_batch_rule: str = "linear", anomalies: bool = False) -> list[Variant]:
    """The study's grid (run by default); with ``anomalies``, the anomaly variants after it."""
    if kind == "resnet":
        grid = resnet_variants(small_batch_rule)
    elif kind == "ner":
        grid = ner_variants()
    else:
        raise ValueError(f"expected study kind 'resnet' or 'ner', got {kind!r}")
    return grid + (anomaly_variants(kind) if anomalies else [])


def select_variants(kind: Kind, names: Optional[list[str]], small_batch_rule: str = "linear") -> list[Variant]:
    """The default grid, or the named variants (the anomaly variants included) in grid order; an unknown
    name lists the valid ones."""
    if not names:
        return variants_for(kind, small_batch_rule)
    grid = variants_for(kind, small_batch_rule, anomalies=True)
    valid = [v.name for v in grid]
    unknown = [n for n in names if n not in valid]
    if unknown:
        raise ValueError(f"expected variants among {', '.join(valid)}, got {', '.join(unknown)}")
    return [v for v in grid if v.name in names]


@dataclass
class StudySettings:
    """Everything a study shares across its runs; saved in ``study.json``.

    A rerun must use the same settings (except those in ``FREE_KEYS``), so
    that resumed runs and finished ones belong to the same experiment. ``seeds``
    and ``sanity_seeds`` may grow: the runs already finished count, and the study
    keeps the larger number.
    """

    kind: Kind
    out: str
    seeds: int = 1
    first_seed: int = 0
    epochs: Optional[int] = None  # None: the single-run command's default (the full budget)
    limit_train: Optional[int] = None
    device: str = "auto"
    jobs: int = 1
    variants: Optional[list[str]] = None  # None: the whole grid
    # resnet: cifar10 or a path; ner: one GMB file, or three (train, val, test)
    data: Union[str, list[str], None] = None
    data_dir: Optional[str] = None
    val_size: Optional[int] = None
    small_batch_lr: Literal["linear", "same"] = "linear"
    # The named budget (``BUDGETS``) the study runs at; None: settings given one by one.
    budget: Optional[str] = None
    # Seeds of the ResNet sanity-check variants (SANITY_VARIANTS): max(seeds, sanity_seeds).
    sanity_seeds: int = 1
    # ner
    embeddings: Optional[str] = None
    extra_args: list[str] = field(default_factory=list)  # passed to every run unchanged

    FREE_KEYS = ("out", "device", "jobs", "variants")
    GROWING_KEYS = ("seeds", "sanity_seeds")  # more seeds add runs to the same experiment

    def seed_list(self, variant: Optional[str] = None) -> list[int]:
        """The seeds of ``variant`` (the sanity-check variants may have more), or of the others."""
        n = self.seeds
        if variant is not None and self.kind == "resnet" and variant in SANITY_VARIANTS:
            n = max(n, self.sanity_seeds)
        return list(range(self.first_seed, self.first_seed + n))

    def validate(self) -> None:
        if self.kind not in ("resnet", "ner"):
            raise ValueError(f"expected kind 'resnet' or 'ner', got {self.kind!r}")
        if self.seeds < 1:
            raise ValueError(f"expected --seeds >= 1, got {self.seeds}")
        if self.first_seed < 0:
            raise ValueError(f"expected --first-seed >= 0, got {self.first_seed}")
        if self.sanity_seeds < 1:
            raise ValueError(f"expected --sanity-seeds >= 1, got {self.sanity_seeds}")
        if self.budget is not None:
            get_budget(self.kind, self.budget)
        if self.jobs < 1:
            raise ValueError(f"expected --jobs >= 1, got {self.jobs}")
        if self.epochs is not None and self.epochs < 1:
            raise ValueError(f"expected --epochs >= 1, got {self.epochs}")
        if self.limit_train is not None and self.limit_train < 1:
            raise ValueError(f"expected --limit-train >= 1, got {self.limit_train}")
        if self.small_batch_lr not in ("linear", "same"):
            raise ValueError(f"expected --small-batch-lr linear or same, got {self.small_batch_lr!r}")
        if self.kind == "resnet" and not (self.data or self.data_dir):
            raise ValueError("expected --data PATH|cifar10 or --data-dir DIR for the ResNet study, got neither")
        if self.kind == "ner" and not self.data:
            raise ValueError("expected --data FILE (GMB) for the NER study, got none")
        if self.kind == "ner" and isinstance(self.data, list) and len(self.data) not in (1, 3):
            raise ValueError(f"expected one GMB file or three (train, val, test), got {len(self.data)}")
        select_variants(self.kind, self.variants, self.small_batch_lr)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "StudySettings":
        return dataclass_from_dict(cls, d, STUDY)

    def shortened(self) -> list[str]:
        """Why this study is shorter than the seed's (empty when it is the full study)."""
        why = []
        if self.budget == "cpu":
            why.append(f"the '{self.budget}' budget: " + budget_of(self).summary)
        if self.kind == "resnet" and self.epochs is not None and self.epochs < RESNET_FULL_EPOCHS:
            why.append(f"{self.epochs} epoch{'s' * (self.epochs != 1)} instead of {RESNET_FULL_EPOCHS}")
        if self.kind == "ner" and self.epochs is not None and self.epochs < NER_FULL_EPOCHS:
            why.append(f"at most {self.epochs} epoch{'s' * (self.epochs != 1)} instead of {NER_FULL_EPOCHS} "
                       f"with early stopping")
        if self.limit_train is not None:
            unit = "training images" if self.kind == "resnet" else "training sentences"
            why.append(f"only {self.limit_train} {unit}, drawn at random (--limit-train)")
        if self.kind == "resnet" and self.val_size is not None and self.val_size != 10000:
            why.append(f"{self.val_size} validation images instead of 10,000")
        return why


def run_dir(out: Path, variant: str, seed: int) -> Path:
    return Path(out) / "runs" / variant / f"seed{seed}"


def run_command(settings: StudySettings, variant: Variant, seed: int, resume: bool,
                out: Optional[Path] = None, python: str = sys.executable) -> list[str]:
    """argv of one single run (``python -m normlab <kind> train ...``), the same for every backend.

    ``out`` replaces the run's folder in the study (a Ray worker without the
    study folder trains in a scratch folder of its own); ``python`` is the
    interpreter that runs it (a worker uses its own).
    """
    out = run_dir(Path(settings.out), variant.name, seed) if out is None else Path(out)
    argv = [python, "-m", "normlab", settings.kind, "train"]
    if settings.kind == "resnet":
        argv += ["--n", "2"]
        if settings.data:
            argv += ["--data", settings.data]
        if settings.data_dir:
            argv += ["--data-dir", settings.data_dir]
        if settings.val_size is not None:
            argv += ["--val-size", str(settings.val_size)]
        argv += [a.format(embeddings="") for a in variant.args]
    else:
        argv += ["--data", *([settings.data] if isinstance(settings.data, str) else settings.data)]
        emb = settings.embeddings or "glove-6b-50d"
        argv += [a.format(embeddings=emb) for a in variant.args]
    if settings.epochs is not None:
        argv += ["--epochs", str(settings.epochs)]
    if settings.limit_train is not None:
        argv += ["--limit-train", str(settings.limit_train)]
    if settings.device and settings.device != "auto":
        argv += ["--device", settings.device]
    argv += list(settings.extra_args)
    argv += ["--seed", str(seed), "--out", str(out), "--no-progress"]
    if resume:
        argv.append("--resume")
    return argv
