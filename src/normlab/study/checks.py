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


def _check_path(option: str, path: str, folder_ok: bool = True) -> None:
    from normlab.data.gmb import _split_zip_member

    file, _ = _split_zip_member(path)
    if not file.exists():
        raise ValueError(f"{option} {path}: no such file{' or folder' if folder_ok else ''}")
    if file.is_dir() and not folder_ok:
        raise ValueError(f"{option} {path}: expected a file, got a folder")


def check_study_inputs(settings: StudySettings) -> None:
    """Refuse a study whose runs would all fail: bad settings, flags, ``--out`` or data (one line each).

    Checks: the settings; ``--out`` can be a folder; each variant's command line
    parses and gives a valid config (``--run-arg`` values included); data
    paths exist; for NER, each GMB file reads (bad lines named) and the
    embeddings exist. Starts nothing and writes nothing.
    """
    import importlib
    import importlib.util

    from normlab.train.rundir import check_out_dir

    settings.validate()
    check_out_dir(Path(settings.out))
    cli = importlib.import_module(f"normlab.cli.{settings.kind}")
    seed = settings.seed_list()[0]
    variants = select_variants(settings.kind, settings.variants, settings.small_batch_lr)
    for v in variants:
        argv = run_command(settings, v, seed, resume=False)
        args = _parse_run(argv[argv.index("normlab") + 1:], v.name)
        cli.config_from_args(args)  # the run's own validation, naming its flags
    if settings.kind == "resnet":
        if settings.data and settings.data != "cifar10":
            _check_path("--data", settings.data)
        if settings.data_dir and Path(settings.data_dir).exists() and not Path(settings.data_dir).is_dir():
            raise ValueError(f"--data-dir {settings.data_dir}: expected a folder, got a file")
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
