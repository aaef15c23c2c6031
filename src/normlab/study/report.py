"""The study report: tables, plots and sentences computed from run directories.

``write_report(study_dir)`` reads ``study.json`` (when there is one) and every
run directory under ``runs/<variant>/seed<S>/`` and writes, beside them,
``report.md``, a self-contained ``report.html`` (plots inlined as base64 PNG)
and the plots as ``report-*.png``. Nothing in the report is hand-written about
the results: every number comes from a ``summary.json`` or ``metrics.jsonl``,
and every sentence about the results is computed from those numbers, so the
report of another run of the study says what that run found.

A variant that was not run (or did not finish) is reported as such; the
report never fails because part of the grid is missing.
"""

from __future__ import annotations

import base64
import html
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from normlab.study.grids import RESNET_FULL_EPOCHS, StudySettings, variants_for
from normlab.train.rundir import (CONFIG, METRICS, SUMMARY, atomic_savefig, atomic_write_text, read_json,
                                  read_jsonl)

SPLITS = ("train", "val", "test")
METRICS3 = (("accuracy", "acc"), ("micro_f1", "micro F1"), ("macro_f1", "macro F1"))
QUANTILES = ("q01", "q20", "q80", "q99")
SANITY_TOLERANCE = 1.0  # points of test accuracy within which torch_bn and our bn "agree"


# ----------------------------------------------------------------------------- loading


@dataclass
class Run:
    variant: str
    seed: int
    dir: Path
    config: dict
    metrics: list[dict]
    summary: Optional[dict]
    seconds: Optional[float] = None  # wall time of all its attempts

    @property
    def status(self) -> str:
        if self.summary is None:
            return "interrupted" if self.config else "not started"
        if self.summary.get("diverged"):
            return "diverged"
        return str(self.summary.get("status", "finished"))

    def metric(self, split: str, name: str) -> Optional[float]:
        if self.summary is None:
            return None
        v = ((self.summary.get("metrics") or {}).get(split) or {}).get(name)
        return None if v is None else float(v)


@dataclass
class VariantResult:
    name: str
    label: str
    runs: list[Run] = field(default_factory=list)
    left_out: Optional[str] = None
    settings: dict = field(default_factory=dict)

    @property
    def finished(self) -> list[Run]:
        return [r for r in self.runs if r.summary is not None]

    def values(self, split: str, name: str) -> list[float]:
        return [v for r in self.finished if (v := r.metric(split, name)) is not None]

    def mean(self, split: str, name: str) -> Optional[float]:
        vals = self.values(split, name)
        return float(np.mean(vals)) if vals else None

    def summary_values(self, key: str) -> list[float]:
        return [float(r.summary[key]) for r in self.finished if r.summary.get(key) is not None]

    def curve(self, key: str, x: str) -> tuple[np.ndarray, np.ndarray]:
        """Mean over seeds of ``key`` against ``x`` (points every seed has), finished or not."""
        by_x: dict[float, list[float]] = {}
        for r in self.runs:
            for m in r.metrics:
                v = _get(m, key)
                if v is not None and m.get(x) is not None:
                    by_x.setdefault(float(m[x]), []).append(v)
        n = len([r for r in self.runs if r.metrics])
        xs = sorted(k for k, vs in by_x.items() if len(vs) == n)
        return np.array(xs), np.array([np.mean(by_x[k]) for k in xs])

    @property
    def available(self) -> bool:
        return bool(self.finished)

    def missing_reason(self) -> str:
        if self.left_out:
            return f"left out: {self.left_out}"
        if not self.runs:
            return "missing (not run)"
        return "not finished (" + ", ".join(f"seed {r.seed}: {r.status}" for r in self.runs) + ")"


def _get(m: dict, key: str) -> Optional[float]:
    """A metrics.jsonl value; ``a.b`` reaches into a nested dict; errors come from accuracies if absent."""
    cur = m
    for part in key.split("."):
        if not isinstance(cur, dict) or part not in cur:
            cur = None
            break
        cur = cur[part]
    if cur is None and key.endswith("_error"):
        acc = m.get(key[: -len("_error")] + "_accuracy")
        cur = None if acc is None else 1.0 - float(acc)
    if cur is None:
        return None
    v = float(cur)
    return v if math.isfinite(v) else None


@dataclass
class StudyData:
    root: Path
    kind: str
    settings: Optional[StudySettings]
    variants: list[VariantResult]
    shortened: list[str]
    configs_seen: list[dict]

    def get(self, name: str) -> Optional[VariantResult]:
        return next((v for v in self.variants if v.name == name), None)

    @property
    def runs(self) -> list[Run]:
        return [r for v in self.variants for r in v.runs]


