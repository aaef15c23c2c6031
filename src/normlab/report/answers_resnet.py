"""The ResNet study's questions and their answers, each computed from the run directories.

One section per question of the study (SPEC §1.2):

- ``sanity_section``: does our BN match ``nn.BatchNorm2d`` (``torch_bn`` vs ``bn``, 1.2.4)?
- ``six_way_section``: how do BN, IN, BIN, LN, GN and no normalization compare (1.2.5)?
- ``batch_section``: is GN less sensitive than BN to batch 8 instead of 128 (1.2.6)?

Your own norms (``normlab study resnet --add-norm NAME=module:Class``, ``own_norms``) join the
six in the comparison of norms, and ``NAME`` against ``NAME_b8`` joins the batch-size answer.
- ``percentile_section``: how do the penultimate features' percentiles evolve (1.2.7)?

The wording is in pure functions of numbers (``sanity_verdict``,
``six_way_verdict``, ``sensitivity_verdict``, ``percentile_verdict``), tested
with hand-made numbers in ``tests/test_report_answers.py``; the ``*_section``
functions only gather the numbers, draw the figure and build the table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from normlab.files import QUANTILES
from normlab.report.common import Measured, Section, Verdict, cannot, ranking_sentence
from normlab.report.stats import (Estimate, Spread, combination, difference, difference_sentence,
                                         estimate_cell, interval_text, pooled_spread, reference_sentence)
from normlab.report.training import matched
from normlab.report.load import StudyData
from normlab.report.plots import plot_bars, plot_quantiles
from normlab.report.render import fmt_ints

SIX = ("bn", "in", "bin", "ln", "gn", "nn")
# Relative change of the 1st-to-99th percentile range below which it is "unchanged".
RANGE_TIE_RELATIVE = 0.01
# The agreement the sanity check asks of our BN and nn.BatchNorm2d (docs/study.md): a tolerance on the
# difference, not a noise threshold; the claims table calls the match reproduced when the 95% interval
# of the difference lies within it.
SANITY_MARGIN_POINTS = 1.0

SANITY_TITLE = "Sanity check: does our BN match nn.BatchNorm2d?"
SIX_TITLE = "The six variants: which normalization gives the best test accuracy?"
BATCH_TITLE = "Batch size: is GN less sensitive than BN to batch 8 instead of 128?"
PERCENTILE_TITLE = "Feature percentiles: how do the penultimate features evolve during training?"


# ----------------------------------------------------------------------------- pure wording


def sanity_verdict(ref: Measured, ours: Measured, spread: Optional[Spread] = None) -> Verdict:
    """Is the gap of the means of ``ours`` and ``ref`` detectable over seeds (its 95% interval)?

    ``spread``: the study's measured seed spread, the noise threshold when a side has one seed."""
    miss = cannot(ours, ref, "test accuracy")
    if miss:
        return Verdict([miss])
    v = Verdict([f"Test accuracy: `{ref.name}` {ref.long()}; `{ours.name}` {ours.long()}."], key=2)
    e = difference(ours, ref, spread)
    v.answer.append(difference_sentence(ours, ref, "test accuracy", spread))
    d = e.direction
    if d == "none":
        if e.has_interval and -SANITY_MARGIN_POINTS <= e.lo and e.hi <= SANITY_MARGIN_POINTS:
            v.answer.append(f"`{ours.name}` matches `{ref.name}` within seed noise, and the interval lies within "
                            f"±{SANITY_MARGIN_POINTS:g} point, the agreement the sanity check asks for.")
        elif e.has_interval:
            v.answer.append(f"No detectable difference between `{ours.name}` and `{ref.name}`, but the interval "
                            f"reaches past ±{SANITY_MARGIN_POINTS:g} point: these seeds cannot show agreement to "
                            f"{SANITY_MARGIN_POINTS:g} point.")
        else:
            v.answer.append(f"No detectable difference between `{ours.name}` and `{ref.name}`, judged against the "
                            f"study's seed spread; with a one-seed side no interval exists.")
    elif d in ("higher", "lower"):
        v.answer.append(f"`{ours.name}` and `{ref.name}` differ by more than seed noise "
                        f"(`{ours.name}` is {d}): the sanity check is not met.")
    else:
        v.answer.append(f"Whether `{ours.name}` matches `{ref.name}` cannot be told: one seed per variant and no "
                        f"measured seed spread.")
    return v


