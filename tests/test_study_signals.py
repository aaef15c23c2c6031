"""A study stops cleanly however it is stopped and whatever it inherited (issue 16, findings 3, 4, 12, 13).

- runs get the default SIGINT/SIGTERM handling even from a study started with ``&`` by a script
  (which ignores SIGINT), so they stop on the study's SIGINT and are never SIGKILLed;
- Ctrl-C or SIGTERM in each phase (checking inputs, estimating, running, writing the report)
  says what was stopped and how to go on, and leaves no half-written report;
- a study is not written into a run's folder;
- a full disk is one line naming the file, exit 1 (not 2).

On a small slice of the real CIFAR-10 JPEGs (``test_run_safety.cifar_slice``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import killpoints
from normlab import files
from test_run_safety import _tmpfs, slice_cifar

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cifar_slice(cifar_zip, tmp_path_factory) -> Path:
    """3 classes of real CIFAR-10 JPEGs, 52 train and 8 test images each: one batch of 128 a run's epoch."""
    return slice_cifar(cifar_zip, tmp_path_factory.mktemp("cifar") / "slice", 52)


def study_argv(data: Path, out: Path, *more: str) -> list[str]:
    return ["study", "resnet", "--data", str(data), "--out", str(out), "--variants", "bn", "--val-size", "24",
            "--budget", "full", "--sanity-seeds", "1", "--run-arg=--compile=off", "--run-arg=--n=1", *more]