def _run_seconds(root: Path) -> dict[tuple[str, int], float]:
    out: dict[tuple[str, int], float] = {}
    for e in read_jsonl(root / "events.jsonl"):
        key = (e["run"], int(e["seed"]))
        out[key] = out.get(key, 0.0) + float(e.get("seconds") or 0.0)
    return out


def load_study(root: Path) -> StudyData:
    """Read ``study.json`` and every run directory of a study folder."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such study folder")
    study = read_json(root / "study.json") if (root / "study.json").exists() else None
    run_dirs = sorted(p.parent for p in root.glob("runs/*/seed*/" + CONFIG))
    if study is not None:
        kind = study["kind"]
    elif run_dirs:
        kind = read_json(run_dirs[0] / CONFIG).get("kind")
    else:
        raise ValueError(f"{root}: neither a study.json nor any run directory under runs/<variant>/seed<S>/")
    settings = StudySettings.from_dict(study["settings"]) if study else None
    rule = settings.small_batch_lr if settings else "linear"
    grid = study["grid"] if study else [{"name": v.name, "label": v.label, **v.settings}
                                        for v in variants_for(kind, rule)]
    left_out = (study or {}).get("left_out", {})
    seconds = _run_seconds(root)
    variants = []
    names = [g["name"] for g in grid]
    extra = sorted({p.parent.name for p in run_dirs} - set(names))
    for g in grid + [{"name": n, "label": n} for n in extra]:
        vr = VariantResult(g["name"], g.get("label", g["name"]), left_out=left_out.get(g["name"]),
                           settings={k: v for k, v in g.items() if k not in ("name", "label", "args")})
        for d in sorted(root.glob(f"runs/{g['name']}/seed*")):
            m = re.fullmatch(r"seed(\d+)", d.name)
            if not m or not d.is_dir():
                continue
            cfg = read_json(d / CONFIG) if (d / CONFIG).exists() else {}
            summ = read_json(d / SUMMARY) if (d / SUMMARY).exists() else None
            run = Run(g["name"], int(m.group(1)), d, cfg, read_jsonl(d / METRICS), summ)
            # the run's own total (kept across resumes), else the runner's clock, else epochs x s/epoch
            if summ and summ.get("seconds") is not None:
                run.seconds = float(summ["seconds"])
            else:
                run.seconds = seconds.get((g["name"], run.seed))
            if run.seconds is None and summ and summ.get("seconds_per_epoch") and summ.get("epochs_run"):
                run.seconds = float(summ["seconds_per_epoch"]) * float(summ["epochs_run"])
            vr.runs.append(run)
        variants.append(vr)
    configs = [r.config for v in variants for r in v.runs if r.config]
    if settings is not None:
        shortened = settings.shortened()
    else:
        shortened = _shortened_from_configs(kind, configs)
    return StudyData(root, kind, settings, variants, shortened, configs)


def _shortened_from_configs(kind: str, configs: list[dict]) -> list[str]:
    why = []
    epochs = {c.get("config", {}).get("epochs") for c in configs} - {None}
    limit = {c.get("config", {}).get("limit_train") for c in configs} - {None}
    if kind == "resnet" and epochs and min(epochs) < RESNET_FULL_EPOCHS:
        why.append(f"{min(epochs)} epochs instead of {RESNET_FULL_EPOCHS}")
    if limit:
        why.append(f"only the first {min(limit)} training examples (--limit-train)")
    return why


# ----------------------------------------------------------------------------- formatting


def fmt_pct(vals: list[float]) -> str:
    """Fractions as percent with two decimals; mean ± sample std over seeds."""
    if not vals:
        return "–"
    if len(vals) == 1:
        return f"{vals[0] * 100:.2f}"
    return f"{np.mean(vals) * 100:.2f} ± {np.std(vals, ddof=1) * 100:.2f}"


def fmt_num(vals: list[float], digits: int = 2) -> str:
    if not vals:
        return "–"
    if len(vals) == 1:
        return f"{vals[0]:.{digits}f}"
    return f"{np.mean(vals):.{digits}f} ± {np.std(vals, ddof=1):.{digits}f}"


def fmt_count(v: float) -> str:
    """Counts (epochs, steps) as integers; NER's fractional epochs with two decimals."""
    return str(int(v)) if float(v).is_integer() else f"{v:.2f}"


def fmt_ints(vals: list[float]) -> str:
    """One value per seed, joined by '/'."""
    return "/".join(fmt_count(v) for v in vals) if vals else "–"


def pts(x: float) -> str:
    return f"{x:+.2f}"


