"""Plots of a run directory's per-epoch metrics, shared by every trainer.

Figures are built with ``matplotlib.figure.Figure`` (the Agg canvas, no
pyplot): no display is needed, no global backend is switched, and nothing
leaks between figures. Files are written atomically (``atomic_savefig``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping, Sequence

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from normlab.files import atomic_savefig


def plot_curves(path: Path, x: Sequence[float], series: Mapping[str, Sequence[float | None]], *,
                xlabel: str = "epoch", ylabel: str = "", title: str | None = None,
                logy: bool = False) -> None:
    """One line per entry of ``series`` (label -> values, one per ``x``) saved to ``path``.

    Missing values (None, NaN, inf) leave a gap in their line instead of failing,
    so a run that diverged still gets its plot.
    """
    x = list(x)
    for label, ys in series.items():
        if len(ys) != len(x):
            raise ValueError(f"expected {len(x)} values for {label!r} (one per x), got {len(ys)}")
    fig = Figure(figsize=(6.4, 4.0), layout="constrained")
    ax = fig.add_subplot()
    for label, ys in series.items():
        clean = [float("nan") if (y is None or not math.isfinite(y)) else float(y) for y in ys]
        ax.plot(x, clean, marker="o" if len(x) <= 30 else None, markersize=3, label=label)
    ax.set_xlabel(xlabel)
    if all(float(v).is_integer() for v in x):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs: no 1.25 ticks
    ax.set_ylabel(ylabel)
    if logy:
        ax.set_yscale("log")
    if title:
        ax.set_title(title)
    ax.grid(True, alpha=0.3)
    if series:
        ax.legend()
    atomic_savefig(fig, path, dpi=120)


def plot_error_curves(path: Path, records: Sequence[Mapping], *, title: str | None = None) -> None:
    """Train and validation error against epoch, from ``metrics.jsonl`` records."""
    plot_curves(path, [r["epoch"] for r in records],
                {"train error": [r.get("train_error") for r in records],
                 "val error": [r.get("val_error") for r in records]},
                ylabel="error (1 - accuracy)", title=title)


QUANTILE_LABELS = {"q01": "1st percentile", "q20": "20th percentile",
                   "q80": "80th percentile", "q99": "99th percentile"}


def plot_quantiles(path: Path, records: Sequence[Mapping], *, title: str | None = None) -> None:
    """The percentiles in each record's ``quantiles`` (keys of ``QUANTILE_LABELS``) against epoch."""
    qs = [r.get("quantiles") or {} for r in records]
    plot_curves(path, [r["epoch"] for r in records],
                {label: [q.get(key) for q in qs] for key, label in QUANTILE_LABELS.items()},
                ylabel="penultimate feature value (validation set)", title=title)


def plot_ner_curves(path: Path, records: Sequence[Mapping], title: str | None = None) -> None:
    """Accuracy, micro F1 and macro F1 (O excluded) against learning updates, train and val: three panels."""
    fig = Figure(figsize=(13, 3.8), layout="constrained")
    steps = [r["step"] for r in records]
    for k, (key, label) in enumerate([("accuracy", "token accuracy"), ("micro_f1", "micro F1 (without O)"),
                                      ("macro_f1", "macro F1 (without O)")]):
        ax = fig.add_subplot(1, 3, k + 1)
        for split in ("train", "val"):
            ys = [r.get(f"{split}_{key}") for r in records]
            ys = [float("nan") if y is None or not math.isfinite(y) else y for y in ys]
            ax.plot(steps, ys, marker="o" if len(steps) <= 30 else None, markersize=3, label=split)
        ax.set_xlabel("learning updates")
        ax.set_title(label)
        ax.grid(True, alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    atomic_savefig(fig, path, dpi=110)
