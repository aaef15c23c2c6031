"""Run a ``normlab`` command in a forked child and SIGKILL it at its k-th write point.

The write points are those of ``normlab.train.rundir`` into the run folder
(``--out``), through which every file of a run folder is written (``atomic_write_with`` and ``append_jsonl``),
each split where a kill leaves a different state on disk:

- ``before NAME``: nothing of the write has happened;
- ``NAME: temp written``: the temp file is complete and fsynced, not yet renamed
  (a kill leaves a stray ``.NAME.*.tmp``);
- ``NAME: half a line``: half of a metrics line is on disk (a torn line);
- ``after NAME``: the write is complete.

No timing is involved: the child counts its write points and kills itself at
the one asked for. ``kill_at=0`` kills nowhere and returns the list of points.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Callable


def warm() -> None:
    """Import in this process what every child would import again (the children start in a second, not 5)."""
    import matplotlib.figure  # noqa: F401 - the plots
    import torch
    import torch._dynamo  # noqa: F401 - imported by the first optimizer

    from normlab.cli import build_parser

    build_parser()  # imports every command's modules
    torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)


def run(argv: list[str], kill_at: int = 0, log: Path | None = None,
        patch: Callable[[], None] | None = None) -> tuple[int, list[str]]:
    """Run ``normlab ARGV`` in a forked child; returns (exit status or -signal, the write points passed).

    ``log``: the child's stdout and stderr go there. ``patch``: called in the child first."""
    warm()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(r)
        code = 70
        try:
            if log is not None:
                fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
                os.dup2(fd, 1)
                os.dup2(fd, 2)
                # pytest's capture writes to its own file, not to fd 1 and 2: write to the log
                sys.stdout = open(1, "w", buffering=1, closefd=False)
                sys.stderr = open(2, "w", buffering=1, closefd=False)
            if patch is not None:
                patch()
            code = _child(argv, kill_at, w)
        except BaseException:  # noqa: BLE001
            import traceback

            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    os.close(w)
    with os.fdopen(r) as f:
        points = f.read().splitlines()
    _, status = os.waitpid(pid, 0)
    code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
    return code, points


def _child(argv: list[str], kill_at: int, w: int) -> int:
    from normlab import files
    from normlab.cli import main

    count = 0
    out = Path(argv[argv.index("--out") + 1]).resolve()

    def point(name: str, path) -> None:
        nonlocal count
        if out not in Path(path).resolve().parents:  # a cache or download, not the run folder
            return
        count += 1
        os.write(w, f"{name}\n".encode())
        if count == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    atomic_write_with, append_jsonl = files.atomic_write_with, files.append_jsonl

    def hooked_write(path, write, mode="wb"):
        name = Path(path).name
        point(f"before {name}", path)

        def write_then_stop(f):
            write(f)
            f.flush()
            os.fsync(f.fileno())
            point(f"{name}: temp written", path)

        atomic_write_with(path, write_then_stop, mode)
        point(f"after {name}", path)

    def hooked_append(path, record):
        name = Path(path).name
        line = json.dumps(files.to_jsonable(record)) + "\n"
        point(f"before {name}", path)
        with open(path, "a") as f:
            f.write(line[: len(line) // 2])
            f.flush()
            os.fsync(f.fileno())
            point(f"{name}: half a line", path)
            f.write(line[len(line) // 2:])
        point(f"after {name}", path)

    files.atomic_write_with, files.append_jsonl = hooked_write, hooked_append
    try:
        return main(argv)
    finally:
        files.atomic_write_with, files.append_jsonl = atomic_write_with, append_jsonl
