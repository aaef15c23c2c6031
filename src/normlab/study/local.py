"""The local backend: a study's runs as a pool of processes on this machine.

``--jobs N`` runs at once. With several GPUs each run gets its own
(round-robin over ``CUDA_VISIBLE_DEVICES``, else every GPU torch sees); on the
CPU each run gets ``cores // N`` threads (or ``--cpus-per-run``). The runs
inherit the study's lock, so the folder stays locked while any of them lives.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Optional

from normlab.files import LOGS, writing
from normlab.study.backends import (ClusterSettings, Log, Progress, Task, Terminated, default_signals, record_attempt,
                                    record_end, shown_command, threads_per_run)
from normlab.study.runs import run_command, write_run_config
from normlab.study.settings import StudySettings, run_dir

# After the SIGINT of a stop, how long a run gets to write its checkpoint and exit, then after
# a SIGTERM; only a run still alive after both is killed (SIGKILL).
STOP_SECONDS = (30.0, 10.0)


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


def run_tasks(tasks: list[Task], settings: StudySettings, cluster: ClusterSettings, out: Path, lock_fd: int,
              log: Log, estimate: Optional[dict[str, float]] = None, cwd: Optional[Path] = None) -> list[str]:
    """Run ``tasks`` ``settings.jobs`` at a time; return the names of those that failed.

    ``settings``: with the paths the runs see (from ``cwd``); ``estimate``: run name -> estimated seconds, for the time-left lines; ``cwd``: the folder the
    runs start in, which the relative paths of ``settings`` start from (default: this process's)."""
    jobs = min(settings.jobs, len(tasks))
    gpus = _gpu_list(settings.device)
    threads = threads_per_run(cluster, jobs)
    (out / LOGS).mkdir(exist_ok=True)
    pending = list(tasks)
    running: dict[int, tuple[Task, subprocess.Popen, float, object]] = {}  # slot -> ...
    failed: list[str] = []
    progress = Progress(len(tasks), jobs, estimate)

    def on_term(signum, frame):
        raise Terminated()

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
                # TORCHINDUCTOR_COMPILE_THREADS: N runs compiling at once each start their own compile
                # workers; the run's share of the cores keeps them from oversubscribing the machine.
                env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
                           TORCHINDUCTOR_COMPILE_THREADS=str(threads), PYTHONUNBUFFERED="1")
                if gpus:
                    env["CUDA_VISIBLE_DEVICES"] = gpus[slot % len(gpus)]
                argv = run_command(settings.kind, run_dir(Path(settings.out), t.variant.name, t.seed), t.resume)
                with writing(out / LOGS / f"{t.name}.log"):
                    logf = open(out / LOGS / f"{t.name}.log", "a")
                    logf.write(f"\n$ {shown_command(argv)}\n")
                    logf.flush()
                if not t.resume:  # the run is its config: written where the run reads it, then started
                    try:
                        write_run_config(settings, t.variant, t.seed, t.dir)
                    except BaseException:
                        logf.close()
                        raise
                where = f"GPU {env['CUDA_VISIBLE_DEVICES']}" if gpus else f"{threads} CPU thread(s)"
                log(f"study: {'resuming' if t.resume else 'starting'} {t.name} on {where}")
                proc = subprocess.Popen(argv, stdout=logf, stderr=subprocess.STDOUT, env=env, cwd=cwd,
                                        pass_fds=(lock_fd,), preexec_fn=default_signals)
                running[slot] = (t, proc, time.time(), logf)
                progress.running += 1
            time.sleep(0.2)
            for slot, (t, proc, start, logf) in list(running.items()):
                rc = proc.poll()
                if rc is None:
                    continue
                logf.close()
                del running[slot]
                progress.running -= 1
                if not record_end(out, t, rc, time.time() - start, progress, log):
                    failed.append(t.name)
    except (KeyboardInterrupt, Terminated):
        names = ", ".join(t.name for t, *_ in running.values()) or "none"
        log(f"study: interrupted; stopping the running run(s): {names}")
        _stop(running, log)
        for t, proc, start, logf in running.values():
            record_attempt(out, t, proc.returncode, time.time() - start, error="interrupted")
        log(f"study: stopped {names} (each keeps its last checkpoint); {len(pending)} run(s) not started; "
            f"rerun the same command to resume the study")
        raise KeyboardInterrupt
    except BaseException:  # e.g. a full disk in the study folder: no run is left behind, running alone
        _stop(running, log)
        raise
    finally:
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)
    return failed


def _stop(running: dict, log: Log) -> None:
    """Stop the runs: SIGINT (a run checkpoints nothing more and exits 130), then SIGTERM for a run
    that has not ended within ``STOP_SECONDS[0]``; SIGKILL only for one alive after both."""
    procs = [(t, proc, logf) for t, proc, start, logf in running.values()]
    for sig, seconds in zip((signal.SIGINT, signal.SIGTERM), STOP_SECONDS):
        alive = [(t, p) for t, p, _ in procs if p.poll() is None]
        if not alive:
            break
        if sig == signal.SIGTERM:
            log(f"study: {', '.join(t.name for t, _ in alive)} still running {STOP_SECONDS[0]:.0f} s after "
                f"SIGINT; sending SIGTERM")
        for _, p in alive:
            p.send_signal(sig)
        deadline = time.time() + seconds
        for _, p in alive:
            try:
                p.wait(timeout=max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                pass
    for t, p, logf in procs:
        if p.poll() is None:
            log(f"study: {t.name} did not stop; killing it (its last checkpoint is kept)")
            p.kill()
            p.wait()
        logf.close()