def six_way_verdict(items: list[Measured], ref: str = "bn", spread: Optional[Spread] = None) -> Verdict:
    """The ranking by mean test accuracy and each variant's difference from ``ref`` with its interval."""
    v = Verdict([ranking_sentence(items, "accuracy")])
    refm = next((m for m in items if m.name == ref), Measured(ref))
    v.answer.append(reference_sentence(items, refm, "test accuracy", spread))
    return v


def _way(e: Estimate) -> str:
    return {"higher": "up", "lower": "down", "none": "no detectable change", "unknown": "undetermined"}[e.direction]


def change_phrase(name: str, big: Measured, small: Measured, spread: Optional[Spread] = None) -> str:
    """'`bn`: 90.00% at batch 128, 80.00% at batch 8, a change of -10.00 points (95% interval ...; down)'."""
    if not big.values or not small.values:
        which = " and ".join(b for b, x in (("128", big), ("8", small)) if not x.values)
        return f"`{name}`: no finished run at batch {which}"
    e = difference(small, big, spread)
    return (f"`{name}`: {big.short()} at batch 128, {small.short()} at batch 8, a change of {e.value:+.2f} points "
            f"({interval_text(e)}; {_way(e)})")


def size_estimate(a128: Measured, a8: Measured, b128: Measured, b8: Measured,
                  spread: Optional[Spread] = None) -> Optional[Estimate]:
    """|change of a| - |change of b| (points) with its interval: each change signed by its own mean's sign."""
    ea, eb = difference(a8, a128), difference(b8, b128)
    if ea is None or eb is None:
        return None
    sa, sb = (1.0 if ea.value >= 0 else -1.0), (1.0 if eb.value >= 0 else -1.0)
    return combination([(sa, a8), (-sa, a128), (-sb, b8), (sb, b128)], spread)


def less_sensitive(name_a: str, a128: Measured, a8: Measured, name_b: str, b128: Measured, b8: Measured,
                   spread: Optional[Spread] = None) -> Optional[str]:
    """The variant whose test accuracy changes less from batch 128 to 8, by the intervals over seeds.

    A variant with no detectable change is less sensitive than one with a detectable change; when both
    changed detectably, the sizes of the changes are compared (``size_estimate``). Returns "" when the
    intervals cannot tell the two apart (neither changed detectably, or the sizes do not differ
    detectably), None when a run is missing or the seed noise is unmeasured."""
    ea, eb = difference(a8, a128, spread), difference(b8, b128, spread)
    if ea is None or eb is None or "unknown" in (ea.direction, eb.direction):
        return None
    moved_a, moved_b = ea.direction != "none", eb.direction != "none"
    if moved_a != moved_b:
        return name_b if moved_a else name_a
    if not moved_a:
        return ""
    size = size_estimate(a128, a8, b128, b8, spread)
    d = size.direction
    if d in ("none", "unknown"):
        return ""
    return name_a if d == "lower" else name_b


