"""The table of claims: each claim a study tests, our measurement with its interval, and a verdict.

A claim is a direction (or an equality) of one difference the report already computes;
``stats.claim_verdict`` turns its 95% interval into reproduced / not reproduced /
inconclusive at this budget (a one-seed side has no interval, so it is inconclusive). The
report shows the table near its top ("Claims tested"); docs/results/README.md opens with
the two studies' tables copied from the reports.
"""

from __future__ import annotations

from typing import Optional

from normlab.report.common import Measured
from normlab.report.stats import Estimate, claim_verdict, difference, estimate_cell, pooled_spread
from normlab.report.load import StudyData

HEADER = ["claim", "source", "our measurement (points, 95% interval, n seeds)", "verdict", "why"]


def _m(study: StudyData, name: str, key: str, split: str = "test") -> Measured:
    return Measured.of(name, study.values(name, split, key))


def _row(claim: str, source: str, what: str, e: Optional[Estimate], expected: str,
         margin: Optional[float] = None) -> list[str]:
    verdict, why = claim_verdict(e, expected, margin)
    return [claim, source, f"{what}: {estimate_cell(e)}", f"**{verdict}**", why]


def resnet_claims(study: StudyData) -> list[list[str]]:
    from normlab.report.answers_resnet import SANITY_MARGIN_POINTS, size_estimate

    spread = pooled_spread([_m(study, v.name, "accuracy") for v in study.variants])
    acc = lambda n: _m(study, n, "accuracy")
    rows = [_row("Our BN computes what `nn.BatchNorm2d` does (equal within 1 point)", "the study's sanity check",
                 "`bn` − `torch_bn` test accuracy", difference(acc("bn"), acc("torch_bn"), spread), "equal",
                 SANITY_MARGIN_POINTS)]
    # BN beats the batch-independent norms at a large batch: each detectably below bn
    others = ["in", "ln", "gn"]
    ests = {n: difference(acc(n), acc("bn"), spread) for n in others}
    cells = "; ".join(f"`{n}` − `bn` {estimate_cell(e)}" for n, e in ests.items())
    verdicts = {n: claim_verdict(e, "lower") for n, e in ests.items()}
    if any(v == "not reproduced" for v, _ in verdicts.values()):
        verdict = "not reproduced"
        why = "detectably above `bn`: " + ", ".join(f"`{n}`" for n, (v, _) in verdicts.items() if v == "not reproduced")
    elif all(v == "reproduced" for v, _ in verdicts.values()):
        verdict, why = "reproduced", "every other variant's interval lies below 0"
    else:
        verdict = "inconclusive at this budget"
        why = "no interval or an interval covering 0 for " + ", ".join(
            f"`{n}`" for n, (v, _) in verdicts.items() if v != "reproduced")
    rows.append(["BN beats IN, LN and GN at a large batch (128 here)", "Wu & He 2018 (Table 1: 32 images per GPU)",
                 f"test accuracy: {cells}", f"**{verdict}**", why])
    size = size_estimate(acc("gn"), acc("gn_b8"), acc("bn"), acc("bn_b8"), spread)
    rows.append(_row("GN is less sensitive than BN to batch 8 instead of 128", "Wu & He 2018 (Fig. 1)",
                     "|change of `gn`| − |change of `bn`| test accuracy", size, "lower"))
    return rows


def ner_claims(study: StudyData) -> list[list[str]]:
    from normlab.report.answers_ner import has_rescaled, rescaled

    rows = []
    # on GloVe rescaled to the random initialization's spread first (where the study ran it), then as published
    for fix in ((True, False) if has_rescaled(study) else (False,)):
        rows += _ner_claims(study, rescaled if fix else (lambda n: n),
                            ", on GloVe rescaled" if fix else ", on GloVe as published" if has_rescaled(study) else "")
    return rows


