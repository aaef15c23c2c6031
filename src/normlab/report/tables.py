"""The appendix's wide tables: every metric of every variant (mean ± std over seeds) and of every run.

The study asks for accuracy, micro F1 and macro F1 on train, val and test for
each model; these tables hold them all, while the question sections above them
show only the numbers each answer needs.
"""

from __future__ import annotations

from normlab.report.load import SPLITS, StudyData
from normlab.report.render import fmt_ints, fmt_num, fmt_pct, scrub_paths
from normlab.study.timefmt import hms

METRICS3 = (("accuracy", "acc"), ("micro_f1", "micro F1"), ("macro_f1", "macro F1"))


def _pct_or_na(vals: list[float]) -> str:
    """A metric that older run directories did not record: 'n/a', not a dash (the run is finished)."""
    return fmt_pct(vals) if vals else "n/a"


def results_table(study: StudyData) -> tuple[list[str], list[list[str]]]:
    header = ["variant", "status"]
    header += [f"{split} {short}" for split in SPLITS for _, short in METRICS3]
    if study.kind == "ner":
        header += ["val entity F1", "test entity F1", "test type-token micro F1", "test invalid transitions",
                   "best step", "updates"]
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
            inv = v.values("test", "invalid_transitions")
            row += [fmt_pct(v.values("val", "entity_f1")), fmt_pct(v.values("test", "entity_f1")),
                    _pct_or_na(v.values("test", "type_micro_f1")), fmt_ints(inv) if inv else "n/a",
                    fmt_ints(v.summary_values("best_step")), fmt_ints(v.summary_values("updates"))]
        div = [bool(r.summary.get("diverged")) for r in v.finished]
        row += [fmt_ints(v.summary_values("best_epoch")), fmt_ints(v.summary_values("epochs_run")),
                fmt_num(v.summary_values("seconds_per_epoch")),
                ("yes" if all(div) else "no") if len(div) == 1 or not any(div) or all(div)
                else f"{sum(div)} of {len(div)}"]
        rows.append(row)
    return header, rows


def per_run_table(study: StudyData) -> tuple[list[str], list[list[str]]]:
    """One row per finished run (variant/seed): the nine numbers the study asks for, in percent."""
    header = ["run"] + [f"{split} {short}" for split in SPLITS for _, short in METRICS3]
    if study.kind == "ner":
        header += ["test entity F1", "test type-token micro F1"]
    rows = []
    for r in study.runs:
        if r.summary is None:
            continue
        cell = lambda split, key: "n/a" if r.metric(split, key) is None else f"{r.metric(split, key) * 100:.2f}"
        row = [f"{r.variant}/seed{r.seed}"] + [cell(split, key) for split in SPLITS for key, _ in METRICS3]
        if study.kind == "ner":
            row += [cell("test", "entity_f1"), cell("test", "type_micro_f1")]
        rows.append(row)
    return header, rows


def runs_table(study: StudyData) -> tuple[list[str], list[list[str]]]:
    """Each run: status, why it stopped, its attempts, its first epoch and its time over all attempts."""
    from normlab.report.training import stop_text
    from normlab.report.load import first_epoch_seconds

    x = "step" if study.kind == "ner" else "epoch"
    header = ["run", "status", "stopped", "attempts", "first epoch", "time (all attempts)", "message"]
    rows = []
    for r in study.runs:
        msg = scrub_paths((r.summary or {}).get("message") or "")
        first = first_epoch_seconds(study.kind, r.metrics)
        att = str(r.attempts) if r.attempts else "–"
        if r.unrecorded_attempts:
            att += f" ({r.unrecorded_attempts} not in events.jsonl)"
        rows.append([f"{r.variant}/seed{r.seed}", r.status, stop_text(r, x) if r.summary is not None else "–", att,
                     hms(first) if first is not None else "–", hms(r.seconds) if r.seconds is not None else "–",
                     msg])
    return header, rows
