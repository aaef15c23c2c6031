"""A study's inputs, checked once before its first run starts.

Without this a study with a missing data file (or a bad ``--run-arg``) would
start every run, each failing with the same error, and only then report.
``check_study_inputs`` builds every variant's config in this process, as its
run's own process will (``runs.run_config``: the config validates itself, naming
the flag), and reads each data file once, so bad input is one line (exit 2)
before anything is started.
"""

from __future__ import annotations

from pathlib import Path

from normlab.config import flag
from normlab.study.grids import PRETRAINED, Variant
from normlab.study.runs import run_config
from normlab.study.settings import StudySettings


def _variant_configs(settings: StudySettings, variants: list[Variant]) -> list:
    """Each variant's config (first seed), refusing study overrides that replace a variant's own."""
    seed = settings.seed_list()[0]
    configs = []
    for v in variants:
        clash = sorted(set(settings.overrides) & set(v.overrides))
        if clash:
            raise ValueError(f"--run-arg/--set: expected settings the variants do not set, got {flag(clash[0])}: it "
                             f"would replace {flag(clash[0])} {v.overrides[clash[0]]!r} of variant {v.name} (the "
                             f"variants differ by it)")
        try:
            configs.append(run_config(settings, v, seed))
        except (ValueError, TypeError) as e:
            where = f"{settings.grid} [variants.{v.name}]" if settings.grid else f"run {v.name}"
            raise ValueError(f"{where}: {e}") from None
    return configs


def _check_own_norms(settings: StudySettings, variants: list[Variant]) -> None:
    """Import and try each norm of your own the variants name (``--add-norm``, a grid file's ``norm``) once,
    here, as its runs will (``normlab.norms.check_norm``): a bad module is one line, not N failed runs."""
    from normlab.norms.custom import check_norm, is_norm_spec

    added = {spec: name for name, spec in settings.add_norms.items()}
    for spec in dict.fromkeys(v.overrides.get("norm") for v in variants if is_norm_spec(v.overrides.get("norm"))):
        try:
            check_norm(spec)
        except ValueError as e:
            if spec not in added:
                raise
            raise ValueError(f"--add-norm {added[spec]}={spec}: " + str(e).removeprefix(f"--norm {spec}: ")) from None


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

    Checks: the settings; ``--out`` can be a folder; each variant gives a valid
    config (``--run-arg`` values included), and no ``--run-arg`` changes what the
    study or a variant sets; ``--device`` is one
    this machine has (``backend`` ``local``) or could be one (``ray``); data
    paths exist; for ResNet, the images hold enough for ``--val-size``,
    ``--limit-train`` and each batch size; for NER, each GMB file reads (bad
    lines named) and the embeddings exist. Starts nothing and writes nothing.
    """
    import importlib.util

    from normlab.files import STUDY
    from normlab.study.runner import check_saved_settings, with_saved_norms
    from normlab.train.rundir import check_out_dir

    settings = with_saved_norms(settings)  # a rerun keeps the norms the study added
    settings.validate()
    check_out_dir(Path(settings.out))
    if (Path(settings.out) / STUDY).is_file():  # a rerun with other settings: refused before the lock file is made
        check_saved_settings(Path(settings.out), settings)
    variants = settings.selected_variants()
    configs = _variant_configs(settings, variants)
    _check_own_norms(settings, variants)
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
    if any(v.overrides.get("embeddings") == PRETRAINED for v in variants):
        emb = settings.embeddings or "glove-6b-50d"
        if emb in PACKAGED:
            if importlib.util.find_spec(PACKAGED[emb]) is None:
                raise ValueError(f"--embeddings {emb} needs the package {PACKAGED[emb].replace('_', '-')}; "
                                 f"install it with: pip install 'normlab[glove]'")
        else:
            _check_path("--embeddings", emb, folder_ok=False)