def _ner_claims(study: StudyData, name, setup: str) -> list[list[str]]:
    from normlab.report.answers_ner import pair_estimate

    rows = []
    for claim, source, a, b in (
            ("Pretrained embeddings help (GloVe against random, same dimension)", "Lample et al. 2016",
             "glove", "random50"),
            ("Character features help", "Lample et al. 2016", "glove_char", "glove"),
            ("A layer-normalized LSTM helps (softmax head)", "Ba et al. 2016", "glove_char_ln", "glove_char"),
            ("A layer-normalized LSTM helps (CRF head)", "Ba et al. 2016", "crf_ln", "crf"),
            ("A CRF layer helps", "Lample et al. 2016", "crf", "glove_char")):
        a, b = name(a), name(b)
        e, what = pair_estimate(study, a, b)
        rows.append(_row(claim + setup, source, f"`{a}` − `{b}` {what}", e, "higher"))
    init = "The CRF initialization (BIO-invalid transitions fixed at -10,000) gives only valid output" + setup
    crf, free = name("crf"), name("crf_free")
    inv = {n: study.values(n, "test", "invalid_transitions") for n in (crf, free, name("glove_char"))}
    if inv[crf]:
        ok = all(x == 0 for x in inv[crf])
        shown = ", ".join(f"`{n}` {', '.join(str(int(x)) for x in v) or 'n/a'}" for n, v in inv.items())
        rows.append([init, "docs/ner.md", f"invalid transitions in the test predictions: {shown}",
                     f"**{'reproduced' if ok else 'not reproduced'}**",
                     f"a count, not an estimate: every seed of `{crf}` has 0" if ok else
                     f"`{crf}` output an invalid tag"])
    else:
        rows.append([init, "docs/ner.md", "not recorded by these runs",
                     "**inconclusive at this budget**", "no count of invalid transitions"])
    e, what = pair_estimate(study, crf, free)
    rows.append(_row_not_lower("The constrained initialization does not lower entity F1 against learned "
                               "transitions" + setup, "docs/ner.md", f"`{crf}` − `{free}` {what}", e))
    return rows


def _row_not_lower(claim: str, source: str, what: str, e: Optional[Estimate]) -> list[str]:
    """A claim of no loss: reproduced when the interval does not lie below 0, not reproduced when it does."""
    if e is None or not e.has_interval:
        verdict, why = claim_verdict(e, "higher")
    elif e.hi < 0:
        verdict, why = "not reproduced", "the interval lies below 0"
    else:
        verdict, why = "reproduced", "the interval does not lie below 0"
    return [claim, source, f"{what}: {estimate_cell(e)}", f"**{verdict}**", why]


def claims_table(study: StudyData) -> tuple[list[str], list[list[str]]]:
    return HEADER, resnet_claims(study) if study.kind == "resnet" else ner_claims(study)


# The claims of several studies in one Markdown table, kept in a block of a hand-written file
# (docs/results/README.md) between these two lines: `normlab report DIR... --claims-into FILE`
# rewrites the block and nothing else, so the table cannot drift from the reports.
BLOCK_BEGIN = "<!-- normlab claims: begin (written by `normlab report --claims-into`; edits inside are lost) -->"
BLOCK_END = "<!-- normlab claims: end -->"


def combined_claims_md(studies: list[tuple[str, StudyData]]) -> str:
    """One Markdown table of every study's claims; ``studies`` pairs a link to the study's report with it."""
    from normlab.report.render import Doc, render_md

    rows = []
    for link, study in studies:
        _, study_rows = claims_table(study)
        rows += [[link] + r for r in study_rows]
    doc = Doc()
    doc.table(["study"] + HEADER, rows)
    return render_md(doc)


def replace_claims_block(text: str, block: str, where: str) -> str:
    """``text`` with the lines between BLOCK_BEGIN and BLOCK_END replaced by ``block``.

    ``where`` names the file in errors: each marker must stand on its own line, once, BEGIN first."""
    lines = text.splitlines(keepends=True)
    found = {m: [i for i, ln in enumerate(lines) if ln.strip() == m] for m in (BLOCK_BEGIN, BLOCK_END)}
    for m, at in found.items():
        if len(at) != 1:
            said = "none" if not at else "lines " + ", ".join(str(i + 1) for i in at)
            raise ValueError(f"{where}: expected one line `{m}` around the claims table, found {said}")
    b, e = found[BLOCK_BEGIN][0], found[BLOCK_END][0]
    if e < b:
        raise ValueError(f"{where}:{e + 1}: the claims block's end line comes before its begin line (line {b + 1})")
    return "".join(lines[:b + 1]) + block.rstrip("\n") + "\n" + "".join(lines[e:])
