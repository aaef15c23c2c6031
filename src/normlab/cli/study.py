"""`normlab study resnet|ner` (run a study's grid) and `normlab report DIR` (its report)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def _common(p: argparse.ArgumentParser, kind: str) -> None:
    from normlab.study.budgets import BUDGETS

    p.add_argument("--out", required=True, metavar="DIR",
                   help="study folder (study.json, runs/, logs/, report.*) (required; no default)")
    budgets = "; ".join(f"{b.name}: {b.summary} ({b.cost})" for b in BUDGETS[kind].values())
    p.add_argument("--budget", choices=("auto", *BUDGETS[kind]), default="auto",
                   help=f"how long the study runs. {budgets}. auto: full where a GPU is found, else cpu "
                        "(default auto)")
    p.add_argument("--sanity-seeds", type=int, default=None, metavar="N",
                   help="seeds of torch_bn and bn, whose gap the sanity check compares with the seed spread "
                        "(default: the budget's, 3)" if kind == "resnet" else argparse.SUPPRESS)
    p.add_argument("--seeds", type=int, default=1, metavar="N",
                   help="seeds per variant (default 1); tables show mean ± std")
    p.add_argument("--first-seed", type=int, default=0, metavar="N",
                   help="seeds are first-seed, first-seed+1, ... (default 0)")
    p.add_argument("--epochs", type=int, default=None, metavar="N",
                   help="epochs per run (default: the budget's; full: "
                        + ("100" if kind == "resnet" else "early stopping ends each run") + "); "
                        "fewer makes a shortened study, and the report says so")
    p.add_argument("--limit-train", type=int, default=None, metavar="N",
                   help="train every run on only N training " + ("images" if kind == "resnet" else "sentences")
                        + ", drawn at random with the split seed (the same N for every seed; a shortened "
                          "study, for quick looks; default: all)")
    p.add_argument("--jobs", type=int, default=None, metavar="N",
                   help="runs at once. Local default: 4 per GPU the study uses (measured to fill an H200: "
                        "benchmarks/README.md), spread round-robin over CUDA_VISIBLE_DEVICES; 1 without a GPU "
                        "(runs share the CPU cores). On Ray a cap (default: what the cluster fits, 4 runs a GPU)")
    p.add_argument("--device", default="auto", help="passed to every run (default auto)")
    p.add_argument("--variants", nargs="+", default=None, metavar="NAME",
                   help="run only these variants of the grid (default: all; see docs/study.md)")
    p.add_argument("--grid", default=None, metavar="FILE",
                   help="run your own grid instead of the built-in one: a TOML file with a [variants.NAME] table "
                        "per variant, holding an optional label and config overrides (field = value, as in "
                        f"`normlab {kind} train`'s config.json; see docs/study.md) (default: the built-in grid)")
    p.add_argument("--add-norm", dest="add_norms", action="append", default=[], metavar="NAME=module:Class",
                   help="add your own normalization layer to the grid (repeatable): variant NAME at batch 128 "
                        "(the grid's batch-128 lr) and NAME_b8 at batch 8 (the grid's batch-8 lr) where the grid "
                        "has batch-8 variants, e.g. --add-norm rms=mypkg.norms:RMSNorm2d; the report compares it "
                        "with the built-in norms. The module must import where the runs run: on PYTHONPATH here, "
                        "and on Ray on every worker (the driver passes its PYTHONPATH to them: install the module "
                        "there, or put it on a shared folder). A rerun keeps the saved ones "
                        "(default: none; see docs/study.md)"
                        if kind == "resnet" else argparse.SUPPRESS)  # ner: accepted, and refused in one line
    p.add_argument("--no-report", dest="report", action="store_false",
                   help="do not write the report at the end (default: write it)")
    p.add_argument("--no-estimate", dest="estimate", action="store_false",
                   help="start the runs at once, without first timing a few steps of each kind of run to print "
                        "the estimated wall time (default: estimate)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="a config override for every run (repeatable): a field of the run's config.json and a "
                        "TOML value, e.g. --set patience=5 "
                        + ("--set schedule=step" if kind == "resnet" else "--set eval_every=50") + " (default: none)")
    p.add_argument("--run-arg", dest="run_args", action="append", default=[], metavar="ARG",
                   help=f"a flag of `normlab {kind} train` for every run (repeatable), e.g. --run-arg=--patience=5; "
                        "turned into the config override it sets, as --set does (default: none)")

    c = p.add_argument_group("where the runs execute (see docs/study.md)")
    c.add_argument("--cluster", choices=("local", "ray"), default="local",
                   help="local: processes on this machine (default); ray: one Ray task per run")
    c.add_argument("--ray-address", dest="address", default=None, metavar="ADDR",
                   help="join the Ray cluster at ADDR (default: $RAY_ADDRESS, else start a local one)")
    c.add_argument("--cpus-per-run", type=int, default=None, metavar="N",
                   help="threads per run; on Ray also the CPUs each task asks for (default: this machine's "
                        "cores // --jobs on either backend, so that local and Ray studies agree to the last digit; "
                        "1 for a Ray run on a GPU)")
    c.add_argument("--max-retries", type=int, default=2, metavar="N",
                   help="Ray: rerun a task whose worker died at most N times (default 2); a run that fails "
                        "by itself is not rerun")
    c.add_argument("--shared-fs", choices=("auto", "yes", "no"), default="auto",
                   help="Ray: do the workers see the study folder? auto (default) checks; no ships each "
                        "finished run back to the driver")



def register(sub) -> None:
    from normlab.cli import HelpFormatter

    p = sub.add_parser("study", formatter_class=HelpFormatter, help="run every experiment of a study, then write its report",
                       description="Run a study's grid of single runs, each its own process, on this machine or a "
                                   "Ray cluster (--cluster ray). Rerunning the same command skips finished runs "
                                   "and resumes interrupted ones.")
    kinds = p.add_subparsers(dest="kind", metavar="STUDY", required=True)

    r = kinds.add_parser("resnet", formatter_class=HelpFormatter, help="ResNet n=2 on CIFAR-10: torch_bn, bn, in, bin, ln, gn, nn; bn and gn at batch 8",
                         description="ResNet n=2 on CIFAR-10: torch_bn, bn, in, bin, ln, gn, nn at batch 128 "
                                     "with lr 0.1, and bn, gn at batch 8.")
    r.add_argument("--data", default=None, metavar="{cifar10|PATH}",
                   help="cifar10 or a path (archive, folder, image-folder zip) (default: none; "
                        "cifar10 in --data-dir when only that is given)")
    r.add_argument("--data-dir", default=None, metavar="DIR",
                   help="where the official CIFAR-10 is looked for / downloaded (default: none: $NORMLAB_DATA, "
                        "else ~/.cache/normlab/data)")
    r.add_argument("--val-size", type=int, default=None, metavar="N",
                   help="validation images (default: the resnet command's, 10000)")
    # One name with `normlab resnet train --lr-scaling`: none keeps --lr, linear scales it with the batch.
    r.add_argument("--lr-scaling", dest="small_batch_lr", choices=("linear", "none"), default="linear",
                   help="lr of the batch-8 runs: linear = 0.1 x 8/128 (the linear scaling rule, as "
                        "`resnet train --lr-scaling linear`), none = 0.1 (default linear)")
    r.add_argument("--small-batch-lr", dest="small_batch_lr", choices=("linear", "same"),
                   default=argparse.SUPPRESS, help=argparse.SUPPRESS)  # the old spelling: same = none
    _common(r, "resnet")
    r.set_defaults(func=_run_study)

    n = kinds.add_parser("ner", formatter_class=HelpFormatter, help="NER on GMB: random/GloVe embeddings, chars, layer norm, CRF",
                         description="NER on GMB: BiLSTM with random 100-d or GloVe embeddings, characters, "
                                     "layer norm; BiLSTM-CRF.")
    n.add_argument("--data", required=True, nargs="+", metavar="FILE",
                   help="one GMB file (CSV, CSV zip or the four-column format), split 60/20/20; "
                        "or three: train, val, test (required; no default)")
    n.add_argument("--embeddings", default="glove-6b-50d", metavar="{glove-6b-50d|PATH}",
                   help="pretrained vectors for the GloVe variants: glove-6b-50d (default) or a GloVe file")
    _common(n, "ner")
    n.set_defaults(func=_run_study)

    rep = sub.add_parser("report", formatter_class=HelpFormatter, help="write report.md and report.html for study folders",
                         description="Write report.md, a self-contained report.html and report-*.png for each "
                                     "study folder (also done at the end of each study).")
    rep.add_argument("studies", nargs="+", metavar="DIR", help="study folder(s) written by `normlab study`")
    rep.add_argument("--out", default=None, metavar="DIR",
                     help="write the report here instead of into the study folder (only with one study; "
                          "default: the study folder)")
    rep.add_argument("--claims-into", default=None, metavar="FILE",
                     help="also rewrite the table of claims of all the given studies in FILE (a Markdown file, "
                          "such as docs/results/README.md), between the lines `<!-- normlab claims: begin ...-->` "
                          "and `<!-- normlab claims: end -->`; the rest of FILE is kept (default: no such file)")
    rep.set_defaults(func=_report)


def _rel(p):
    """Existing paths relative to the current folder (where the runs start, too), so that
    study.json, the run directories and the report name no absolute path of this machine."""
    if isinstance(p, list):
        return [_rel(x) for x in p]
    return os.path.relpath(p) if p and Path(p).exists() else p


def _run_study(args) -> int:
    from normlab.study.checks import check_study_inputs
    from normlab.study.backends import ClusterSettings, Terminated
    from normlab.study.budgets import budget_overrides
    from normlab.study.runner import run_study, sigterm_stops
    from normlab.study.settings import StudySettings, parse_add_norms, parse_set

    for key in ("data", "data_dir", "embeddings", "grid"):
        if getattr(args, key, None) is not None:
            setattr(args, key, _rel(getattr(args, key)))
    rule = getattr(args, "small_batch_lr", "linear")
    budget = resolve_budget(args.kind, args.budget, args.device, out=args.out)
    # The runs' own settings, as config overrides: the budget's, then --run-arg's and --set's.
    overrides = {**budget_overrides(budget, args.epochs), **run_arg_overrides(args.kind, args.run_args),
                 **dict(parse_set(item) for item in args.overrides)}
    settings = StudySettings(
        kind=args.kind, out=args.out, seeds=args.seeds, first_seed=args.first_seed,
        epochs=args.epochs if args.epochs is not None else budget.epochs,
        limit_train=args.limit_train, device=args.device,
        jobs=(default_jobs(args.device) if args.cluster == "local" else 1) if args.jobs is None else args.jobs,
        variants=args.variants,
        data=args.data[0] if isinstance(args.data, list) and len(args.data) == 1 else args.data,
        overrides=overrides, grid=args.grid, budget=budget.name, add_norms=parse_add_norms(args.add_norms),
        sanity_seeds=args.sanity_seeds if args.sanity_seeds is not None else budget.sanity_seeds,
        data_dir=getattr(args, "data_dir", None), val_size=getattr(args, "val_size", None),
        # study.json keeps the rule's original name ("same"), so that older studies resume unchanged.
        small_batch_lr="same" if rule == "none" else rule,
        embeddings=getattr(args, "embeddings", None),
    )
    cluster = ClusterSettings(backend=args.cluster, address=args.address, cpus_per_run=args.cpus_per_run,
                              max_retries=args.max_retries, shared_fs=args.shared_fs,
                              max_in_flight=args.jobs if args.cluster == "ray" else None)
    cluster.validate()
    if cluster.backend == "ray":  # a missing Ray is said before the inputs are read
        from normlab.study.ray_backend import import_ray

        import_ray()
    with sigterm_stops():
        try:
            check_study_inputs(settings, cluster.backend)  # once, before the first run: one line, not N failed runs
            if cluster.backend == "ray":  # an address where nothing answers: one line now, not retries for ever
                from normlab.study.ray_backend import check_address

                check_address(cluster.address)
        except (KeyboardInterrupt, Terminated):
            print("study: interrupted while checking the study's inputs; nothing was started; rerun the same "
                  "command to start the study", flush=True)
            return 130
        try:
            return run_study(settings, report=args.report, cluster=cluster, estimate=args.estimate)
        except KeyboardInterrupt:  # the runner has stopped its runs and said what it stopped and how to go on
            return 130


def run_arg_overrides(kind: str, flags: list[str]) -> dict:
    """The config overrides that ``--run-arg`` flags of `normlab <kind> train` set: parsed by that
    command's own parser, keeping the settings they give (``--no-progress`` is display only)."""
    import contextlib
    import io

    from normlab.cli import build_parser, given

    if not flags:
        return {}
    argv = [kind, "train", *flags]
    placeholder = kind == "ner" and not any(f == "--data" or f.startswith("--data=") for f in flags)
    if placeholder:  # required by `ner train`; the study gives every run its own
        argv += ["--data", "-"]
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            args = build_parser().parse_args(argv)
    except SystemExit:
        lines = [line for line in err.getvalue().splitlines() if line.strip()]
        raise ValueError(f"--run-arg: {lines[-1] if lines else 'bad arguments'}") from None
    keys = given(args) - {"progress"} - ({"data"} if placeholder else set())
    return {k: getattr(args, k) for k in sorted(keys)}


