"""Differences with 95% intervals over seeds, comparisons at equal training, why runs stopped, and the time of
every attempt: hand-made numbers and hand-made run directories whose right answers are known."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from normlab.files import atomic_write_json, read_json
from normlab.report.common import Measured
from normlab.report.answers_ner import compare_pair
from normlab.report.stats import (claim_verdict, combination, difference, difference_sentence, estimate_cell,
                                  pooled_spread, spread_note)
from normlab.report.training import matched, stop_reason, stop_text
from normlab.report.write import load_study
from normlab.report.load import attempt_times, interval_seconds
from normlab.report.header import wall_time_line

from test_report import make_run


def M(name, *vals):
    return Measured.of(name, vals)


A3 = M("a", 0.80, 0.81, 0.82)  # 81.00 ± 1.00
B3 = M("b", 0.75, 0.76, 0.77)  # 76.00 ± 1.00


# ----------------------------------------------------------------------------- intervals


def test_welch_interval_by_hand():
    e = difference(A3, B3)
    # se = sqrt(1/3 + 1/3) = 0.8165; df = (2/3)^2 / (2 * (1/3)^2 / 2) = 4; t(0.975, 4) = 2.7764
    assert e.value == 5.0 and e.df == pytest.approx(4.0)
    assert e.lo == pytest.approx(5.0 - 2.7764 * 0.8165, abs=1e-3) and e.hi == pytest.approx(7.267, abs=1e-3)
    assert e.direction == "higher" and difference(B3, A3).direction == "lower"
    # unequal spreads: Welch's df is below n_a + n_b - 2
    assert difference(M("a", 0.80, 0.81, 0.82), M("b", 0.70, 0.75, 0.80)).df < 4


def test_difference_sentence_for_every_sign_and_tie():
    above = difference_sentence(A3, B3, "test accuracy")
    assert above == ("`a` against `b` on test accuracy: 81.00 ± 1.00% against 76.00 ± 1.00%, a difference of +5.00 "
                     "points, 95% interval +2.73 to +7.27 points (Welch t-interval, n = 3 and 3 seeds, 4.0 degrees of "
                     "freedom): `a` is higher.")
    below = difference_sentence(B3, A3, "test accuracy")
    assert below.endswith("95% interval -7.27 to -2.73 points (Welch t-interval, n = 3 and 3 seeds, 4.0 degrees of "
                          "freedom): `b` is lower.")
    covers = difference_sentence(M("a", 0.80, 0.81, 0.82), M("b", 0.805, 0.815, 0.825), "x")
    assert "a difference of -0.50 points, 95% interval -2.77 to +1.77" in covers
    assert covers.endswith("no detectable difference (the interval covers 0).")
    tie = difference_sentence(M("a", 0.80, 0.81), M("b", 0.80, 0.81), "x")
    assert "a difference of +0.00 points" in tie and tie.endswith("no detectable difference (the interval covers 0).")
    # every seed alike on both sides: a zero-width interval, still a verdict
    flat = difference(M("a", 0.8, 0.8), M("b", 0.7, 0.7))
    assert (flat.lo, flat.hi, flat.direction) == (10.0, 10.0, "higher")
    assert difference_sentence(M("a", 0.9), M("b"), "x") == "Cannot compare `a` with `b` on x: `b` has no value."


def test_one_seed_has_no_interval_and_takes_the_threshold_from_the_study_spread():
    unmeasured = difference_sentence(M("a", 0.80), M("b", 0.75), "test entity F1")
    assert unmeasured == ("`a` against `b` on test entity F1: 80.00% against 75.00%, a difference of +5.00 points; no "
                          "interval exists: `a` and `b` have one seed (n = 1). This study has no variant with repeated "
                          "seeds, so its seed noise is unmeasured and this difference cannot be told from it.")
    assert difference(M("a", 0.8), M("b", 0.75)).direction == "unknown"
    spread = pooled_spread([M("x", 0.90, 0.91, 0.92), M("y", 0.50, 0.51, 0.52), M("z", 0.3)])
    assert (spread.sd, spread.df, spread.names) == (1.0, 4, ("x", "y"))
    # one seed against one: t(0.975, 4) * 1.00 * sqrt(2) = 3.93
    near = difference(M("a", 0.80), M("b", 0.77), spread)
    assert near.threshold == pytest.approx(3.926, abs=1e-3) and near.direction == "none"
    far = difference(M("a", 0.80), M("b", 0.75), spread)
    assert far.direction == "higher" and difference(M("a", 0.75), M("b", 0.80), spread).direction == "lower"
    s = difference_sentence(M("a", 0.80), M("b", 0.77), "x", spread)
    assert "no interval exists: `a` and `b` have one seed (n = 1); seed noise ±3.93 points." in s
    assert "this one (+3.00) is within that: no detectable difference." in s
    assert "this one (+5.00) is larger than that." in difference_sentence(M("a", 0.80), M("b", 0.75), "x", spread)
    # without ``noise`` (a section that names the spread once: spread_note): the band and its conclusion only
    assert difference_sentence(M("a", 0.80), M("b", 0.77), "x", spread, noise=False).endswith(
        "no interval exists: `a` and `b` have one seed (n = 1); seed noise ±3.93 points: no detectable difference.")
    assert difference_sentence(M("a", 0.80), M("b", 0.75), "x", spread, noise=False).endswith(
        "seed noise ±3.93 points: `a` is higher.")
    assert difference_sentence(M("a", 0.75), M("b", 0.80), "x", spread, noise=False).endswith(
        "seed noise ±3.93 points: `a` is lower.")
    assert difference_sentence(M("a", 0.80), M("b", 0.75), "x", noise=False).endswith(
        "have one seed (n = 1): undetermined (seed noise unmeasured).")
    assert "standard deviation 1.00 points pooled over `x`, `y`; 4 degrees of freedom" in spread_note(spread)
    assert "unmeasured" in spread_note(None) and "pooled" not in spread_note(None)
    mixed = difference_sentence(A3, M("b", 0.70), "x", spread)  # one side with seeds: still no interval
    assert "no interval exists: `b` has one seed (n = 1)" in mixed
    assert pooled_spread([M("a", 0.8), M("b")]) is None


def test_combination_of_four_means_for_the_batch_question():
    e = combination([(1, M("a8", 0.80, 0.81, 0.82)), (-1, M("a", 0.85, 0.86, 0.87)),
                     (-1, M("b8", 0.70, 0.71, 0.72)), (1, M("b", 0.70, 0.71, 0.72))])
    assert e.value == -5.0 and e.has_interval and e.hi < 0
    assert combination([(1, M("a", 0.8)), (-1, M("b"))]) is None


def test_estimate_cells():
    assert estimate_cell(difference(A3, B3)) == "+5.00 [+2.73, +7.27] (n = 3, 3)"
    assert estimate_cell(difference(M("a", 0.8), B3)) == "+4.00 (no interval: n = 1, 3)"
    assert estimate_cell(None) == "–"


# ----------------------------------------------------------------------------- claims


def test_claim_verdicts_for_every_sign_tie_and_one_seed():
    up, down = difference(A3, B3), difference(B3, A3)
    covers = difference(M("a", 0.80, 0.81, 0.82), M("b", 0.805, 0.815, 0.825))
    assert claim_verdict(up, "higher")[0] == "reproduced"
    assert claim_verdict(down, "higher") == ("not reproduced", "the interval lies below 0")
    assert claim_verdict(covers, "higher") == ("inconclusive at this budget", "the interval covers 0")
    assert claim_verdict(down, "lower")[0] == "reproduced" and claim_verdict(up, "lower")[0] == "not reproduced"
    one = claim_verdict(difference(M("a", 0.9), B3), "higher")
    assert one == ("inconclusive at this budget", "no interval exists: `a` has one seed (n = 1)")
    assert claim_verdict(None, "higher") == ("inconclusive at this budget", "a side has no finished run")


def test_equality_claims_need_the_interval_inside_the_margin():
    tight = difference(M("a", 0.910, 0.911, 0.912), M("b", 0.9105, 0.9115, 0.9125))
    assert claim_verdict(tight, "equal", margin=1.0) == ("reproduced", "the interval lies within ±1 point")
    wide = difference(M("a", 0.80, 0.81, 0.82), M("b", 0.805, 0.815, 0.825))
    assert claim_verdict(wide, "equal", margin=1.0)[0] == "inconclusive at this budget"
    assert claim_verdict(difference(A3, B3), "equal", margin=1.0) == ("not reproduced", "the interval excludes 0")
    with pytest.raises(ValueError, match="expected a margin"):
        claim_verdict(tight, "equal")


# ----------------------------------------------------------------------------- equal training


def _ner_run(root: Path, variant: str, seed: int, val_f1: list[float], status: str, eval_every: int = 100,
             test_f1: float = 0.8) -> Path:
    """A NER run evaluated every ``eval_every`` updates with the given validation entity F1 curve."""
    d = make_run(root, "ner", variant, seed, np.random.default_rng(seed), epochs=1)
    recs = [{"step": (i + 1) * eval_every, "epoch": (i + 1) / 4, "seconds": 10.0 * (i + 1), "val_entity_f1": v,
             "val_type_micro_f1": v + 0.01} for i, v in enumerate(val_f1)]
    (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    best = max(range(len(val_f1)), key=lambda i: (val_f1[i], -i))
    s = read_json(d / "summary.json")
    s.update(status=status, updates=len(val_f1) * eval_every, best_step=(best + 1) * eval_every,
             epochs_run=len(val_f1) / 4)
    s["metrics"]["test"].update(entity_f1=test_f1, type_micro_f1=test_f1 + 0.01)
    atomic_write_json(d / "summary.json", s)
    return d


def test_stop_reasons_plateau_cap_diverged(tmp_path):
    _ner_run(tmp_path, "crf", 0, [0.5, 0.6, 0.55, 0.54], "early_stopped")
    _ner_run(tmp_path, "crf_ln", 0, [0.5, 0.6, 0.7, 0.8, 0.9], "finished")
    _ner_run(tmp_path, "random", 0, [0.5], "diverged")
    study = load_study(tmp_path)
    runs = {r.variant: r for r in study.runs}
    assert [stop_reason(runs[n]) for n in ("crf", "crf_ln", "random")] == ["plateau", "cap", "diverged"]
    assert stop_text(runs["crf"], "step") == "plateau after 400 updates"
    assert stop_text(runs["crf_ln"], "step") == "cap (500 updates)"
    assert stop_text(runs["random"], "step") == "diverged after 100 updates"


def test_unequal_stops_compare_validation_at_the_last_common_update(tmp_path):
    # crf stops on a plateau at update 400 (best at 200); crf_ln runs on to 600 and peaks at 600.
    _ner_run(tmp_path, "crf", 0, [0.50, 0.80, 0.79, 0.78], "early_stopped", test_f1=0.80)
    _ner_run(tmp_path, "crf_ln", 0, [0.50, 0.70, 0.75, 0.80, 0.85, 0.90], "finished", test_f1=0.90)
    study = load_study(tmp_path)
    m = matched(study, ["crf_ln", "crf"], "val_entity_f1", "val_type_micro_f1")
    assert m.limit == 400 and not m.equal and not m.same_stop
    assert m.val["crf_ln"].values == (0.80,) and m.val["crf"].values == (0.80,)  # best up to update 400
    assert m.other["crf_ln"].values == pytest.approx((0.81,))
    v = compare_pair(study, "crf_ln", "crf")
    assert v.answer[0].startswith("`crf_ln` against `crf` on validation entity F1, best checkpoint up to update "
                                  "400: 80.00% against 80.00%, a difference of +0.00 points")
    assert v.answer[2].startswith("Unequal training (`crf_ln` cap (600 updates); `crf` plateau after 400 updates): "
                                  "compared at each run's best checkpoint up to update 400")
    assert "Test metrics exist only for each run's own final best checkpoint" in v.answer[2]
    assert v.answer[3].startswith("For reference: `crf_ln` against `crf` on test entity F1, each run's own best "
                                  "checkpoint: 90.00% against 80.00%, a difference of +10.00 points")


def test_unequal_stops_with_every_best_inside_the_common_part_use_the_test_numbers(tmp_path):
    _ner_run(tmp_path, "crf", 0, [0.50, 0.80, 0.79, 0.78], "early_stopped", test_f1=0.80)
    _ner_run(tmp_path, "crf_ln", 0, [0.50, 0.85, 0.80, 0.80, 0.80, 0.80], "finished", test_f1=0.85)
    study = load_study(tmp_path)
    m = matched(study, ["crf_ln", "crf"], "val_entity_f1")
    assert m.equal and not m.same_stop
    v = compare_pair(study, "crf_ln", "crf")
    assert v.answer[0].startswith("`crf_ln` against `crf` on test entity F1: 85.00% against 80.00%")
    assert v.answer[-1].startswith("Equal training: the runs stopped at different points")
    assert "every run's best checkpoint lies within the first 400 updates, which all of them reached" in v.answer[-1]


def test_equal_stops_say_so(tmp_path):
    _ner_run(tmp_path, "crf", 0, [0.5, 0.6], "finished")
    _ner_run(tmp_path, "crf_ln", 0, [0.5, 0.7], "finished")
    v = compare_pair(load_study(tmp_path), "crf_ln", "crf")
    assert v.answer[-1] == ("Equal training: every run compared stopped at the same point (`crf_ln` cap (200 "
                            "updates); `crf` cap (200 updates)).")
    assert matched(load_study(tmp_path), ["crf", "glove"], "val_entity_f1") is None  # glove was not run


# ----------------------------------------------------------------------------- time of every attempt


def test_interval_seconds_per_epoch_for_resnet_and_from_the_running_total_for_ner():
    recs = [{"step": 10, "epoch": 1, "seconds": 5.0}, {"step": 20, "epoch": 2, "seconds": 7.0}]
    assert interval_seconds("resnet", recs) == [(10.0, 5.0), (20.0, 7.0)]
    assert interval_seconds("ner", recs) == [(10.0, 5.0), (20.0, 2.0)]


def test_attempt_times_new_events_cover_their_spans_and_a_lost_attempt_counts_by_its_epochs():
    recs = [{"step": s, "epoch": s / 10, "seconds": 100.0} for s in (10, 20, 30, 40)]
    # one attempt recorded from update 20 on: epochs 1-2 ran in an attempt that left no line
    events = [{"run": "bn", "seed": 0, "resumed": True, "seconds": 250.0, "from_step": 20, "to_step": 40}]
    total, missing, attempts, lost = attempt_times("resnet", events, recs)
    assert (total, missing, attempts, lost) == (450.0, 200.0, 2, 1)
    both = events + [{"run": "bn", "seed": 0, "resumed": False, "seconds": 230.0, "from_step": None, "to_step": 20}]
    assert attempt_times("resnet", both, recs) == (480.0, 0.0, 2, 0)


def test_attempt_times_of_an_older_runner_take_the_resume_point_from_the_log(tmp_path):
    recs = [{"step": s, "epoch": s // 10, "seconds": 100.0} for s in (10, 20, 30, 40)]
    log = tmp_path / "bn-seed0.log"
    log.write_text("\n$ python -m normlab resnet train --out x\nepoch ...\n"
                   "\n$ python -m normlab resnet train --out x --resume\nresumed from x/last.pt after epoch 3\n")
    events = [{"run": "bn", "seed": 0, "resumed": True, "seconds": 150.0}]
    assert attempt_times("resnet", events, recs, log) == (450.0, 300.0, 2, 1)
    fresh = [{"run": "bn", "seed": 0, "resumed": False, "seconds": 420.0}]
    assert attempt_times("resnet", fresh, recs) == (420.0, 0.0, 1, 0)


def test_report_times_sum_every_attempt_and_name_the_longest_run(tmp_path):
    rng = np.random.default_rng(0)
    for v in ("bn", "gn"):
        make_run(tmp_path, "resnet", v, 0, rng, epochs=3)  # 2 s per epoch
    (tmp_path / "events.jsonl").write_text(
        json.dumps({"run": "bn", "seed": 0, "resumed": False, "seconds": 60.0, "from_step": None, "to_step": 10,
                    "started": "2026-01-02T10:00:00Z", "finished": "2026-01-02T10:01:00Z"}) + "\n"
        + json.dumps({"run": "bn", "seed": 0, "resumed": True, "seconds": 60.0, "from_step": 10, "to_step": 30,
                      "started": "2026-01-02T10:02:00Z", "finished": "2026-01-02T10:03:00Z"}) + "\n"
        + json.dumps({"run": "gn", "seed": 0, "resumed": True, "seconds": 30.0, "from_step": 20, "to_step": 30,
                      "started": "2026-01-02T10:00:00Z", "finished": "2026-01-02T10:00:30Z"}) + "\n")
    line = wall_time_line(load_study(tmp_path))
    # bn: 120 s over 2 attempts; gn: 30 s + its first two epochs (2 s each) from an unrecorded attempt: 154 s
    assert line.startswith("**Wall time:** 3 min summed over the runs and all their attempts (4 attempts of 2 "
                           "runs; 1 of them left no line in events.jsonl and count with their epochs' own times, 4 s")
    assert "the longest run, `bn/seed0`, took 2 min (its first epoch 2 s)" in line


# ----------------------------------------------------------------------------- figures and captions


def test_zoomed_axis_holds_the_band_after_the_climb_and_lines_differ():
    from normlab.report.plots import distinct_style, zoom_limits

    xs = np.arange(1, 101, dtype=float)
    a = np.concatenate([np.linspace(10, 80, 25), np.full(75, 82.0)])
    b = np.concatenate([np.linspace(10, 79, 25), np.full(75, 83.0)])
    b[60] = 50.0  # one dip
    lo, hi = zoom_limits([(xs, a), (xs, b)], 0.25)
    assert 79 < lo < 82 and 83 < hi < 84  # the climb and the single dip are left below
    styles = [distinct_style(i) for i in range(8)]
    assert len({(s["color"], s["linestyle"], s["marker"]) for s in styles}) == 8
    assert len({(s["linestyle"], s["marker"]) for s in styles}) == 8  # apart in grey too
    assert zoom_limits([(np.array([]), np.array([]))], 0.25) is None


def test_ner_validation_figure_rows_keep_each_panel_to_one_comparison():
    from types import SimpleNamespace

    from normlab.report.write import ner_curve_groups

    def study(*names):
        return SimpleNamespace(variants=[SimpleNamespace(name=n) for n in names])

    raw = ["random", "random50", "glove", "glove_char", "crf"]
    # an older study: one row of everything
    assert ner_curve_groups(study(*raw)) == [("all variants", raw)]
    # the rescaled grid: the random variants in both rows, each GloVe variant in its own setup's row
    assert ner_curve_groups(study(*raw, "glove_small", "crf_small")) == [
        ("GloVe as published", raw), ("GloVe rescaled", ["random", "random50", "glove_small", "crf_small"])]
    # the anomaly runs: scale beside what it is compared with, fewer sentences (shorter curves) on their own
    rows = ner_curve_groups(study(*raw, "glove_small", "random50_large", "glove_few", "random50_few"))
    assert rows[2:] == [("embedding scale", ["random50", "glove", "glove_small", "random50_large"]),
                        ("few training sentences", ["glove_few", "random50_few"])]
    assert ner_curve_groups(study(*raw, "glove_few")) == [("GloVe as published", raw),
                                                          ("few training sentences", ["glove_few"])]
    # no row holds more lines than distinct_style tells apart in grey (8)
    full = ner_curve_groups(study(*raw, "glove_char_ln", "crf_ln", "crf_free", "glove_char_small",
                                  "glove_char_ln_small", "crf_ln_small", "crf_free_small", "glove_small",
                                  "crf_small", "random50_large", "glove_few", "random50_few"))
    assert max(len(ns) for _, ns in full) <= 8


def test_ner_curve_caption_says_the_train_curve_is_on_a_subsample(tmp_path):
    from normlab.report.write import write_report

    d = make_run(tmp_path, "ner", "glove", 0, np.random.default_rng(0))
    cfg = read_json(d / "config.json")
    cfg["config"]["train_eval_size"] = 2000
    cfg["data"]["sizes"] = {"train": 28775, "val": 9592, "test": 9592}
    atomic_write_json(d / "config.json", cfg)
    md = write_report(tmp_path)[0].read_text()
    assert "train (dashed: measured on a fixed random subsample of 2,000 of the 28,775 training sentences" in md
    assert "y axis is zoomed to the band" in md


# ----------------------------------------------------------------------------- the table of claims


def _resnet_acc(root: Path, accs: dict[str, tuple[float, ...]]):
    for name, vals in accs.items():
        for seed, a in enumerate(vals):
            d = make_run(root, "resnet", name, seed, np.random.default_rng(seed))
            s = read_json(d / "summary.json")
            s["metrics"]["test"]["accuracy"] = a
            atomic_write_json(d / "summary.json", s)


def three(c, w=0.001):
    return (c - w, c, c + w)


def test_resnet_claims_reproduced_not_reproduced_and_inconclusive(tmp_path):
    from normlab.report.claims import resnet_claims

    _resnet_acc(tmp_path / "a", {"torch_bn": three(0.83), "bn": three(0.8302), "in": three(0.78), "ln": three(0.77),
                                 "gn": three(0.77), "bn_b8": three(0.78), "gn_b8": three(0.7701)})
    rows = {r[0].split(" (")[0]: r for r in resnet_claims(load_study(tmp_path / "a"))}
    assert rows["Our BN computes what `nn.BatchNorm2d` does"][3] == "**reproduced**"
    assert rows["BN beats IN, LN and GN at a large batch"][3] == "**reproduced**"
    assert rows["GN is less sensitive than BN to batch 8 instead of 128"][3] == "**reproduced**"
    assert "`bn` − `torch_bn` test accuracy: +0.02 [" in rows["Our BN computes what `nn.BatchNorm2d` does"][2]

    _resnet_acc(tmp_path / "b", {"torch_bn": three(0.83), "bn": three(0.80), "in": three(0.85), "ln": (0.77,),
                                 "gn": three(0.77), "bn_b8": three(0.80), "gn_b8": three(0.70)})
    rows = {r[0].split(" (")[0]: r for r in resnet_claims(load_study(tmp_path / "b"))}
    assert rows["Our BN computes what `nn.BatchNorm2d` does"][3] == "**not reproduced**"
    assert rows["BN beats IN, LN and GN at a large batch"][3] == "**not reproduced**"
    assert rows["BN beats IN, LN and GN at a large batch"][4] == "detectably above `bn`: `in`"
    assert rows["GN is less sensitive than BN to batch 8 instead of 128"][3] == "**not reproduced**"

    _resnet_acc(tmp_path / "c", {"torch_bn": (0.83,), "bn": (0.82,), "in": (0.78,), "ln": (0.77,), "gn": (0.77,),
                                 "bn_b8": (0.78,), "gn_b8": (0.77,)})
    for r in resnet_claims(load_study(tmp_path / "c")):
        assert r[3] == "**inconclusive at this budget**" and "n = 1" in r[2]


def test_ner_claims_use_matched_updates_and_counts(tmp_path):
    from normlab.report.claims import ner_claims as both_setups

    def ner_claims(study):
        """The rows on GloVe as published (the grid also has the rescaled setup, none of whose runs exist here)."""
        rows = both_setups(study)
        fixed = [r for r in rows if ", on GloVe rescaled" in r[0]]
        assert len(fixed) == len(rows) // 2 and all(r[3] == "**inconclusive at this budget**" for r in fixed)
        return [[r[0].replace(", on GloVe as published", ""), *r[1:]] for r in rows if r not in fixed]

    for seed in range(3):
        _ner_run(tmp_path, "glove", seed, [0.5, 0.70 + seed * 0.001], "finished", test_f1=0.70 + seed * 0.001)
        _ner_run(tmp_path, "random50", seed, [0.5, 0.75 + seed * 0.001], "finished", test_f1=0.75 + seed * 0.001)
    rows = {r[0]: r for r in ner_claims(load_study(tmp_path))}
    glove = rows["Pretrained embeddings help (GloVe against random, same dimension)"]
    assert glove[3] == "**not reproduced**" and glove[2].startswith("`glove` − `random50` test entity F1: -5.00 [")
    chars = rows["Character features help"]
    assert chars[3] == "**inconclusive at this budget**" and chars[4] == "a side has no finished run"
    crf = rows["The CRF initialization (BIO-invalid transitions fixed at -10,000) gives only valid output"]
    assert crf[3] == "**inconclusive at this budget**"  # no crf run: no count
    for variant, counts in (("crf", 0), ("glove_char", 300)):
        d = _ner_run(tmp_path, variant, 0, [0.5, 0.6], "finished")
        s = read_json(d / "summary.json")
        s["metrics"]["test"]["invalid_transitions"] = counts
        atomic_write_json(d / "summary.json", s)
    rows = {r[0]: r for r in ner_claims(load_study(tmp_path))}
    crf = rows["The CRF initialization (BIO-invalid transitions fixed at -10,000) gives only valid output"]
    assert crf[3] == "**reproduced**" and "`crf` 0, `crf_free` n/a, `glove_char` 300" in crf[2]
    s = read_json(tmp_path / "runs/crf/seed0/summary.json")
    s["metrics"]["test"]["invalid_transitions"] = 2
    atomic_write_json(tmp_path / "runs/crf/seed0/summary.json", s)
    rows = {r[0]: r for r in ner_claims(load_study(tmp_path))}
    assert rows["The CRF initialization (BIO-invalid transitions fixed at -10,000) gives only valid output"][3] == \
        "**not reproduced**"


def test_resnet_equal_training_note_for_equal_and_unequal_stops(tmp_path):
    from normlab.report.answers_resnet import equal_training_note

    rng = np.random.default_rng(0)
    make_run(tmp_path, "resnet", "bn", 0, rng, epochs=3)
    make_run(tmp_path, "resnet", "gn", 0, rng, epochs=3)
    assert equal_training_note(load_study(tmp_path), ["bn", "gn"]) == \
        "Equal training: every run compared stopped at the same point (`bn` cap (3 epochs); `gn` cap (3 epochs))."
    d = make_run(tmp_path, "resnet", "ln", 0, rng, epochs=2)
    s = read_json(d / "summary.json")
    s["status"] = "early_stopped"
    atomic_write_json(d / "summary.json", s)
    bn = tmp_path / "runs/bn/seed0/metrics.jsonl"
    recs = [json.loads(line) for line in bn.read_text().splitlines()]
    for rec, acc in zip(recs, (0.5, 0.6, 0.7)):  # bn's best is at epoch 3, after ln stopped
        rec["val_accuracy"] = acc
    bn.write_text("".join(json.dumps(r) + "\n" for r in recs))
    note = equal_training_note(load_study(tmp_path), ["bn", "ln"])
    assert note.startswith("Unequal training (`bn` cap (3 epochs); `ln` plateau after 2 epochs): the test numbers "
                           "above come from each run's own best checkpoint.")
    assert "the best checkpoint up to epoch 2" in note and "validation accuracy `bn` 60.00%" in note
    for rec, acc in zip(recs, (0.5, 0.8, 0.7)):  # now its best is at epoch 2: the test numbers compare equally
        rec["val_accuracy"] = acc
    bn.write_text("".join(json.dumps(r) + "\n" for r in recs))
    assert equal_training_note(load_study(tmp_path), ["bn", "ln"]).startswith(
        "Equal training: the runs stopped at different points")


def test_matched_with_no_runs_to_compare_is_none_not_a_crash():
    """A study whose only run failed reached the comparison with nothing in it (min() of nothing)."""
    from normlab.report.training import matched

    assert matched(None, [], "val_entity_f1") is None
