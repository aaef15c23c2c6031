"""The Ray backend: each run of a study's grid is one Ray task on a Ray cluster.

A task runs the same ``normlab <kind> train --config ...`` command as the local backend
(``runs.run_command``; the driver writes the run's config.json first), as a child process of the Ray worker, and asks the
cluster for what the run needs: a quarter of a GPU (``RUNS_PER_GPU``) where the cluster has GPUs (and the
study's ``--device`` allows them) and ``--cpus-per-run`` CPUs (default 1), else ``--cpus-per-run`` CPUs
(default: the threads a local run would get, ``backends.threads_per_run``, at most the cluster's CPUs);
the run's thread count (``OMP_NUM_THREADS``) is set to those CPUs, so that a CPU study on Ray gives the
numbers of a local one.

Where the run directory lives:

- shared filesystem (the study folder is visible to the worker, found out by
  a token file the driver writes into it, or forced with ``--shared-fs yes``):
  the run writes in place, and a retried task resumes from its ``last.pt``.
- no shared filesystem: the run writes into a scratch folder on the worker
  (``$TMPDIR/normlab-ray/<study id>/<variant>/seed<S>``; a retry on the same
  node resumes from it); when it finishes, its files (all but ``last.pt``)
  come back to the driver, which writes them into the study folder as a
  complete directory and renames it into place. The run's folder in the
  study (its config.json, and an interrupted run's files) is shipped to the
  worker, so that the run starts (or resumes) there.

Failures: a worker that dies (killed, out of memory, node lost) is retried by
Ray, at most ``--max-retries`` times; the child process dies with its worker
(``PR_SET_PDEATHSIG``), so a retry never shares a run directory with a
leftover. A run that fails by itself (its command exits non-zero: bad data,
an error) ends its task normally with that exit code: Ray does not retry it,
and it is reported failed, as on the local backend.

Progress: tasks report their start (node, process, attempt) to a small actor;
the driver prints starts, retries and ends, with runs done / running / queued
and the time left.
"""

from __future__ import annotations

import ctypes
import fcntl
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Optional

from normlab.files import LAST, LOGS, STUDY, SUMMARY, atomic_write_text, read_json
from normlab.hardware import RUNS_PER_GPU
from normlab.study.backends import (ClusterSettings, Log, Progress, Task, Terminated, record_end, run_state,
                                    shown_command, threads_per_run)
from normlab.study.runs import run_command, write_run_config
from normlab.study.settings import StudySettings
from normlab.study.settings import run_dir as grid_run_dir

SHARED_TOKEN = ".shared-fs-token"
SHIPPED_LEFT_BEHIND = (LAST,)  # the run is over: its resume checkpoint stays on the worker (then deleted)


def import_ray():
    try:
        import ray
    except ImportError:
        raise ValueError("--cluster ray needs Ray: pip install 'normlab[ray]'") from None
    return ray


def check_address(address: Optional[str], timeout: float = 30.0) -> None:
    """Refuse, within ``timeout`` seconds, a cluster address where nothing answers.

    Ray itself retries such an address for ever (every 30 s, deaf to Ctrl-C
    meanwhile); the study calls this before it writes anything. ``None``
    (``$RAY_ADDRESS``, else a new local cluster) and ``auto`` are left to Ray.
    """
    flag = "--ray-address" if address else "RAY_ADDRESS"
    address = address or os.environ.get("RAY_ADDRESS")
    if not address or address in ("auto", "local"):
        return
    host, sep, port = address.split("://", 1)[-1].rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ValueError(f"{flag} {address}: expected HOST:PORT, the Ray head's address (e.g. 10.0.0.1:6379), "
                         f"got {address!r}")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as e:
        why = f"no answer within {timeout:g} s" if isinstance(e, socket.timeout) else (e.strerror or str(e)).lower()
        raise ValueError(f"{flag} {address}: no Ray cluster answers there ({why}); start one there "
                         f"(`ray start --head --port {port}`) or fix the address") from None


def connect(ray, address: Optional[str]) -> bool:
    """Join the cluster at ``address`` (or ``$RAY_ADDRESS``), else start a local one; True if we connected."""
    if ray.is_initialized():  # a library user (or a test) already connected this process
        return False
    address = address or os.environ.get("RAY_ADDRESS")
    env_vars = {"PYTHONPATH": os.environ["PYTHONPATH"]} if os.environ.get("PYTHONPATH") else {}
    kw = dict(log_to_driver=False, runtime_env={"env_vars": env_vars} if env_vars else None)
    if address:
        try:
            ray.init(address=address, **kw)
        except ConnectionError as e:
            hint = ("; a cluster with token authentication also needs RAY_AUTH_MODE=token here"
                    if os.environ.get("RAY_AUTH_MODE") != "token" else "")
            raise ValueError(f"could not join the Ray cluster at {address} ({e}){hint}") from None
    else:  # a fresh single-machine cluster, its traffic on the loopback address where Ray allows it
        ray.init(address="local", include_dashboard=False, _node_ip_address="127.0.0.1", **kw)
    return True