def gpu_count(device: str) -> int:
    """GPUs a study on ``device`` would use (0 for --device cpu or without CUDA, 1 for cuda:N)."""
    from normlab.hardware import torch_gpu_count

    return torch_gpu_count(device)


def default_jobs(device: str) -> int:
    """Local runs at once without --jobs: RUNS_PER_GPU on each GPU the study uses, else 1."""
    from normlab.hardware import RUNS_PER_GPU

    return RUNS_PER_GPU * gpu_count(device) or 1


def saved_budget(out: str) -> str | None:
    """The budget of the study already in ``out`` (None when there is none)."""
    from normlab.files import STUDY, read_json

    path = Path(out) / STUDY
    if not path.is_file():
        return None
    try:
        return read_json(path)["settings"].get("budget")
    except (ValueError, KeyError, TypeError, AttributeError):
        return None  # a broken study.json is reported by the runner, naming the file


def resolve_budget(kind: str, name: str, device: str, say=print, out: str | None = None):
    """The Budget named by --budget; ``auto`` continues a saved study at its budget, else picks
    by the GPUs found, and says which and why."""
    from normlab.hardware import unusable_gpus_message
    from normlab.study.budgets import choose_budget, get_budget

    saved = saved_budget(out) if name == "auto" and out is not None else None
    if saved is not None:
        name = saved
        say(f"study: budget '{name}' (continuing the study in {out} at the budget it started with)")
    elif name == "auto":
        if device in ("auto", "cuda"):
            warning = unusable_gpus_message()
            if warning:
                say(f"study: warning: {warning}")
        name, why = choose_budget(gpu_count(device))
        say(f"study: budget '{name}' ({why})")
    budget = get_budget(kind, name)
    say(f"study: {kind} budget '{budget.name}': {budget.summary}; expected cost {budget.cost}")
    return budget


