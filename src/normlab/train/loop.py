"""The steps every trainer's ``fit`` shares, as plain functions (no trainer class).

Both ``normlab.train.resnet.fit`` and ``normlab.train.ner.fit`` read as the same outline::

    with loop.locked(out):                           # one writer per run folder
        resuming = loop.start(out, config, ...)      # a new run, or --resume of the saved one
        ...data, model, optimizer...
        loop.begin(out, config_record)               # a new run: config.json
        ckpt = loop.resume(out, model, opt, device)  # or weights, optimizer, RNGs from last.pt
        ...epochs: train, evaluate, rundir.commit...
        if loop.out_of_patience(...): stop          # early stopping
        metrics = loop.evaluate_best(...)           # the summary's metrics, from best.pt
        loop.finish(out, summary)                   # summary.json, written last

What differs between the studies (the data, the model, what an epoch does, which score
is the best) stays in each trainer.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional, Sequence

import torch
from torch import nn

from normlab import files
from normlab.train import rundir

# On a GPU the training loss is checked for divergence every this many steps (a host sync
# each); on a CPU, where reading it costs nothing, after every step.
CHECK_EVERY_GPU = 25


def check_every(device: torch.device) -> int:
    """Steps between divergence checks of the training loss on ``device``."""
    return 1 if device.type == "cpu" else CHECK_EVERY_GPU


@contextlib.contextmanager
def locked(out: Path) -> Iterator[None]:
    """Refuse an ``out`` that cannot hold a run (a file, a study's folder), then hold its lock."""
    rundir.check_out_dir(out)
    rundir.check_not_a_study(out)
    with rundir.RunLock(out):
        yield


def start(out: Path, config: dict, resume: bool, data_files: Iterable[str | Path]) -> bool:
    """Check ``out`` for a new run or for ``--resume`` (same settings, same data files); True when resuming."""
    resuming = rundir.prepare_run_dir(out, config, resume)
    if resuming:
        rundir.check_same_data(out, data_files)
    return resuming


class RunLog:
    """Show a line (``show``, stdout by default; errors on stderr) and append it to ``train.log``.

    The run folder is made with the first line, if the run has not made it yet.
    """

    def __init__(self, path: Path, show: Callable[[str], object] = lambda line: print(line, flush=True)) -> None:
        self.path, self.show = Path(path), show

    def __call__(self, line: str, err: bool = False, echo: bool = True) -> None:
        if echo:
            if err:
                print(line, file=sys.stderr, flush=True)
            else:
                self.show(line)
        with files.writing(self.path):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a") as f:
                f.write(line + "\n")


def begin(out: Path, config: dict, more: Optional[dict[str, dict]] = None) -> None:
    """A new run's first files: ``config.json`` (settings, environment, data), then ``more`` (file name ->
    JSON), then clear what an earlier attempt that died before its first checkpoint left."""
    files.atomic_write_json(out / files.CONFIG, config)
    for name, obj in (more or {}).items():
        files.atomic_write_json(out / name, obj)
    rundir.start_afresh(out)


def resume(out: Path, model: nn.Module, optimizer: torch.optim.Optimizer, device: torch.device) -> dict:
    """Load ``last.pt`` into ``model`` and ``optimizer`` and restore every RNG from it; returns the checkpoint
    (the trainer restores the rest of its state, then calls ``rundir.recover``)."""
    ckpt = rundir.load_checkpoint(out / files.LAST, map_location=device)
    rundir.load_weights(model, ckpt, out / files.LAST, str(out / files.CONFIG))
    optimizer.load_state_dict(ckpt["optimizer"])
    rundir.restore_rng_state(ckpt["rng"])
    return ckpt


def out_of_patience(bad_epochs: int, patience: int, epoch: int, epochs: int) -> bool:
    """Early stopping: ``patience`` epochs (0: never) in a row without progress, before the last epoch."""
    return patience > 0 and bad_epochs >= patience and epoch < epochs


def evaluate_best(out: Path, model: nn.Module, device: torch.device, evaluate: Callable[[str], dict],
                  splits: Sequence[str] = ("train", "val", "test")) -> Optional[dict]:
    """Each split's metrics with the weights of ``best.pt`` (None when the run wrote none)."""
    best = out / files.BEST
    if not best.exists():
        return None
    rundir.load_weights(model, rundir.load_checkpoint(best, map_location=device), best, str(out / files.CONFIG))
    return {split: evaluate(split) for split in splits}


def finish(out: Path, summary: dict) -> dict:
    """Write ``summary.json``, the run's last file: its presence means the run finished."""
    files.atomic_write_json(out / files.SUMMARY, summary)
    return summary
