"""A study's grid on a real Ray cluster (local, 2 CPUs, this machine only; no mocks of Ray).

One cluster serves the module (``ray_cluster``); each study runs as its own
``normlab study ... --cluster ray --ray-address ADDR`` driver process, as a
user would run it. Ray is a test dependency (``scripts/test.sh`` installs
``normlab[ray]``): without it these tests fail, they do not skip.

Loopback only: Ray rewrites a loopback node address into this host's own
address (``ray._private.services.resolve_ip_for_localhost``), so a cluster
started here would listen and talk on the machine's network interface. The
cluster, its workers and every study driver therefore run in a private
network namespace that has only the loopback interface (``loopback_only``:
``unshare(CLONE_NEWNET)`` and ``lo`` brought up, which needs root on Linux);
where no namespace can be made the cluster tests are skipped, saying why. The
fixture also checks that no process of the cluster is left at the end.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from normlab.files import read_json, read_jsonl
from normlab.study.backends import ClusterSettings
from normlab.study.ray_backend import install_run

from test_report import check_table_matches_runs
from test_study import slice_gmb

ROOT = Path(__file__).resolve().parents[1]
# Two runs at once, each with half the cores (the default threads per run on either backend).
RUN_ARGS = ["--epochs", "1", "--jobs", "2", "--run-arg=--batch-size=16", "--run-arg=--eval-every=2"]


def _processes_with(text: str) -> dict[int, str]:
    """pid -> command line of every process whose command line contains ``text``."""
    found = {}
    for p in Path("/proc").iterdir():
        if not p.name.isdigit() or int(p.name) == os.getpid():
            continue
        try:
            cmd = (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # gone meanwhile
            continue
        if text in cmd:
            found[int(p.name)] = cmd
    return found


def _cluster_processes(session_dir: str) -> set[tuple[int, str]]:
    """(pid, start time) of the cluster's processes: those naming its session folder, and all their children.

    Ray renames its workers (``ray::IDLE``), so they are found as children of the raylet.
    """
    procs = {}
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            stat = (p / "stat").read_text().rsplit(")", 1)[1].split()
            cmd = (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # gone meanwhile
            continue
        if stat[0] != "Z":
            procs[int(p.name)] = (int(stat[1]), stat[19], cmd)  # ppid, start time
    found = {pid for pid, (_, _, cmd) in procs.items() if session_dir in cmd}
    while True:
        more = {pid for pid, (ppid, _, _) in procs.items() if ppid in found} - found
        if not more:
            return {(pid, procs[pid][1]) for pid in found}
        found |= more


def _alive(processes: set[tuple[int, str]]) -> set[tuple[int, str]]:
    return {(pid, start) for pid, start in processes if _start_time(pid) == start}


def _start_time(pid: int):
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if stat[0] == "Z" else stat[19]


CLONE_NEWNET, SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x40000000, 0x8913, 0x8914, 0x1
# The cluster's CPUs: as many as this machine has (at least 2), so that a study's default threads per
# run (cores // --jobs, on either backend) fit on it and a Ray study can equal a local one.
CPUS = max(2, len(os.sched_getaffinity(0)))


def _enter_loopback_only_namespace():
    """Move this thread, and every process it starts from now on, into a new network namespace with
    only ``lo`` (up); return the fd of the namespace it was in, or a string saying why it cannot."""
    if not sys.platform.startswith("linux"):
        return f"a private network namespace needs Linux, this is {sys.platform}"
    if os.geteuid() != 0:
        return "a private network namespace (unshare(CLONE_NEWNET)) needs root here; run the tests as root"
    libc = ctypes.CDLL(None, use_errno=True)
    old = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    if libc.unshare(CLONE_NEWNET) != 0:
        os.close(old)
        return f"unshare(CLONE_NEWNET) failed: {os.strerror(ctypes.get_errno())}"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:  # `ip link set lo up`, without iproute2
        flags = struct.unpack("16sH14x", fcntl.ioctl(s, SIOCGIFFLAGS, struct.pack("16sH14x", b"lo", 0)))[1]
        fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | IFF_UP))
    return old


@pytest.fixture(scope="module")
def loopback_only():
    """This module's cluster and studies in a network namespace of their own, with only loopback."""
    old = _enter_loopback_only_namespace()
    if isinstance(old, str):
        pytest.skip(f"Ray tests need a network namespace with only loopback: {old}")
    try:
        assert [name for _, name in socket.if_nameindex()] == ["lo"]
        yield
    finally:
        libc = ctypes.CDLL(None, use_errno=True)
        assert libc.setns(old, CLONE_NEWNET) == 0, os.strerror(ctypes.get_errno())
        os.close(old)