def _report(args) -> int:
    from normlab.report.write import write_report

    if args.out and len(args.studies) > 1:
        raise ValueError(f"expected one study folder with --out, got {len(args.studies)}")
    if args.claims_into:  # a bad target fails before any report is written
        from normlab.report.claims import replace_claims_block

        if not Path(args.claims_into).is_file():
            raise FileNotFoundError(f"{args.claims_into}: no such file for --claims-into (it must already hold "
                                    f"the claims block's two marker lines)")
        replace_claims_block(Path(args.claims_into).read_text(), "", args.claims_into)
    for d in args.studies:
        md, page = write_report(d, args.out)
        print(f"{md}\n{page}")
    if args.claims_into:
        print(write_claims_block(args.claims_into, args.studies))
    return 0


def write_claims_block(target, studies) -> Path:
    """Rewrite the claims block of ``target`` from the study folders ``studies`` (each linked to its report)."""
    from normlab.files import atomic_write_text
    from normlab.report.load import load_study
    from normlab.report.claims import combined_claims_md, replace_claims_block

    target = Path(target)
    linked = []
    for d in studies:
        rel = Path(os.path.relpath(Path(d).resolve(), target.resolve().parent)).as_posix()
        linked.append((f"[{Path(d).resolve().name}]({rel}/report.md)", load_study(Path(d))))
    text = replace_claims_block(target.read_text(), combined_claims_md(linked), str(target))
    atomic_write_text(target, text)
    return target
