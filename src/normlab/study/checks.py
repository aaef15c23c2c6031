"""A study's inputs, checked once before its first run starts.

Without this a study with a missing data file (or a bad ``--run-arg``) would
start every run, each failing with the same error, and only then report.
``check_study_inputs`` parses and validates every run's command line in this
process, exactly as the run's own process would, and reads each data file
once, so bad input is one line (exit 2) before anything is started.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

from normlab.study.grids import StudySettings, run_command, select_variants


def _parse_run(argv: list[str], variant: str):
    """The parsed arguments of one run's ``normlab <kind> train ...``; a bad flag is a ValueError."""
    from normlab.cli import build_parser

    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            return build_parser().parse_args(argv)
    except SystemExit:
        lines = [line for line in err.getvalue().splitlines() if line.strip()]
        why = lines[-1] if lines else "bad arguments"
        raise ValueError(f"run {variant}: {why} (from the study's settings or --run-arg)") from None


# Settings of a run that the study sets itself, by the run's option dest: a --run-arg that changed
# one would run another experiment than study.json says (or resume, or write, where the study does not).
STUDY_OWNED = {"out": "--out", "seed": "--first-seed and --seeds", "data": "--data", "data_dir": "--data-dir",
               "val_size": "--val-size", "epochs": "--epochs", "limit_train": "--limit-train", "device": "--device",
               "embeddings": "--embeddings", "resume": None}


def _train_parser(kind: str):
    """The argparse parser of ``normlab <kind> train``."""
    import argparse

    from normlab.cli import build_parser

    def sub(p, name):
        action = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
        return action.choices[name]

    return sub(sub(build_parser(), kind), "train")


def _check_run_args(settings: StudySettings, variant, seed: int) -> None:
    """Refuse ``--run-arg``s that change what the study or the variant sets (``--resume``, ``--seed``, ``--norm``).

    The run's command line is parsed without them and with them last (where they would win), and
    the two compared: abbreviations (``--res``) and flags the study happens to set later are caught too.
    """
    import dataclasses

    if not settings.extra_args:
        return
    plain = run_command(dataclasses.replace(settings, extra_args=[]), variant, seed, resume=False)
    plain = plain[plain.index("normlab") + 1:]
    base = _parse_run(plain, variant.name)
    args = _parse_run(plain + list(settings.extra_args), variant.name)
    parser = _train_parser(settings.kind)
    flag_of = {a.dest: a.option_strings[0] for a in parser._actions if a.option_strings}
    own = {parser._option_string_actions[a.split("=")[0]].dest for a in variant.args
           if a.startswith("--") and a.split("=")[0] in parser._option_string_actions}
    for dest, value in vars(args).items():
        if getattr(base, dest, value) == value:
            continue
        flag = flag_of.get(dest, dest)
        if dest in STUDY_OWNED:
            instead = (f"use the study's {STUDY_OWNED[dest]} instead" if STUDY_OWNED[dest] else
                       "the study resumes interrupted runs itself: rerun the same study command")
            raise ValueError(f"--run-arg: expected flags the study does not set itself, got {flag}: the study "
                             f"sets it for every run ({instead})")
        if dest in own:
            raise ValueError(f"--run-arg: expected flags the variants do not set, got {flag}: it would replace "
                             f"{flag} {getattr(base, dest)} of variant {variant.name} (the variants differ by it)")


def _check_device(device: str, backend: str) -> None:
    """Refuse a ``--device`` no run could use here (on Ray: one no cluster could give)."""
    import torch

    from normlab.train.rundir import select_device

    if backend != "local":  # the cluster's GPUs are checked once connected; here only the spelling
        try:
            dev = torch.device(device) if device != "auto" else None
        except RuntimeError:
            raise ValueError(f"--device {device}: expected a device such as auto, cpu, cuda, cuda:1 or mps, "
                             f"got {device!r}") from None
        if dev is not None and dev.type == "cuda" and dev.index is not None:
            raise ValueError(f"expected --device auto, cuda or cpu on Ray (each run gets the GPU the cluster "
                             f"gives it), got {device}")
        return
    try:
        dev = select_device(device)
    except ValueError as e:
        raise ValueError(f"--device {device}: {e}") from None
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(f"--device {device}: expected a GPU index below the {torch.cuda.device_count()} GPU(s) "
                         f"torch sees, got {dev.index}")
    mps = getattr(torch.backends, "mps", None)
    if dev.type == "mps" and not (mps is not None and mps.is_available()):
        raise ValueError(f"--device {device}: no MPS device here (torch.backends.mps.is_available() is False)")


