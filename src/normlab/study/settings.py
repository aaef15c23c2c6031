"""``StudySettings``: everything a study shares across its runs, saved in ``study.json``."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional, Union

from normlab.config import dataclass_from_dict, flag
from normlab.files import STUDY
from normlab.study.budgets import NER_FULL_EPOCHS, RESNET_FULL_EPOCHS, budget_of, from_saved_flags, get_budget
from normlab.study.grids import SANITY_VARIANTS, Kind, Variant, check_overrides, select_variants, variants_for

# Config fields a study's own overrides (its budget's, ``--run-arg``) may not set: the study sets
# them itself, or (``limit_train``, ``embeddings``) has a setting of its own for them.
RUN_OWNED = {"out": "--out", "seed": "--first-seed and --seeds", "data": "--data", "data_dir": "--data-dir",
             "val_size": "--val-size", "epochs": "--epochs", "limit_train": "--limit-train", "device": "--device",
             "embeddings": "--embeddings", "resume": None}


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
    # Config overrides of every run (field -> value): the budget's, then --run-arg's.
    overrides: dict = field(default_factory=dict)
    grid: Optional[str] = None  # a grid file (TOML) instead of the built-in grid
    # Your own norms (--add-norm NAME=module:Class): name -> import path, a variant each (grids.with_added_norms).
    # A rerun keeps the saved ones and may add more (``keep_saved_norms``).
    add_norms: dict = field(default_factory=dict)
    # Flags a study.json from before runs were data gave every run beyond its budget's (its
    # ``extra_args``): kept to show how it was started; such a study can be reported, not continued.
    legacy_run_args: list[str] = field(default_factory=list)

    FREE_KEYS = ("out", "device", "jobs", "variants")
    ADDING_KEYS = ("add_norms",)  # a rerun keeps the saved entries and may add new ones (``keep_saved_norms``)
    GROWING_KEYS = ("seeds", "sanity_seeds")  # more seeds add runs to the same experiment

    def seed_list(self, variant: Optional[str] = None) -> list[int]:
        """The seeds of ``variant`` (the sanity-check variants may have more), or of the others."""
        n = self.seeds
        if variant is not None and self.kind == "resnet" and variant in SANITY_VARIANTS:
            n = max(n, self.sanity_seeds)
        return list(range(self.first_seed, self.first_seed + n))

    def grid_variants(self, anomalies: bool = False) -> list[Variant]:
        """The study's grid: the built-in one (with ``anomalies``, its anomaly variants too) or ``grid``'s."""
        return variants_for(self.kind, self.small_batch_lr, anomalies, grid_file=self.grid, add_norms=self.add_norms)

    def selected_variants(self) -> list[Variant]:
        """The variants this call runs: ``variants``, else the whole grid."""
        return select_variants(self.kind, self.variants, self.small_batch_lr, grid_file=self.grid,
                               add_norms=self.add_norms)

    def validate(self) -> None:
        if self.kind not in ("resnet", "ner"):
            raise ValueError(f"expected kind 'resnet' or 'ner', got {self.kind!r}")
        for name, low in (("seeds", 1), ("first_seed", 0), ("sanity_seeds", 1), ("jobs", 1)):
            if getattr(self, name) < low:
                raise ValueError(f"expected --{name.replace('_', '-')} >= {low}, got {getattr(self, name)}")
        if self.budget is not None:
            get_budget(self.kind, self.budget)
        for name in ("epochs", "limit_train"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"expected --{name.replace('_', '-')} >= 1, got {getattr(self, name)}")
        if self.small_batch_lr not in ("linear", "same"):
            raise ValueError(f"expected --small-batch-lr linear or same, got {self.small_batch_lr!r}")
        if self.kind == "resnet" and not (self.data or self.data_dir):
            raise ValueError("expected --data PATH|cifar10 or --data-dir DIR for the ResNet study, got neither")
        if self.kind == "ner" and not self.data:
            raise ValueError("expected --data FILE (GMB) for the NER study, got none")
        if self.kind == "ner" and isinstance(self.data, list) and len(self.data) not in (1, 3):
            raise ValueError(f"expected one GMB file or three (train, val, test), got {len(self.data)}")
        owned = sorted(set(self.overrides) & set(RUN_OWNED))
        if owned:
            how = RUN_OWNED[owned[0]]
            raise ValueError(f"--run-arg/--set: expected settings the study does not set itself, got "
                             f"{flag(owned[0])}: the study sets it for every run ("
                             + (f"use the study's {how} instead)" if how else
                                "the study resumes interrupted runs itself: rerun the same study command)"))
        check_overrides(self.kind, self.overrides, "--run-arg/--set")
        self.selected_variants()

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict, where: str = STUDY) -> "StudySettings":
        """Settings as saved; a study.json from before runs were data (``extra_args``, flags) is read as
        the overrides of its budget (``budgets.from_saved_flags``)."""
        d = dict(d)
        if "extra_args" in d:
            flags = d.pop("extra_args") or []
            d["overrides"], d["legacy_run_args"] = from_saved_flags(d.get("kind"), d.get("budget"), flags)
        return dataclass_from_dict(cls, d, where)

    def keep_saved_norms(self, saved: dict, where: str = STUDY) -> "StudySettings":
        """These settings with the added norms of ``saved`` (a study.json's settings) first: a rerun without
        ``--add-norm`` keeps them; one that names a saved NAME with another class is refused."""
        old = saved.get("add_norms") or {}
        if not isinstance(old, dict):
            return self  # a broken study.json is refused by the runner's check, naming the file
        for name, spec in self.add_norms.items():
            if name in old and old[name] != spec:
                raise ValueError(f"--add-norm {name}={spec}: {where} ran {name} with {old[name]}; "
                                 f"choose another NAME or another --out")
        return dataclasses.replace(self, add_norms={**old, **self.add_norms})

    def shortened(self) -> list[str]:
        """Why this study is shorter than the seed's (empty when it is the full study)."""
        why = []
        budget = budget_of(self) if self.budget == "cpu" else None
        if budget is not None and not budget.saturates:
            why.append(f"the '{self.budget}' budget: " + budget.summary)
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


def parse_set(item: str) -> tuple[str, object]:
    """``--set KEY=VALUE``: the key and its value read as TOML (``0.1``, ``true``, ``"x"``); a value
    that is no TOML (``step``, a path) is the text itself."""
    key, sep, text = item.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"--set: expected KEY=VALUE, got {item!r}")
    try:
        import tomllib

        value = tomllib.loads(f"v = {text}")["v"]
    except ImportError:  # Python < 3.11: JSON reads the numbers and true/false alike
        import json

        try:
            value = json.loads(text)
        except ValueError:
            value = text
    except ValueError:
        value = text
    return key.strip(), value


def parse_add_norms(items: list[str]) -> dict:
    """``--add-norm NAME=module:Class`` (repeatable) as ``{NAME: "module:Class"}``; grids.with_added_norms
    checks the names and the spelling of the import paths."""
    out = {}
    for item in items:
        name, sep, spec = item.partition("=")
        if not sep or not name.strip() or not spec.strip():
            raise ValueError(f"--add-norm {item}: expected NAME=module:Class, such as rms=mypkg.norms:RMSNorm2d")
        if name.strip() in out:
            raise ValueError(f"--add-norm {item}: the NAME {name.strip()!r} is given twice")
        out[name.strip()] = spec.strip()
    return out


def show_set(key: str, value) -> str:
    """The ``--set`` argument that gives ``key`` this value (``parse_set`` reads it back)."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str):
        text = value if parse_set(f"{key}={value}")[1] == value else '"' + value.replace('"', '\\"') + '"'
    else:
        text = repr(value)
    return f"{key}={text}"
