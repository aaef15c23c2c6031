"""Run a study's grid: one process per run, skip finished, resume interrupted.

``run_study(settings, cluster=...)`` plans the runs still to do and hands them
to a backend: ``normlab.study.local`` (a process pool on this machine, the
default) or ``normlab.study.ray_backend`` (one Ray task per run).

Layout of a study folder::

    <out>/study.json                 the settings and the grid (written first)
    <out>/runs/<variant>/seed<S>/    one run directory per run (see normlab.train.rundir); its
                                     config.json is written before the run starts (normlab.study.runs)
    <out>/logs/<variant>-seed<S>.log the run's own output, appended on each attempt
    <out>/events.jsonl               one line per finished attempt: run, return code, seconds,
                                     started / finished (UTC, ISO 8601)
    <out>/report.md, report.html     written at the end (normlab.report.write)

A run is finished when its ``summary.json`` exists: it is then never started
again (so a finished run is never touched). A run directory whose trainer
has started (its ``config.json`` records the environment) but with no summary
was interrupted and is continued with ``--resume`` (from ``last.pt`` when
there is one). Each run is its own process,
so a study can be killed at any moment and rerun.

While a study runs it holds an exclusive lock on ``<out>/.study.lock``; its
runs inherit the lock, so a second study in the same folder is refused as
long as the first one *or any run it started* is alive (two processes must
never write to one run directory). On Ray, runs on the driver's machine
cannot inherit the lock: each takes a lock of its own on its run directory
instead, and dies with the Ray worker that started it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
import signal
import time
from pathlib import Path
from typing import Callable, Optional

from normlab.files import CONFIG, LAST, METRICS, RUN_LOCK, STUDY, STUDY_LOCK, SUMMARY, atomic_write_json, read_json
from normlab.study.backends import ClusterSettings, Task, Terminated, run_state, threads_per_run
from normlab.study.settings import StudySettings, run_dir

__all__ = ["ClusterSettings", "Task", "plan", "run_state", "run_study"]


# Settings that are paths: relative ones start from the study's working folder (study.json's
# "workdir"), so a rerun from another folder (or with an absolute path) names the same files.
PATH_KEYS = ("data", "data_dir", "embeddings", "grid")


def study_home(out: Path, saved: dict) -> Path:
    """The folder the relative paths of ``study.json`` start from, and its runs run in.

    ``workdir`` is kept relative to the study folder (a study folder names no absolute
    path); a study.json without one (older studies) starts from the current folder.
    """
    workdir = saved.get("workdir")
    return (Path(out) / workdir).resolve() if isinstance(workdir, str) else Path.cwd().resolve()


def _same_paths(saved, now, home: Path) -> bool:
    """Whether a path setting as saved (relative to ``home``) names what ``now`` (relative to here) names."""
    if isinstance(saved, list) or isinstance(now, list):
        saved, now = (v if isinstance(v, list) else [v] for v in (saved, now))
        return len(saved) == len(now) and all(_same_paths(a, b, home) for a, b in zip(saved, now))
    if saved is None or now is None:
        return saved == now
    a, b = os.path.realpath(home / saved), os.path.realpath(now)
    if a == b:
        return True
    return saved == now and not os.path.exists(a) and not os.path.exists(b)  # a name such as cifar10


def check_saved_settings(out: Path, settings: StudySettings) -> dict:
    """Compare with a previous study.json in ``out``; return what it holds (or {})."""
    path = out / STUDY
    if not path.exists():
        return {}
    saved = read_json(path)
    old = StudySettings.from_dict(saved["settings"], str(path))
    if old.kind != settings.kind:
        raise ValueError(f"{path} holds a {old.kind} study, not a {settings.kind} one; choose another --out")
    if old.legacy_run_args:
        raise ValueError(f"{path}: its runs were given the flags {' '.join(old.legacy_run_args)} (a study started "
                         f"before runs were data), which this version cannot continue; choose another --out "
                         f"(`normlab report {out}` still reads it)")
    a, b = old.to_dict(), settings.to_dict()
    home = study_home(out, saved)
    diffs = [k for k in a if k not in StudySettings.FREE_KEYS + StudySettings.GROWING_KEYS + StudySettings.ADDING_KEYS
             and not (_same_paths(a[k], b[k], home) if k in PATH_KEYS else a[k] == b[k])]
    if diffs:
        detail = ", ".join(f"{k}: saved {a[k]!r}" + (f" (from {os.path.relpath(home)})" if k in PATH_KEYS else "")
                           + f", now {b[k]!r}" for k in diffs)
        raise ValueError(f"{out} holds a study with other settings ({detail}); "
                         f"rerun with the saved settings or choose another --out")
    _check_grid(path, saved.get("grid") or [], settings)
    return saved


def with_saved_norms(settings: StudySettings) -> StudySettings:
    """``settings`` with the norms the study already in ``settings.out`` added (``--add-norm``): a rerun
    without the flag keeps them (``StudySettings.keep_saved_norms``)."""
    path = Path(settings.out) / STUDY
    try:
        saved = read_json(path)["settings"]
    except (OSError, ValueError, KeyError, TypeError):
        return settings  # no study yet; a broken study.json is refused by ``check_saved_settings``, naming it
    return settings.keep_saved_norms(saved, str(path)) if isinstance(saved, dict) else settings


def _check_grid(path: Path, saved_grid: list, settings: StudySettings) -> None:
    """Refuse a variant whose overrides differ from those its saved runs ran with (an edited grid
    file, or a grid changed in the code): its new runs would be another experiment under its name."""
    now = {v.name: {k: x for k, x in v.record().items() if k not in ("name", "label")}
           for v in settings.grid_variants(anomalies=True)}
    for g in saved_grid:
        saved = {k: v for k, v in g.items() if k not in ("name", "label", "args")}  # args: older studies' flags
        if g.get("name") in now and now[g["name"]] != saved:
            raise ValueError(f"{path}: variant {g['name']} ran with {saved}, the grid now gives "
                             f"{now[g['name']]}; rerun with the saved grid or choose another --out")


def plan(settings: StudySettings) -> list[Task]:
    """The runs still to do, in the order they start.

    Interrupted runs come first (they are the furthest along), then seed by seed: the
    first seed of every variant in grid order, then the second seed of the variants that
    have one, and so on. A study stopped half-way (a session's end, a cluster's time
    limit) has then answered every question with one seed before it adds seeds to any.
    """
    out = Path(settings.out)
    keyed = []
    for grid_index, v in enumerate(settings.selected_variants()):
        for seed_index, seed in enumerate(settings.seed_list(v.name)):
            d = run_dir(out, v.name, seed)
            state = run_state(d)
            if state != "finished":
                resume = state == "interrupted"
                keyed.append(((not resume, seed_index, grid_index), Task(v, seed, d, resume=resume)))
    return [task for _, task in sorted(keyed, key=lambda kt: kt[0])]


def run_study(settings: StudySettings, *, report: bool = True,
              log: Callable[[str], None] = lambda s: print(s, flush=True),
              cluster: Optional[ClusterSettings] = None, estimate: bool = True) -> int:
    """Run every unfinished run of the study on ``cluster`` (default: local processes), then write its report.

    ``estimate``: first time a few steps of each kind of run and print the estimated wall time.

    Returns 0 when every run of the grid has finished (diverged runs count as
    finished: they ended as designed), 1 when some run failed.
    """
    settings = with_saved_norms(settings)
    settings.validate()
    cluster = cluster or ClusterSettings()
    cluster.validate()
    out = Path(settings.out)
    _check_not_a_run(out)
    out.mkdir(parents=True, exist_ok=True)
    lock_fd = os.open(out / STUDY_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(lock_fd)
        raise ValueError(f"{out}: another study (or a run it started) is still running there; "
                         f"wait for it or stop it first") from None
    try:
        with sigterm_stops():  # in every phase (the backends stop their runs)
            return _run_locked(settings, cluster, out, lock_fd, report, log, estimate)
    finally:
        os.close(lock_fd)


@contextlib.contextmanager
def sigterm_stops():
    """SIGTERM stops a study as Ctrl-C does: it raises ``Terminated``, which leaves as KeyboardInterrupt."""
    def on_term(signum, frame):
        raise Terminated()

    try:
        old_term = signal.signal(signal.SIGTERM, on_term)
    except ValueError:  # not the main thread: leave SIGTERM alone
        old_term = None
    try:
        yield
    except Terminated:
        raise KeyboardInterrupt from None
    finally:
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)


def _check_not_a_run(out: Path) -> None:
    """Refuse to write a study into a single run's folder (a study keeps its runs in ``runs/``)."""
    marks = [n for n in (CONFIG, LAST, METRICS, SUMMARY, RUN_LOCK) if (out / n).exists()]
    if marks and not (out / STUDY).exists():
        raise ValueError(f"--out {out}: expected a study folder, got a run's folder (it holds {marks[0]}); "
                         f"choose another --out")


