"""A run directory: the one place a training run writes to.

Layout shared by every run of normlab (ResNet and NER alike)::

    <out>/config.json     every setting, plus torch version, device, seed
    <out>/metrics.jsonl   one JSON object per evaluation (epoch or K updates)
    <out>/best.pt         checkpoint with the best validation score
    <out>/last.pt         checkpoint to resume from
    <out>/summary.json    final metrics of the best checkpoint (written last:
                          its presence means the run finished)
    <out>/.run.lock       held while a process writes the folder (``RunLock``)

Every file is written through ``normlab.files`` (atomically: temp file in the
same folder, then ``os.replace``), so an interrupted run never leaves a
half-written file. An evaluation is committed by ``commit``: ``last.pt`` first, holding the
evaluation's metrics line, then ``best.pt`` and the line in
``metrics.jsonl``; a run killed between these writes gets the others back
from ``last.pt`` on ``--resume`` (``recover``). A write that finds the disk
full raises ``DiskFullError`` naming the file.
Checkpoints are read with ``torch.load(..., weights_only=True)``: loading
never runs code from the file.
"""

from __future__ import annotations

import errno
import fcntl
import os
import platform
import random
import re
import sys
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

import numpy as np
import torch

# Writes go through the module (files.append_jsonl, not a copy of the name): tests/killpoints.py
# replaces files.atomic_write_with and files.append_jsonl to stop a run at each write.
from normlab import files
from normlab.files import (BEST, CONFIG, LAST, METRICS, RUN_LOCK, STUDY, STUDY_LOCK, SUMMARY, file_fingerprint, read_json,
                           read_jsonl, rewrite_jsonl, to_jsonable, writing)


def atomic_torch_save(obj: Any, path: Path) -> None:
    files.atomic_write_with(path, lambda f: torch.save(obj, f), "wb")


def load_checkpoint(path: Path, map_location: Any = "cpu") -> dict:
    """Load a checkpoint without running code from it (``weights_only=True``).

    A file that is not one refuses with one line: what the file is, why it was
    refused (loading it would run code, or it is not a readable checkpoint),
    and what to do.
    """
    import pickle

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:  # weights_only refused a global: the file would run code
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(e)) or re.search(r"GLOBAL ([\w.]+)", str(e))
        what = f" (it calls {found.group(1)})" if found else ""
        raise ValueError(f"{path}: refused: not a valid normlab checkpoint, loading it would run code{what}; "
                         f"it was not written by normlab or was tampered with: replace it with one from a "
                         f"normlab run") from None
    except Exception as e:  # truncated files, foreign zip archives, other formats
        first = _first_sentence(e)
        raise ValueError(f"{path}: refused: not a valid normlab checkpoint (a corrupt, truncated or foreign "
                         f"file: {first}); replace it with one from a normlab run") from None
    if not isinstance(ckpt, dict):
        raise ValueError(f"{path}: refused: not a normlab checkpoint (expected a dict of weights and state, got "
                         f"{type(ckpt).__name__}); replace it with one from a normlab run")
    return ckpt


def _first_sentence(e: BaseException) -> str:
    """The first sentence of an exception's text, for a one-line message."""
    text = (str(e).strip().splitlines() or [type(e).__name__])[0]
    return re.split(r"(?<=[.;])\s", text)[0][:200]


def load_weights(model: torch.nn.Module, ckpt: dict, path: Path, against: str = "the run's settings") -> None:
    """``model.load_state_dict(ckpt["model"])``, or one line saying how the weights do not match."""
    state = ckpt.get("model")
    if not isinstance(state, dict):
        raise ValueError(f"{path}: refused: not a normlab checkpoint (no model weights; keys "
                         f"{', '.join(map(str, list(ckpt)[:6])) or 'none'}); replace it with one from a normlab run")
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in own
              if k in state and torch.is_tensor(state[k]) and tuple(state[k].shape) != tuple(own[k].shape)]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing (e.g. {missing[0]})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
    if shapes:
        problems.append(f"{len(shapes)} of another shape (e.g. {shapes[0]})")
    if problems:
        raise ValueError(f"{path}: refused: its weights do not match the model of {against} "
                         f"({'; '.join(problems)}); it belongs to another run or model")
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError) as e:
        first = _first_sentence(e)
        raise ValueError(f"{path}: refused: its weights do not match the model of {against} ({first})") from None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def rng_state_for_checkpoint() -> dict:
    """Every RNG's state (Python, numpy, torch, CUDA) in a form ``weights_only`` loading accepts
(tensors and plain values)."""
    py = random.getstate()
    np_state = np.random.get_state()
    state = {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), int(np_state[2]),
                  int(np_state[3]), float(np_state[4])],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _to_cpu(obj: Any) -> Any:
    """``obj`` with every tensor nested in lists, tuples and dicts on the CPU.

    ``torch.load(map_location=device)`` also moves the tensors nested in a saved RNG
    state (numpy's key, the CUDA states) to ``device``; RNG setters take CPU byte tensors.
    """
    if torch.is_tensor(obj):
        return obj.cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj


def restore_rng_state(state: dict) -> None:
    """Set every RNG from ``rng_state_for_checkpoint()``'s dict, whatever device its tensors were loaded to.

    CUDA states are restored for the GPUs visible now (a checkpoint saved on more GPUs
    than are visible restores the first ones; one saved on fewer leaves the others seeded).
    """
    state = _to_cpu(state)
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state((n[0], n[1].numpy().astype(np.uint32), n[2], n[3], n[4]))
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        for i, s in enumerate(state["cuda"][: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(s, i)


def select_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA, then MPS, then CPU; any other name is passed to ``torch.device``."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as e:
        raise ValueError(f"expected a device such as auto, cpu, cuda, cuda:1 or mps, got {name!r}") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for, but torch.cuda.is_available() is False")
    return dev


def environment_info(device: torch.device) -> dict:
    """What a reader needs to know about where a run ran."""
    info = {
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "device": str(device),
        "cpu_threads": torch.get_num_threads(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    else:
        info["cpu"] = cpu_model()
        info["cpu_cores"] = os.cpu_count()
    return info


def cpu_model() -> str:
    """The CPU's model name (Linux /proc/cpuinfo), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def check_same_data(out: Path, paths: Iterable[str | Path], option: str = "--data") -> None:
    """On ``--resume``: refuse data files whose contents differ from those the run started with.

    ``config.json`` keeps each data file's size and SHA-256 (``file_fingerprint``);
    a run continued on other data would mix two experiments under one config.
    Files without a saved hash (folders, ``cifar10``, older runs) are not checked.
    """
    saved = read_json(Path(out) / CONFIG)
    data = saved.get("data") if isinstance(saved, dict) else None
    data = data if isinstance(data, dict) else {}
    before = data.get("files") or ([data["file"]] if "file" in data else [])
    for old, path in zip(before, paths):
        if not isinstance(old, dict) or "sha256" not in old or not Path(path).is_file():
            continue
        now = file_fingerprint(path)
        if now["sha256"] != old["sha256"]:
            raise ValueError(f"--resume: {option} {path}: the file changed since the run started (now {now['bytes']} "
                             f"bytes, SHA-256 {now['sha256'][:12]}; {Path(out) / CONFIG} saved {old.get('bytes')} "
                             f"bytes, SHA-256 {old['sha256'][:12]}); restore the file the run started with, or "
                             f"start a new run with another --out")


def check_out_dir(out: Path, option: str = "--out") -> None:
    """Refuse an ``out`` that cannot become a folder we write to: an existing file, a path under a
    file, a folder we may not write to. Creates nothing."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{option} {out}: expected a folder (new or holding a run), got an existing file")
    probe = out
    while not probe.exists():  # the nearest existing ancestor is where the folder would be made
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise ValueError(f"{option} {out}: cannot create the folder: {probe} is a file, not a folder")
    if probe.exists() and not os.access(probe, os.W_OK | os.X_OK):
        raise ValueError(f"{option} {out}: cannot write there: {probe} is not writable")


def has_checkpoint(out: Path) -> bool:
    """Whether a run directory holds something worth protecting: ``last.pt`` or a summary.

    A ``best.pt`` alone is not: ``best.pt`` is written after ``last.pt``, so
    it is alone only in a folder left by an older normlab killed between the
    two writes of its first checkpoint, which holds nothing to resume from.
    """
    return any((Path(out) / n).exists() for n in (LAST, SUMMARY))


def check_not_a_study(out: Path, option: str = "--out") -> None:
    """Refuse to write a run into a study's folder (its runs live in ``<study>/runs/``)."""
    out = Path(out)
    if (out / STUDY).exists() or (out / STUDY_LOCK).exists():
        raise ValueError(f"{option} {out}: expected a run folder, got a study's folder (it holds "
                         f"{STUDY}); choose another --out")


class RunLock:
    """An exclusive lock on a run directory, held while one process writes it.

    ``flock`` on ``<out>/.run.lock``: the kernel drops it when its holder dies,
    however it dies, so the lock file a killed run leaves behind does not
    block the next one (a dead writer is recognised). A second writer is
    refused with one line naming the holder's pid. The folder is created here
    when it is new, and removed again on release if the run wrote nothing
    into it (bad input found later leaves no folder behind).
    """

    def __init__(self, out: Path) -> None:
        self.out = Path(out)
        self.fd: Optional[int] = None
        self.made: list[Path] = []

    def __enter__(self) -> "RunLock":
        missing, p = [], self.out
        while not p.exists():
            missing.append(p)
            p = p.parent
        with writing(self.out / RUN_LOCK):
            self.out.mkdir(parents=True, exist_ok=True)
        self.made = missing  # deepest first
        path = self.out / RUN_LOCK
        try:
            while True:
                with writing(path):
                    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
                    os.close(fd)
                    raise ValueError(f"{self.out} is being written by another normlab process (pid {holder}); "
                                     f"wait for it to end, or choose another --out") from None
                except OSError as e:
                    if e.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                        os.close(fd)
                        raise
                    import warnings

                    warnings.warn(f"warning: {self.out}: this filesystem cannot lock files ({e.strerror}); a second "
                                  f"writer of the folder would not be refused", RuntimeWarning, stacklevel=2)
                    break
                try:  # the holder before us may have removed the file we opened: lock the current one
                    same = os.fstat(fd).st_ino == os.stat(path).st_ino
                except FileNotFoundError:
                    same = False
                if same:
                    break
                os.close(fd)
            with writing(path):
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
            self.fd = fd
        except BaseException:
            self._remove_if_unused()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            os.unlink(self.out / RUN_LOCK)  # while still held: no one can lock the old file after us
        except FileNotFoundError:
            pass
        os.close(self.fd)
        self.fd = None
        self._remove_if_unused()

    def _remove_if_unused(self) -> None:
        """Remove the folders this lock made (deepest first) if nothing but the lock was written there."""
        for d in self.made:
            if d == self.out and self.fd is None:
                try:
                    if [p.name for p in d.iterdir()] == [RUN_LOCK]:
                        (d / RUN_LOCK).unlink()
                except OSError:
                    pass
            try:
                d.rmdir()
            except OSError:
                break


def remove_stray_temps(out: Path) -> None:
    """Delete the temp files of writes a killed process never finished (call with the lock held)."""
    for p in Path(out).glob(".*.tmp"):
        p.unlink(missing_ok=True)


def start_afresh(out: Path) -> None:
    """Clear what an earlier attempt that never reached its first ``last.pt`` left behind."""
    out = Path(out)
    remove_stray_temps(out)
    (out / BEST).unlink(missing_ok=True)
    if (out / METRICS).exists():
        rewrite_jsonl(out / METRICS, [])


def commit(out: Path, ckpt: dict, record: dict, best: bool) -> None:
    """Commit one evaluation: ``last.pt`` (holding ``record``), then ``best.pt`` when it is the best,
    then ``record`` as a line of ``metrics.jsonl``. ``last.pt`` is the commit point: a run
    killed after it gets the other two back from it with ``recover`` on resume."""
    out = Path(out)
    ckpt = {**ckpt, "metrics_line": to_jsonable(record)}
    atomic_torch_save(ckpt, out / LAST)
    if best:
        atomic_torch_save(ckpt, out / BEST)
    files.append_jsonl(out / METRICS, record)


def recover(out: Path, ckpt: dict, key: str, is_best: bool) -> tuple[list[dict], Optional[dict]]:
    """On resume from ``ckpt`` (``last.pt``): make ``metrics.jsonl`` and ``best.pt`` what they were
    when it was committed. Returns the metrics records and the line recovered (None if none was lost).

    ``key``: the metrics field that orders the lines (``epoch``, ``step``); lines past
    ``last.pt``'s (an evaluation whose checkpoint was never written) are dropped; its own line
    is appended if a kill lost it. ``is_best``: ``last.pt`` is the best checkpoint, so
    ``best.pt`` must hold the same position (rewritten from ``last.pt`` if a kill lost it).
    Checkpoints written before ``commit`` existed hold no line: their metrics are only cut.
    """
    out = Path(out)
    remove_stray_temps(out)
    line = ckpt.get("metrics_line")
    records = read_jsonl(out / METRICS)
    if line is not None:
        records = [r for r in records if r[key] < line[key]]
        lost = None if any(r for r in read_jsonl(out / METRICS) if r[key] == line[key]) else line
        records.append(line)
    else:
        lost = None
        position = ckpt.get("epoch") if key == "epoch" else (ckpt.get("state") or {}).get(key)
        records = [r for r in records if position is None or r[key] <= position]
    rewrite_jsonl(out / METRICS, records)
    if is_best and line is not None:
        best = out / BEST
        same = False
        if best.exists():
            try:
                same = load_checkpoint(best).get("metrics_line") == line
            except ValueError:
                same = False
        if not same:
            atomic_torch_save(ckpt, best)
    return records, lost


def prepare_run_dir(out: Path, config: dict, resume: bool,
                    note: Callable[[str], None] = lambda s: print(s, file=sys.stderr, flush=True)) -> bool:
    """Check ``out`` for a new run or for ``--resume``; returns True when the run resumes from ``last.pt``.

    Creates nothing: the run creates the folder with its first file, so bad
    input found later (a missing data file) leaves nothing behind.

    - A folder holding a checkpoint (``last.pt``, ``best.pt``) or a summary is
      a run to protect: a new run refuses it; ``--resume`` continues it, and
      refuses a config that differs from the saved one in any key but those
      that do not change the result (``RESUME_FREE_KEYS``), naming the flags.
    - A folder with a ``config.json`` but no checkpoint is a run interrupted
      before its first checkpoint (e.g. during the first epoch): there is
      nothing to resume or protect, so the run starts afresh, with or without
      ``--resume`` and with any settings, and ``note`` says so.
    """
    from normlab.config import flag

    out = Path(out)
    check_out_dir(out)
    cfg_path = out / CONFIG
    if resume and not cfg_path.exists():
        raise ValueError(f"--resume: {out} holds no {CONFIG}; start the run without --resume")
    if has_checkpoint(out):
        if not resume:
            raise ValueError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
        if not cfg_path.exists():
            raise ValueError(f"--resume: {out} holds checkpoints but no {CONFIG}; choose another --out")
        saved = read_json(cfg_path)
        saved = saved.get("config", {}) if isinstance(saved, dict) else {}
        diffs = sorted(k for k in set(saved) | set(config)
                       if k not in RESUME_FREE_KEYS and saved.get(k) != to_jsonable(config.get(k)))
        if diffs:
            detail = ", ".join(f"{flag(k)}: saved {saved.get(k)!r}, now {to_jsonable(config.get(k))!r}"
                               for k in diffs)
            free = ", ".join(sorted(flag(k) for k in RESUME_FREE_KEYS - {"resume", "out"} if k in config or k in saved))
            raise ValueError(f"--resume: settings differ from {cfg_path}: {detail}; only {free} may change "
                             f"on resume (rerun with the saved values or choose another --out)")
        if not (out / LAST).exists():
            raise ValueError(f"--resume: {out} holds no {LAST} to continue from (only "
                             f"{', '.join(n for n in (BEST, SUMMARY) if (out / n).exists())}); "
                             f"choose another --out")
        return True
    if cfg_path.exists() and "env" in (read_json(cfg_path) or {}):  # not the config a study wrote to start it
        note(f"note: {out} holds no checkpoint (a run interrupted before its first one); starting it afresh")
    return False


# Settings that may change between an interrupted run and its resumption: they do not
# change the result (where it runs, whether it is compiled, progress display, threads).
RESUME_FREE_KEYS = frozenset({"resume", "device", "compile", "progress", "num_workers", "threads", "out"})