def sensitivity_verdict(name_a: str, a128: Measured, a8: Measured, name_b: str, b128: Measured, b8: Measured,
                        spread: Optional[Spread] = None) -> Verdict:
    """Which of two variants is less sensitive to batch 8 instead of 128, from the changes' intervals."""
    phrases = [change_phrase(name_a, a128, a8, spread), change_phrase(name_b, b128, b8, spread)]
    winner = less_sensitive(name_a, a128, a8, name_b, b128, b8, spread)
    v = Verdict(["Going from batch 128 to 8: " + "; ".join(phrases) + "."], key=1)
    if winner is None:
        why = ("a run is missing" if any(not m.values for m in (a128, a8, b128, b8)) else
               "one seed per run and no measured seed spread")
        v.answer.append(f"Cannot say which is less sensitive to the batch size: {why}.")
        return v
    ea, eb = difference(a8, a128, spread), difference(b8, b128, spread)
    if winner == "":
        if ea.direction == "none":
            v.answer.append(f"Neither `{name_a}` nor `{name_b}` changed detectably: at this budget the runs do not "
                            f"tell which is less sensitive to the batch size.")
        else:
            size = size_estimate(a128, a8, b128, b8, spread)
            v.answer.append(f"Both changed, by sizes that do not differ detectably (|change of `{name_a}`| − "
                            f"|change of `{name_b}`| = {size.value:+.2f} points, {interval_text(size)}): equally "
                            f"sensitive as far as these runs tell.")
    else:
        loser = name_b if winner == name_a else name_a
        ew, el = (ea, eb) if winner == name_a else (eb, ea)
        if ew.direction == "none":
            v.answer.append(f"`{winner}` is less sensitive to the batch size than `{loser}`: its change is not "
                            f"detectable, `{loser}`'s ({el.value:+.2f} points) is.")
        else:
            size = size_estimate(a128, a8, b128, b8, spread)
            v.answer.append(f"`{winner}` is less sensitive to the batch size than `{loser}`: its change "
                            f"({ew.value:+.2f} points) is smaller in size than `{loser}`'s ({el.value:+.2f}), by "
                            f"{abs(size.value):.2f} points ({interval_text(size)}).")
    up = [n for n, e in ((name_a, ea), (name_b, eb)) if e.direction == "higher"]
    down = [n for n, e in ((name_a, ea), (name_b, eb)) if e.direction == "lower"]
    if up and down:
        v.answer.append(f"`{up[0]}` gained and `{down[0]}` lost accuracy at batch 8; sensitivity compares the "
                        f"sizes of the changes.")
    if any(not e.has_interval for e in (ea, eb)):
        v.caveats.append("A side with one seed has no interval; its change is judged against the study's measured "
                         "seed spread.")
    return v


def own_batch_sentence(name: str, ms: dict[str, Measured], spread: Optional[Spread] = None) -> str:
    """Your own norm ``name`` in the batch-size answer: its change from batch 128 to 8, and whether it is less
    sensitive than ``bn`` and than ``gn`` (``less_sensitive``). ``ms``: name -> Measured for ``name``,
    ``name_b8``, bn, bn_b8, gn, gn_b8."""
    big, small = ms[name], ms[f"{name}_b8"]
    parts = []
    for ref in ("bn", "gn"):
        w = less_sensitive(name, big, small, ref, ms[ref], ms[f"{ref}_b8"], spread)
        parts.append(f"against `{ref}`, " + (
            "cannot say (a run is missing, or one seed per run and no measured seed spread)" if w is None else
            "the runs do not tell which is less sensitive" if w == "" else f"`{w}` is less sensitive"))
    return f"Your own norm {change_phrase(name, big, small, spread)}; " + "; ".join(parts) + "."


def gn_claim_sentence(winner: Optional[str], one_seed: Sequence[str] = ()) -> Optional[str]:
    """What ``less_sensitive(bn..., gn...)`` says about Wu & He's claim. ``one_seed``: the runs
    with a single seed; with any, the sentence is provisional, as the claims table's verdict
    (inconclusive: no interval exists) is."""
    if winner is None:
        return None
    if winner == "gn":
        s = "agrees with Wu & He's claim that GN is less sensitive to the batch size than BN"
    elif winner == "bn":
        s = "does not bear out Wu & He's claim that GN is less sensitive to the batch size than BN"
    else:
        return "Neither supports nor contradicts Wu & He's claim at this budget."
    if one_seed:
        names = ", ".join(f"`{n}`" for n in one_seed)
        return (f"Judged against the seed spread, this {s}; but {names} {'has' if len(one_seed) == 1 else 'have'} "
                f"one seed, so no interval exists and the claim stays inconclusive until more seeds are run.")
    return f"This {s}."


def range_change(first: float, last: float) -> str:
    """'grew', 'shrank' or 'unchanged' (within ``RANGE_TIE_RELATIVE`` of the larger of the two)."""
    if abs(last - first) <= RANGE_TIE_RELATIVE * max(abs(first), abs(last)):
        return "unchanged"
    return "grew" if last > first else "shrank"


