"""What both backends of a study share: the run to do, where it runs, how its end is recorded.

A backend takes the runs still to do (``Task``s, from ``runner.plan``), writes
each new run's config.json (``runs.write_run_config``) and runs it as
``normlab <kind> train --config <run dir>/config.json`` (``runs.run_command``). Two exist, behind the same call
``run_tasks(tasks, settings, cluster, out, lock_fd, log) -> failed run names``:

- ``local``: a pool of processes on this machine (``--jobs`` at once).
- ``ray``: one Ray task per run on a Ray cluster (``normlab.study.ray_backend``).

Both end a run the same way (``record_end``): one line in ``events.jsonl``,
one line on the console, the end of the run's log when it failed, and a
progress line (runs done / running / queued, and the time left). Every attempt
gets its line, an interrupted one too (``record_attempt``, from the backends'
Ctrl-C path), with the update and epoch the run had reached when the attempt
started and ended (``from_step``/``to_step``, ``from_epoch``/``to_epoch``, read
from its ``metrics.jsonl``), so that the report can sum the time of every
attempt and count the epochs of attempts that left no line (a driver killed
outright) by their own times.
"""

from __future__ import annotations

import math
import os
import signal
import time
from datetime import datetime, timezone
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal, Optional

from normlab.files import EVENTS, LOGS, METRICS, SUMMARY, append_jsonl, read_json, read_jsonl
from normlab.study.grids import Variant
from normlab.study.runs import started
from normlab.study.timefmt import hms

Log = Callable[[str], None]


def progress_of(path: Optional[Path]) -> tuple[Optional[float], Optional[float]]:
    """(update, epoch) of the last evaluation in a run directory's metrics.jsonl; (None, None) without one."""
    if path is None:
        return None, None
    try:
        recs = read_jsonl(Path(path) / METRICS)
    except (OSError, ValueError):
        return None, None
    last = recs[-1] if recs else {}
    return last.get("step"), last.get("epoch")


@dataclass
class Task:
    variant: Variant
    seed: int
    dir: Path
    resume: bool
    # where the run stood when the task was planned (its attempt starts from there): update, epoch
    start: tuple[Optional[float], Optional[float]] = (None, None)

    def __post_init__(self):
        if self.start == (None, None):
            self.start = progress_of(self.dir)

    @property
    def name(self) -> str:
        return f"{self.variant.name}-seed{self.seed}"


def run_state(path: Path) -> str:
    """``finished`` (summary.json), ``interrupted`` (started by the trainer, no summary) or ``new``
    (nothing, or only the config.json the study wrote before starting it)."""
    path = Path(path)
    if (path / SUMMARY).exists():
        return "finished"
    if started(path):
        return "interrupted"
    return "new"


@dataclass
class ClusterSettings:
    """Where a study's runs execute. Not part of the experiment: a rerun may change any of it.

    ``cpus_per_run``: the threads of each run, and on ``ray`` the CPUs each
    task asks the cluster for (default on either backend: ``threads_per_run``,
    this machine's cores divided by the runs at once, so that a study gives
    the same numbers on both). ``max_retries``: how often
    Ray reruns a task whose worker died (a run that fails by itself is never
    rerun). ``shared_fs``: whether Ray workers see the study folder (``auto``:
    each task checks for a token file the driver wrote there).
    ``max_in_flight``: Ray tasks submitted at once (``--jobs``; default: as
    many as there are runs, the cluster's resources decide how many run).
    """

    backend: Literal["local", "ray"] = "local"
    address: Optional[str] = None
    cpus_per_run: Optional[int] = None
    max_retries: int = 2
    shared_fs: Literal["auto", "yes", "no"] = "auto"
    max_in_flight: Optional[int] = None

    def validate(self) -> None:
        if self.backend not in ("local", "ray"):
            raise ValueError(f"expected --cluster local or ray, got {self.backend!r}")
        if self.address is not None and self.backend != "ray":
            raise ValueError(f"expected --cluster ray with --ray-address, got --cluster {self.backend}")
        if self.cpus_per_run is not None and self.cpus_per_run < 1:
            raise ValueError(f"expected --cpus-per-run >= 1, got {self.cpus_per_run}")
        if self.max_retries < 0:
            raise ValueError(f"expected --max-retries >= 0, got {self.max_retries}")
        if self.shared_fs not in ("auto", "yes", "no"):
            raise ValueError(f"expected --shared-fs auto, yes or no, got {self.shared_fs!r}")
        if self.max_in_flight is not None and self.max_in_flight < 1:
            raise ValueError(f"expected --jobs >= 1, got {self.max_in_flight}")


