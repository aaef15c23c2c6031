"""The report's figures (matplotlib, Agg canvas; written atomically as PNG).

- ``plot_bars``: the figure that opens most answers: one bar per variant (or a
  group of bars per variant), the mean over seeds with each seed as a dot and
  the standard deviation over seeds as an error bar, the value printed on top.
- ``plot_quantiles``: percentiles of the penultimate features per epoch, one
  panel per variant (the feature-percentile answer).
- ``plot_curves``, ``plot_ner_grid``: learning curves for the appendix.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from normlab.files import QUANTILES, atomic_savefig
from normlab.report.load import StudyData


def _figure(nrows: int, ncols: int, w: float, h: float, **kw):
    from matplotlib.figure import Figure  # the Agg canvas, no pyplot state and no display needed

    # Fixed margins in inches: matplotlib's automatic layouts cost more than the drawing itself.
    fig = Figure(figsize=(w, h), dpi=90)
    axes = fig.subplots(nrows, ncols, squeeze=False, **kw)
    fig.subplots_adjust(left=0.8 / w, right=1 - 0.15 / w, bottom=0.55 / h, top=1 - 0.4 / h,
                        wspace=0.25 if kw.get("sharey") else 0.3, hspace=0.45)
    return fig, axes


def _save(fig, path: Path) -> Path:
    atomic_savefig(fig, path)
    return path


def _marks(xs) -> dict:
    """Dots on short curves: a one-epoch run is a single point, invisible as a line."""
    return {"marker": "o", "markersize": 3} if len(xs) <= 30 else {}


def _no_data(ax, text="no data"):
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="gray")


LINESTYLES = ("-", "--", "-.", ":")
ZOOM_DROP = 0.03  # share of the later points a zoomed axis may leave below it (dips of single evaluations)
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def distinct_style(i: int) -> dict:
    """Colour, line style and marker of the ``i``-th line: no two of up to 32 lines look alike, in colour or
    in grey."""
    return {"color": f"C{i % 10}", "linestyle": LINESTYLES[i % len(LINESTYLES)],
            "marker": MARKERS[i % len(MARKERS)], "markersize": 3.5}


def zoom_limits(curves: Sequence[tuple[np.ndarray, np.ndarray]], start: float,
                low_share: float = ZOOM_DROP) -> Optional[tuple[float, float]]:
    """y limits of the band where the variants differ once the first fast climb is over: every point from
    the fraction ``start`` of the longest x range on, but the lowest ``low_share`` of them (single dips)
    (None without points there)."""
    xmax = max((float(xs[-1]) for xs, _ in curves if len(xs)), default=None)
    if xmax is None:
        return None
    ys = np.concatenate([ys[xs >= start * xmax] for xs, ys in curves if len(xs)] or [np.array([])])
    if not len(ys):
        return None
    lo, hi = float(np.quantile(ys, low_share)), float(ys.max())
    pad = 0.08 * (hi - lo) if hi > lo else 0.5
    return lo - pad, hi + pad


def plot_curves(study: StudyData, names: list[str], panels: list[tuple[str, str]], x: str, xlabel: str,
                path: Path, percent: bool = True, styles: Optional[dict] = None,
                zoom_from: Optional[float] = None,
                groups: Optional[list[tuple[str, list[str]]]] = None) -> Path:
    """One panel per (metric key, title); a line per variant (mean over seeds).

    ``zoom_from``: distinct line styles for every variant, and the y axis zoomed to the band the curves
    span from that fraction of the x range on (``zoom_limits``); the early points fall below it.
    ``groups``: one row of panels per (row title, variants) instead of every variant in one row, each
    row with its own zoom and its legend beside it, so that no panel holds more lines than the eye can
    tell apart."""
    rows = groups or [("", names)]
    outside = groups is not None
    legend_w = 2.3 if outside else 0.0
    w = 5.2 * len(panels) + legend_w
    fig, axes = _figure(len(rows), len(panels), w, (3.6 if zoom_from is None else 4.6) * len(rows))
    if outside:
        fig.subplots_adjust(right=1 - (legend_w + 0.1) / w)
    for axrow, (row_title, row_names) in zip(axes, rows):
        for col, (ax, (key, title)) in enumerate(zip(axrow, panels)):
            drawn = []
            for i, name in enumerate(row_names):
                v = study.get(name)
                if v is None:
                    continue
                xs, ys = v.curve(key, x)
                if len(xs):
                    ys = ys * (100 if percent else 1)
                    style = distinct_style(i) if zoom_from is not None else _marks(xs)
                    if zoom_from is not None and len(xs) > 30:
                        style["markevery"] = max(1, len(xs) // 12)
                    ax.plot(xs, ys, label=v.name, **{**style, **(styles or {}).get(name, {})})
                    drawn.append((xs, ys))
            ax.set_title((f"{row_title}: " if row_title else "") + title
                         + (" (zoomed)" if zoom_from is not None else ""))
            ax.set_xlabel(xlabel)
            ax.set_ylabel("%" if percent else "")
            ax.grid(alpha=0.3)
            if zoom_from is not None and drawn:
                lim = zoom_limits(drawn, zoom_from)
                if lim is not None:
                    ax.set_ylim(*lim)
            if not drawn:
                _no_data(ax)
            elif outside and col == len(panels) - 1:
                ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
            elif not outside:
                ax.legend(fontsize=8, ncol=2 if len(drawn) > 6 else 1)
    return _save(fig, path)


def plot_quantiles(study: StudyData, names: list[str], path: Path) -> tuple[Path, str]:
    """Small multiples: the four percentiles of penultimate features per variant, shared axes."""
    names = [n for n in names if study.get(n) is not None]
    ncols = min(3, max(1, len(names)))
    nrows = max(1, math.ceil(len(names) / ncols))
    fig, axes = _figure(nrows, ncols, 4.2 * ncols, 3.0 * nrows, sharex=True, sharey=True)
    allv = []
    for i, name in enumerate(names):
        ax = axes[i // ncols][i % ncols]
        v = study.get(name)
        for q in QUANTILES:
            xs, ys = v.curve(f"quantiles.{q}", "epoch")
            if len(xs):
                ax.plot(xs, ys, label=q, **_marks(xs))
                allv.extend(np.abs(ys).tolist())
        ax.set_title(v.name, fontsize=10)
        ax.grid(alpha=0.3)
        if not v.curve("quantiles.q99", "epoch")[0].size:
            _no_data(ax, v.missing_reason() if not v.runs else "no quantiles")
        if i % ncols == 0:
            ax.set_ylabel("feature value")
        if i // ncols == nrows - 1:
            ax.set_xlabel("epoch")
    for j in range(len(names), nrows * ncols):
        axes[j // ncols][j % ncols].set_visible(False)
    scale = "linear"
    pos = [a for a in allv if a > 0]
    if pos and max(pos) / max(np.median(pos), 1e-12) > 100:
        # one variant's features dwarf the others: a linear shared axis would flatten them
        scale = "symlog"
        axes[0][0].set_yscale("symlog", linthresh=max(np.median(pos), 1e-6))
    for ax in axes.flat:
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
            break
    return _save(fig, path), scale


def plot_ner_grid(study: StudyData, names: list[str], path: Path) -> Path:
    """Rows: variants; columns: accuracy, micro F1, macro F1; train dashed, val solid; x: updates."""
    names = [n for n in names if study.get(n) is not None]
    fig, axes = _figure(max(1, len(names)), 3, 13, 2.4 * max(1, len(names)), sharex=True, sharey="col")
    for i, name in enumerate(names):
        v = study.get(name)
        for j, (key, title) in enumerate((("accuracy", "accuracy"), ("micro_f1", "micro F1"),
                                          ("macro_f1", "macro F1"))):
            ax = axes[i][j]
            drawn = False
            for split, style in (("train", "--"), ("val", "-")):
                xs, ys = v.curve(f"{split}_{key}", "step")
                if len(xs):
                    ax.plot(xs, ys * 100, style, label=split, **_marks(xs))
                    drawn = True
            if not drawn:
                _no_data(ax, v.missing_reason())
            ax.grid(alpha=0.3)
            if i == 0:
                ax.set_title(title)
            if j == 0:
                ax.set_ylabel(f"{v.name}\n%", fontsize=9)
            if i == len(names) - 1:
                ax.set_xlabel("learning updates")
            if drawn and i == 0 and j == 0:
                ax.legend(fontsize=8)
    return _save(fig, path)




def _bar_floor(values: list[float]) -> float:
    """Lower end of a bar chart's y axis: 0 unless every value sits far above it, so that
    differences of a point stay visible (the value is printed on each bar)."""
    if not values:
        return 0.0
    lo, hi = min(values), max(values)
    span = max(hi - lo, 1.0)
    floor = lo - 1.5 * span
    return 0.0 if floor < 0.35 * hi else math.floor(floor / 5) * 5


def plot_bars(path: Path, categories: Sequence[str], series: dict[str, Sequence[Sequence[float]]], *,
              ylabel: str, title: str, reference: Optional[str] = None) -> Path:
    """Grouped bars: ``series[name][i]`` holds the per-seed values (in %) of ``categories[i]``.

    A bar is the mean; dots are the seeds; the error bar is the sample standard
    deviation when there are two seeds or more. An empty list is drawn as "no run".
    ``reference`` (a category) gets a dotted line at its first series' mean.
    """
    n_series = max(1, len(series))
    width = 0.8 / n_series
    fig, axes = _figure(1, 1, max(4.5, 1.1 * len(categories) * max(1, n_series * 0.7) + 1.5), 3.8)
    ax = axes[0][0]
    xs = np.arange(len(categories))
    everything = [v for vals in series.values() for seeds in vals for v in seeds]
    floor = _bar_floor(everything)
    tops = list(everything)  # the highest point drawn: a seed, or mean + std with its label
    for k, (name, vals) in enumerate(series.items()):
        pos = xs - 0.4 + width * (k + 0.5)
        labelled = False
        for x, seeds in zip(pos, vals):
            if not seeds:
                ax.text(x, floor, "no run", rotation=90, ha="center", va="bottom", fontsize=8, color="gray")
                continue
            mean = float(np.mean(seeds))
            std = float(np.std(seeds, ddof=1)) if len(seeds) > 1 else None
            ax.bar(x, mean - floor, width * 0.9, bottom=floor, color=f"C{k}", alpha=0.75,
                   label=None if labelled else name)
            labelled = True
            if std is not None:
                ax.errorbar(x, mean, yerr=std, color="black", capsize=3, linewidth=1)
            if len(seeds) > 1:
                ax.plot([x] * len(seeds), seeds, "o", color="black", markersize=2.5)
            ax.text(x, mean + (std or 0), f"{mean:.2f}", ha="center", va="bottom", fontsize=7)
            tops.append(mean + (std or 0))
    if reference in categories:
        first = next(iter(series.values()), [])
        ref = first[list(categories).index(reference)] if first else []
        if ref:
            ax.axhline(float(np.mean(ref)), color="gray", linestyle=":", linewidth=1)
    ax.set_xticks(xs)
    ax.set_xticklabels(categories, fontsize=9)
    ax.set_xlim(-0.5, len(categories) - 0.5)  # room for a category with no run at all
    ax.set_ylabel(ylabel + (f" (axis from {floor:g})" if floor else ""))
    ax.set_title(title, fontsize=10)
    if everything:
        ax.set_ylim(floor, max(tops) + 0.12 * (max(tops) - floor + 1))
    else:
        _no_data(ax)
    ax.grid(axis="y", alpha=0.3)
    if len(series) > 1 and ax.get_legend_handles_labels()[0]:
        # outside the axes, on the right: inside it would hide a short bar or a "no run" mark
        w = fig.get_figwidth()
        fig.set_figwidth(w + 1.8)
        fig.subplots_adjust(left=0.8 / (w + 1.8), right=1 - 1.95 / (w + 1.8))
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    return _save(fig, path)