@pytest.fixture(scope="module")
def ray_cluster(loopback_only):
    """A local Ray cluster of ``CPUS`` CPUs for the module, on loopback only; its address; every process
    of it gone afterwards."""
    import ray  # a missing Ray fails the test here

    # Earlier tests leave SIGINT ignored in this pytest process (a probe found SIG_IGN after
    # the test files before this one). An ignored signal stays ignored across fork and exec,
    # so the cluster's workers and the studies started here would never see a Ctrl-C or
    # ray.cancel. Give them the terminal's default, as a user's shell does.
    old_sigint = signal.signal(signal.SIGINT, signal.default_int_handler)
    ray.init(address="local", num_cpus=CPUS, num_gpus=0, include_dashboard=False, _node_ip_address="127.0.0.1",
             log_to_driver=False)
    session_dir = ray._private.worker._global_node.get_session_dir_path()
    address = ray.get_runtime_context().gcs_address
    assert len(_cluster_processes(session_dir)) >= 2, "expected the cluster's gcs_server and raylet"
    try:
        yield address
    finally:
        cluster = _cluster_processes(session_dir)
        ray.shutdown()
        deadline = time.time() + 30
        while _alive(cluster) and time.time() < deadline:
            time.sleep(0.5)
        signal.signal(signal.SIGINT, old_sigint)
        left = {pid: Path(f"/proc/{pid}/cmdline").read_bytes() for pid, _ in _alive(cluster)}
        assert not left, f"Ray processes left behind: {left}"


@pytest.fixture(scope="module")
def gmb_slice(tmp_path_factory, gmb_csv_zip) -> list[str]:
    """480 training sentences: a glove run takes ~4 s of training, long enough to be killed mid-run."""
    return slice_gmb(gmb_csv_zip, tmp_path_factory.mktemp("gmb"), sizes=(480, 48, 48))


def _study(out: Path, data: list[str], *extra: str, timeout: int = 600) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "normlab", "study", "ner", "--data", *data, "--out", str(out),
           "--variants", "random", "glove", *RUN_ARGS, *extra]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def _result(run: Path) -> dict:
    """What a run computed, without its timings: summary and every metrics entry."""
    clean = lambda d: {k: v for k, v in d.items() if "seconds" not in k}
    return {"summary": clean(read_json(run / "summary.json")),
            "metrics": [clean(m) for m in read_jsonl(run / "metrics.jsonl")]}


# ----------------------------------------------------------------------------- without a cluster


def test_cluster_settings_are_validated():
    for kw, msg in [(dict(backend="spark"), "expected --cluster local or ray, got 'spark'"),
                    (dict(address="10.0.0.1:6379"), "expected --cluster ray with --ray-address, got --cluster local"),
                    (dict(backend="ray", cpus_per_run=0), "expected --cpus-per-run >= 1, got 0"),
                    (dict(backend="ray", max_retries=-1), "expected --max-retries >= 0, got -1"),
                    (dict(backend="ray", shared_fs="maybe"), "expected --shared-fs auto, yes or no, got 'maybe'")]:
        with pytest.raises(ValueError, match=msg.replace("(", "\\(").replace(")", "\\)")):
            ClusterSettings(**kw).validate()
    ClusterSettings(backend="ray", address="127.0.0.1:6379", cpus_per_run=2, max_retries=0).validate()


def test_cli_refuses_an_address_without_ray(tmp_path, capsys):
    from normlab.cli import main

    assert main(["study", "ner", "--data", "g.csv", "--out", str(tmp_path / "s"), "--ray-address", "x:1"]) == 2
    assert capsys.readouterr().err.strip() == \
        "normlab: error: expected --cluster ray with --ray-address, got --cluster local"
    assert not (tmp_path / "s").exists()