def inner_extremes(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """The inner minimum and maximum of ``points`` ((epoch, value), epoch order) that lie beyond both ends by
    more than ``RANGE_TIE_RELATIVE`` of the larger end, in epoch order (empty for a monotone-looking curve)."""
    (_, v0), (_, v1) = points[0], points[-1]
    inner = list(points[1:-1])
    if not inner:
        return []
    tol = RANGE_TIE_RELATIVE * max(abs(v0), abs(v1))
    lo, hi = min(inner, key=lambda p: p[1]), max(inner, key=lambda p: p[1])
    out = ([lo] if lo[1] < min(v0, v1) - tol else []) + ([hi] if hi[1] > max(v0, v1) + tol else [])
    return sorted(out)


def trajectory_phrase(name: str, points: Sequence[tuple[float, float]]) -> str:
    """'`ln` 1.867 at epoch 1, down to 1.24 at epoch 5, back up to 1.804 at epoch 20 (0.97× the start)'.

    ``points``: (epoch, value) in epoch order; the inner minimum or maximum is named when
    ``inner_extremes`` finds one; the end is given as a ratio of the start."""
    (e0, v0), (e1, v1) = points[0], points[-1]
    parts = [f"`{name}` {v0:.4g} at epoch {e0:g}"]
    prev = v0
    extremes = inner_extremes(points)
    for e, val in extremes:
        parts.append(f"{'down' if val < prev else 'up'} to {val:.4g} at epoch {e:g}")
        prev = val
    if len(points) > 1:
        if abs(v1 - prev) <= RANGE_TIE_RELATIVE * max(abs(v1), abs(prev)):
            parts.append(f"{v1:.4g} at epoch {e1:g}")
        else:
            parts.append(f"{'back ' if extremes else ''}{'down' if v1 < prev else 'up'} to {v1:.4g} at epoch {e1:g}")
    ratio = f" ({v1 / v0:.2f}× the start)" if v0 > 0 and len(points) > 1 else ""
    return ", ".join(parts) + ratio


def percentile_verdict(series: dict[str, Sequence[tuple[float, float]]]) -> Verdict:
    """Per variant, the trajectory of the 1st-to-99th percentile range (q99 - q01) of the penultimate
    features: start, an inner minimum or maximum, end; then whether it grew, shrank or stayed the same
    from the first to the last epoch. ``series[name]``: (epoch, range) in epoch order."""
    if not series:
        return Verdict(["No variant has logged feature percentiles yet."])
    by: dict[str, list[str]] = {"grew": [], "shrank": [], "unchanged": []}
    turned = []
    for name, pts in series.items():
        by[range_change(pts[0][1], pts[-1][1])].append(f"`{name}`")
        if inner_extremes(pts):
            turned.append(name)
    parts = [f"{how} for {', '.join(items)}" if how != "unchanged" else
             f"stayed the same (within {RANGE_TIE_RELATIVE:.0%}) for {', '.join(items)}"
             for how, items in by.items() if items]
    v = Verdict(["From the first to the last epoch, the range between the 1st and 99th percentiles of the "
                 "penultimate features " + "; ".join(parts) + "."])
    if turned:
        v.answer.append("Not monotonically: " + ", ".join(f"`{n}`" for n in turned) + " turned on the way (an "
                        "inner minimum or maximum beyond both ends), so start and end alone hide the trajectory.")
    v.answer.append("Each trajectory (range at the first epoch, inner minimum or maximum, last epoch): "
                    + "; ".join(trajectory_phrase(n, p) for n, p in series.items()) + ".")
    return v


# ----------------------------------------------------------------------------- sections


def own_norms(study: StudyData) -> list[str]:
    """The variants of your own norms at batch 128 (``--add-norm NAME=...``: ``NAME``), in grid order."""
    added = set(study.settings.add_norms) if study.settings is not None else set()
    return [v.name for v in study.variants if v.name in added]


def _m(study: StudyData, name: str, key: str = "accuracy", split: str = "test") -> Measured:
    return Measured.of(name, study.values(name, split, key))


def study_spread(study: StudyData, key: str = "accuracy", split: str = "test") -> Optional[Spread]:
    """The seed spread this study measured on ``split`` ``key``: pooled over every variant with several seeds."""
    return pooled_spread([_m(study, v.name, key, split) for v in study.variants])


def equal_training_note(study: StudyData, names: list[str]) -> Optional[str]:
    """Whether the runs compared trained equally (epochs); test numbers are those of each run's best checkpoint.

    ResNet runs record test metrics for their final best checkpoint only, so a comparison after unequal
    stops is flagged rather than re-done: the statement names each run's stop."""
    m = matched(study, [n for n in names if study.get(n) is not None and study.get(n).available],
                "val_accuracy", x="epoch")
    if m is None:
        return None
    if m.same_stop or m.equal:
        return m.statement([n for n in names if n in m.stops])
    stops = "; ".join(f"`{n}` " + ", ".join(m.stops[n]) for n in names if n in m.stops)
    return (f"Unequal training ({stops}): the test numbers above come from each run's own best checkpoint. At equal "
            f"training, the best checkpoint up to {m.unit(m.limit)} (the last all of them reached, chosen on "
            f"validation; test metrics exist only for the final best checkpoint) has validation accuracy "
            + ", ".join(f"`{n}` {m.val[n].short()}" for n in names if n in m.val) + ".")


def sanity_section(study: StudyData, out: Path) -> Section:
    ref, ours = _m(study, "torch_bn"), _m(study, "bn")
    fig = plot_bars(out / "report-sanity.png", ["torch_bn", "bn"],
                    {"test accuracy": [[x * 100 for x in ref.values], [x * 100 for x in ours.values]]},
                    ylabel="test accuracy %", title="torch_bn (nn.BatchNorm2d) against our bn: test accuracy "
                                                     "per seed (dots), mean ± std")
    seeds = sorted({r.seed for n in ("torch_bn", "bn") if study.get(n) for r in study.get(n).finished})
    by_seed = {n: {r.seed: r.metric("test", "accuracy") for r in (study.get(n).finished if study.get(n) else [])}
               for n in ("torch_bn", "bn")}
    cell = lambda x: "–" if x is None else f"{x * 100:.2f}"
    rows = [[f"seed {s}", cell(by_seed["torch_bn"].get(s)), cell(by_seed["bn"].get(s))] for s in seeds]
    rows.append(["mean ± std", ref.short(), ours.short()])
    v = sanity_verdict(ref, ours, study_spread(study))
    miss = study.missing_sentence(["torch_bn", "bn"])
    if miss:
        v.caveats.insert(0, miss)
    eq = equal_training_note(study, ["torch_bn", "bn"])
    if eq:
        v.answer.append(eq)
    return Section(SANITY_TITLE, (fig, "test accuracy of torch_bn and bn: bars are means over seeds, dots the "
                                       "seeds, error bars one standard deviation"),
                   [(["seed", "torch_bn test acc %", "bn test acc %"], rows)], v)


def six_way_section(study: StudyData, out: Path) -> Section:
    own = own_norms(study)
    names = list(SIX) + own
    items = [_m(study, n) for n in names]
    spread = study_spread(study)
    fig = plot_bars(out / "report-six.png", names, {"test accuracy": [[x * 100 for x in m.values] for m in items]},
                    ylabel="test accuracy %", title="test accuracy per normalization (batch 128); dotted: bn",
                    reference="bn")
    ref = next(m for m in items if m.name == "bn")
    rows = []
    for n, m in zip(names, items):
        vr = study.get(n)
        if not m.values:
            rows.append([n, "0", "–", "–", "–", "–", "–", vr.missing_reason() if vr else "not in this study"])
            continue
        micro, macro = _m(study, n, "micro_f1"), _m(study, n, "macro_f1")
        delta = estimate_cell(difference(m, ref, spread)) if ref.values and n != "bn" else "–"
        div = sum(bool(r.summary.get("diverged")) for r in vr.finished)
        rows.append([n, str(m.n), m.short(), micro.short(), macro.short(), delta,
                     fmt_ints(vr.summary_values("best_epoch")), f"{div} of {len(vr.finished)}" if div else "no"])
    v = six_way_verdict(items, spread=spread)
    eq = equal_training_note(study, names)
    if eq:
        v.answer.append(eq)
    miss = study.missing_sentence(names)
    if miss:
        v.caveats.insert(0, miss)
    div = [n for n in names if study.get(n) and any(r.summary.get("diverged") for r in study.get(n).finished)]
    if div:
        v.caveats.append("Diverged: " + "; ".join(
            f"`{n}` ({next(r.summary.get('message', '') for r in study.get(n).finished if r.summary.get('diverged'))})"
            for n in div) + ".")
    notes = [f"`{n}` is your own layer (`{study.settings.add_norms[n]}`, `--add-norm`), run as the six are: "
             f"batch {study.get(n).settings.get('batch_size')}, lr {study.get(n).settings.get('lr'):g}." for n in own]
    yours = " and " + ", ".join(own) if own else ""
    return Section(SIX_TITLE, (fig, f"test accuracy of the six variants{yours}: bars are means over seeds, error "
                                    "bars one standard deviation where there are several seeds"),
                   [(["variant", "seeds", "test acc", "test micro F1", "test macro F1",
                      "Δ acc vs bn, points [95% interval]",
                      "best epoch", "diverged"], rows)], v, notes)


def batch_section(study: StudyData, out: Path) -> Section:
    own = [n for n in own_norms(study) if study.get(f"{n}_b8") is not None]  # grids without batch 8 have no NAME_b8
    norms = ["bn", "gn"] + own
    ms = {n: _m(study, n) for norm in norms for n in (norm, f"{norm}_b8")}
    fig = plot_bars(out / "report-batch.png", norms,
                    {"batch 128": [[x * 100 for x in ms[n].values] for n in norms],
                     "batch 8": [[x * 100 for x in ms[f"{n}_b8"].values] for n in norms]},
                    ylabel="test accuracy %", title="test accuracy at batch 128 and batch 8")
    spread = study_spread(study)
    rows = []
    for norm in norms:
        big, small = ms[norm], ms[f"{norm}_b8"]
        rows.append([norm, big.short(), small.short(), estimate_cell(difference(small, big, spread))])
    v = sensitivity_verdict("bn", ms["bn"], ms["bn_b8"], "gn", ms["gn"], ms["gn_b8"], spread)
    eq = equal_training_note(study, [n for norm in norms for n in (norm, f"{norm}_b8")])
    if eq:
        sizes = [study.get(n).settings.get("batch_size") for n in ("bn", "bn_b8") if study.get(n)]
        ratio = (f"{sizes[0] // sizes[1]} times as many updates per epoch" if len(sizes) == 2 and all(sizes)
                 and sizes[0] % sizes[1] == 0 else "more updates per epoch")
        v.answer.append(eq + f" The small batch takes {ratio}: the comparison is at equal epochs (passes over the "
                             "data), not updates.")
    claim = gn_claim_sentence(less_sensitive("bn", ms["bn"], ms["bn_b8"], "gn", ms["gn"], ms["gn_b8"], spread),
                              [n for n in ("bn", "bn_b8", "gn", "gn_b8") if len(ms[n].values) == 1])
    if claim:
        v.answer.append(claim)
    for norm in ("bn", "gn"):
        miss = study.missing_sentence([norm, f"{norm}_b8"])
        if miss:
            v.caveats.insert(0, miss)
    notes = []
    lr8 = next((vr.settings.get("lr") for vr in study.variants if vr.name == "bn_b8"), None)
    rule = study.settings.small_batch_lr if study.settings else None
    if lr8 is not None:
        notes.append(f"The batch-8 runs used lr {lr8:g}"
                     + (" (the linear scaling rule, 0.1 × 8/128, `--lr-scaling linear`)" if rule == "linear"
                        else " (`--lr-scaling none`)" if rule else "") + "; the batch-128 runs used 0.1.")
    if ms["bn_b8"].values and ms["gn_b8"].values:
        notes.append("At batch 8: " + difference_sentence(ms["gn_b8"], ms["bn_b8"], "test accuracy", spread))
    notes += [own_batch_sentence(n, ms, spread) for n in own]
    return Section(BATCH_TITLE, (fig, f"test accuracy of {', '.join(norms[:-1])} and {norms[-1]} at batch 128 "
                                      "and batch 8 (paired bars)"),
                   [(["variant", "batch 128 test acc", "batch 8 test acc",
                      "change, points [95% interval] (n = batch 8, batch 128)"], rows)], v, notes)


def percentile_ranges(study: StudyData, names: list[str]):
    """Table rows and ``{name: [(epoch, q99 - q01), ...]}`` of the q01..q99 curves (mean over seeds)."""
    header = (["variant", "epochs"] + [f"first {q}" for q in QUANTILES] + [f"last {q}" for q in QUANTILES]
              + ["range first", "range min (epoch)", "range max (epoch)", "range last", "range"])
    rows, ranges = [], {}
    for n in names:
        v = study.get(n)
        series = {q: v.curve(f"quantiles.{q}", "epoch") for q in QUANTILES}
        if not len(series["q99"][0]) or not len(series["q01"][0]):
            rows.append([n, v.missing_reason() if not v.available else "no quantiles logged"] + ["–"] * 13)
            continue
        first = [float(series[q][1][0]) for q in QUANTILES]
        last = [float(series[q][1][-1]) for q in QUANTILES]
        rf, rl = first[3] - first[0], last[3] - last[0]
        lo_d = dict(zip(series["q01"][0].tolist(), series["q01"][1].tolist()))
        pts = [(float(e), float(y) - lo_d[e]) for e, y in zip(series["q99"][0].tolist(), series["q99"][1].tolist())
               if e in lo_d]
        mn, mx = min(pts, key=lambda p: p[1]), max(pts, key=lambda p: p[1])
        epochs = f"{series['q99'][0][0]:g}–{series['q99'][0][-1]:g}"
        if v.available:  # the answer speaks of whole runs only; a run in progress is shown, not counted
            ranges[n] = pts
            trend = range_change(rf, rl)
        else:
            epochs += " (not finished)"
            trend = "–"
        rows.append([n, epochs] + [f"{x:.4g}" for x in first + last] + [f"{rf:.4g}", f"{mn[1]:.4g} ({mn[0]:g})",
                                                                    f"{mx[1]:.4g} ({mx[0]:g})", f"{rl:.4g}", trend])
    return header, rows, ranges


def percentile_section(study: StudyData, out: Path) -> Section:
    names = [v.name for v in study.variants]
    path, scale = plot_quantiles(study, names, out / "report-quantiles.png")
    header, rows, ranges = percentile_ranges(study, names)
    v = percentile_verdict(ranges)
    v.caveats.append("Percentiles are over all penultimate-layer features of the validation images, averaged over "
                     "seeds; the scales of different normalizations are not comparable in absolute terms, only "
                     "each variant's trajectory is.")
    return Section(PERCENTILE_TITLE, (path, "1st, 20th, 80th and 99th percentiles of the penultimate-layer features "
                                            f"over the validation set, per epoch (one panel per variant, shared axes, "
                                            f"{scale} y scale)"), [(header, rows)], v)


def resnet_sections(study: StudyData, out: Path) -> list[Section]:
    return [sanity_section(study, out), six_way_section(study, out), batch_section(study, out),
            percentile_section(study, out)]


# ----------------------------------------------------------------------------- appendix prose


def sanity_curve_sentences(study: StudyData) -> list[str]:
    """The largest gap between the val error curves of torch_bn and bn (means over seeds), and speed."""
    miss = study.missing_sentence(["torch_bn", "bn"])
    if miss:
        return [miss]
    a, b = study.get("torch_bn"), study.get("bn")
    out = []
    xa, ya = a.curve("val_error", "epoch")
    xb, yb = b.curve("val_error", "epoch")
    common = sorted(set(xa.tolist()) & set(xb.tolist()))
    if common:
        da, db = dict(zip(xa.tolist(), ya.tolist())), dict(zip(xb.tolist(), yb.tolist()))
        gaps = [(abs(da[e] - db[e]) * 100, e) for e in common]
        gap, epoch = max(gaps)
        out.append(f"Largest gap in validation error between `torch_bn` and `bn`: {gap:.2f} points, at epoch "
                   f"{epoch:g} (`torch_bn` {da[epoch] * 100:.2f}%, `bn` {db[epoch] * 100:.2f}%); the mean absolute "
                   f"gap over the {len(common)} epoch(s) both ran is {np.mean([g for g, _ in gaps]):.2f} points.")
    sa, sb = a.summary_values("seconds_per_epoch"), b.summary_values("seconds_per_epoch")
    if sa and sb and np.mean(sa) > 0:
        out.append(f"Speed: `bn` took {np.mean(sb):.2f} s per epoch against {np.mean(sa):.2f} s for `torch_bn` "
                   f"({np.mean(sb) / np.mean(sa):.2f}×).")
    return out

