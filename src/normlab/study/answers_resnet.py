"""The ResNet study's questions and their answers, each computed from the run directories.

One section per question of the study (SPEC §1.2):

- ``sanity_section``: does our BN match ``nn.BatchNorm2d`` (``torch_bn`` vs ``bn``, 1.2.4)?
- ``six_way_section``: how do BN, IN, BIN, LN, GN and no normalization compare (1.2.5)?
- ``batch_section``: is GN less sensitive than BN to batch 8 instead of 128 (1.2.6)?
- ``percentile_section``: how do the penultimate features' percentiles evolve (1.2.7)?

The wording is in pure functions of numbers (``sanity_verdict``,
``six_way_verdict``, ``sensitivity_verdict``, ``percentile_verdict``), tested
with hand-made numbers in ``tests/test_report_answers.py``; the ``*_section``
functions only gather the numbers, draw the figure and build the table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from normlab.study.answers_common import (ONE_SEED_NOISE_POINTS, TIE_POINTS, Measured, Section, Verdict,
                                          cannot, compare_sentence, diff_points, is_tie, near_reference_sentence,
                                          ranking_sentence, spread_caveat)
from normlab.study.report_data import QUANTILES, StudyData
from normlab.study.report_plots import plot_bars, plot_quantiles
from normlab.study.report_render import fmt_ints

SIX = ("bn", "in", "bin", "ln", "gn", "nn")
# Relative change of the 1st-to-99th percentile range below which it is "unchanged".
RANGE_TIE_RELATIVE = 0.01

SANITY_TITLE = "Sanity check: does our BN match nn.BatchNorm2d?"
SIX_TITLE = "The six variants: which normalization gives the best test accuracy?"
BATCH_TITLE = "Batch size: is GN less sensitive than BN to batch 8 instead of 128?"
PERCENTILE_TITLE = "Feature percentiles: how do the penultimate features evolve during training?"


# ----------------------------------------------------------------------------- pure wording


def sanity_verdict(ref: Measured, ours: Measured) -> Verdict:
    """Is the gap of the means of ``ours`` and ``ref`` within one standard deviation of the seeds?"""
    miss = cannot(ours, ref, "test accuracy")
    if miss:
        return Verdict([miss])
    v = Verdict([f"Test accuracy: `{ref.name}` {ref.long()}; `{ours.name}` {ours.long()}."], key=1)
    d = diff_points(ours, ref)
    gap = f"The gap of the means ({d:+.2f} points for `{ours.name}`)"
    stds = {m.name: m.std for m in (ref, ours) if m.std is not None}
    if len(stds) == 2:
        lo, hi = min(stds.values()), max(stds.values())
        if abs(d) <= lo:
            v.answer.append(f"{gap} is within one standard deviation of both variants' seeds "
                            f"({stds[ref.name]:.2f} and {stds[ours.name]:.2f} points): `{ours.name}` matches "
                            f"`{ref.name}`, as the sanity check expects.")
        elif abs(d) <= hi:
            wide = max(stds, key=stds.get)
            narrow = min(stds, key=stds.get)
            v.answer.append(f"{gap} is within one standard deviation of `{wide}`'s seeds ({stds[wide]:.2f} points) "
                            f"but not of `{narrow}`'s ({stds[narrow]:.2f} points): a borderline match.")
        else:
            v.answer.append(f"{gap} is larger than one standard deviation of either variant's seeds "
                            f"({stds[ref.name]:.2f} and {stds[ours.name]:.2f} points): `{ours.name}` and "
                            f"`{ref.name}` differ by more than seed noise, so the sanity check is not met.")
    elif len(stds) == 1:
        (name, s), = stds.items()
        other = ours.name if name == ref.name else ref.name
        inside = "within" if abs(d) <= s else "larger than"
        v.answer.append(f"{gap} is {inside} one standard deviation of `{name}`'s seeds ({s:.2f} points); "
                        f"`{other}` has one seed.")
        v.caveats.append(f"One seed of `{other}`: its own spread is unknown.")
    else:
        v.answer.append(f"{gap} cannot be set against the seed spread: with one seed per variant the spread is "
                        f"unknown.")
        v.caveats.append(spread_caveat(d, ref, ours))
    return v


def six_way_verdict(items: list[Measured], ref: str = "bn") -> Verdict:
    """The ranking by mean test accuracy (ties within ``TIE_POINTS``) and who is near ``ref``."""
    v = Verdict([ranking_sentence(items, "accuracy")])
    refm = next((m for m in items if m.name == ref), Measured(ref))
    v.answer.append(near_reference_sentence(items, refm, "test accuracy"))
    if refm.values and refm.std is None and any(m.std is None for m in items if m.values and m is not refm):
        v.caveats.append(f"One seed per variant: rankings between variants closer than {ONE_SEED_NOISE_POINTS:g} "
                         "points may be noise.")
    return v


def change_phrase(name: str, acc128: Optional[float], acc8: Optional[float]) -> str:
    """'`bn`: 90.00% at batch 128, 80.00% at batch 8 (down 10.00 points)' (fractions in)."""
    if acc128 is None or acc8 is None:
        which = " and ".join(b for b, x in (("128", acc128), ("8", acc8)) if x is None)
        return f"`{name}`: no finished run at batch {which}"
    c = round((acc8 - acc128) * 100, 6)
    how = ("unchanged within %g points" % TIE_POINTS if is_tie(c) else
           f"{'up' if c > 0 else 'down'} {abs(c):.2f} points")
    return f"`{name}`: {acc128 * 100:.2f}% at batch 128, {acc8 * 100:.2f}% at batch 8 ({how})"


def _way(change: float) -> str:
    return "unchanged" if is_tie(change) else "up" if change > 0 else "down"


def less_sensitive(name_a: str, acc_a_128: Optional[float], acc_a_8: Optional[float],
                   name_b: str, acc_b_128: Optional[float], acc_b_8: Optional[float]) -> Optional[str]:
    """The variant whose test accuracy changes less in size from batch 128 to 8; "" when the sizes
    are within ``TIE_POINTS`` (equally sensitive); None when a run is missing."""
    if None in (acc_a_128, acc_a_8, acc_b_128, acc_b_8):
        return None
    size_a = abs(round((acc_a_8 - acc_a_128) * 100, 6))
    size_b = abs(round((acc_b_8 - acc_b_128) * 100, 6))
    d = round(size_a - size_b, 6)
    if is_tie(d):
        return ""
    return name_a if d < 0 else name_b


def sensitivity_verdict(name_a: str, acc_a_128: Optional[float], acc_a_8: Optional[float],
                        name_b: str, acc_b_128: Optional[float], acc_b_8: Optional[float],
                        spread_points: Optional[float] = None) -> Verdict:
    """Which of two variants is less sensitive to batch 8 instead of 128: the one whose test accuracy
    changes less in size, whatever the direction. ``spread_points``: the largest standard deviation
    over seeds of the four runs (None with one seed each)."""
    v = Verdict()
    phrases = [change_phrase(name_a, acc_a_128, acc_a_8), change_phrase(name_b, acc_b_128, acc_b_8)]
    winner = less_sensitive(name_a, acc_a_128, acc_a_8, name_b, acc_b_128, acc_b_8)
    if winner is None:
        v.answer.append("Cannot say which is less sensitive to the batch size: " + "; ".join(phrases) + ".")
        return v
    ca = round((acc_a_8 - acc_a_128) * 100, 6)
    cb = round((acc_b_8 - acc_b_128) * 100, 6)
    d = abs(round(abs(ca) - abs(cb), 6))
    if winner == "":
        v.answer.append(f"`{name_a}` and `{name_b}` are equally sensitive to the batch size: going from batch 128 "
                        f"to 8 their test accuracies change by {abs(ca):.2f} ({_way(ca)}) and {abs(cb):.2f} points "
                        f"({_way(cb)}), sizes within {TIE_POINTS:g} points of each other.")
    else:
        loser = name_b if winner == name_a else name_a
        cw, cl = (ca, cb) if winner == name_a else (cb, ca)
        v.answer.append(f"`{winner}` is less sensitive to the batch size than `{loser}`: going from batch 128 to 8 "
                        f"its test accuracy changes by {abs(cw):.2f} points ({_way(cw)}), `{loser}`'s by "
                        f"{abs(cl):.2f} points ({_way(cl)}), {d:.2f} points less.")
    up = [n for n, c in ((name_a, ca), (name_b, cb)) if c > 0 and not is_tie(c)]
    down = [n for n, c in ((name_a, ca), (name_b, cb)) if c < 0 and not is_tie(c)]
    if len(up) == 2:
        v.answer.append("Both gained accuracy at batch 8, so the less sensitive one is the one that gained less.")
    elif len(down) == 2:
        v.answer.append("Both lost accuracy at batch 8, so the less sensitive one is the one that lost less.")
    elif up and down:
        v.answer.append(f"`{up[0]}` gained and `{down[0]}` lost accuracy at batch 8; sensitivity compares the "
                        f"sizes of the changes.")
    if winner != "":
        if spread_points is None:
            if d < ONE_SEED_NOISE_POINTS:
                v.caveats.append(f"One seed per run: a difference of {d:.2f} points between the sizes of the "
                                 f"changes is under {ONE_SEED_NOISE_POINTS:g} points and may be noise.")
        elif d <= spread_points:
            v.caveats.append(f"The difference between the sizes of the changes ({d:.2f} points) is within the "
                             f"seed spread ({spread_points:.2f} points).")
    return v


def gn_claim_sentence(winner: Optional[str]) -> Optional[str]:
    """What ``less_sensitive(bn..., gn...)`` says about Wu & He's claim."""
    if winner is None:
        return None
    if winner == "gn":
        return "This agrees with Wu & He's claim that GN is less sensitive to the batch size than BN."
    if winner == "bn":
        return "This does not bear out Wu & He's claim that GN is less sensitive to the batch size than BN."
    return "Neither supports nor contradicts Wu & He's claim: the two changes are the same size."