def test_install_run_replaces_an_interrupted_run_at_once(tmp_path):
    target = tmp_path / "runs/glove/seed0"
    target.mkdir(parents=True)
    (target / "config.json").write_text("{}")
    (target / "last.pt").write_bytes(b"old")
    install_run(target, {"config.json": b'{"a": 1}', "summary.json": b"{}", "sub/plot.png": b"png"})
    assert sorted(str(p.relative_to(target)) for p in target.rglob("*") if p.is_file()) == \
        ["config.json", "sub/plot.png", "summary.json"]  # nothing of the interrupted attempt is left
    assert (target / "config.json").read_text() == '{"a": 1}'
    assert sorted(p.name for p in target.parent.iterdir()) == ["seed0"]  # no temporary folder left
    assert oct(target.stat().st_mode & 0o777) == oct(0o777 & ~_umask())


def _umask() -> int:
    m = os.umask(0)
    os.umask(m)
    return m


def test_cluster_ray_without_ray_installed_is_a_clear_error(tmp_path):
    code = ("import sys; sys.modules['ray'] = None; from normlab.cli import main; "
            f"sys.exit(main(['study', 'ner', '--data', 'g.csv', '--out', {str(tmp_path / 's')!r}, '--cluster', 'ray']))")
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and p.stderr.strip() == \
        "normlab: error: --cluster ray needs Ray: pip install 'normlab[ray]'"


def test_an_address_where_no_cluster_answers_fails_at_once_and_writes_nothing(tmp_path, gmb_slice):
    """Issue 16, finding 5: Ray retried 127.0.0.1:1 every 30 s for ever, after writing study.json and the lock."""
    out = tmp_path / "s"
    t0 = time.time()
    p = _study(out, gmb_slice, "--cluster", "ray", "--ray-address", "127.0.0.1:1", timeout=120)
    assert time.time() - t0 < 60, "not refused within the 30 s bound (plus start-up)"
    assert p.returncode == 2, p.stdout[-3000:] + p.stderr[-3000:]
    assert p.stderr.strip().splitlines()[-1] == ("normlab: error: --ray-address 127.0.0.1:1: no Ray cluster answers "
                                                 "there (connection refused); start one there "
                                                 "(`ray start --head --port 1`) or fix the address")
    assert len(p.stderr.strip().splitlines()) == 1 and not out.exists()


# ----------------------------------------------------------------------------- on the cluster


def test_the_cluster_and_its_tasks_stay_on_loopback(ray_cluster):
    """Issue 16: Ray rewrote the loopback address into the machine's; here no other interface exists."""
    import ray

    assert [name for _, name in socket.if_nameindex()] == ["lo"]
    assert ray_cluster.startswith("127.0.0.1:")
    nodes = [n for n in ray.nodes() if n["Alive"]]
    assert nodes and all(n["NodeManagerAddress"] == "127.0.0.1" for n in nodes)
    where = ray.get(ray.remote(lambda: (ray.util.get_node_ip_address(),
                                        [name for _, name in socket.if_nameindex()])).remote())
    assert where == ("127.0.0.1", ["lo"])  # a worker sees the same namespace


@pytest.mark.parametrize("device, cpus, msg", [
    ("cuda:1", None, "expected --device auto, cuda or cpu on Ray (each run gets the GPU the cluster gives it), "
                     "got cuda:1"),
    ("cuda", None, f"expected GPUs in the Ray cluster for --device cuda, got none ({CPUS} CPUs)"),
    ("cpu", CPUS + 1, f"expected --cpus-per-run <= the cluster's {CPUS} CPUs, got {CPUS + 1}"),
])
def test_what_the_cluster_cannot_give_is_refused_before_any_task(tmp_path, ray_cluster, device, cpus, msg):
    from normlab.study.settings import StudySettings
    from normlab.study.runner import run_study

    s = StudySettings(kind="ner", out=str(tmp_path), data="g.csv", variants=["random"], device=device)
    with pytest.raises(ValueError) as e:  # this process is connected to the session's cluster already
        run_study(s, report=False, cluster=ClusterSettings(backend="ray", cpus_per_run=cpus), log=lambda m: None)
    assert str(e.value) == msg
    assert not (tmp_path / "events.jsonl").exists() and not (tmp_path / "runs").exists()



