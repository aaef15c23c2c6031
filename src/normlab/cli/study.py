"""`normlab study resnet|ner` (run a study's grid) and `normlab report DIR` (its report)."""

from __future__ import annotations

import argparse
from pathlib import Path


def _common(p: argparse.ArgumentParser, kind: str) -> None:
    p.add_argument("--out", required=True, help="study folder (study.json, runs/, logs/, report.*)")
    p.add_argument("--seeds", type=int, default=1, help="seeds per variant (default 1); tables show mean ± std")
    p.add_argument("--first-seed", type=int, default=0, help="seeds are first-seed, first-seed+1, ... (default 0)")
    p.add_argument("--epochs", type=int, default=None,
                   help="epochs per run (default: the single-run command's default"
                        + (", 100" if kind == "resnet" else ", early stopping ends each run") + "); "
                        "fewer makes a shortened study, and the report says so")
    p.add_argument("--limit-train", type=int, default=None,
                   help="use only the first N training examples (a shortened study, for quick looks)")
    p.add_argument("--jobs", type=int, default=None,
                   help="runs at once (local default 1): one per GPU in CUDA_VISIBLE_DEVICES where there are "
                        "several, else processes sharing the CPU cores; on Ray a cap (default: what the cluster fits)")
    p.add_argument("--device", default="auto", help="passed to every run (default auto)")
    p.add_argument("--variants", nargs="+", default=None, metavar="NAME",
                   help="run only these variants of the grid (default: all; see docs/study.md)")
    p.add_argument("--no-report", dest="report", action="store_false", help="do not write the report at the end")
    p.add_argument("--run-arg", dest="extra_args", action="append", default=[], metavar="ARG",
                   help="an extra argument passed to every run unchanged (repeatable), e.g. --run-arg=--patience=5")
    c = p.add_argument_group("where the runs execute (see docs/study.md)")
    c.add_argument("--cluster", choices=("local", "ray"), default="local",
                   help="local: processes on this machine (default); ray: one Ray task per run")
    c.add_argument("--ray-address", dest="address", default=None, metavar="ADDR",
                   help="join the Ray cluster at ADDR (default: $RAY_ADDRESS, else start a local one)")
    c.add_argument("--cpus-per-run", type=int, default=None, metavar="N",
                   help="threads per run; on Ray also the CPUs each task asks for (default: local cores // jobs, "
                        "Ray 1)")
    c.add_argument("--max-retries", type=int, default=2, metavar="N",
                   help="Ray: rerun a task whose worker died at most N times (default 2); a run that fails "
                        "by itself is not rerun")
    c.add_argument("--shared-fs", choices=("auto", "yes", "no"), default="auto",
                   help="Ray: do the workers see the study folder? auto (default) checks; no ships each "
                        "finished run back to the driver")


def register(sub) -> None:
    p = sub.add_parser("study", help="run every experiment of a study, then write its report",
                       description="Run a study's grid of single runs, each its own process, on this machine or a "
                                   "Ray cluster (--cluster ray). Rerunning the same command skips finished runs "
                                   "and resumes interrupted ones.")
    kinds = p.add_subparsers(dest="kind", metavar="STUDY", required=True)

    r = kinds.add_parser("resnet", help="ResNet n=2 on CIFAR-10: torch_bn, bn, in, bin, ln, gn, nn; bn and gn at batch 8",
                         description="ResNet n=2 on CIFAR-10: torch_bn, bn, in, bin, ln, gn, nn at batch 128 "
                                     "with lr 0.1, and bn, gn at batch 8.")
    r.add_argument("--data", default=None, help="cifar10 or a path (archive, folder, image-folder zip)")
    r.add_argument("--data-dir", default=None, help="where the official CIFAR-10 is looked for / downloaded")
    r.add_argument("--val-size", type=int, default=None, help="validation images (default: the command's, 10000)")
    r.add_argument("--small-batch-lr", choices=("linear", "same"), default="linear",
                   help="lr of the batch-8 runs: linear = 0.1*8/128 (linear scaling rule, default), same = 0.1")
    _common(r, "resnet")
    r.set_defaults(func=_run_study)

    n = kinds.add_parser("ner", help="NER on GMB: random/GloVe embeddings, chars, layer norm, CRF",
                         description="NER on GMB: BiLSTM with random 100-d or GloVe embeddings, characters, "
                                     "layer norm; BiLSTM-CRF.")
    n.add_argument("--data", required=True, nargs="+", metavar="FILE",
                   help="one GMB file (CSV, CSV zip or the four-column format), split 60/20/20; "
                        "or three: train, val, test")
    n.add_argument("--embeddings", default="glove-6b-50d",
                   help="pretrained vectors for the GloVe variants: glove-6b-50d (default) or a GloVe file")
    _common(n, "ner")
    n.set_defaults(func=_run_study)

    rep = sub.add_parser("report", help="write report.md and report.html for study folders",
                         description="Write report.md, a self-contained report.html and report-*.png for each "
                                     "study folder (also done at the end of each study).")
    rep.add_argument("studies", nargs="+", metavar="DIR", help="study folder(s) written by `normlab study`")
    rep.add_argument("--out", default=None, help="write the report here instead of into the study folder "
                                                 "(only with one study)")
    rep.set_defaults(func=_report)


def _abs(p):
    """Existing paths made absolute, so that a rerun from another folder is the same study."""
    if isinstance(p, list):
        return [_abs(x) for x in p]
    return str(Path(p).resolve()) if p and Path(p).exists() else p


def _run_study(args) -> int:
    from normlab.study.backends import ClusterSettings
    from normlab.study.grids import StudySettings
    from normlab.study.runner import run_study

    for key in ("data", "data_dir", "embeddings"):
        if getattr(args, key, None) is not None:
            setattr(args, key, _abs(getattr(args, key)))
    settings = StudySettings(
        kind=args.kind, out=args.out, seeds=args.seeds, first_seed=args.first_seed, epochs=args.epochs,
        limit_train=args.limit_train, device=args.device, jobs=1 if args.jobs is None else args.jobs,
        variants=args.variants,
        data=args.data[0] if isinstance(args.data, list) and len(args.data) == 1 else args.data,
        extra_args=list(args.extra_args),
        data_dir=getattr(args, "data_dir", None), val_size=getattr(args, "val_size", None),
        small_batch_lr=getattr(args, "small_batch_lr", "linear"), embeddings=getattr(args, "embeddings", None),
    )
    cluster = ClusterSettings(backend=args.cluster, address=args.address, cpus_per_run=args.cpus_per_run,
                              max_retries=args.max_retries, shared_fs=args.shared_fs,
                              max_in_flight=args.jobs if args.cluster == "ray" else None)
    try:
        return run_study(settings, report=args.report, cluster=cluster)
    except KeyboardInterrupt:  # the runner has stopped its runs and said how to resume
        return 130


def _report(args) -> int:
    from normlab.study.report import write_report

    if args.out and len(args.studies) > 1:
        raise ValueError(f"expected one study folder with --out, got {len(args.studies)}")
    for d in args.studies:
        md, page = write_report(d, args.out)
        print(f"{md}\n{page}")
    return 0
