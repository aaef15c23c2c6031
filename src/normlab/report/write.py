"""The study report: ``write_report(study_dir)`` writes report.md, report.html and report-*.png.

A report answers the study's questions, one section per question, each opening
with the figure that shows its answer, then the numbers, then the answer in one
or two sentences computed from those numbers and the caveats that apply (seed
spread, shortened budget). The wide all-metrics tables and the learning curves
follow in an appendix. Nothing about the results is hand-written: another run
of the study gets a report that says what that run found.

Where to look:

- ``load``: reading study.json and the run directories (``load_study``);
- ``common``: how a comparison is worded (ties, signs, seed spread);
- ``answers_resnet``: sanity check, six-way comparison, batch size, feature percentiles;
- ``answers_ner``: pretrained vs random, characters, layer norm, CRF vs softmax, CRF initialization;
- ``stats``: differences with 95% intervals over seeds; ``training``: equal training, stops;
- ``anomalies``: why GloVe does not help, why GN/LN/IN trail (the anomaly variants);
- ``header``: hardware, torch, budget, command, wall time, data files;
- ``tables``: the appendix's wide tables;
- ``plots``: the figures; ``render``: Markdown and HTML.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from normlab.files import atomic_write_text
from normlab.report.anomalies import anomaly_sections
from normlab.report.claims import claims_table
from normlab.report.common import Section
from normlab.report.answers_ner import embeddings_table, ner_curve_sentences, ner_sections
from normlab.report.answers_resnet import SIX, own_norms, resnet_sections, sanity_curve_sentences
from normlab.report.load import Run, StudyData, VariantResult, load_study
from normlab.report.header import header_lines, study_command
from normlab.report.plots import ZOOM_DROP, plot_curves, plot_ner_grid
from normlab.report.render import Doc, anchor, render_html, render_md
from normlab.report.tables import per_run_table, results_table, runs_table

__all__ = ["Run", "StudyData", "VariantResult", "build_report", "header_lines", "load_study", "study_command",
           "write_report"]

TITLES = {"resnet": "ResNet (n=2) on CIFAR-10: normalization layers",
          "ner": "NER on GMB: BiLSTM, characters, layer norm and CRF"}


def shortened_caveat(study: StudyData) -> Optional[str]:
    if not study.shortened:
        return None
    return ("Shortened study (" + "; ".join(study.shortened) + "): the answer holds for these runs and may change "
            "at the study's full length.")


def _render_section(doc: Doc, sec: Section, caveat: Optional[str]) -> None:
    doc.h(2, sec.title)
    if sec.figure is not None:
        doc.img(*sec.figure)
    for header, rows in sec.tables:
        doc.table(header, rows)
    doc.p("**Answer.** " + " ".join(sec.verdict.answer))
    if sec.verdict.points:
        doc.bullets(sec.verdict.points)
    for n in sec.notes:
        doc.p(n)
    caveats = sec.verdict.caveats + ([caveat] if caveat else [])
    if caveats:
        doc.p("**Caveat.** " + " ".join(caveats))


# ResNet logs no separate training-set evaluation: its train curves are what training saw.
TRAIN_RESNET = ("train: running averages over each epoch's augmented batches, in training mode; val: the whole "
                "validation set")
ZOOM_FROM = 0.25


def ner_train_subsample(study: StudyData) -> str:
    """'a fixed random subsample of 2,000 of the 28,775 training sentences' from the runs' configs."""
    from normlab.train.ner import NERConfig

    sizes = {int((c.get("config") or {}).get("train_eval_size") or NERConfig.train_eval_size)
             for c in study.configs_seen}
    totals = {int(((c.get("data") or {}).get("sizes") or {}).get("train")) for c in study.configs_seen
              if ((c.get("data") or {}).get("sizes") or {}).get("train") is not None}
    if not sizes:
        return "a fixed random subsample of the training sentences"
    n = min(sizes)
    of = f" of the {max(totals):,} training sentences" if totals else " training sentences"
    if totals and n >= max(totals):
        return "every training sentence"
    return f"a fixed random subsample of {n:,}{of}" + (" (the full set in summary.json)")