@contextlib.contextmanager
def _interruptible(phase: str, then: str, log: Callable[[str], None], cleanup: Callable[[], None] = lambda: None):
    """Ctrl-C or SIGTERM in this phase: clean up, say what was interrupted and how to go on, re-raise."""
    try:
        yield
    except (KeyboardInterrupt, Terminated):
        cleanup()
        log(f"study: interrupted while {phase}; {then}")
        raise KeyboardInterrupt from None


def _run_locked(settings, cluster, out, lock_fd, report, log, estimate=True) -> int:
    saved = check_saved_settings(out, settings)
    tasks = plan(settings)
    home = study_home(out, saved) if saved else Path.cwd().resolve()
    if saved:  # seeds only grow: the study keeps every seed it has run, whatever this call asks for
        old = saved["settings"]
        settings = dataclasses.replace(settings, **{k: max(old[k], getattr(settings, k))
                                                    for k in StudySettings.GROWING_KEYS if k in old})
    everything = settings.grid_variants(anomalies=True)
    # The runs start in ``home`` with the paths as saved: a resumed run sees the config it
    # started with, wherever this rerun was started from.
    run_settings = dataclasses.replace(
        settings, out=os.path.relpath(out.resolve(), home) if not Path(settings.out).is_absolute() else settings.out,
        **({k: saved["settings"].get(k) for k in PATH_KEYS} if saved else {}))
    requested = sorted(set(saved.get("variants_requested", []))
                       | {v.name for v in settings.selected_variants()},
                       key=[v.name for v in everything].index)
    grid = settings.grid_variants()  # the default grid, and any anomaly variant asked for
    grid += [v for v in everything if v.name in requested and v not in grid]
    study = {
        "kind": settings.kind,
        "settings": run_settings.to_dict(),
        "workdir": os.path.relpath(home, out.resolve()),
        "grid": [v.record() for v in grid],
        "variants_requested": requested,
        "seeds": settings.seed_list(),
        "left_out": {},  # every variant of the grid is run (kept for reports of older studies)
        "shortened": settings.shortened(),
        "created": saved.get("created", time.strftime("%Y-%m-%dT%H:%M:%S%z")),
    }
    atomic_write_json(out / STUDY, study)

    times = None
    if tasks and estimate:
        from normlab.study.estimate import estimate_study
        from normlab.study.timefmt import hms

        from normlab.hardware import torch_gpu_count

        slots = max(1, min(settings.jobs, len(tasks)))
        log("study: timing a few training steps of each kind of run to estimate the wall time ...")
        timed = settings
        if cluster.backend != "local" and settings.device.startswith("cuda"):
            import torch

            if not torch.cuda.is_available():  # a driver without the cluster's GPUs times on its CPU
                timed = dataclasses.replace(settings, device="cpu")
        threads = threads_per_run(cluster, slots, gpu=torch_gpu_count(timed.device) > 0)
        with _interruptible("timing training steps for the estimate", "no run was started; rerun the same "
                            "command to start the study (--no-estimate skips the estimate)", log):
            est = estimate_study(timed, tasks, threads=threads)
        where = (f"on this machine ({est.device})" if cluster.backend == "local"
                 else f"if the cluster runs them as fast as this machine ({est.device})")
        busy = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
        if busy > (os.cpu_count() or 1):
            where += (f", timed while the machine was busy (load average {busy:.1f} on {os.cpu_count()} cores): "
                      "expect less once it is free")
        log(f"study: {len(tasks)} run(s) to do, {slots} at a time: estimated wall time {hms(est.total)} {where} "
            f"(an eager-mode timing of a few steps: compiling, early stopping and other load change it)")
        times = est.per_run
    failed = _run_tasks(tasks, run_settings, cluster, out, lock_fd, log, times, home)
    if report:
        from normlab.report.write import REPORT_FILES, write_report

        def no_half_report() -> None:  # report.md may be new and report.html old: keep neither
            for name in REPORT_FILES:
                (out / name).unlink(missing_ok=True)

        done = f"{len(tasks) - len(failed)} of {len(tasks)} run(s) of this call finished" if tasks else \
            "every run had finished"
        with _interruptible("writing the report", f"{done}; the report was not written (report.md and "
                            f"report.html removed, to leave no half-written report); write it with "
                            f"`normlab report {out}` or by rerunning the same command", log, no_half_report):
            paths = write_report(out)
        log(f"study: report written to {paths[0]} and {paths[1]}")
    if failed:
        log(f"study: {len(failed)} run(s) failed: {', '.join(failed)}; see {out / 'logs'}; "
            f"rerun the same command to retry them")
        return 1
    return 0


def _run_tasks(tasks: list[Task], settings: StudySettings, cluster: ClusterSettings, out: Path, lock_fd: int,
               log, estimate=None, cwd: Optional[Path] = None) -> list[str]:
    if not tasks:  # before any backend starts: a finished study starts no process and no Ray task
        log("study: every run has finished already")
        return []
    if cluster.backend == "ray":
        from normlab.study import ray_backend as backend
    else:
        from normlab.study import local as backend
    return backend.run_tasks(tasks, settings, cluster, out, lock_fd, log, estimate, cwd=cwd)
