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

from normlab.study.backends import (ClusterSettings, Log, Progress, Task, Terminated, record_attempt, record_end,
                                   shown_command, threads_per_run)
from normlab.study.grids import StudySettings, run_command


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

    ``estimate``: run name -> estimated seconds, for the time-left lines; ``cwd``: the folder the
    runs start in, which the relative paths of ``settings`` start from (default: this process's)."""
    jobs = min(settings.jobs, len(tasks))
    gpus = _gpu_list(settings.device)
    threads = threads_per_run(cluster, jobs)
    (out / "logs").mkdir(exist_ok=True)
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
                argv = run_command(settings, t.variant, t.seed, t.resume)
                logf = open(out / "logs" / f"{t.name}.log", "a")
                logf.write(f"\n$ {shown_command(argv)}\n")
                logf.flush()
                where = f"GPU {env['CUDA_VISIBLE_DEVICES']}" if gpus else f"{threads} CPU thread(s)"
                log(f"study: {'resuming' if t.resume else 'starting'} {t.name} on {where}")
                proc = subprocess.Popen(argv, stdout=logf, stderr=subprocess.STDOUT, env=env, cwd=cwd,
                                        pass_fds=(lock_fd,))
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
            record_attempt(out, t, proc.returncode, time.time() - start, error="interrupted")
        raise KeyboardInterrupt
    finally:
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)
    return failed