def _check_image_counts(settings: StudySettings, configs: list) -> None:
    """Refuse a --val-size, --limit-train or batch size the images cannot give (decoded once, then cached)."""
    from normlab.data.images import load_images
    from normlab.train.resnet_data import check_data_sizes

    try:
        ds = load_images(settings.data or "cifar10", settings.data_dir, download=False)
    except FileNotFoundError:  # the official CIFAR-10 is not here yet: the runs download it
        return
    for cfg in configs:
        check_data_sizes(cfg, len(ds.train_y))


def _check_path(option: str, path: str, folder_ok: bool = True) -> None:
    from normlab.data.archives import split_member

    file, _ = split_member(path)
    if not file.exists():
        raise ValueError(f"{option} {path}: no such file{' or folder' if folder_ok else ''}")
    if file.is_dir() and not folder_ok:
        raise ValueError(f"{option} {path}: expected a file, got a folder")


def check_study_inputs(settings: StudySettings, backend: str = "local") -> None:
    """Refuse a study whose runs would all fail: bad settings, flags, ``--out`` or data (one line each).

    Checks: the settings; ``--out`` can be a folder; each variant's command line
    parses and gives a valid config (``--run-arg`` values included), and no
    ``--run-arg`` changes what the study or a variant sets; ``--device`` is one
    this machine has (``backend`` ``local``) or could be one (``ray``); data
    paths exist; for ResNet, the images hold enough for ``--val-size``,
    ``--limit-train`` and each batch size; for NER, each GMB file reads (bad
    lines named) and the embeddings exist. Starts nothing and writes nothing.
    """
    import importlib
    import importlib.util

    from normlab.files import STUDY
    from normlab.study.runner import check_saved_settings
    from normlab.train.rundir import check_out_dir

    settings.validate()
    check_out_dir(Path(settings.out))
    if (Path(settings.out) / STUDY).is_file():  # a rerun with other settings: refused before the lock file is made
        check_saved_settings(Path(settings.out), settings)
    cli = importlib.import_module(f"normlab.cli.{settings.kind}")
    seed = settings.seed_list()[0]
    variants = select_variants(settings.kind, settings.variants, settings.small_batch_lr)
    configs = []
    for v in variants:
        argv = run_command(settings, v, seed, resume=False)
        args = _parse_run(argv[argv.index("normlab") + 1:], v.name)
        _check_run_args(settings, v, seed)
        configs.append(cli.config_from_args(args))  # the run's own validation, naming its flags
    if settings.kind == "ner":
        configs[0].check_data_files()  # the runs' own check (every variant reads the same files)
    _check_device(settings.device, backend)
    if settings.kind == "resnet":
        if settings.data and settings.data != "cifar10":
            _check_path("--data", settings.data)
        if settings.data_dir and Path(settings.data_dir).exists() and not Path(settings.data_dir).is_dir():
            raise ValueError(f"--data-dir {settings.data_dir}: expected a folder, got a file")
        _check_image_counts(settings, configs)
        return
    from normlab.data.gmb import read_gmb
    from normlab.data.embeddings import PACKAGED

    for path in ([settings.data] if isinstance(settings.data, str) else list(settings.data or [])):
        read_gmb(path)  # a bad line is named here, once
    if any("--embeddings" in v.args for v in variants):
        emb = settings.embeddings or "glove-6b-50d"
        if emb in PACKAGED:
            if importlib.util.find_spec(PACKAGED[emb]) is None:
                raise ValueError(f"--embeddings {emb} needs the package {PACKAGED[emb].replace('_', '-')}; "
                                 f"install it with: pip install 'normlab[glove]'")
        else:
            _check_path("--embeddings", emb, folder_ok=False)