def range_change(first: float, last: float) -> str:
    """'grew', 'shrank' or 'unchanged' (within ``RANGE_TIE_RELATIVE`` of the larger of the two)."""
    if abs(last - first) <= RANGE_TIE_RELATIVE * max(abs(first), abs(last)):
        return "unchanged"
    return "grew" if last > first else "shrank"


def percentile_verdict(ranges: dict[str, tuple[float, float]]) -> Verdict:
    """Per variant, whether the 1st-to-99th percentile range (q99 - q01) of the penultimate features
    grew, shrank or stayed the same from the first to the last epoch; ``ranges[name] = (first, last)``."""
    if not ranges:
        return Verdict(["No variant has logged feature percentiles yet."])
    by: dict[str, list[str]] = {"grew": [], "shrank": [], "unchanged": []}
    for name, (first, last) in ranges.items():
        ratio = f", {last / first:.2f}×" if first > 0 else ""
        by[range_change(first, last)].append(f"`{name}` ({first:.4g} → {last:.4g}{ratio})")
    parts = [f"{how} for {', '.join(items)}" if how != "unchanged" else
             f"stayed the same (within {RANGE_TIE_RELATIVE:.0%}) for {', '.join(items)}"
             for how, items in by.items() if items]
    v = Verdict(["From the first to the last epoch, the range between the 1st and 99th percentiles of the "
                 "penultimate features " + "; ".join(parts) + "."])
    if len(ranges) > 1:
        wide = max(ranges, key=lambda n: ranges[n][1])
        narrow = min(ranges, key=lambda n: ranges[n][1])
        if ranges[wide][1] == ranges[narrow][1]:
            v.answer.append(f"At the last epoch every variant's range is {ranges[wide][1]:.4g}.")
        else:
            v.answer.append(f"At the last epoch the range is widest for `{wide}` ({ranges[wide][1]:.4g}) and "
                            f"narrowest for `{narrow}` ({ranges[narrow][1]:.4g}).")
    return v