class _Board:
    """A Ray actor the tasks tell when they start (which node, which process, which attempt)."""

    def __init__(self):
        self.events: list[dict] = []

    def started(self, event: dict) -> None:
        self.events.append(event)

    def take(self) -> list[dict]:
        events, self.events = self.events, []
        return events


def _child_setup() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Let SIGINT and SIGTERM stop the run again, and (Linux) kill it when the Ray worker that started it dies.

    A Ray worker's task thread blocks signals, and may ignore SIGINT; both
    survive exec, and the run would not stop on the SIGINT of a cancelled task.
    """
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    libc = ctypes.CDLL(None, use_errno=True)
    libc.signal(ctypes.c_int(signal.SIGINT), ctypes.c_void_p(0))  # 0 = SIG_DFL
    libc.signal(ctypes.c_int(signal.SIGTERM), ctypes.c_void_p(0))
    if sys.platform.startswith("linux"):
        libc.prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG


def _read_tree(root: Path, skip: tuple[str, ...] = ()) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name not in skip and not p.name.endswith(".tmp")}


def _write_tree(root: Path, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


def install_run(target: Path, files: dict[str, bytes]) -> None:
    """Write a run directory shipped back from a worker into the study folder, all at once.

    The files go into a temporary folder beside ``target``, which is then
    renamed to ``target`` (an interrupted attempt already there is moved
    aside first and deleted after): readers see the old directory or the
    complete new one, never a mix.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.incoming-", dir=target.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # as a folder the run made itself, not mkdtemp's 0700
    try:
        _write_tree(tmp, files)
        old = None
        if target.exists():
            old = target.parent / f".{target.name}.replaced-{uuid.uuid4().hex[:8]}"
            os.replace(target, old)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def run_on_worker(spec: dict, shipped: Optional[dict], board) -> dict:
    """The body of one Ray task: run one single run's command on this worker; report how it ended.

    ``spec``: the study settings, the variant and seed, the study folder as the
    driver sees it, the token proving a shared filesystem, the study id, the
    threads. ``shipped``: the files of the run's folder in the study (its
    config.json; an interrupted run's files), or None with a shared filesystem. Returns the exit code, seconds, node, and without a shared
    filesystem the run's log and (when it finished) its files.
    """
    import ray

    settings: StudySettings = spec["settings"]
    node = ray.util.get_node_ip_address()
    board.started.remote({"run": spec["name"], "node": node, "pid": os.getpid(), "time": time.time()})
    study = Path(spec["study"])  # absolute: a worker's current folder is not the driver's
    shared = spec["shared_fs"] == "yes" or (
        spec["shared_fs"] == "auto" and (study / SHARED_TOKEN).is_file()
        and (study / SHARED_TOKEN).read_text().strip() == spec["token"])
    if shared:
        run_dir = grid_run_dir(study, spec["variant"].name, spec["seed"])
        log_path = study / LOGS / f"{spec['name']}.log"
    else:
        run_dir = Path(tempfile.gettempdir()) / "normlab-ray" / spec["study_id"] / spec["variant"].name / f"seed{spec['seed']}"
        log_path = run_dir.parent / f"seed{spec['seed']}.log"
        if run_state(run_dir) == "new":  # nothing of an earlier attempt on this node: start from what was shipped
            shutil.rmtree(run_dir, ignore_errors=True)
            if log_path.exists():
                log_path.unlink()
            if shipped:
                _write_tree(run_dir, shipped)
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    # One writer per run directory: a leftover of a dead attempt (if any survived) is waited for.
    lock_fd = os.open(run_dir.parent / f".seed{spec['seed']}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(lock_fd, fcntl.LOCK_EX)
    try:
        state = run_state(run_dir)
        result = {"node": node, "pid": os.getpid(), "shared_fs": shared, "resumed": state == "interrupted"}
        if state == "finished":  # the run ended, but its worker died before the task could return
            rc, seconds = 0, float(read_json(run_dir / SUMMARY).get("seconds") or 0.0)
        else:
            argv = run_command(settings.kind, run_dir, state == "interrupted", python=sys.executable)
            rc, seconds = _run_child(argv, spec, log_path, lock_fd, node)
        result.update(returncode=rc, seconds=seconds)
        if not shared:
            result["log"] = log_path.read_text(errors="replace") if log_path.exists() else ""
            if rc == 0 and run_state(run_dir) == "finished":
                result["files"] = _read_tree(run_dir, skip=SHIPPED_LEFT_BEHIND)
            shutil.rmtree(run_dir, ignore_errors=True)
            log_path.unlink(missing_ok=True)
        return result
    finally:
        os.close(lock_fd)
        if not shared and not run_dir.exists():  # leave no empty folders of a shipped run on the worker
            (run_dir.parent / f".seed{spec['seed']}.lock").unlink(missing_ok=True)
            for d in (run_dir.parent, run_dir.parent.parent):
                try:
                    d.rmdir()
                except OSError:  # another run of the study still there
                    break


def _run_child(argv: list[str], spec: dict, log_path: Path, lock_fd: int, node: str) -> tuple[int, float]:
    """Run one run's command as a child of this Ray worker, its output appended to ``log_path``;
    returns its exit code and seconds. A ``ray.cancel`` stops it as the local backend stops a run."""
    threads = str(spec["threads"])
    env = dict(os.environ, OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads, PYTHONUNBUFFERED="1")
    if not spec["gpu"]:
        env["CUDA_VISIBLE_DEVICES"] = ""  # a CPU task never takes a GPU another task was given
    with open(log_path, "a") as logf:
        logf.write(f"\n$ {shown_command(argv)}\n# ray task on node {node}, worker pid {os.getpid()}\n")
        logf.flush()
        start = time.time()
        # The data paths are as typed on the driver (study.json keeps them relative, so that
        # committed study folders name no absolute path): run where the driver ran when
        # that folder exists here (one machine, or the same layout on every node).
        cwd = spec.get("cwd") if spec.get("cwd") and Path(spec["cwd"]).is_dir() else None
        proc = subprocess.Popen(argv, stdout=logf, stderr=subprocess.STDOUT, env=env, cwd=cwd,
                                pass_fds=(lock_fd,), preexec_fn=_child_setup)
        try:
            rc = None
            while rc is None:  # short waits: ray.cancel's KeyboardInterrupt arrives between them
                try:
                    rc = proc.wait(timeout=0.5)
                except subprocess.TimeoutExpired:
                    pass
        except KeyboardInterrupt:  # ray.cancel from the driver (Ctrl-C there): stop as the local backend does
            logf.write("# ray task cancelled: stopping the run\n")
            logf.flush()
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            raise
        return rc, time.time() - start


def _study_id(out: Path) -> str:
    created = read_json(out / STUDY).get("created", "")
    return hashlib.sha256(f"{out.resolve()}|{created}".encode()).hexdigest()[:16]


def run_tasks(tasks: list[Task], settings: StudySettings, cluster: ClusterSettings, out: Path, lock_fd: int,
              log: Log, estimate: Optional[dict[str, float]] = None, cwd: Optional[Path] = None) -> list[str]:
    """Run ``tasks`` as Ray tasks; return the names of those that failed (``estimate``, ``cwd`` as for local)."""
    ray = import_ray()
    try:
        connected = connect(ray, cluster.address)
    except KeyboardInterrupt:
        log(f"study: interrupted while joining the Ray cluster at {cluster.address or os.environ.get('RAY_ADDRESS')}; "
            f"no run was started (rerun the same command)")
        raise
    token_path = out / SHARED_TOKEN
    try:
        resources = ray.cluster_resources()
        gpus, cpus = int(resources.get("GPU", 0)), int(resources.get("CPU", 0))
        if settings.device.startswith("cuda:"):
            raise ValueError(f"expected --device auto, cuda or cpu on Ray (each run gets the GPU the cluster "
                             f"gives it), got {settings.device}")
        if settings.device == "cuda" and not gpus:
            raise ValueError(f"expected GPUs in the Ray cluster for --device cuda, got none ({cpus} CPUs)")
        use_gpu = gpus > 0 and settings.device in ("auto", "cuda")
        # CPU runs: the threads a local run would get (the thread count changes the last digits);
        # GPU runs: 1 CPU each unless told, so that a GPU node's CPUs do not cap the runs sharing its GPUs.
        per_run_cpus = threads_per_run(cluster, min(settings.jobs, len(tasks)), gpu=use_gpu)
        if not use_gpu and per_run_cpus > cpus:
            if cluster.cpus_per_run:
                raise ValueError(f"expected --cpus-per-run <= the cluster's {cpus} CPUs, got {per_run_cpus}")
            log(f"study: each run gets the cluster's {cpus} CPUs, not the {per_run_cpus} threads it would get "
                f"on this machine (its numbers may differ in the last digits from a local study)")
            per_run_cpus = cpus
        # Several runs share a GPU (RUNS_PER_GPU, measured to fill one): each asks for that fraction.
        slots = gpus * RUNS_PER_GPU if use_gpu else cpus // per_run_cpus
        if cluster.max_in_flight:
            slots = min(slots, cluster.max_in_flight)
        token = uuid.uuid4().hex
        if cluster.shared_fs != "no":
            atomic_write_text(token_path, token + "\n")
        (out / LOGS).mkdir(exist_ok=True)
        board = ray.remote(num_cpus=0)(_Board).remote()
        task_fn = ray.remote(run_on_worker).options(
            num_cpus=per_run_cpus, num_gpus=1 / RUNS_PER_GPU if use_gpu else 0, max_retries=cluster.max_retries,
            retry_exceptions=False, name="normlab-run")
        ask = f"1/{RUNS_PER_GPU} GPU and {per_run_cpus} CPU(s)" if use_gpu else f"{per_run_cpus} CPU(s)"
        log(f"study: {len(tasks)} run(s) on the Ray cluster ({cpus} CPUs, {gpus} GPUs), each asking for {ask}; "
            f"up to {slots} at once")
        base = dict(settings=settings, cwd=str(cwd or os.getcwd()), study=str(out.resolve()), token=token, shared_fs=cluster.shared_fs, study_id=_study_id(out),
                    threads=per_run_cpus, gpu=use_gpu)
        return _drive(ray, tasks, base, task_fn, board, out, cluster, Progress(len(tasks), slots, estimate), log)
    finally:
        token_path.unlink(missing_ok=True)
        if connected:
            ray.shutdown()


def _drive(ray, tasks, base, task_fn, board, out, cluster, progress, log) -> list[str]:
    pending = list(tasks)
    inflight: dict = {}  # ObjectRef -> (task, submitted at)
    starts: dict[str, list[dict]] = {}  # run -> the start of each attempt
    ended: set[str] = set()
    by_name = {t.name: t for t in tasks}
    failed: list[str] = []
    limit = cluster.max_in_flight or len(tasks)

    def on_term(signum, frame):
        raise Terminated()

    try:
        old_term = signal.signal(signal.SIGTERM, on_term)
    except ValueError:  # not the main thread
        old_term = None
    try:
        while pending or inflight:
            while pending and len(inflight) < limit:
                t = pending.pop(0)
                if not t.resume:  # the run is its config: written into the study folder first
                    write_run_config(base["settings"], t.variant, t.seed, t.dir)
                shipped = None
                if cluster.shared_fs != "yes":  # the worker may not see the run's folder: send it along
                    shipped = _read_tree(t.dir)
                spec = dict(base, name=t.name, variant=t.variant, seed=t.seed)
                inflight[task_fn.remote(spec, shipped, board)] = (t, time.time())
            ready, _ = ray.wait(list(inflight), num_returns=1, timeout=1.0)
            for ev in ray.get(board.take.remote()):
                if ev["run"] in ended:  # a start that arrived after its end
                    continue
                seen = starts.setdefault(ev["run"], [])
                seen.append(ev)
                t = by_name[ev["run"]]
                if len(seen) == 1:
                    progress.running += 1
                    log(f"study: {'resuming' if t.resume else 'starting'} {t.name} on node {ev['node']} "
                        f"(worker pid {ev['pid']})")
                else:
                    log(f"study: retrying {t.name} on node {ev['node']} (attempt {len(seen)}): "
                        f"the worker of attempt {len(seen) - 1} died")
            for ref in ready:
                t, _ = inflight.pop(ref)
                ended.add(t.name)
                if starts.get(t.name):
                    progress.running -= 1
                attempts = len(starts.get(t.name, [])) or None
                try:
                    r = ray.get(ref)
                except ray.exceptions.RayError as e:  # retries used up (the worker kept dying), or the task broke
                    msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                    ok = record_end(out, t, None, 0.0, progress, log, backend="ray", attempts=attempts,
                                    error=f"{type(e).__name__} after {attempts or 0} attempt(s): {msg}")
                else:
                    if "log" in r:
                        with open(out / LOGS / f"{t.name}.log", "a") as f:
                            f.write(r["log"])
                    if r.get("files"):
                        install_run(t.dir, r["files"])
                    t.resume = r["resumed"]
                    ok = record_end(out, t, r["returncode"], r["seconds"], progress, log, backend="ray",
                                    node=r["node"], attempts=attempts, shared_fs=r["shared_fs"])
                if not ok:
                    failed.append(t.name)
    except (KeyboardInterrupt, Terminated):
        log("study: interrupted; cancelling the Ray tasks (rerun the same command to resume them)")
        for ref in inflight:
            ray.cancel(ref)
        ray.wait(list(inflight), num_returns=len(inflight), timeout=40)
        raise KeyboardInterrupt
    finally:
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)
    return failed