def _appendix_resnet(study: StudyData, doc: Doc, out: Path) -> None:
    panels = [("train_error", "train error"), ("val_error", "val error")]
    doc.h(3, "Error curves")
    doc.img(plot_curves(study, ["torch_bn", "bn"], panels, "epoch", "epoch", out / "report-curves-sanity.png"),
            "train and val error of torch_bn and bn, overlaid (mean over seeds; " + TRAIN_RESNET + ")")
    for s in sanity_curve_sentences(study):
        doc.p(s)
    own = own_norms(study)  # your own norms (--add-norm), beside the built-in ones
    six = list(SIX) + own
    doc.img(plot_curves(study, six, panels, "epoch", "epoch", out / "report-curves-six.png"),
            f"train and val error of {', '.join(six)} (" + TRAIN_RESNET + ")")
    norms = ["bn", "gn"] + [n for n in own if study.get(f"{n}_b8") is not None]
    styles = {}
    for i, n in enumerate(norms):
        styles.update({n: {"color": f"C{i}"}, f"{n}_b8": {"color": f"C{i}", "linestyle": "--"}})
    doc.img(plot_curves(study, [x for n in norms for x in (n, f"{n}_b8")], panels, "epoch", "epoch",
                        out / "report-curves-batch.png", styles=styles),
            f"train and val error of {', '.join(norms[:-1])} and {norms[-1]} at batch 128 (solid) and 8 (dashed) ("
            + TRAIN_RESNET + ")")


def ner_curve_groups(study: StudyData) -> list[tuple[str, list[str]]]:
    """The rows of the NER validation figure: the grid on GloVe as published, the grid on GloVe rescaled
    (with the random-embedding variants both setups share), and, once their anomaly runs exist, the runs of
    each GloVe explanation's tests (``anomalies.GLOVE_SCALE_TESTS``; ``GLOVE_COVERAGE_TESTS``, on fewer
    training sentences, so shorter curves in a row of their own); a study with none of the last three gets
    one row of every variant."""
    from normlab.report.anomalies import GLOVE_COVERAGE_TESTS, GLOVE_SCALE_TESTS
    from normlab.study.grids import NER_RESCALED, ner_anomaly_variants

    names = [v.name for v in study.variants]
    rescaled = set(NER_RESCALED.values())
    anomalies = {v.name for v in ner_anomaly_variants()}

    def tested(tests) -> list[str]:
        ns = {n for t in tests for n in (t.a, t.b)}
        return [n for n in names if n in ns] if any(n in anomalies for n in names if n in ns) else []

    small = [n for n in names if n in rescaled]
    scale, few = tested(GLOVE_SCALE_TESTS), tested(GLOVE_COVERAGE_TESTS)
    if not small and not scale and not few:
        return [("all variants", names)]
    grid = [n for n in names if n not in rescaled and n not in anomalies]
    groups = [("GloVe as published", grid)]
    if small:
        groups.append(("GloVe rescaled", [n for n in grid if n not in NER_RESCALED] + small))
    if scale:
        groups.append(("embedding scale", scale))
    if few:
        groups.append(("few training sentences", few))
    return groups