@pytest.mark.integration
@pytest.mark.timeout(900)
def test_ray_study_equals_the_local_one_and_a_rerun_starts_nothing(tmp_path, ray_cluster, gmb_slice):
    """Local backend against Ray without a shared filesystem, default threads on both (issue 16: they
    differed, 2 against 1): same threads, same summaries and metrics, to the last digit."""
    local, remote = tmp_path / "local", tmp_path / "ray"
    p = _study(local, gmb_slice, "--no-report")
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    t0 = time.time()
    p = _study(remote, gmb_slice, "--cluster", "ray", "--ray-address", ray_cluster, "--shared-fs", "no")
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    print(f"ray study: {time.time() - t0:.1f}s")
    out = p.stdout
    threads = CPUS // 2
    assert (f"2 run(s) on the Ray cluster ({CPUS} CPUs, 0 GPUs), each asking for {threads} CPU(s); "
            f"up to 2 at once") in out
    for name in ("random-seed0", "glove-seed0"):
        assert f"starting {name} on node 127.0.0.1 " in out and f"{name} finished in " in out  # loopback
    assert "study: 2/2 done, 0 running, 0 queued" in out
    assert re.search(r"study: 1/2 done, \d running, \d queued; about (\d+ h )?\d+ (s|min) left", out)  # once one run has ended

    for name in ("random", "glove"):
        a, b = local / f"runs/{name}/seed0", remote / f"runs/{name}/seed0"
        ra, rb = _result(a), _result(b)
        assert len(ra["metrics"]) == 15 and "val_loss" in ra["metrics"][-1] and "test" in ra["summary"]["metrics"]
        assert ra == rb  # same seed, same numbers: exact equality, not approx
        assert read_json(a / "config.json")["env"]["cpu_threads"] == threads
        assert read_json(b / "config.json")["env"]["cpu_threads"] == threads
        shipped = sorted(p.name for p in b.iterdir())
        assert "last.pt" not in shipped and {"best.pt", "config.json", "metrics.jsonl", "summary.json",
                                             "curves.png", "train.log"} <= set(shipped)
        assert not list(b.parent.glob(".*"))  # no temporary folder left beside it
        assert "finished" in (remote / f"logs/{name}-seed0.log").read_text()  # its log came back too
    events = read_jsonl(remote / "events.jsonl")
    assert sorted((e["run"], e["returncode"], e["attempts"], e["shared_fs"], e["backend"]) for e in events) == \
        [("glove", 0, 1, False, "ray"), ("random", 0, 1, False, "ray")]
    md = (remote / "report.md").read_text()
    assert check_table_matches_runs(remote, md) == 2 * 10
    assert not (remote / ".shared-fs-token").exists()

    # A finished study on Ray starts no task: it never even connects to the cluster.
    p = _study(remote, gmb_slice, "--cluster", "ray", "--ray-address", ray_cluster, "--shared-fs", "no",
               "--no-report")
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert "every run has finished already" in p.stdout
    assert "Ray cluster" not in p.stdout and "starting" not in p.stdout
    assert read_jsonl(remote / "events.jsonl") == events


