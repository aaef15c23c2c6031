"""Files that survive a crash: atomic writes, JSON and JSON-lines, and the names of what normlab writes.

The one module below ``data/``, ``train/``, ``study/`` and ``report/`` that they all
write and read files through:

* **Atomic writes** (``atomic_write_with`` and its ``_text``/``_bytes``/``_json`` forms,
  ``atomic_savefig``): a temp file in the same folder, fsynced, then ``os.replace``d
  over the target, so an interrupted process never leaves a half-written file.
* **JSON lines** (``append_jsonl``, ``read_jsonl``, ``rewrite_jsonl``): one record a
  line, appended and fsynced, so a crash loses at most its last line, which
  ``read_jsonl`` then ignores.
* **A full disk** met by any of these raises ``DiskFullError`` naming the file.
* **File names** of a run folder (``normlab.train.rundir``) and of a study folder
  (``normlab.study``), each defined here once.

Nothing here imports torch: ``to_jsonable`` recognises a tensor only once torch is loaded.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

# --- a run folder (see normlab.train.rundir)
CONFIG = "config.json"  # every setting, the environment, the data files
METRICS = "metrics.jsonl"  # one line per evaluation
BEST = "best.pt"  # the checkpoint with the best validation score
LAST = "last.pt"  # the checkpoint to resume from
SUMMARY = "summary.json"  # written last: its presence means the run finished
RUN_LOCK = ".run.lock"  # held while a process writes the folder
LOG = "train.log"  # the table printed while training
CURVES = "curves.png"
# --- a study folder (see normlab.study.runner)
STUDY = "study.json"  # the study's settings: the mark of a study folder
STUDY_LOCK = ".study.lock"  # held while a process runs the study
EVENTS = "events.jsonl"  # one line per attempt of a run
LOGS = "logs"  # <variant>-seed<S>.log: each run's output

# The percentiles of the penultimate features a ResNet run records in each metrics.jsonl line
# (``quantiles``: key -> value), read back by the report.
QUANTILES = {"q01": 0.01, "q20": 0.20, "q80": 0.80, "q99": 0.99}


class DiskFullError(OSError):
    """A write found the disk (or the quota) full; ``filename`` is the file being written."""

    def __init__(self, path: Path | str) -> None:
        super().__init__(errno.ENOSPC, "no space left on device", str(path))


def _is_disk_full(e: BaseException | None) -> bool:
    """Whether ``e`` or an exception it was raised from is ENOSPC/EDQUOT (torch.save wraps the
    OSError of its file object in a RuntimeError)."""
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        e = e.__cause__ or e.__context__
    return False


@contextlib.contextmanager
def writing(path: Path | str):
    """Turn a full disk met while writing ``path`` into a ``DiskFullError`` naming it."""
    try:
        yield
    except DiskFullError:
        raise
    except Exception as e:
        if _is_disk_full(e):
            raise DiskFullError(path) from None
        raise


def atomic_write_with(path: Path, write: Callable[[Any], None], mode: str = "wb") -> None:
    """Call ``write(f)`` on a temp file beside ``path``, fsync, then rename it to ``path``."""
    path = Path(path)
    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with writing(path):
            with os.fdopen(fd, mode) as f:
                write(f)
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_with(path, lambda f: f.write(text), "w")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    atomic_write_with(path, lambda f: f.write(data), "wb")


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(to_jsonable(obj), indent=2, sort_keys=False) + "\n")


def atomic_savefig(fig, path: Path, **kw) -> None:
    """Save a matplotlib figure atomically (format taken from the path's suffix)."""
    fmt = Path(path).suffix.lstrip(".") or "png"
    atomic_write_with(path, lambda f: fig.savefig(f, format=fmt, **kw), "wb")


def to_jsonable(obj: Any) -> Any:
    """Turn dataclasses, paths, numpy and torch scalars into plain JSON values."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    torch = sys.modules.get("torch")  # a tensor exists only where torch is loaded
    if torch is not None and isinstance(obj, torch.Tensor):
        return obj.tolist()
    if isinstance(obj, float) and not np.isfinite(obj):
        return None if np.isnan(obj) else (float("inf") if obj > 0 else float("-inf"))
    return obj


def read_json(path: Path) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: line {e.lineno}: not valid JSON ({e.msg})") from e


def append_jsonl(path: Path, record: dict) -> None:
    """Append one record as a line and fsync, so a crash loses at most that line."""
    path = Path(path)
    line = json.dumps(to_jsonable(record)) + "\n"
    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())


def read_jsonl(path: Path) -> list[dict]:
    """Read a JSONL file; a torn last line (from a crash) is ignored, any other bad line is an error."""
    path = Path(path)
    if not path.exists():
        return []
    lines = path.read_text().splitlines()
    out = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError as e:
            if i == len(lines):
                break  # torn final line from an interrupted write
            raise ValueError(f"{path}: line {i}: not valid JSON ({e.msg})") from e
    return out


def rewrite_jsonl(path: Path, records: Iterable[dict]) -> None:
    """Atomically replace a JSONL file (used on resume to drop entries newer than last.pt)."""
    atomic_write_text(path, "".join(json.dumps(to_jsonable(r)) + "\n" for r in records))


def file_fingerprint(path: str | Path) -> dict:
    """A data file as a report names it: the path as given (relative, as typed), its size and SHA-256.

    Folders and non-files (e.g. ``cifar10``, a download name) get the path only.
    """
    p = Path(path)
    if not p.is_file():
        return {"path": str(path)}
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return {"path": str(path), "bytes": p.stat().st_size, "sha256": h.hexdigest()}