def _appendix_ner(study: StudyData, doc: Doc, out: Path) -> None:
    names = [v.name for v in study.variants]
    doc.h(3, "Accuracy, micro F1 and macro F1 against learning updates")
    doc.img(plot_ner_grid(study, names, out / "report-ner-curves.png"),
            f"train (dashed: measured on {ner_train_subsample(study)}) and val (solid: the whole validation set) "
            "accuracy, micro F1 and macro F1 against learning updates, per variant")
    groups = ner_curve_groups(study)
    doc.img(plot_curves(study, names, [("val_entity_f1", "val entity F1"), ("val_type_micro_f1",
                                                                            "val type-token micro F1")],
                        "step", "learning updates", out / "report-ner-val.png", zoom_from=ZOOM_FROM,
                        groups=groups),
            "validation entity F1 and type-token micro F1 against learning updates (mean over seeds), one row per "
            + "; ".join(f"{t} ({', '.join(ns)})" for t, ns in groups) + ", one line style per variant in a row; "
            f"each row's y axis is zoomed to the band its curves span after the first {ZOOM_FROM:.0%} of the "
            f"updates, where the variants differ (the first evaluations and the lowest {ZOOM_DROP:.0%} of the "
            "later ones, single dips, lie below it)")
    for s in ner_curve_sentences(study, names):
        doc.p(s)
    doc.h(3, "Embeddings each run used")
    doc.table(*embeddings_table(study))


def build_report(study: StudyData, out: Path) -> Doc:
    doc = Doc()
    doc.h(1, TITLES[study.kind])
    if study.shortened:
        doc.banner("SHORTENED STUDY: " + "; ".join(study.shortened)
                   + ". These numbers are a quick look, not the study's results.")
    unfinished = [v.name for v in study.variants if not v.available]
    if unfinished:
        doc.banner(f"INCOMPLETE: {len(unfinished)} of {len(study.variants)} variants have no finished run: "
                   + ", ".join(unfinished) + ".")
    doc.bullets(header_lines(study))
    sections = resnet_sections(study, out) if study.kind == "resnet" else ner_sections(study, out)
    sections += anomaly_sections(study, out)
    doc.h(2, "Answers at a glance")
    doc.bullets([f"[{s.title}](#{anchor(s.title)}) {s.verdict.headline}"
                 for s in sections])
    doc.p("Numbers are from each run's best checkpoint (early stopping on validation"
          + (" accuracy" if study.kind == "resnet" else " entity F1") + "), in percent; mean ± standard deviation "
          "over seeds where there are several. "
          + ("For NER, micro and macro F1 leave out the O tag; entity F1 counts whole spans (conlleval); "
             "type-token micro F1 scores each token's entity type with the B-/I- prefix stripped and O left out, "
             "the measure of public NER benchmarks." if study.kind == "ner" else ""))
    doc.h(2, "Claims tested")
    doc.p("Each claim the study tests, our measurement (the difference in points with its 95% Welch interval over "
          "seeds; n = seeds per side) and the verdict: reproduced when the interval lies on the claimed side of 0, "
          "not reproduced when it lies on the other side, inconclusive at this budget when it covers 0 or when a "
          "side has one seed (no interval exists).")
    doc.table(*claims_table(study))
    caveat = shortened_caveat(study)
    for sec in sections:
        _render_section(doc, sec, caveat)
    doc.h(2, "Appendix")
    doc.h(3, "All metrics per variant")
    doc.table(*results_table(study))
    doc.h(3, "All metrics per run")
    doc.table(*per_run_table(study))
    if study.kind == "resnet":
        _appendix_resnet(study, doc, out)
    else:
        _appendix_ner(study, doc, out)
    doc.h(3, "Runs")
    doc.table(*runs_table(study))
    return doc


REPORT_FILES = ("report.md", "report.html")  # beside report-*.png, in the study folder (or --out)


def write_report(study_dir: Path, out: Optional[Path] = None) -> tuple[Path, Path]:
    """Write ``report.md``, ``report.html`` and ``report-*.png`` for a study folder; returns the two paths."""
    study = load_study(Path(study_dir))
    out = Path(out) if out is not None else study.root
    out.mkdir(parents=True, exist_ok=True)
    doc = build_report(study, out)
    md, page = (out / name for name in REPORT_FILES)
    atomic_write_text(md, render_md(doc))
    atomic_write_text(page, render_html(doc, doc.blocks[0][2]))
    return md, page
