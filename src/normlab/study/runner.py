"""Run a study's grid: one process per run, skip finished, resume interrupted.

Layout of a study folder::

    <out>/study.json                 the settings and the grid (written first)
    <out>/runs/<variant>/seed<S>/    one run directory per run (see normlab.train.rundir)
    <out>/logs/<variant>-seed<S>.log the run's own output, appended on each attempt
    <out>/events.jsonl               one line per finished attempt: run, return code, seconds,
                                     started / finished (UTC, ISO 8601)
    <out>/report.md, report.html     written at the end (normlab.study.report)

A run is finished when its ``summary.json`` exists: it is then never started
again (so a finished run is never touched). A run directory with a
``config.json`` but no summary was interrupted and is continued with
``--resume`` (from ``last.pt`` when there is one). Each run is its own process,
so a study can be killed at any moment and rerun.

While a study runs it holds an exclusive lock on ``<out>/.study.lock``; its
runs inherit the lock, so a second study in the same folder is refused as
long as the first one *or any run it started* is alive (two processes must
never write to one run directory).
"""

from __future__ import annotations

import fcntl
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Optional

from normlab.study.grids import StudySettings, Variant, run_command, run_dir, select_variants, variants_for
from normlab.train.rundir import CONFIG, SUMMARY, append_jsonl, atomic_write_json, read_json

STUDY = "study.json"
EVENTS = "events.jsonl"
LOCK = ".study.lock"


@dataclass
class Task:
    variant: Variant
    seed: int
    dir: Path
    resume: bool

    @property
    def name(self) -> str:
        return f"{self.variant.name}-seed{self.seed}"


def run_state(path: Path) -> str:
    """``finished`` (summary.json), ``interrupted`` (config.json only) or ``new``."""
    path = Path(path)
    if (path / SUMMARY).exists():
        return "finished"
    if (path / CONFIG).exists():
        return "interrupted"
    return "new"


