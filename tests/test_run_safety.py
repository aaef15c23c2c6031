"""Run folders that survive every interruption and every race (issue 16, items 1-3 and 7).

- one writer per run folder: a second is refused, a dead one's lock does not block;
- a run SIGKILLed at every write point of ``normlab.train.rundir`` (``killpoints``:
  the child kills itself at the k-th point, no timing) continues with
  ``--resume`` (or, with no ``last.pt``, by rerunning the command) and ends with
  the metrics of an uninterrupted run;
- a full disk is one line naming the file (exit 1, not 2), on a small tmpfs.

All on small slices of the real data (CIFAR-10 JPEGs, GMB).
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import killpoints
from normlab import files
from normlab.train import rundir

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ("airplane", "cat", "ship")


def slice_cifar(cifar_zip: Path, root: Path, train: int, test: int = 8) -> Path:
    """An image folder of real CIFAR-10 JPEGs: 3 classes, ``train`` and ``test`` images each."""
    with zipfile.ZipFile(cifar_zip) as z:
        for split, per_class in (("train", train), ("test", test)):
            for c in CLASSES:
                (root / split / c).mkdir(parents=True)
                for i in range(per_class):
                    name = f"{i:04d}.jpg"
                    (root / split / c / name).write_bytes(z.read(f"cifar10-jpeg/{split}/{c}/{name}"))
    return root


@pytest.fixture(scope="module")
def cifar_slice(cifar_zip, tmp_path_factory) -> Path:
    """3 classes of real CIFAR-10 JPEGs, 24 train and 8 test images each."""
    return slice_cifar(cifar_zip, tmp_path_factory.mktemp("cifar") / "slice", 24)


@pytest.fixture(scope="module")
def gmb_slice(gmb_csv_zip, tmp_path_factory) -> list[str]:
    from test_study import slice_gmb

    return slice_gmb(gmb_csv_zip, tmp_path_factory.mktemp("gmb"), sizes=(48, 16, 16))


def resnet_argv(data: Path, out: Path, *more: str) -> list[str]:
    return ["resnet", "train", "--data", str(data), "--out", str(out), "--n", "1", "--val-size", "24",
            "--batch-size", "16", "--epochs", "3", "--compile", "off", "--patience", "0", "--lr", "0.2",
            "--no-progress", *more]


def ner_argv(files: list[str], out: Path, *more: str) -> list[str]:
    return ["ner", "train", "--data", *files, "--out", str(out), "--word-dim", "12", "--hidden", "10",
            "--epochs", "1", "--batch-size", "16", "--eval-every", "1", "--train-eval-size", "16",
            "--no-progress", *more]


def without_times(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in ("seconds", "train_seconds")} for r in records]


def summary_without_times(out: Path) -> dict:
    s = files.read_json(out / "summary.json")
    return {k: v for k, v in s.items() if k not in ("seconds", "seconds_per_epoch")}


ARGV = {"resnet": lambda data, out, *more: resnet_argv(data["resnet"], out, *more),
        "ner": lambda data, out, *more: ner_argv(data["ner"], out, *more)}


@pytest.fixture(scope="module")
def data(cifar_slice, gmb_slice) -> dict:
    return {"resnet": cifar_slice, "ner": gmb_slice}


# ----------------------------------------------------------------------------- one writer per folder


@pytest.mark.parametrize("kind", ["resnet", "ner"])
def test_second_writer_is_refused_and_a_dead_writers_lock_is_not(kind, data, tmp_path):
    """Finding 1: two trainings with one --out corrupted the folder; now the second is refused."""
    out = tmp_path / "run"
    # The first writer stops itself (SIGSTOP) right after writing config.json: alive, holding the folder.
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        import signal

        real = files.atomic_write_with

        def stop_after_config(path, write, mode="wb"):
            real(path, write, mode)
            if Path(path).name == "config.json":
                os.kill(os.getpid(), signal.SIGSTOP)

        files.atomic_write_with = stop_after_config
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        from normlab.cli import main

        os._exit(main(ARGV[kind](data, out)))
    try:
        _, status = os.waitpid(pid, os.WUNTRACED)
        assert os.WIFSTOPPED(status), "the first run ended before it wrote config.json"
        before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
        for more in ((), ("--resume",)):
            code, _ = killpoints.run(ARGV[kind](data, out, *more), log=tmp_path / "second.log")
            err = (tmp_path / "second.log").read_text()
            assert code == 2, err
            assert err.strip().splitlines()[-1] == (f"normlab: error: {out} is being written by another normlab "
                                                    f"process (pid {pid}); wait for it to end, or choose another --out")
            assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    finally:
        os.kill(pid, 9)  # the first writer dies without releasing anything
        os.waitpid(pid, 0)
    assert (out / files.RUN_LOCK).exists()  # its lock file stays behind ...
    code, _ = killpoints.run(ARGV[kind](data, out), log=tmp_path / "third.log")  # ... and blocks no one
    assert code == 0, (tmp_path / "third.log").read_text()
    assert "holds no checkpoint" in (tmp_path / "third.log").read_text()
    assert not (out / files.RUN_LOCK).exists()
    records = files.read_jsonl(out / "metrics.jsonl")
    key = "epoch" if kind == "resnet" else "step"
    assert [r[key] for r in records] == sorted({r[key] for r in records})  # one run's lines, in order


def test_run_lock_refuses_a_second_holder_and_cleans_up(tmp_path, monkeypatch):
    out = tmp_path / "a" / "run"
    with rundir.RunLock(out):
        assert (out / files.RUN_LOCK).read_text() == f"{os.getpid()}\n"
        with pytest.raises(ValueError, match=rf"^{out} is being written by another normlab process "
                                             rf"\(pid {os.getpid()}\); wait for it to end, or choose another --out$"):
            rundir.RunLock(out).__enter__()
    assert list(tmp_path.iterdir()) == []  # nothing was written: the folders it made are gone
    with rundir.RunLock(out):
        files.atomic_write_json(out / "config.json", {})
    assert [p.name for p in out.iterdir()] == ["config.json"]  # the lock file goes, the run's files stay

    def no_locks(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(rundir.fcntl, "flock", no_locks)
    with pytest.warns(RuntimeWarning, match="this filesystem cannot lock files"):
        with rundir.RunLock(out):
            pass


def test_a_run_is_not_written_into_a_study_folder(data, tmp_path, capsys):
    """Finding 13 (runs): a study's folder is refused as a run's --out, and left as it was."""
    from normlab.cli import main

    study = tmp_path / "study"
    study.mkdir()
    (study / "study.json").write_text("{}\n")
    assert main(resnet_argv(data["resnet"], study)) == 2
    assert capsys.readouterr().err.strip() == (f"normlab: error: --out {study}: expected a run folder, got a "
                                               f"study's folder (it holds study.json); choose another --out")
    assert [p.name for p in study.iterdir()] == ["study.json"]


def test_bad_input_found_after_the_lock_leaves_no_folder(tmp_path, capsys):
    from normlab.cli import main

    out = tmp_path / "new" / "run"
    assert main(resnet_argv(tmp_path / "missing.zip", out)) == 2
    assert "no such file" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- a kill at every write point


def continue_after_kill(argv: list[str], out: Path, log: Path) -> int:
    """What a user does after a crash: --resume when there is a last.pt, else the same command."""
    resume = (out / "last.pt").exists()
    code, _ = killpoints.run(argv + (["--resume"] if resume else []), log=log)
    return code


@pytest.mark.integration
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("kind", ["resnet", "ner"])
def test_a_run_killed_at_any_write_point_ends_as_an_uninterrupted_one(kind, data, tmp_path):
    """Findings 2 and 7, item 2: SIGKILL at each write point, then continue; same metrics and summary."""
    ref = tmp_path / "ref"
    code, points = killpoints.run(ARGV[kind](data, ref), log=tmp_path / "ref.log")
    assert code == 0, (tmp_path / "ref.log").read_text()
    key = "epoch" if kind == "resnet" else "step"
    want = without_times(files.read_jsonl(ref / "metrics.jsonl"))
    assert len(want) >= 3
    assert {"before last.pt", "last.pt: temp written", "after last.pt", "before best.pt",
            "metrics.jsonl: half a line", "before summary.json"} <= set(points)
    assert len(points) >= 30
    if kind == "resnet":  # best.pt replaced once (epoch 2), and an epoch that does not improve (3)
        assert points.count("before best.pt") == 2 and points.count("before last.pt") == 3
    failures = []
    for k, point in enumerate(points, 1):
        out, log = tmp_path / f"k{k}", tmp_path / f"k{k}.log"
        code, passed = killpoints.run(ARGV[kind](data, out), kill_at=k, log=log)
        assert code == -9 and passed[-1] == point, (k, point, code)
        code = continue_after_kill(ARGV[kind](data, out), out, log)
        got = without_times(files.read_jsonl(out / "metrics.jsonl")) if out.exists() else []
        leftovers = sorted(p.name for p in out.iterdir() if p.name.endswith((".tmp", ".lock")))
        if code != 0 or got != want or summary_without_times(out) != summary_without_times(ref) or leftovers:
            failures.append(f"killed at {k} ({point}): exit {code}, {key}s {[r[key] for r in got]}, "
                            f"left {leftovers}: {log.read_text()[-400:]}")
        else:
            shutil.rmtree(out)
    assert not failures, "\n".join(failures)


def test_lost_metrics_line_and_best_checkpoint_come_back_from_last_pt(data, tmp_path):
    """Finding 7 in detail: a kill after last.pt of epoch 1 lost epoch 1's line and best.pt; --resume
    restores both (the run went on to epochs [2, 3] only, before)."""
    out, log = tmp_path / "run", tmp_path / "run.log"
    argv = resnet_argv(data["resnet"], out)
    _, points = killpoints.run(argv + ["--epochs", "1"], log=log)
    shutil.rmtree(out)
    code, _ = killpoints.run(argv, kill_at=points.index("after last.pt") + 1, log=log)
    assert code == -9 and not (out / "best.pt").exists() and files.read_jsonl(out / "metrics.jsonl") == []
    assert killpoints.run(argv + ["--resume"], log=log)[0] == 0
    assert [r["epoch"] for r in files.read_jsonl(out / "metrics.jsonl")] == [1, 2, 3]
    assert "its metrics line, lost by the interruption, recovered from last.pt" in log.read_text()
    assert rundir.load_checkpoint(out / "best.pt")["epoch"] == files.read_json(out / "summary.json")["best_epoch"]


def test_a_folder_left_with_best_pt_and_no_last_pt_starts_afresh(data, tmp_path, capsys):
    """Finding 2 as older normlab versions left it (best.pt, a stray temp file, no last.pt):
    the plain command and --resume both start it afresh, instead of each sending to the other."""
    from normlab.cli import main

    ref, out = tmp_path / "ref", tmp_path / "run"
    assert main(resnet_argv(data["resnet"], ref)) == 0
    for resume in ((), ("--resume",)):
        out.mkdir()
        shutil.copy(ref / "config.json", out / "config.json")
        shutil.copy(ref / "best.pt", out / "best.pt")
        (out / ".last.pt.x1y2.tmp").write_bytes(b"PK\x03\x04 torn")
        capsys.readouterr()
        assert main(resnet_argv(data["resnet"], out, *resume)) == 0
        assert f"note: {out} holds no checkpoint" in capsys.readouterr().err
        assert without_times(files.read_jsonl(out / "metrics.jsonl")) == \
            without_times(files.read_jsonl(ref / "metrics.jsonl"))
        assert not list(out.glob("*.tmp")) and not list(out.glob(".*.tmp"))
        shutil.rmtree(out)


# ----------------------------------------------------------------------------- a full disk


def _tmpfs(path: Path, size: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("a full disk is tested on a small tmpfs, which only root can mount (run the tests as root)")
    path.mkdir()
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                       capture_output=True, text=True)
    if p.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({p.stderr.strip()}): a full disk is tested on one")


@pytest.fixture
def small_disk(tmp_path):
    disk = tmp_path / "disk"
    _tmpfs(disk, "600k")  # config.json, logs and metrics fit; a ResNet-8 checkpoint (~700 kB) does not
    yield disk
    subprocess.run(["umount", str(disk)], check=True)


def test_a_full_disk_is_one_line_naming_the_file(data, small_disk, tmp_path):
    """Finding 3 (runs): a traceback and RuntimeError before; now one line, exit 1, and a way on."""
    out = small_disk / "run"
    p = subprocess.run([sys.executable, "-m", "normlab", *resnet_argv(data["resnet"], out)],
                       capture_output=True, text=True, cwd=ROOT, timeout=600)
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 1, p.stderr
    assert "Traceback" not in p.stderr and "RuntimeError" not in p.stderr
    assert lines[-1] == (f"normlab: error: {out / 'last.pt'}: no space left on device; free some space, "
                         f"then rerun the same command to start {out} afresh")
    assert not list(out.glob(".*.tmp"))  # the partial temp file is gone: the space it took is free again
    # with space again (a larger disk), the same command finishes the run
    shutil.copytree(out, tmp_path / "moved")
    p = subprocess.run([sys.executable, "-m", "normlab", *resnet_argv(data["resnet"], tmp_path / "moved")],
                       capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert p.returncode == 0, p.stderr
    assert files.read_json(tmp_path / "moved" / "summary.json")["epochs_run"] == 3