def ignored_signals(pid: int) -> int:
    """The SigIgn mask of a process (bit n-1 set: signal n ignored)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigIgn:"):
            return int(line.split()[1], 16)
    raise AssertionError(f"no SigIgn in /proc/{pid}/status")


def children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


@pytest.mark.integration
@pytest.mark.timeout(600)
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads signal dispositions from /proc (Linux)")
def test_a_study_started_in_the_background_by_a_script_stops_its_runs_cleanly(cifar_slice, tmp_path):
    """Finding 4: the runs inherited the ignored SIGINT and were SIGKILLed 30 s later."""
    out, log = tmp_path / "study", tmp_path / "study.log"
    cmd = " ".join([sys.executable, "-m", "normlab", *study_argv(cifar_slice, out, "--epochs", "200",
                                                                   "--no-estimate", "--no-report")])
    # A non-interactive shell starts a background job with SIGINT ignored.
    script = subprocess.Popen(["bash", "-c", f"{cmd} > {log} 2>&1 &\necho $!\nwait"], cwd=ROOT,
                              stdout=subprocess.PIPE, text=True)
    study = int(script.stdout.readline())
    run_dir = out / "runs/bn/seed0"
    try:
        deadline = time.time() + 300
        while not (run_dir / "last.pt").exists():  # the run is training and checkpointing
            assert script.poll() is None, log.read_text()
            assert time.time() < deadline, log.read_text()
            time.sleep(0.2)
        assert ignored_signals(study) & (1 << (signal.SIGINT - 1)), "the reproduction: the study ignores SIGINT"
        (run,) = children(study)
        assert not ignored_signals(run) & (1 << (signal.SIGINT - 1)), "the run inherited the ignored SIGINT"
        assert not ignored_signals(run) & (1 << (signal.SIGTERM - 1))
        t0 = time.time()
        os.kill(study, signal.SIGTERM)
        script.wait(timeout=60)
        took = time.time() - t0
    finally:
        for pid in (study,):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    text = log.read_text()
    assert took < 25, f"the stop took {took:.0f} s: the run needed the SIGTERM/SIGKILL escalation\n{text}"
    assert "study: interrupted; stopping the running run(s): bn-seed0" in text
    assert ("study: stopped bn-seed0 (each keeps its last checkpoint); 0 run(s) not started; "
            "rerun the same command to resume the study") in text
    assert "did not stop" not in text and "SIGTERM" not in text
    run_log = (out / "logs/bn-seed0.log").read_text()
    assert f"normlab: interrupted; rerun with --resume to continue from {run_dir / 'last.pt'}" in run_log
    assert not list(run_dir.glob(".*.tmp")) and not (run_dir / files.RUN_LOCK).exists()


def _interrupt_with(sig: int):
    """A stand-in for a slow phase that gets Ctrl-C (SIGINT) or SIGTERM while it works."""
    def phase(*args, **kwargs):
        if sig == signal.SIGINT and signal.getsignal(sig) is signal.SIG_IGN:
            # pytest started as a background job (`cmd &` in a script, nohup) ignores SIGINT, and so
            # does everything it forks: give the phase the handler a terminal's Ctrl-C meets
            signal.signal(sig, signal.default_int_handler)
        os.kill(os.getpid(), sig)
        time.sleep(30)
        raise AssertionError("the signal did not stop the phase")
    return phase


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_while_estimating_says_so(cifar_slice, tmp_path, sig):
    """Finding 12: exit 130/143 without a word, before."""
    out, log = tmp_path / "study", tmp_path / "log"

    def patch():
        from normlab.study import estimate

        estimate.estimate_study = _interrupt_with(sig)

    code, _ = killpoints.run(study_argv(cifar_slice, out, "--epochs", "1"), log=log, patch=patch)
    text = log.read_text()
    assert code == 130, text
    assert text.strip().splitlines()[-1] == ("study: interrupted while timing training steps for the estimate; "
                                             "no run was started; rerun the same command to start the study "
                                             "(--no-estimate skips the estimate)")
    assert not (out / "runs").exists()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_while_checking_inputs_says_so(cifar_slice, tmp_path, sig):
    out, log = tmp_path / "study", tmp_path / "log"

    def patch():
        from normlab.study import checks

        checks.check_study_inputs = _interrupt_with(sig)

    code, _ = killpoints.run(study_argv(cifar_slice, out, "--epochs", "1"), log=log, patch=patch)
    text = log.read_text()
    assert code == 130, text
    assert text.strip().splitlines()[-1] == ("study: interrupted while checking the study's inputs; nothing was "
                                             "started; rerun the same command to start the study")
    assert not out.exists()


@pytest.mark.integration
def test_interrupted_while_writing_the_report_leaves_no_half_report(cifar_slice, tmp_path):
    """Finding 12: report.md written, report.html not, exit 143 without a word, before."""
    from normlab.cli import main

    out, log = tmp_path / "study", tmp_path / "log"
    assert main(study_argv(cifar_slice, out, "--epochs", "1", "--no-estimate")) == 0
    old_md = (out / "report.md").read_text()
    assert (out / "report.html").exists()
    for sig in (signal.SIGINT, signal.SIGTERM):
        def patch():
            from normlab.report import write

            def half_a_report(study_dir, out=None):
                files.atomic_write_text(Path(study_dir) / "report.md", "# half\n")
                _interrupt_with(sig)()

            write.write_report = half_a_report

        code, _ = killpoints.run(study_argv(cifar_slice, out, "--epochs", "1"), log=log, patch=patch)
        text = log.read_text()
        assert code == 130, text
        assert text.strip().splitlines()[-1] == (
            f"study: interrupted while writing the report; every run had finished; the report was not written "
            f"(report.md and report.html removed, to leave no half-written report); write it with "
            f"`normlab report {out}` or by rerunning the same command")
        assert not (out / "report.md").exists() and not (out / "report.html").exists()
    assert main(["report", str(out)]) == 0
    assert (out / "report.md").read_text() == old_md


def test_a_study_is_not_written_into_a_run_folder(cifar_slice, tmp_path, capsys):
    """Finding 13 (studies): a run's folder is refused as a study's --out, and left as it was."""
    from normlab.cli import main

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text('{"kind": "resnet"}\n')
    assert main(study_argv(cifar_slice, run, "--epochs", "1")) == 2
    assert capsys.readouterr().err.strip() == (f"normlab: error: --out {run}: expected a study folder, got a "
                                               f"run's folder (it holds config.json); choose another --out")
    assert [p.name for p in run.iterdir()] == ["config.json"]


def test_a_full_disk_in_a_study_names_the_file(cifar_slice, tmp_path):
    """Finding 3 (studies): 'normlab: error: No space left on device', no file named, exit 2 before.

    The disk fills up right after study.json is written (a filler file, in the study's process),
    so the study's own next write meets it."""
    disk = tmp_path / "disk"
    _tmpfs(disk, "300k")
    try:
        out, log = disk / "study", tmp_path / "log"

        def patch():
            from normlab.study import runner

            real = runner.atomic_write_json

            def then_fill_the_disk(path, obj):
                real(path, obj)
                fd = os.open(disk / "filler", os.O_WRONLY | os.O_CREAT)
                try:
                    while os.write(fd, bytes(1 << 16)):
                        pass
                except OSError:
                    pass
                os.close(fd)

            runner.atomic_write_json = then_fill_the_disk

        code, _ = killpoints.run(study_argv(cifar_slice, out, "--epochs", "1", "--no-estimate"), log=log,
                                 patch=patch)
        text = log.read_text()
        assert code == 1, text
        last = text.strip().splitlines()[-1]
        assert last.startswith(f"normlab: error: {out / 'logs'}") and last.endswith(
            ": no space left on device; free some space, then rerun the same command to continue the study "
            f"in {out}"), text
        assert "Traceback" not in text
        assert not (out / "runs").exists()  # no run was started
    finally:
        subprocess.run(["umount", str(disk)], check=True)
