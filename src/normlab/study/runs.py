"""One run of a study as data: its config, written into its run directory, and the command that trains it.

``run_config`` merges, in this order, the study's shared settings (data, epoch cap, training limit,
device), the variant's overrides and the study's own (its budget's, ``--run-arg``'s) into the run's
``ResNetConfig`` / ``NERConfig``, validated once. ``write_run_config`` writes it as the run's
``config.json`` (``{"kind": ..., "config": {...}}``, the trainer's own format: the trainer adds its
environment and data when it starts) before the run starts, and ``run_command`` is the command a
backend starts: ``python -m normlab <kind> train --config <run dir>/config.json --out <run dir>``.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Optional

from normlab.files import CONFIG, atomic_write_json, read_json, to_jsonable
from normlab.study.grids import PRETRAINED, RANDOM, Variant, config_class
from normlab.study.settings import StudySettings, run_dir

DEFAULT_EMBEDDINGS = "glove-6b-50d"  # the study's --embeddings when none is given


def _embeddings(settings: StudySettings, value: str) -> Optional[str]:
    """A variant's ``embeddings``: random -> None, glove -> the study's --embeddings, else as given."""
    if value == RANDOM:
        return None
    if value == PRETRAINED:
        return settings.embeddings or DEFAULT_EMBEDDINGS
    return value


def _default_epochs(kind: str) -> int:
    """The single-run command's own epoch count (the config's default)."""
    return next(f.default for f in dataclasses.fields(config_class(kind)) if f.name == "epochs")


def run_overrides(settings: StudySettings, variant: Variant, seed: int, out: Optional[Path] = None) -> dict:
    """Every config field the study sets for one run of ``variant`` (the rest keep the config's defaults)."""
    out = run_dir(Path(settings.out), variant.name, seed) if out is None else Path(out)
    if settings.kind == "resnet":
        shared = {"n": 2, "data": settings.data or "cifar10"}
        if settings.data_dir:
            shared["data_dir"] = settings.data_dir
        if settings.val_size is not None:
            shared["val_size"] = settings.val_size
    else:
        shared = {"data": [settings.data] if isinstance(settings.data, str) else list(settings.data)}
    own = dict(variant.overrides)
    if settings.kind == "ner" and "embeddings" in own:
        own["embeddings"] = _embeddings(settings, own["embeddings"])
    study = {"device": settings.device or "auto"}
    if settings.epochs is not None:
        study["epochs"] = settings.epochs * variant.epochs_factor
    elif variant.epochs_factor != 1:
        study["epochs"] = _default_epochs(settings.kind) * variant.epochs_factor
    if settings.limit_train is not None:
        study["limit_train"] = settings.limit_train
    return {**shared, **own, **study, **settings.overrides, "seed": seed, "out": str(out)}


def run_config(settings: StudySettings, variant: Variant, seed: int, out: Optional[Path] = None,
               check_files: bool = True):
    """The validated ``ResNetConfig`` / ``NERConfig`` of one run (``out``: its folder, default in the study).

    ``check_files``: also check that the NER data files exist (from the current folder); the
    runner writes configs whose paths start from the study's working folder, which may be another.
    """
    cfg = config_class(settings.kind)(**run_overrides(settings, variant, seed, out))  # validated on construction
    if check_files and hasattr(cfg, "check_data_files"):
        cfg.check_data_files()
    return cfg


def write_run_config(settings: StudySettings, variant: Variant, seed: int, folder: Path) -> Path:
    """Write the run's config.json into ``folder`` (its run directory as this process sees it) before
    the run starts, in the trainer's format (the trainer adds its environment and data to the file
    when it starts). Returns the file."""
    cfg = run_config(settings, variant, seed, check_files=False)  # checked by checks.check_study_inputs
    path = Path(folder) / CONFIG
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, {"kind": settings.kind, "config": to_jsonable(cfg)})
    return path


def started(path: Path) -> bool:
    """Whether the trainer has started the run in ``path``: its config.json holds the environment it
    ran in (a config.json the study wrote for a run not started yet does not)."""
    try:
        saved = read_json(Path(path) / CONFIG)
    except (OSError, ValueError):
        return False
    return isinstance(saved, dict) and "env" in saved


def run_command(kind: str, run_folder: Path, resume: bool, python: str = sys.executable) -> list[str]:
    """The command that trains the run whose config.json is in ``run_folder`` (the same for every backend)."""
    argv = [python, "-m", "normlab", kind, "train", "--config", str(Path(run_folder) / CONFIG),
            "--out", str(run_folder), "--no-progress"]
    return argv + (["--resume"] if resume else [])