@pytest.mark.integration
@pytest.mark.timeout(900)
def test_killed_worker_is_retried_and_the_run_reported_once(tmp_path, ray_cluster, gmb_slice):
    """Shared filesystem: kill the Ray worker of a running task; Ray retries it, the run resumes from last.pt."""
    out = tmp_path / "study"  # given as a relative --out: the workers still find the study folder
    cmd = [sys.executable, "-m", "normlab", "study", "ner", "--data", *gmb_slice, "--out", "study",
           "--variants", "random", "glove", *RUN_ARGS, "--epochs", "2", "--cluster", "ray",
           "--ray-address", ray_cluster, "--max-retries", "2"]  # 2 epochs: time to kill it mid-run
    run = out.resolve() / "runs/glove/seed0"
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 300
        while not (run / "last.pt").exists():
            assert proc.poll() is None, f"study ended before its worker could be killed:\n{proc.stdout.read()}"
            assert time.time() < deadline, "no last.pt within 5 minutes"
            time.sleep(0.05)
        runs = {pid: cmd for pid, cmd in _processes_with(f"--out {run} ").items() if " ner train " in cmd}
        assert len(runs) == 1, runs
        child = next(iter(runs))
        worker = int(Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()[1])
        title = Path(f"/proc/{worker}/cmdline").read_bytes().decode(errors="replace")
        assert title.startswith("ray::") or "default_worker.py" in title, title  # a Ray worker
        os.kill(worker, signal.SIGKILL)
        # The run dies with its worker: no second writer of the run directory when Ray retries.
        deadline = time.time() + 10
        while Path(f"/proc/{child}").exists() and time.time() < deadline:
            time.sleep(0.05)
        assert not Path(f"/proc/{child}").exists() or "Z" in Path(f"/proc/{child}/stat").read_text().split()[2]

        # Meanwhile a second driver on the same study folder is refused.
        p = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert p.returncode == 2 and "another study (or a run it started) is still running there" in p.stderr

        stdout, _ = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=60)
    assert proc.returncode == 0, stdout[-3000:]
    assert "retrying glove-seed0 on node " in stdout and "(attempt 2): the worker of attempt 1 died" in stdout
    assert stdout.count("glove-seed0 finished in ") == 1
    events = read_jsonl(out / "events.jsonl")
    glove = [e for e in events if e["run"] == "glove"]
    assert len(glove) == 1 and len(events) == 2  # each run reported once
    assert (glove[0]["returncode"], glove[0]["attempts"], glove[0]["resumed"], glove[0]["shared_fs"]) == \
        (0, 2, True, True)
    assert "resumed from" in (out / "logs/glove-seed0.log").read_text()
    s = read_json(run / "summary.json")
    assert s["status"] in ("finished", "early_stopped") and s["updates"] == 60  # 2 epochs of 480/16 updates
    steps = [m["step"] for m in read_jsonl(run / "metrics.jsonl")]
    assert steps == list(range(2, 61, 2))  # none lost or repeated by the retry
    md = (out / "report.md").read_text()
    assert check_table_matches_runs(out, md) == 2 * 10


@pytest.mark.integration
@pytest.mark.timeout(900)
def test_run_with_invalid_data_fails_once_and_the_others_finish(tmp_path, ray_cluster, gmb_slice):
    """Broken GloVe vectors: the glove run fails by itself (not retried), random finishes, the study says so."""
    bad = tmp_path / "vectors.txt"
    bad.write_text("the 0.1 0.2 0.3\nof 0.4 0.5\n")  # the second vector is shorter than the first
    out = tmp_path / "study"
    p = _study(out, gmb_slice, "--embeddings", str(bad), "--cluster", "ray", "--ray-address", ray_cluster,
               "--max-retries", "3")
    assert p.returncode == 1, p.stdout[-3000:] + p.stderr[-3000:]
    assert "glove-seed0 failed (exit 2) on " in p.stdout and "random-seed0 finished in " in p.stdout
    assert "retrying" not in p.stdout
    log = (out / "logs/glove-seed0.log").read_text()
    assert log.count("$ ") == 1 and "normlab: error: " in log
    error_line = next(line for line in log.splitlines() if line.startswith("normlab: error: "))
    # The run names the file as it was given, or relative to its folder when that is shorter: either
    # way the path leads to the bad file (from a clone in any folder, issue 16).
    named = re.search(r"error: (\S*vectors\.txt), line 2: ", error_line).group(1)
    assert any((base / named).resolve() == bad.resolve() for base in (ROOT, out / "runs/glove/seed0")), error_line
    assert error_line in p.stdout  # the driver shows the run's own error
    events = read_jsonl(out / "events.jsonl")
    assert sorted((e["run"], e["returncode"], e["state"], e["attempts"]) for e in events) == \
        [("glove", 2, "new", 1), ("random", 0, "finished", 1)]
    assert "1 run(s) failed: glove-seed0" in p.stdout
    assert (out / "runs/random/seed0/summary.json").exists() and (out / "report.md").exists()