# ----------------------------------------------------------------------------- sections


def _m(study: StudyData, name: str, key: str = "accuracy", split: str = "test") -> Measured:
    return Measured.of(name, study.values(name, split, key))


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
    v = sanity_verdict(ref, ours)
    miss = study.missing_sentence(["torch_bn", "bn"])
    if miss:
        v.caveats.insert(0, miss)
    return Section(SANITY_TITLE, (fig, "test accuracy of torch_bn and bn: bars are means over seeds, dots the "
                                       "seeds, error bars one standard deviation"),
                   [(["seed", "torch_bn test acc %", "bn test acc %"], rows)], v)


def six_way_section(study: StudyData, out: Path) -> Section:
    items = [_m(study, n) for n in SIX]
    fig = plot_bars(out / "report-six.png", list(SIX), {"test accuracy": [[x * 100 for x in m.values] for m in items]},
                    ylabel="test accuracy %", title="test accuracy per normalization (batch 128); dotted: bn",
                    reference="bn")
    ref = next(m for m in items if m.name == "bn")
    rows = []
    for n, m in zip(SIX, items):
        vr = study.get(n)
        if not m.values:
            rows.append([n, "0", "–", "–", "–", "–", "–", vr.missing_reason() if vr else "not in this study"])
            continue
        micro, macro = _m(study, n, "micro_f1"), _m(study, n, "macro_f1")
        delta = f"{diff_points(m, ref):+.2f}" if ref.values and n != "bn" else "–"
        div = sum(bool(r.summary.get("diverged")) for r in vr.finished)
        rows.append([n, str(m.n), m.short(), micro.short(), macro.short(), delta,
                     fmt_ints(vr.summary_values("best_epoch")), f"{div} of {len(vr.finished)}" if div else "no"])
    v = six_way_verdict(items)
    miss = study.missing_sentence(list(SIX))
    if miss:
        v.caveats.insert(0, miss)
    div = [n for n in SIX if study.get(n) and any(r.summary.get("diverged") for r in study.get(n).finished)]
    if div:
        v.caveats.append("Diverged: " + "; ".join(
            f"`{n}` ({next(r.summary.get('message', '') for r in study.get(n).finished if r.summary.get('diverged'))})"
            for n in div) + ".")
    return Section(SIX_TITLE, (fig, "test accuracy of the six variants: bars are means over seeds, error bars one "
                                    "standard deviation where there are several seeds"),
                   [(["variant", "seeds", "test acc", "test micro F1", "test macro F1", "Δ acc vs bn (points)",
                      "best epoch", "diverged"], rows)], v)