def hours(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"


# ----------------------------------------------------------------------------- document model
# A report is a list of blocks rendered twice: to Markdown and to HTML.


@dataclass
class Doc:
    blocks: list[tuple] = field(default_factory=list)

    def h(self, level: int, text: str):
        self.blocks.append(("h", level, text))

    def p(self, text: str):
        self.blocks.append(("p", text))

    def banner(self, text: str):
        self.blocks.append(("banner", text))

    def table(self, header: list[str], rows: list[list[str]]):
        self.blocks.append(("table", header, rows))

    def img(self, path: Path, alt: str):
        self.blocks.append(("img", Path(path), alt))

    def bullets(self, items: list[str]):
        self.blocks.append(("ul", items))


def render_md(doc: Doc) -> str:
    out = []
    for b in doc.blocks:
        if b[0] == "h":
            out.append("#" * b[1] + " " + b[2])
        elif b[0] == "p":
            out.append(b[1])
        elif b[0] == "banner":
            out.append("> **" + b[1].replace("\n", "\n> ") + "**")
        elif b[0] == "ul":
            out.append("\n".join(f"- {i}" for i in b[1]))
        elif b[0] == "table":
            header, rows = b[1], b[2]
            cell = lambda s: str(s).replace("|", "\\|")
            lines = ["| " + " | ".join(cell(h) for h in header) + " |",
                     "|" + "|".join("---" for _ in header) + "|"]
            lines += ["| " + " | ".join(cell(c) for c in r) + " |" for r in rows]
            out.append("\n".join(lines))
        elif b[0] == "img":
            out.append(f"![{b[2]}]({b[1].name})")
    return "\n\n".join(out) + "\n"


def _inline_html(text: str) -> str:
    s = html.escape(text)
    s = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", s)
    s = re.sub(r"`(.+?)`", r"<code>\1</code>", s)
    return s


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222;line-height:1.45}
table{border-collapse:collapse;font-size:0.85em;margin:1em 0}th,td{border:1px solid #ccc;padding:3px 6px;text-align:right}
th{background:#f2f2f2}td:first-child,th:first-child,td:nth-child(2){text-align:left}
.banner{background:#fff3cd;border:2px solid #e0a800;padding:0.7em 1em;font-weight:bold;margin:1em 0}
img{max-width:100%;border:1px solid #eee}code{background:#f4f4f4;padding:0 3px}
"""


def render_html(doc: Doc, title: str) -> str:
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"]
    for b in doc.blocks:
        if b[0] == "h":
            out.append(f"<h{b[1]}>{_inline_html(b[2])}</h{b[1]}>")
        elif b[0] == "p":
            out.append(f"<p>{_inline_html(b[1])}</p>")
        elif b[0] == "banner":
            out.append(f'<div class="banner">{_inline_html(b[1])}</div>')
        elif b[0] == "ul":
            out.append("<ul>" + "".join(f"<li>{_inline_html(i)}</li>" for i in b[1]) + "</ul>")
        elif b[0] == "table":
            rows = ["<tr>" + "".join(f"<th>{_inline_html(h)}</th>" for h in b[1]) + "</tr>"]
            rows += ["<tr>" + "".join(f"<td>{_inline_html(str(c))}</td>" for c in r) + "</tr>" for r in b[2]]
            out.append("<table>" + "".join(rows) + "</table>")
        elif b[0] == "img":
            data = base64.b64encode(b[1].read_bytes()).decode("ascii")
            out.append(f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(b[2])}">'
                       f"<figcaption>{html.escape(b[2])}</figcaption></figure>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


# ----------------------------------------------------------------------------- plots


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


def plot_curves(study: StudyData, names: list[str], panels: list[tuple[str, str]], x: str, xlabel: str,
                path: Path, percent: bool = True, styles: Optional[dict] = None) -> Path:
    """One panel per (metric key, title); a line per variant (mean over seeds)."""
    fig, axes = _figure(1, len(panels), 5.2 * len(panels), 3.6)
    for ax, (key, title) in zip(axes[0], panels):
        drawn = 0
        for name in names:
            v = study.get(name)
            if v is None:
                continue
            xs, ys = v.curve(key, x)
            if len(xs):
                ax.plot(xs, ys * (100 if percent else 1), label=v.name, **_marks(xs),
                        **(styles or {}).get(name, {}))
                drawn += 1
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("%" if percent else "")
        ax.grid(alpha=0.3)
        if drawn:
            ax.legend(fontsize=8)
        else:
            _no_data(ax)
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


# ----------------------------------------------------------------------------- tables


def results_table(study: StudyData) -> tuple[list[str], list[list[str]]]:
    header = ["variant", "status"]
    header += [f"{split} {short}" for split in SPLITS for _, short in METRICS3]
    if study.kind == "ner":
        header += ["val entity F1", "test entity F1", "best step", "updates"]
    header += ["best epoch", "epochs run", "s/epoch", "diverged"]
    rows = []
    for v in study.variants:
        if not v.available:
            rows.append([v.name, v.missing_reason()] + ["–"] * (len(header) - 2))
            continue
        statuses = [r.status for r in v.finished]
        status = ", ".join(f"{statuses.count(s)}× {s}" if len(statuses) > 1 else s
                           for s in dict.fromkeys(statuses))
        unfinished = len(v.runs) - len(v.finished)
        if unfinished:
            status += f" ({unfinished} seed(s) not finished)"
        row = [v.name, status]
        row += [fmt_pct(v.values(split, key)) for split in SPLITS for key, _ in METRICS3]
        if study.kind == "ner":
            row += [fmt_pct(v.values("val", "entity_f1")), fmt_pct(v.values("test", "entity_f1")),
                    fmt_ints(v.summary_values("best_step")), fmt_ints(v.summary_values("updates"))]
        div = [bool(r.summary.get("diverged")) for r in v.finished]
        row += [fmt_ints(v.summary_values("best_epoch")), fmt_ints(v.summary_values("epochs_run")),
                fmt_num(v.summary_values("seconds_per_epoch")),
                ("yes" if all(div) else "no") if len(div) == 1 or not any(div) or all(div)
                else f"{sum(div)} of {len(div)}"]
        rows.append(row)
    return header, rows


def runs_table(study: StudyData) -> tuple[list[str], list[list[str]]]:
    header = ["run", "status", "message", "time"]
    rows = []
    for r in study.runs:
        msg = (r.summary or {}).get("message") or ""
        rows.append([f"{r.variant}/seed{r.seed}", r.status, msg,
                     hours(r.seconds) if r.seconds is not None else "–"])
    return header, rows


# ----------------------------------------------------------------------------- sentences


def _label(study: StudyData, name: str) -> str:
    v = study.get(name)
    return f"{v.label} (`{name}`)" if v else f"`{name}`"


def _missing(study: StudyData, names: list[str]) -> Optional[str]:
    gone = [n for n in names if study.get(n) is None or not study.get(n).available]
    if not gone:
        return None
    parts = [f"`{n}` is {study.get(n).missing_reason() if study.get(n) else 'not in this study'}" for n in gone]
    return "Cannot compare: " + "; ".join(parts) + "."


def _seed_note(a: VariantResult, b: VariantResult, split: str, key: str) -> str:
    va, vb = a.values(split, key), b.values(split, key)
    if len(va) < 2 or len(vb) < 2:
        return ""
    spread = max(np.std(va, ddof=1), np.std(vb, ddof=1)) * 100
    diff = abs(np.mean(va) - np.mean(vb)) * 100
    if spread == 0:
        return ""
    return f" The difference is {diff / spread:.1f}× the larger standard deviation over seeds ({spread:.2f} points)."


def compare_sentence(study: StudyData, a: str, b: str, keys=None, split: str = "test") -> str:
    """``a`` against ``b`` on the test split, metric by metric, and which one wins how often."""
    miss = _missing(study, [a, b])
    if miss:
        return miss
    keys = keys or [("accuracy", "accuracy"), ("micro_f1", "micro F1"), ("macro_f1", "macro F1")]
    va, vb = study.get(a), study.get(b)
    parts, wins = [], 0
    for key, title in keys:
        x, y = va.mean(split, key), vb.mean(split, key)
        if x is None or y is None:
            continue
        parts.append(f"{title} {x * 100:.2f}% against {y * 100:.2f}% ({pts((x - y) * 100)} points)")
        wins += x > y
    if not parts:
        return f"Cannot compare `{a}` and `{b}`: their summaries hold no {split} metrics."
    main = keys[-1][0]
    verdict = (f"`{a}` is ahead on {wins} of {len(parts)} {split} metrics" if wins else
               f"`{a}` is ahead on none of the {len(parts)} {split} metrics")
    return (f"{_label(study, a)} against {_label(study, b)}, {split} split: " + "; ".join(parts) + ". "
            + verdict + "." + _seed_note(va, vb, split, main))


# ----------------------------------------------------------------------------- the ResNet report


def _err_panels():
    return [("train_error", "train error"), ("val_error", "val error")]


def resnet_sections(study: StudyData, doc: Doc, out: Path) -> None:
    # 1. sanity check
    doc.h(2, "Sanity check: `torch_bn` (nn.BatchNorm2d) against our `bn`")
    doc.img(plot_curves(study, ["torch_bn", "bn"], _err_panels(), "epoch", "epoch", out / "report-sanity.png"),
            "train and val error of torch_bn and bn, overlaid")
    for s in sanity_sentences(study):
        doc.p(s)
    # 2. the six variants
    six = ["bn", "in", "bin", "ln", "gn", "nn"]
    doc.h(2, "The six variants compared (batch 128)")
    doc.img(plot_curves(study, six, _err_panels(), "epoch", "epoch", out / "report-variants.png"),
            "train and val error of bn, in, bin, ln, gn, nn")
    for s in variants_sentences(study, six):
        doc.p(s)
    # 3. batch size
    doc.h(2, "Batch size 8 against 128 for BN and GN")
    styles = {"bn": {"color": "C0"}, "bn_b8": {"color": "C0", "linestyle": "--"},
              "gn": {"color": "C1"}, "gn_b8": {"color": "C1", "linestyle": "--"}}
    doc.img(plot_curves(study, ["bn", "bn_b8", "gn", "gn_b8"], _err_panels(), "epoch", "epoch",
                        out / "report-batch.png", styles=styles),
            "train and val error of bn and gn at batch 128 (solid) and 8 (dashed)")
    for s in batch_sentences(study):
        doc.p(s)
    # 4. quantiles
    doc.h(2, "Evolution of the penultimate features: 1st, 20th, 80th and 99th percentiles")
    names = [v.name for v in study.variants]
    path, scale = plot_quantiles(study, names, out / "report-quantiles.png")
    doc.img(path, "percentiles of the penultimate-layer features over the validation set, per epoch "
                  f"(one panel per variant, shared axes, {scale} y scale)")
    header, rows, sentences = quantile_findings(study, names)
    doc.table(header, rows)
    for s in sentences:
        doc.p(s)


def sanity_sentences(study: StudyData) -> list[str]:
    miss = _missing(study, ["torch_bn", "bn"])
    if miss:
        return [miss]
    a, b = study.get("torch_bn"), study.get("bn")
    out = []
    xa, ya = a.curve("val_error", "epoch")
    xb, yb = b.curve("val_error", "epoch")
    common = sorted(set(xa.tolist()) & set(xb.tolist()))
    if common:
        da = dict(zip(xa.tolist(), ya.tolist()))
        db = dict(zip(xb.tolist(), yb.tolist()))
        gaps = [(abs(da[e] - db[e]) * 100, e) for e in common]
        gap, epoch = max(gaps)
        out.append(f"Largest gap in validation error between `torch_bn` and `bn`: {gap:.2f} points, at epoch "
                   f"{epoch:g} (`torch_bn` {da[epoch] * 100:.2f}%, `bn` {db[epoch] * 100:.2f}%); the mean absolute "
                   f"gap over the {len(common)} epoch(s) both ran is {np.mean([g for g, _ in gaps]):.2f} points.")
    ta, tb = a.mean("test", "accuracy"), b.mean("test", "accuracy")
    if ta is not None and tb is not None:
        d = (tb - ta) * 100
        agree = abs(d) <= SANITY_TOLERANCE
        out.append(f"Test accuracy: `torch_bn` {ta * 100:.2f}%, `bn` {tb * 100:.2f}% (`bn` {pts(d)} points). "
                   + (f"They agree within {SANITY_TOLERANCE:g} point, as the sanity check expects."
                      if agree else
                      f"They differ by more than {SANITY_TOLERANCE:g} point: more than the check expects "
                      f"(look at the seeds' spread before blaming the layer).")
                   + _seed_note(b, a, "test", "accuracy"))
    sa, sb = a.summary_values("seconds_per_epoch"), b.summary_values("seconds_per_epoch")
    if sa and sb and np.mean(sa) > 0:
        out.append(f"Speed: `bn` took {np.mean(sb):.2f} s per epoch against {np.mean(sa):.2f} s for `torch_bn` "
                   f"({np.mean(sb) / np.mean(sa):.2f}×).")
    return out


def variants_sentences(study: StudyData, names: list[str]) -> list[str]:
    have = [n for n in names if study.get(n) and study.get(n).available]
    out = []
    missing = [n for n in names if n not in have]
    if missing:
        out.append("Not in this comparison: " + "; ".join(
            f"`{n}` ({study.get(n).missing_reason() if study.get(n) else 'not in this study'})" for n in missing) + ".")
    if not have:
        return out
    ranked = sorted(have, key=lambda n: -(study.get(n).mean("test", "accuracy") or -1))
    out.append("Ranked by test accuracy: " + ", ".join(
        f"`{n}` {study.get(n).mean('test', 'accuracy') * 100:.2f}%" for n in ranked
        if study.get(n).mean("test", "accuracy") is not None) + ".")
    if len(ranked) > 1:
        best, worst = study.get(ranked[0]), study.get(ranked[-1])
        out.append(f"Best: `{best.name}`, {(best.mean('test', 'accuracy') - worst.mean('test', 'accuracy')) * 100:.2f} "
                   f"points above the worst, `{worst.name}`; by test macro F1 the best is `"
                   + max(have, key=lambda n: study.get(n).mean("test", "macro_f1") or -1) + "`.")
        gaps = {n: (study.get(n).mean("train", "accuracy") or 0) - (study.get(n).mean("test", "accuracy") or 0)
                for n in have}
        g = max(gaps, key=gaps.get)
        out.append(f"Largest train–test accuracy gap: `{g}` ({gaps[g] * 100:.2f} points); smallest: "
                   f"`{min(gaps, key=gaps.get)}` ({min(gaps.values()) * 100:.2f} points).")
        fastest = min(have, key=lambda n: np.mean(study.get(n).summary_values("best_epoch") or [np.inf]))
        be = study.get(fastest).summary_values("best_epoch")
        out.append(f"Earliest best validation epoch: `{fastest}` ("
                   + (f"epoch {fmt_count(be[0])}" if len(be) == 1 else f"epochs {fmt_ints(be)} by seed") + ").")
    div = [n for n in have if any(r.summary.get("diverged") for r in study.get(n).finished)]
    if div:
        out.append("Diverged: " + "; ".join(
            f"`{n}` after {fmt_ints(study.get(n).summary_values('epochs_run'))} epoch(s) "
            f"({next(r.summary.get('message', '') for r in study.get(n).finished if r.summary.get('diverged'))})"
            for n in div) + ".")
    else:
        out.append("No variant diverged.")
    return out


def batch_sentences(study: StudyData) -> list[str]:
    out = []
    lr8 = next((v.settings.get("lr") for v in study.variants if v.name == "bn_b8"), None)
    rule = study.settings.small_batch_lr if study.settings else None
    if lr8 is not None:
        out.append(f"The batch-8 runs used lr {lr8:g}" + (f" (`--small-batch-lr {rule}`" if rule else " (")
                   + (", the linear scaling rule: 0.1 × 8/128)" if rule == "linear" else ")") + "; batch 128 used 0.1.")
    drops = {}
    for norm in ("bn", "gn"):
        miss = _missing(study, [norm, f"{norm}_b8"])
        if miss:
            out.append(miss)
            continue
        big, small = study.get(norm).mean("test", "accuracy"), study.get(f"{norm}_b8").mean("test", "accuracy")
        if big is None or small is None:
            continue
        drops[norm] = (big - small) * 100
        out.append(f"`{norm}`: test accuracy {big * 100:.2f}% at batch 128, {small * 100:.2f}% at batch 8 "
                   f"({pts(-drops[norm])} points).")
    if len(drops) == 2:
        d = drops["bn"] - drops["gn"]
        if abs(d) < 0.05:
            out.append("BN and GN lose the same accuracy going from batch 128 to 8 (within 0.05 points).")
        elif d > 0:
            out.append(f"GN holds up better: going from batch 128 to 8 it changes by {pts(-drops['gn'])} points, "
                       f"BN by {pts(-drops['bn'])} points, a difference of {d:.2f} points in GN's favour.")
        else:
            out.append(f"BN holds up better here: going from batch 128 to 8 it changes by {pts(-drops['bn'])} "
                       f"points, GN by {pts(-drops['gn'])} points, a difference of {-d:.2f} points in BN's favour.")
        b8, g8 = study.get("bn_b8").mean("test", "accuracy"), study.get("gn_b8").mean("test", "accuracy")
        if b8 is not None and g8 is not None:
            out.append(f"At batch 8, GN's test accuracy is {abs(g8 - b8) * 100:.2f} points "
                       f"{'above' if g8 >= b8 else 'below'} BN's.")
    return out


def quantile_findings(study: StudyData, names: list[str]):
    header = ["variant", "epochs"] + [f"first {q}" for q in QUANTILES] + [f"last {q}" for q in QUANTILES]
    rows, spreads = [], {}
    for n in names:
        v = study.get(n)
        series = {q: v.curve(f"quantiles.{q}", "epoch") for q in QUANTILES}
        if not len(series["q99"][0]):
            rows.append([n, v.missing_reason() if not v.available else "no quantiles logged"] + ["–"] * 8)
            continue
        first = [series[q][1][0] for q in QUANTILES]
        last = [series[q][1][-1] for q in QUANTILES]
        rows.append([n, f"{series['q99'][0][-1]:g}"] + [f"{x:.4g}" for x in first + last])
        spreads[n] = (last[3] - last[0], first[3] - first[0])
    sentences = []
    if spreads:
        wide = max(spreads, key=lambda n: spreads[n][0])
        narrow = min(spreads, key=lambda n: spreads[n][0])
        sentences.append(f"At the last epoch the 1st-to-99th percentile range is widest for `{wide}` "
                         f"({spreads[wide][0]:.4g}) and narrowest for `{narrow}` ({spreads[narrow][0]:.4g}).")
        growth = {n: s[0] / s[1] for n, s in spreads.items() if s[1] > 0}
        if growth:
            g = max(growth, key=growth.get)
            sentences.append(f"From the first to the last epoch the range grew most for `{g}` "
                             f"({growth[g]:.2f}×) and least for `{min(growth, key=growth.get)}` "
                             f"({min(growth.values()):.2f}×).")
    return header, rows, sentences


# ----------------------------------------------------------------------------- the NER report

NER_PAIRS = [
    ("Pretrained against random embeddings", [("glove", "random")]),
    ("Characters against none", [("glove_char", "glove")]),
    ("Layer norm against none", [("glove_char_ln", "glove_char"), ("crf_ln", "crf")]),
    ("CRF against softmax", [("crf", "glove_char"), ("crf_ln", "glove_char_ln")]),
]
NER_KEYS = [("accuracy", "accuracy"), ("micro_f1", "micro F1"), ("macro_f1", "macro F1"),
            ("entity_f1", "entity F1")]


def ner_sections(study: StudyData, doc: Doc, out: Path) -> None:
    names = [v.name for v in study.variants]
    doc.h(2, "Accuracy, micro F1 and macro F1 against learning updates")
    doc.img(plot_ner_grid(study, names, out / "report-ner-curves.png"),
            "train (dashed) and val (solid) accuracy, micro F1 and macro F1 against learning updates, per variant")
    for s in ner_curve_sentences(study, names):
        doc.p(s)
    for i, (title, pairs) in enumerate(NER_PAIRS):
        doc.h(2, title)
        involved = list(dict.fromkeys(n for p in pairs for n in p))
        doc.img(plot_curves(study, involved, [("val_micro_f1", "val micro F1"), ("val_entity_f1", "val entity F1")],
                            "step", "learning updates", out / f"report-ner-{i + 1}.png"),
                f"{title}: validation micro F1 and entity F1 against learning updates")
        for a, b in pairs:
            doc.p(compare_sentence(study, a, b, NER_KEYS))
    doc.h(2, "The CRF's transition initialization and what it changed")
    doc.img(plot_curves(study, ["crf", "crf_free"], [("val_micro_f1", "val micro F1"),
                                                     ("val_entity_f1", "val entity F1")],
                        "step", "learning updates", out / "report-ner-crf-init.png"),
            "constrained (crf) against unconstrained (crf_free) transitions")
    for s in crf_init_sentences(study):
        doc.p(s)
    doc.h(2, "Embeddings each run used")
    header, rows = embeddings_table(study)
    doc.table(header, rows)


def ner_curve_sentences(study: StudyData, names: list[str]) -> list[str]:
    best = {}
    for n in names:
        v = study.get(n)
        xs, ys = v.curve("val_micro_f1", "step")
        if len(xs):
            i = int(np.argmax(ys))
            best[n] = (ys[i], xs[i], xs[-1])
    if not best:
        return ["No variant has logged any validation metrics yet."]
    out = ["Best validation micro F1 and the update it was reached at: " + "; ".join(
        f"`{n}` {b[0] * 100:.2f}% at update {b[1]:g} of {b[2]:g}" for n, b in best.items()) + "."]
    top = max(best, key=lambda n: best[n][0])
    early = min(best, key=lambda n: best[n][1])
    out.append(f"Highest: `{top}`; earliest to reach its best: `{early}` (update {best[early][1]:g}).")
    gaps = {}
    for n in best:
        v = study.get(n)
        tr, va = v.mean("train", "micro_f1"), v.mean("val", "micro_f1")
        if tr is not None and va is not None:
            gaps[n] = (tr - va) * 100
    if gaps:
        g = max(gaps, key=gaps.get)
        out.append(f"Largest train–val micro F1 gap at the best checkpoint: `{g}` ({gaps[g]:.2f} points).")
    return out


def _crf_setting(run: Run) -> dict:
    cfg = run.config.get("config", {})
    return {k: v for k, v in cfg.items() if "constraint" in k or "transition" in k}


def crf_init_sentences(study: StudyData) -> list[str]:
    out = []
    crf = study.get("crf")
    if crf and crf.runs:
        setting = _crf_setting(crf.runs[0])
        if setting:
            out.append("Settings of the `crf` runs: " + ", ".join(f"`{k}` = `{v}`" for k, v in setting.items()) + ".")
    free = study.get("crf_free")
    if free and free.runs:
        setting = _crf_setting(free.runs[0])
        if setting:
            out.append("Settings of the `crf_free` runs: " + ", ".join(f"`{k}` = `{v}`" for k, v in setting.items())
                       + ".")
    out.append(compare_sentence(study, "crf", "crf_free", NER_KEYS))
    for name in ("crf", "crf_free"):
        v = study.get(name)
        if not v:
            continue
        extra = {k: val for r in v.finished for k, val in r.summary.items() if "invalid" in k}
        if extra:
            out.append(f"`{name}`: " + ", ".join(f"{k} = {val}" for k, val in extra.items()) + ".")
    return out


def embeddings_table(study: StudyData) -> tuple[list[str], list[list[str]]]:
    header = ["run", "source", "file", "dimension", "share of vocabulary found", "words found"]
    rows = []
    for r in study.runs:
        e = (r.config.get("data") or {}).get("embeddings") or {}
        if not r.config:
            continue
        share = e.get("share_found")
        rows.append([f"{r.variant}/seed{r.seed}", str(e.get("source", "–")),
                     str(e.get("file") or e.get("path") or "–"), str(e.get("dim", "–")),
                     f"{float(share) * 100:.2f}%" if share is not None else "–",
                     f"{e['found']} of {e['total']}" if "found" in e and "total" in e else "–"])
    return header, rows


# ----------------------------------------------------------------------------- the whole report


def header_lines(study: StudyData) -> list[str]:
    envs = [c.get("env", {}) for c in study.configs_seen]
    hw = sorted({(e.get("gpu") or e.get("cpu") or "?") + f" ({e.get('device', '?')}, "
                 f"{e.get('cpu_threads', '?')} CPU thread(s))" for e in envs})
    plat = sorted({e.get("platform", "?") for e in envs})
    torch_v = sorted({e.get("torch", "?") for e in envs})
    epochs = sorted({c.get("config", {}).get("epochs") for c in study.configs_seen} - {None})
    ran = [r.summary.get("epochs_run") for r in study.runs if r.summary and r.summary.get("epochs_run") is not None]
    times = [r.seconds for r in study.runs if r.seconds is not None]
    finished = sum(1 for r in study.runs if r.summary)
    grid = sum(len(study.settings.seed_list(v.name)) if study.settings else 1
               for v in study.variants if not v.left_out)
    lines = [
        f"**Hardware:** {'; '.join(hw) or 'unknown (no run has started)'}" + (f" — {'; '.join(plat)}" if plat else ""),
        f"**torch:** {', '.join(torch_v) or 'unknown'}",
        f"**Epochs:** at most {', '.join(str(e) for e in epochs) or '?'} per run"
        + (f"; epochs run {fmt_count(min(ran))}–{fmt_count(max(ran))}" if ran else ""),
        f"**Wall time:** {hours(sum(times)) if times else 'unknown'} (sum of the runs' times)",
        f"**Runs:** {finished} finished of {grid} in the grid"
        + (f", seeds {', '.join(map(str, study.settings.seed_list()))}" if study.settings else ""),
    ]
    if study.settings is not None:
        s = study.settings
        data = s.data or s.data_dir
        data = ", ".join(data) if isinstance(data, list) else data
        lines.append(f"**Data:** `{data}`" + (f"; embeddings `{s.embeddings}`" if s.kind == "ner" and s.embeddings
                                              else ""))
    return lines


def build_report(study: StudyData, out: Path) -> Doc:
    doc = Doc()
    title = ("ResNet (n=2) on CIFAR-10: normalization layers" if study.kind == "resnet"
             else "NER on GMB: BiLSTM, characters, layer norm and CRF")
    doc.h(1, title)
    if study.shortened:
        doc.banner("SHORTENED STUDY: " + "; ".join(study.shortened)
                   + ". These numbers are a quick look, not the study's results.")
    unfinished = [v.name for v in study.variants if not v.available]
    if unfinished:
        doc.banner(f"INCOMPLETE: {len(unfinished)} of {len(study.variants)} variants have no finished run: "
                   + ", ".join(unfinished) + ".")
    doc.bullets(header_lines(study))
    doc.h(2, "Results")
    doc.p("Accuracy, micro F1 and macro F1 in percent, from each run's best checkpoint (early stopping on "
          "validation" + (" accuracy" if study.kind == "resnet" else "") + "); mean ± standard deviation "
          "over seeds where there are several."
          + (" For NER, micro and macro F1 leave out the O tag; entity F1 counts whole spans (conlleval)."
             if study.kind == "ner" else ""))
    header, rows = results_table(study)
    doc.table(header, rows)
    if study.kind == "resnet":
        resnet_sections(study, doc, out)
    else:
        ner_sections(study, doc, out)
    doc.h(2, "Runs")
    header, rows = runs_table(study)
    doc.table(header, rows)
    return doc


def write_report(study_dir: Path, out: Optional[Path] = None) -> tuple[Path, Path]:
    """Write ``report.md``, ``report.html`` and ``report-*.png`` for a study folder; returns the two paths."""
    study = load_study(Path(study_dir))
    out = Path(out) if out is not None else study.root
    out.mkdir(parents=True, exist_ok=True)
    doc = build_report(study, out)
    md, page = out / "report.md", out / "report.html"
    atomic_write_text(md, render_md(doc))
    title = doc.blocks[0][2]
    atomic_write_text(page, render_html(doc, title))
    return md, page