@pytest.mark.integration
@pytest.mark.timeout(900)
def test_interrupted_local_run_is_shipped_to_a_worker_and_resumed(tmp_path, ray_cluster, gmb_slice):
    """Kill a local study mid-run, finish it on Ray without a shared filesystem: the run resumes from last.pt."""
    out = tmp_path / "study"
    args = ["study", "ner", "--data", *gmb_slice, "--out", str(out), "--variants", "glove", *RUN_ARGS,
            "--epochs", "2"]
    run = out / "runs/glove/seed0"
    proc = subprocess.Popen([sys.executable, "-m", "normlab", *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        deadline = time.time() + 300
        # a committed evaluation is last.pt, then its metrics line (a kill between the two is rundir.recover's
        # case: tests/test_run_safety.py); kill once one is whole, so that there are shipped entries to keep
        while not ((run / "last.pt").exists() and (run / "metrics.jsonl").exists()
                   and (run / "metrics.jsonl").read_text().strip()):
            assert proc.poll() is None, f"study ended before it could be killed:\n{proc.stdout.read()}"
            assert time.time() < deadline, "no committed evaluation within 5 minutes"
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the study and its run, as a crash would
        proc.wait()
    assert not (run / "summary.json").exists(), "killed too late: the run had already finished"
    done_before = len(read_jsonl(run / "metrics.jsonl"))

    p = subprocess.run([sys.executable, "-m", "normlab", *args, "--cluster", "ray", "--ray-address", ray_cluster,
                        "--shared-fs", "no", "--no-report"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert "resuming glove-seed0 on node " in p.stdout
    log = (out / "logs/glove-seed0.log").read_text()
    assert "resumed from" in log and "# ray task on node " in log
    steps = [m["step"] for m in read_jsonl(run / "metrics.jsonl")]
    assert steps == list(range(2, 61, 2)) and done_before >= 1  # the shipped entries kept, none repeated
    assert read_json(run / "summary.json")["updates"] == 60 and not (run / "last.pt").exists()
    events = read_jsonl(out / "events.jsonl")
    assert [(e["run"], e["resumed"], e["shared_fs"], e["returncode"]) for e in events] == \
        [("glove", True, False, 0)]


@pytest.mark.integration
@pytest.mark.timeout(600)
def test_ctrl_c_on_the_driver_stops_the_runs_on_the_cluster(tmp_path, ray_cluster, gmb_slice):
    """SIGINT on the driver cancels the tasks; each run gets SIGINT, stops at once and keeps its last.pt."""
    out = tmp_path / "study"
    cmd = [sys.executable, "-m", "normlab", "study", "ner", "--data", *gmb_slice, "--out", str(out),
           "--variants", "random", "glove", *RUN_ARGS, "--epochs", "3", "--cluster", "ray",
           "--ray-address", ray_cluster, "--no-report"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 300
        while not all((out / f"runs/{v}/seed0/last.pt").exists() for v in ("random", "glove")):
            assert proc.poll() is None, f"study ended before it could be interrupted:\n{proc.stdout.read()}"
            assert time.time() < deadline, "no last.pt within 5 minutes"
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        stdout, _ = proc.communicate(timeout=60)  # a run of 3 epochs would take longer than it may
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, stdout[-3000:]
    assert "interrupted; cancelling the Ray tasks" in stdout
    for v in ("random", "glove"):
        log = (out / f"logs/{v}-seed0.log").read_text()
        assert "# ray task cancelled: stopping the run" in log and "normlab: interrupted" in log
        assert (out / f"runs/{v}/seed0/last.pt").exists() and not (out / f"runs/{v}/seed0/summary.json").exists()
    assert not (out / "events.jsonl").exists()  # no run ended


@pytest.mark.integration
@pytest.mark.timeout(600)
def test_your_own_norm_runs_on_the_workers_from_the_drivers_pythonpath(tmp_path, ray_cluster):
    """--add-norm on Ray: the driver passes its PYTHONPATH to the workers (runtime_env), so the run's
    process on a worker imports the user's module from there; the run comes back and is reported."""
    from test_own_norm_study import NORMS, SPEC, _images

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "mynorms.py").write_text(NORMS)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(mine), str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]))
    out = tmp_path / "ray"
    cmd = [sys.executable, "-m", "normlab", "study", "resnet", "--data", str(_images(tmp_path / "imgs")),
           "--val-size", "24", "--limit-train", "140", "--out", str(out), "--add-norm", f"rms={SPEC}",
           "--variants", "rms", "--epochs", "1", "--budget", "full", "--sanity-seeds", "1", "--set", "compile=off",
           "--no-estimate", "--cluster", "ray", "--ray-address", ray_cluster, "--shared-fs", "no"]
    p = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=500)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert "starting rms-seed0 on node 127.0.0.1 " in p.stdout
    assert read_json(out / "runs/rms/seed0/config.json")["config"]["norm"] == SPEC
    assert "test" in read_json(out / "runs/rms/seed0/summary.json")["metrics"]
    assert f"`rms` is your own layer (`{SPEC}`, `--add-norm`)" in (out / "report.md").read_text()