def threads_per_run(cluster: ClusterSettings, jobs: int, gpu: bool = False) -> int:
    """CPU threads of each run, decided here only (the runs of either backend and the estimate):
    ``--cpus-per-run``, else 1 for a Ray run on a GPU (so that a GPU node's CPUs do not cap the runs
    sharing its GPUs), else this machine's cores divided by the runs at once (``jobs``). The thread
    count changes the last digits of a run's numbers (reductions split otherwise), so a local and a
    Ray study on CPUs agree only with it."""
    if cluster.cpus_per_run:
        return cluster.cpus_per_run
    if gpu and cluster.backend == "ray":
        return 1
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        cores = os.cpu_count() or 1
    return max(1, cores // max(1, jobs))


class Progress:
    """Counts of the runs of this invocation, and the time left.

    With an ``estimate`` (run name -> estimated seconds, ``normlab.study.estimate``)
    the time left is the estimate of the runs not yet done, packed on ``slots``,
    times how much longer (or shorter) the finished runs took than estimated.
    Without one it is the mean time of the runs finished so far times the runs
    not yet done, divided by ``slots``; unknown until one run has finished.
    """

    def __init__(self, total: int, slots: int, estimate: Optional[dict[str, float]] = None):
        self.total, self.slots = total, max(1, slots)
        self.done, self.failed, self.running = 0, 0, 0
        self.seconds: list[float] = []
        self.estimate = dict(estimate or {})
        self.finished: dict[str, float] = {}  # run name -> actual seconds (finished runs)

    def record(self, name: str, seconds: float, ok: bool) -> None:
        self.done += 1
        if ok:
            self.seconds.append(seconds)
            self.finished[name] = seconds
        else:
            self.failed += 1
            self.estimate.pop(name, None)

    def left_seconds(self) -> Optional[float]:
        """Seconds left, or None when nothing tells yet."""
        if self.done >= self.total:
            return 0.0
        if self.estimate:
            from normlab.study.estimate import wall_time

            known = [n for n in self.finished if n in self.estimate]
            est = sum(self.estimate[n] for n in known)
            ratio = sum(self.finished[n] for n in known) / est if known and est > 0 else 1.0
            rest = [v for n, v in self.estimate.items() if n not in self.finished]
            return wall_time(rest, self.slots) * ratio
        if not self.seconds:
            return None
        mean = sum(self.seconds) / len(self.seconds)
        return mean * math.ceil((self.total - self.done) / self.slots)

    def line(self) -> str:
        queued = self.total - self.done - self.running
        left = ""
        secs = self.left_seconds()
        if secs is not None and self.done < self.total:
            left = f"; about {hms(secs)} left"
        failed = f" ({self.failed} failed)" if self.failed else ""
        return (f"study: {self.done}/{self.total} done{failed}, {self.running} running, "
                f"{queued} queued{left}")


def shown_command(argv: list[str]) -> str:
    """A run's argv as its log shows it: the interpreter as ``python`` (no absolute path of this machine)."""
    return " ".join(["python", *argv[1:]] if argv else argv)


def utc(t: float) -> str:
    """A time.time() value as ISO 8601 UTC to the second (the report's wall-time span)."""
    return datetime.fromtimestamp(t, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def record_attempt(out: Path, t: Task, returncode: Optional[int], seconds: float, error: Optional[str] = None,
                   **extra) -> str:
    """Append one attempt of ``t`` to events.jsonl (how far it took the run, how long it took); returns the
    run's state after it."""
    state = run_state(t.dir)
    now = time.time()
    step, epoch = progress_of(t.dir)
    append_jsonl(out / EVENTS, {"run": t.variant.name, "seed": t.seed, "resumed": t.resume,
                                "returncode": returncode, "seconds": round(seconds, 3), "state": state,
                                "started": utc(now - seconds), "finished": utc(now),
                                "from_step": t.start[0], "to_step": step, "from_epoch": t.start[1],
                                "to_epoch": epoch, **({"error": error} if error else {}), **extra})
    return state


def record_end(out: Path, t: Task, returncode: Optional[int], seconds: float, progress: Progress,
               log: Log, error: Optional[str] = None, **extra) -> bool:
    """Record one finished attempt (events.jsonl, console); True when the run finished."""
    state = record_attempt(out, t, returncode, seconds, error, **extra)
    where = f" on {extra['node']}" if extra.get("node") else ""
    ok = returncode == 0 and state == "finished"
    progress.record(t.name, seconds, ok)
    if ok:
        status = read_json(t.dir / SUMMARY).get("status", "finished")
        log(f"study: {t.name} {status} in {hms(seconds)}{where}")
    else:
        why = error or f"exit {returncode}"
        log(f"study: {t.name} failed ({why}){where}; last lines of its log:\n{tail(out / LOGS / f'{t.name}.log')}")
    log(progress.line())
    return ok


def tail(path: Path, n: int = 15) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return "    (no log)"
    return "\n".join("    " + line for line in lines[-n:])


class Terminated(Exception):
    """SIGTERM on the driver: stop the runs as Ctrl-C does."""


def default_signals() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Give a run started by a study the default SIGINT and SIGTERM handling, whatever the study inherited.

    Ignored signals and the signal mask survive ``exec``: a study started with ``&`` by a script
    (a non-interactive shell starts background jobs with SIGINT ignored) would pass that on, and
    its runs would not stop on the SIGINT the study sends them. With SIGINT at its default,
    Python turns it into KeyboardInterrupt, and the run says how to resume.
    """
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