def batch_section(study: StudyData, out: Path) -> Section:
    ms = {n: _m(study, n) for n in ("bn", "bn_b8", "gn", "gn_b8")}
    fig = plot_bars(out / "report-batch.png", ["bn", "gn"],
                    {"batch 128": [[x * 100 for x in ms["bn"].values], [x * 100 for x in ms["gn"].values]],
                     "batch 8": [[x * 100 for x in ms["bn_b8"].values], [x * 100 for x in ms["gn_b8"].values]]},
                    ylabel="test accuracy %", title="test accuracy at batch 128 and batch 8")
    mean = lambda m: None if not m.values else float(np.mean(m.values))
    rows = []
    for norm in ("bn", "gn"):
        big, small = ms[norm], ms[f"{norm}_b8"]
        change = "–" if not (big.values and small.values) else f"{diff_points(small, big):+.2f}"
        size = "–" if change == "–" else f"{abs(diff_points(small, big)):.2f}"
        rows.append([norm, big.short(), small.short(), change, size])
    stds = [m.std for m in ms.values() if m.std is not None]
    v = sensitivity_verdict("bn", mean(ms["bn"]), mean(ms["bn_b8"]), "gn", mean(ms["gn"]), mean(ms["gn_b8"]),
                            max(stds) if stds else None)
    claim = gn_claim_sentence(less_sensitive("bn", mean(ms["bn"]), mean(ms["bn_b8"]),
                                             "gn", mean(ms["gn"]), mean(ms["gn_b8"])))
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
        notes.append("At batch 8: " + compare_sentence(Measured("gn_b8", ms["gn_b8"].values),
                                                       Measured("bn_b8", ms["bn_b8"].values), "accuracy"))
    return Section(BATCH_TITLE, (fig, "test accuracy of bn and gn at batch 128 and batch 8 (paired bars)"),
                   [(["variant", "batch 128 test acc", "batch 8 test acc", "change (points)", "size of change"],
                     rows)], v, notes)


def percentile_ranges(study: StudyData, names: list[str]):
    """Table rows and ``{name: (first range, last range)}`` of the q01..q99 curves (mean over seeds)."""
    header = (["variant", "epochs"] + [f"first {q}" for q in QUANTILES] + [f"last {q}" for q in QUANTILES]
              + ["range first", "range last", "range"])
    rows, ranges = [], {}
    for n in names:
        v = study.get(n)
        series = {q: v.curve(f"quantiles.{q}", "epoch") for q in QUANTILES}
        if not len(series["q99"][0]) or not len(series["q01"][0]):
            rows.append([n, v.missing_reason() if not v.available else "no quantiles logged"] + ["–"] * 11)
            continue
        first = [float(series[q][1][0]) for q in QUANTILES]
        last = [float(series[q][1][-1]) for q in QUANTILES]
        rf, rl = first[3] - first[0], last[3] - last[0]
        epochs = f"{series['q99'][0][0]:g}–{series['q99'][0][-1]:g}"
        if v.available:  # the answer speaks of whole runs only; a run in progress is shown, not counted
            ranges[n] = (rf, rl)
            trend = range_change(rf, rl)
        else:
            epochs += " (not finished)"
            trend = "–"
        rows.append([n, epochs] + [f"{x:.4g}" for x in first + last] + [f"{rf:.4g}", f"{rl:.4g}", trend])
    return header, rows, ranges


def percentile_section(study: StudyData, out: Path) -> Section:
    names = [v.name for v in study.variants]
    path, scale = plot_quantiles(study, names, out / "report-quantiles.png")
    header, rows, ranges = percentile_ranges(study, names)
    v = percentile_verdict(ranges)
    v.caveats.append("Percentiles are over all penultimate-layer features of the validation images, averaged over "
                     "seeds; the scales of different normalizations are not comparable in absolute terms, only "
                     "each variant's trend is.")
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