def available_flags(kind: str) -> set[str]:
    """The long options ``normlab <kind> train --help`` offers."""
    proc = subprocess.run([sys.executable, "-m", "normlab", kind, "train", "--help"],
                          capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise ValueError(f"`normlab {kind} train --help` failed (exit {proc.returncode}): "
                         f"{(proc.stderr or proc.stdout).strip()[-500:]}")
    return set(re.findall(r"(--[a-z0-9][a-z0-9-]*)", proc.stdout))


def _flags_of(argv: list[str]) -> set[str]:
    return {a.split("=", 1)[0] for a in argv if a.startswith("--")}


def _check_settings(out: Path, settings: StudySettings) -> dict:
    """Compare with a previous study.json in ``out``; return what it holds (or {})."""
    path = out / STUDY
    if not path.exists():
        return {}
    saved = read_json(path)
    old = StudySettings.from_dict(saved["settings"])
    if old.kind != settings.kind:
        raise ValueError(f"{path} holds a {old.kind} study, not a {settings.kind} one; choose another --out")
    a, b = old.to_dict(), settings.to_dict()
    diffs = [k for k in a if k not in StudySettings.FREE_KEYS and a[k] != b[k]]
    if diffs:
        detail = ", ".join(f"{k}: saved {a[k]!r}, now {b[k]!r}" for k in diffs)
        raise ValueError(f"{out} holds a study with other settings ({detail}); "
                         f"rerun with the saved settings or choose another --out")
    return saved


def _gpu_list(device: str) -> list[str]:
    """GPUs to spread runs over: CUDA_VISIBLE_DEVICES, else every device torch sees."""
    if device not in ("auto", "cuda"):
        return []
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [g.strip() for g in env.split(",") if g.strip() and g.strip() != "-1"]
    try:
        import torch

        return [str(i) for i in range(torch.cuda.device_count())]
    except Exception:  # no torch build with CUDA: CPU only
        return []


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        return os.cpu_count() or 1


class _Terminated(Exception):
    pass


def plan(settings: StudySettings, flags: Optional[set[str]] = None) -> tuple[list[Task], dict[str, str]]:
    """The runs still to do (in grid order) and the variants left out, with why."""
    out = Path(settings.out)
    tasks, left_out = [], {}
    for v in select_variants(settings.kind, settings.variants, settings.small_batch_lr):
        missing = [f for f in v.needs if flags is not None and f not in flags]
        if missing:
            left_out[v.name] = f"`normlab {settings.kind} train` offers no {', '.join(missing)}"
            continue
        for seed in settings.seed_list(v.name):
            d = run_dir(out, v.name, seed)
            state = run_state(d)
            if state != "finished":
                tasks.append(Task(v, seed, d, resume=state == "interrupted"))
    return tasks, left_out


def _utc(t: float) -> str:
    """A time.time() value as ISO 8601 UTC to the second (the report's wall-time span)."""
    return datetime.fromtimestamp(t, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def run_study(settings: StudySettings, *, report: bool = True,
              log: Callable[[str], None] = lambda s: print(s, flush=True), estimate: bool = True) -> int:
    """Run every unfinished run of the study, then write its report.

    Returns 0 when every run of the grid has finished (diverged runs count as
    finished: they ended as designed), 1 when some run failed.
    """
    settings.validate()
    out = Path(settings.out)
    out.mkdir(parents=True, exist_ok=True)
    lock_fd = os.open(out / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(lock_fd)
        raise ValueError(f"{out}: another study (or a run it started) is still running there; "
                         f"wait for it or stop it first") from None
    try:
        return _run_locked(settings, out, lock_fd, report, log, estimate)
    finally:
        os.close(lock_fd)


def _run_locked(settings, out, lock_fd, report, log, estimate=True) -> int:
    saved = _check_settings(out, settings)
    flags = available_flags(settings.kind)
    tasks, left_out = plan(settings, flags)
    # Refuse before starting anything if the single-run command lacks a flag we pass.
    for t in tasks[:1] + [t for t in tasks if t.variant.needs]:
        missing = sorted(_flags_of(run_command(settings, t.variant, t.seed, t.resume)) - flags)
        if missing:
            raise ValueError(f"`normlab {settings.kind} train` does not offer {', '.join(missing)}")
    requested = sorted(set(saved.get("variants_requested", []))
                       | {v.name for v in select_variants(settings.kind, settings.variants, settings.small_batch_lr)},
                       key=[v.name for v in variants_for(settings.kind)].index)
    study = {
        "kind": settings.kind,
        "settings": settings.to_dict(),
        "grid": [{"name": v.name, "label": v.label, "args": list(v.args), **v.settings}
                 for v in variants_for(settings.kind, settings.small_batch_lr)],
        "variants_requested": requested,
        "seeds": settings.seed_list(),
        "left_out": {**saved.get("left_out", {}), **left_out},
        "shortened": settings.shortened(),
        "created": saved.get("created", time.strftime("%Y-%m-%dT%H:%M:%S%z")),
    }
    for name in list(study["left_out"]):
        if name not in left_out and name in requested:
            del study["left_out"][name]
    atomic_write_json(out / STUDY, study)
    for name, why in left_out.items():
        log(f"study: leaving out {name}: {why}")

    progress = None
    if tasks and estimate:
        from normlab.study.estimate import Progress, estimate_study, hms

        log(f"study: timing a few training steps of each kind of run to estimate the wall time ...")
        est = estimate_study(settings, tasks, threads=max(1, _cpu_count() // min(settings.jobs, len(tasks))))
        log(f"study: {len(tasks)} run(s) to do, {settings.jobs} at a time: estimated wall time {hms(est.total)} "
            f"(eager-mode timing of a few steps; compiling, early stopping and other load change it)")
        progress = Progress(est)
    failed = _run_tasks(tasks, settings, out, lock_fd, log, progress)
    if report:
        from normlab.study.report import write_report

        paths = write_report(out)
        log(f"study: report written to {paths[0]} and {paths[1]}")
    if failed:
        log(f"study: {len(failed)} run(s) failed: {', '.join(failed)}; see {out / 'logs'}; "
            f"rerun the same command to retry them")
        return 1
    return 0


def _run_tasks(tasks: list[Task], settings: StudySettings, out: Path, lock_fd: int, log,
               progress=None) -> list[str]:
    if not tasks:
        log("study: every run has finished already")
        return []
    jobs = min(settings.jobs, len(tasks))
    gpus = _gpu_list(settings.device)
    threads = max(1, _cpu_count() // jobs)
    (out / "logs").mkdir(exist_ok=True)
    pending = list(tasks)
    running: dict[int, tuple[Task, subprocess.Popen, float, object]] = {}  # slot -> ...
    failed: list[str] = []

    def on_term(signum, frame):
        raise _Terminated()

    try:  # a study killed with SIGTERM stops its runs cleanly, as Ctrl-C does
        old_term = signal.signal(signal.SIGTERM, on_term)
    except ValueError:  # not the main thread: leave SIGTERM alone
        old_term = None
    try:
        while pending or running:
            for slot in range(jobs):
                if slot in running or not pending:
                    continue
                t = pending.pop(0)
                env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
                           PYTHONUNBUFFERED="1")
                if gpus:
                    env["CUDA_VISIBLE_DEVICES"] = gpus[slot % len(gpus)]
                argv = run_command(settings, t.variant, t.seed, t.resume)
                logf = open(out / "logs" / f"{t.name}.log", "a")
                logf.write(f"\n$ {' '.join(argv)}\n")
                logf.flush()
                where = f"GPU {env['CUDA_VISIBLE_DEVICES']}" if gpus else f"{threads} CPU thread(s)"
                log(f"study: {'resuming' if t.resume else 'starting'} {t.name} on {where}")
                proc = subprocess.Popen(argv, stdout=logf, stderr=subprocess.STDOUT, env=env,
                                        pass_fds=(lock_fd,))
                running[slot] = (t, proc, time.time(), logf)
            time.sleep(0.2)
            for slot, (t, proc, start, logf) in list(running.items()):
                rc = proc.poll()
                if rc is None:
                    continue
                logf.close()
                del running[slot]
                seconds = time.time() - start
                state = run_state(t.dir)
                append_jsonl(out / EVENTS, {"run": t.variant.name, "seed": t.seed, "resumed": t.resume,
                                            "returncode": rc, "seconds": round(seconds, 3), "state": state,
                                            "started": _utc(start), "finished": _utc(start + seconds)})
                if rc == 0 and state == "finished":
                    status = read_json(t.dir / SUMMARY).get("status", "finished")
                    left = f"; {progress.finished(t.name, seconds)}" if progress is not None else ""
                    log(f"study: {t.name} {status} in {seconds:.0f}s{left}")
                else:
                    failed.append(t.name)
                    tail = _tail(out / "logs" / f"{t.name}.log")
                    log(f"study: {t.name} failed (exit {rc}); last lines of its log:\n{tail}")
    except (KeyboardInterrupt, _Terminated):
        log("study: interrupted; stopping the runs (rerun the same command to resume them)")
        for t, proc, start, logf in running.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        deadline = time.time() + 30
        for t, proc, start, logf in running.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            logf.close()
        raise KeyboardInterrupt
    finally:
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)
    return failed


def _tail(path: Path, n: int = 15) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return "(no log)"
    return "\n".join("    " + line for line in lines[-n:])
