"""The report's answers: every computed sentence for every sign, tie and missing run, with hand-made numbers,
and whole reports built from hand-made run directories whose right answers are known."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from normlab.study.answers_common import (ONE_SEED_NOISE_POINTS, TIE_POINTS, Measured, compare, compare_sentence,
                                          near_reference_sentence, ranking, ranking_sentence, spread_caveat)
from normlab.study.answers_ner import (INIT_TITLE, crf_init_statement, invalid_transition_sentences,
                                       ner_pair_sentences)
from normlab.study.answers_resnet import (BATCH_TITLE, PERCENTILE_TITLE, SANITY_TITLE, SIX_TITLE, change_phrase,
                                          gn_claim_sentence, less_sensitive, percentile_verdict, range_change,
                                          sanity_verdict, sensitivity_verdict, six_way_verdict)
from normlab.study.grids import StudySettings, get_budget, variants_for
from normlab.study.report import load_study, write_report
from normlab.study.report_header import data_files, study_command, wall_time_line
from normlab.train.rundir import atomic_write_json, read_json

from test_report import make_run


def M(name, *vals):
    return Measured.of(name, vals)


# ----------------------------------------------------------------------------- comparisons


def test_compare_sentence_beats_trails_ties_and_missing():
    assert compare_sentence(M("a", 0.80), M("b", 0.75), "entity F1") == \
        "`a` beats `b` by 5.00 points on test entity F1 (80.00% against 75.00%)."
    assert compare_sentence(M("a", 0.75), M("b", 0.80), "entity F1") == \
        "`a` trails `b` by 5.00 points on test entity F1 (75.00% against 80.00%)."
    assert compare_sentence(M("a", 0.8000), M("b", 0.8005), "accuracy") == \
        f"`a` and `b` tie on test accuracy: 80.00% and 80.05% (a difference under {TIE_POINTS:g} points)."
    # exactly the threshold is not a tie, whatever the float rounding of 0.902 - 0.901
    assert compare_sentence(M("a", 0.902), M("b", 0.901), "accuracy").startswith("`a` beats `b` by 0.10 points")
    assert compare_sentence(M("a", 0.9), M("b"), "accuracy") == \
        "Cannot compare `a` with `b` on test accuracy: `b` has no value."
    assert "`a` and `b` have no value" in compare_sentence(M("a"), M("b"), "accuracy")
    # several seeds: means and std shown
    assert "(80.00 ± 1.00% against 75.00%)" in compare_sentence(M("a", 0.79, 0.80, 0.81), M("b", 0.75), "x")


def test_seed_caveats_one_seed_and_several():
    assert spread_caveat(0.3, M("a", 0.9), M("b", 0.9)).endswith(
        "a difference under 0.5 points may be noise, and this one (0.30 points) is under that.")
    assert spread_caveat(-2.0, M("a", 0.9), M("b", 0.9)).endswith("this one (2.00 points) is larger.")
    three = M("a", 0.79, 0.80, 0.81)  # std 1.00 points
    assert spread_caveat(0.8, three, M("b", 0.8)) == (
        "The difference (0.80 points) is within the seed spread (the largest standard deviation over seeds, "
        "`a`'s, is 1.00 points).")
    assert "(1.50 points) is outside the seed spread" in spread_caveat(-1.5, three, M("b", 0.8))
    # a tie gets no caveat; a real difference does
    assert compare(M("a", 0.8), M("b", 0.8), "x").caveats == []
    assert len(compare(M("a", 0.8), M("b", 0.7), "x").caveats) == 1
    assert ONE_SEED_NOISE_POINTS == 0.5


def test_ranking_with_ties_is_competition_ranking():
    items = [M("c", 0.85), M("a", 0.90), M("e", 0.80), M("b", 0.8995), M("d", 0.8502), M("x")]
    groups = ranking(items)
    assert [(r, [m.name for m in ms]) for r, ms in groups] == [(1, ["a", "b"]), (3, ["d", "c"]), (5, ["e"])]
    s = ranking_sentence(items, "accuracy")
    assert s.startswith("Ranked by mean test accuracy: 1. `a` 90.00% = `b` 89.95% (tied within 0.1 points); "
                        "3. `d` 85.02% = `c` 85.00% (tied within 0.1 points); 5. `e` 80.00%.")
    assert s.endswith("No value for `x`.")
    assert ranking_sentence([M("a")], "accuracy") == "No variant has a test accuracy yet."


def test_near_reference_uses_the_reference_seed_spread_or_the_one_seed_threshold():
    bn = M("bn", 0.89, 0.90, 0.91)  # std 1.00
    items = [bn, M("gn", 0.895), M("in", 0.87), M("ln", 0.911)]
    s = near_reference_sentence(items, bn, "test accuracy")
    assert s == ("On test accuracy, `gn` (-0.50) is within the seed spread of `bn` (one standard deviation, "
                 "1.00 points); further away: `in` (-3.00), `ln` (+1.10) points.")
    one = M("bn", 0.90)
    s1 = near_reference_sentence([one, M("gn", 0.904), M("in", 0.80)], one, "test accuracy")
    assert "`gn` (+0.40) is within 0.5 points of `bn` (one seed of `bn`" in s1 and "`in` (-10.00)" in s1
    assert "no other variant is within" in near_reference_sentence([one, M("in", 0.8)], one, "test accuracy")
    assert "it has no finished run" in near_reference_sentence([M("gn", 0.8)], M("bn"), "test accuracy")


# ----------------------------------------------------------------------------- sanity check


def test_sanity_gap_within_one_std_of_both():
    v = sanity_verdict(M("torch_bn", 0.900, 0.910, 0.920), M("bn", 0.905, 0.915, 0.925))
    assert v.answer[0] == ("Test accuracy: `torch_bn` 91.00 ± 1.00% over 3 seeds (90.00, 91.00, 92.00); "
                           "`bn` 91.50 ± 1.00% over 3 seeds (90.50, 91.50, 92.50).")
    assert "(+0.50 points for `bn`) is within one standard deviation of both variants' seeds" in v.answer[1]
    assert "`bn` matches `torch_bn`" in v.headline


def test_sanity_gap_between_the_two_stds_is_borderline():
    v = sanity_verdict(M("torch_bn", 0.90, 0.92, 0.94), M("bn", 0.905, 0.91, 0.915))  # std 2.00 and 0.50
    assert "(-1.00 points for `bn`) is within one standard deviation of `torch_bn`'s seeds (2.00 points) but not " \
           "of `bn`'s (0.50 points): a borderline match." in v.answer[1]


def test_sanity_gap_outside_the_spread_says_so():
    v = sanity_verdict(M("torch_bn", 0.91, 0.912, 0.914), M("bn", 0.88, 0.882, 0.884))
    assert "is larger than one standard deviation of either variant's seeds" in v.answer[1]
    assert "differ by more than seed noise, so the sanity check is not met" in v.answer[1]


def test_sanity_one_seed_says_the_spread_is_unknown():
    v = sanity_verdict(M("torch_bn", 0.91), M("bn", 0.905))
    assert "with one seed per variant the spread is unknown" in v.answer[1]
    assert v.caveats and "0.50 points" in v.caveats[0]
    mixed = sanity_verdict(M("torch_bn", 0.90, 0.91, 0.92), M("bn", 0.915))
    assert "is within one standard deviation of `torch_bn`'s seeds (1.00 points); `bn` has one seed." in mixed.answer[1]
    far = sanity_verdict(M("torch_bn", 0.90, 0.91, 0.92), M("bn", 0.95))
    assert "is larger than one standard deviation of `torch_bn`'s seeds" in far.answer[1]
    assert sanity_verdict(M("torch_bn", 0.9), M("bn")).answer == [
        "Cannot compare `bn` with `torch_bn` on test accuracy: `bn` has no value."]


def test_six_way_verdict_ranks_and_names_those_near_bn():
    items = [M("bn", 0.90, 0.91, 0.92), M("in", 0.905), M("bin", 0.90), M("ln", 0.87), M("gn", 0.913), M("nn", 0.80)]
    v = six_way_verdict(items)
    assert v.answer[0].startswith("Ranked by mean test accuracy: 1. `gn` 91.30%; 2. `bn` 91.00 ± 1.00%; 3. `in` 90.50%")
    assert "4. `bin` 90.00%; 5. `ln` 87.00%; 6. `nn` 80.00%." in v.answer[0]
    assert "`in` (-0.50), `bin` (-1.00), `gn` (+0.30) are within the seed spread of `bn`" in v.answer[1]
    assert "further away: `ln` (-4.00), `nn` (-11.00) points" in v.answer[1]


# ----------------------------------------------------------------------------- batch size


def test_sensitivity_both_worsen():
    v = sensitivity_verdict("bn", 0.90, 0.80, "gn", 0.88, 0.86)
    assert v.answer[0] == ("`gn` is less sensitive to the batch size than `bn`: going from batch 128 to 8 its test "
                           "accuracy changes by 2.00 points (down), `bn`'s by 10.00 points (down), 8.00 points less.")
    assert v.answer[1] == "Both lost accuracy at batch 8, so the less sensitive one is the one that lost less."
    assert v.caveats == []


def test_sensitivity_both_improve_the_smaller_gain_is_less_sensitive():
    # the bug of issue 7: both moved up, GN more, and the report said GN held up better
    v = sensitivity_verdict("bn", 0.85, 0.86, "gn", 0.88, 0.95)
    assert v.answer[0].startswith("`bn` is less sensitive to the batch size than `gn`")
    assert "changes by 1.00 points (up), `gn`'s by 7.00 points (up), 6.00 points less." in v.answer[0]
    assert v.answer[1] == "Both gained accuracy at batch 8, so the less sensitive one is the one that gained less."
    assert less_sensitive("bn", 0.85, 0.86, "gn", 0.88, 0.95) == "bn"
    assert gn_claim_sentence("bn").startswith("This does not bear out Wu & He's claim")


def test_sensitivity_one_up_one_down():
    v = sensitivity_verdict("bn", 0.90, 0.85, "gn", 0.88, 0.90)
    assert v.answer[0].startswith("`gn` is less sensitive")
    assert "changes by 2.00 points (up), `bn`'s by 5.00 points (down)" in v.answer[0]
    assert v.answer[1] == "`gn` gained and `bn` lost accuracy at batch 8; sensitivity compares the sizes of the changes."
    # the one that went up can still be the more sensitive one
    v2 = sensitivity_verdict("bn", 0.90, 0.89, "gn", 0.80, 0.85)
    assert v2.answer[0].startswith("`bn` is less sensitive to the batch size than `gn`")
    assert "`gn` gained and `bn` lost" in v2.answer[1]


def test_sensitivity_ties_are_equally_sensitive():
    v = sensitivity_verdict("bn", 0.90, 0.88, "gn", 0.88, 0.9005)  # sizes 2.00 and 2.05
    assert v.answer[0] == ("`bn` and `gn` are equally sensitive to the batch size: going from batch 128 to 8 their "
                           "test accuracies change by 2.00 (down) and 2.05 points (up), sizes within 0.1 points of "
                           "each other.")
    assert less_sensitive("bn", 0.90, 0.88, "gn", 0.88, 0.9005) == ""
    assert gn_claim_sentence("").startswith("Neither supports nor contradicts")
    same = sensitivity_verdict("bn", 0.90, 0.90, "gn", 0.85, 0.8504)
    assert same.answer[0].startswith("`bn` and `gn` are equally sensitive")
    assert change_phrase("bn", 0.90, 0.9004) == "`bn`: 90.00% at batch 128, 90.04% at batch 8 (unchanged within 0.1 points)"


def test_sensitivity_missing_runs_and_seed_caveats():
    v = sensitivity_verdict("bn", 0.90, 0.80, "gn", 0.88, None)
    assert v.answer == ["Cannot say which is less sensitive to the batch size: `bn`: 90.00% at batch 128, 80.00% at "
                        "batch 8 (down 10.00 points); `gn`: no finished run at batch 8."]
    assert less_sensitive("bn", None, 0.8, "gn", 0.9, 0.9) is None and gn_claim_sentence(None) is None
    close = sensitivity_verdict("bn", 0.90, 0.88, "gn", 0.88, 0.863)  # sizes 2.00 and 1.70
    assert close.caveats == ["One seed per run: a difference of 0.30 points between the sizes of the changes is "
                             "under 0.5 points and may be noise."]
    spread = sensitivity_verdict("bn", 0.90, 0.85, "gn", 0.88, 0.86, spread_points=4.0)
    assert "(3.00 points) is within the seed spread (4.00 points)" in spread.caveats[0]
    assert sensitivity_verdict("bn", 0.90, 0.85, "gn", 0.88, 0.86, spread_points=1.0).caveats == []


# ----------------------------------------------------------------------------- percentiles


def test_range_change_grew_shrank_unchanged():
    assert range_change(1.0, 2.0) == "grew"
    assert range_change(2.0, 1.0) == "shrank"
    assert range_change(1.0, 1.005) == "unchanged" and range_change(1.005, 1.0) == "unchanged"
    assert range_change(0.0, 0.0) == "unchanged"


def test_percentile_verdict_names_each_direction():
    v = percentile_verdict({"bn": (1.0, 3.0), "nn": (4.0, 2.0), "gn": (2.0, 2.01)})
    assert v.answer[0] == ("From the first to the last epoch, the range between the 1st and 99th percentiles of the "
                           "penultimate features grew for `bn` (1 → 3, 3.00×); shrank for `nn` (4 → 2, 0.50×); "
                           "stayed the same (within 1%) for `gn` (2 → 2.01, 1.00×).")
    assert v.answer[1] == "At the last epoch the range is widest for `bn` (3) and narrowest for `nn` (2)."
    only_shrink = percentile_verdict({"in": (5.0, 1.0)})
    assert "shrank for `in`" in only_shrink.answer[0] and "grew" not in only_shrink.answer[0]
    assert percentile_verdict({"a": (0.0, 1.0)}).answer[0].endswith("grew for `a` (0 → 1).")
    assert percentile_verdict({}).answer == ["No variant has logged feature percentiles yet."]


# ----------------------------------------------------------------------------- NER


def test_ner_pair_positive_negative_tie_and_missing_type_f1():
    pos = ner_pair_sentences(M("glove", 0.80), M("random50", 0.75), M("glove", 0.85), M("random50", 0.84))
    assert pos.answer == ["`glove` beats `random50` by 5.00 points on test entity F1 (80.00% against 75.00%). "
                          "On test type-token micro F1, `glove` beats `random50` by 1.00 points (85.00% against 84.00%)."]
    assert pos.caveats[0].startswith("`glove` against `random50`: one seed per variant")
    neg = ner_pair_sentences(M("crf_ln", 0.78), M("crf", 0.80), M("crf_ln", 0.84), M("crf", 0.85))
    assert neg.answer[0].startswith("`crf_ln` trails `crf` by 2.00 points on test entity F1")
    assert "`crf_ln` trails `crf` by 1.00 points (84.00% against 85.00%)" in neg.answer[0]
    tie = ner_pair_sentences(M("a", 0.80), M("b", 0.8003), M("a", 0.85), M("b", 0.85))
    assert tie.answer[0].startswith("`a` and `b` tie on test entity F1") and "`a` ties with `b`" in tie.answer[0]
    assert tie.caveats == []
    old = ner_pair_sentences(M("a", 0.80), M("b", 0.70), M("a"), M("b"))
    assert old.answer[0].endswith("Test type-token micro F1: n/a (not recorded by these runs).")
    gone = ner_pair_sentences(M("a", 0.80), M("b"), M("a"), M("b"))
    assert gone.answer == ["Cannot compare `a` with `b` on test entity F1: `b` has no value."]


def test_invalid_transition_sentences():
    s = invalid_transition_sentences({"crf": 0, "crf_free": 12, "glove_char": 345})
    assert s[0] == ("Invalid BIO transitions in the test predictions: `crf` 0, `crf_free` 12, the softmax tagger "
                    "`glove_char` 345.")
    assert s[1] == "With the constraints, `crf` outputs no invalid transition, as it must."
    assert "`crf_free` has fewer invalid transitions than `glove_char` (12 against 345)" in s[2]
    assert "no invalid transition, against 345" in invalid_transition_sentences(
        {"crf": 0, "crf_free": 0, "glove_char": 345})[2]
    assert "as many invalid transitions as `glove_char` (7)" in invalid_transition_sentences(
        {"crf": 0, "crf_free": 7, "glove_char": 7})[2]
    assert "more invalid transitions than `glove_char` (9 against 3)" in invalid_transition_sentences(
        {"crf": 0, "crf_free": 9, "glove_char": 3})[2]
    bad = invalid_transition_sentences({"crf": 4, "crf_free": 9, "glove_char": 3})
    assert "`crf` outputs 4 invalid transitions although its constraints should make that impossible" in bad[1]
    old = invalid_transition_sentences({"crf": None, "crf_free": None, "glove_char": None})
    assert old == ["Invalid BIO transitions in the test predictions: `crf` n/a, `crf_free` n/a, the softmax tagger "
                   "`glove_char` n/a."]


def test_crf_init_statement_states_the_initialization_and_why():
    s = crf_init_statement(-1e4, ["crf", "crf_ln"], ["crf_free"])
    assert s[0].startswith("Chosen initialization (`crf`, `crf_ln`): every allowed transition score")
    assert "O → I-x, start → I-x, and B-x or I-x → I-y with y ≠ x" in s[0] and "-10000" in s[0]
    assert "non-trainable mask" in s[0]
    assert s[1].startswith("Why: with these scores the CRF can only output valid BIO paths")
    assert s[2].startswith("`crf_free` starts every transition at 0 with no mask: it must learn the BIO constraint")


# ----------------------------------------------------------------------------- header


def test_study_command_is_rebuilt_from_the_settings_without_absolute_paths():
    s = StudySettings(kind="ner", out="/abs/place/studies/ner", data="../shared/data/gmb/ner.csv.zip",
                      epochs=get_budget("ner", "cpu").epochs, budget="cpu", jobs=2,
                      extra_args=["--patience", "3", "--eval-every=50"])
    assert study_command(s) == ("normlab study ner --data ../shared/data/gmb/ner.csv.zip --out ner --budget cpu "
                                "--jobs 2 --run-arg=--eval-every=50")
    r = StudySettings(kind="resnet", out="studies/resnet", data="/abs/data/cifar10-jpeg.zip", epochs=5, budget="cpu",
                      seeds=2, sanity_seeds=3, limit_train=5000, small_batch_lr="same")
    assert study_command(r) == ("normlab study resnet --data cifar10-jpeg.zip --lr-scaling none --out "
                                "studies/resnet --budget cpu --epochs 5 --seeds 2 --limit-train 5000")
    plain = StudySettings(kind="resnet", out="s", data="cifar10", epochs=3)
    assert study_command(plain) == "normlab study resnet --data cifar10 --out s --epochs 3"


# ----------------------------------------------------------------------------- whole reports


SHA = "ab" * 32


def _summary(d: Path, **by_split):
    s = read_json(d / "summary.json")
    for split, vals in by_split.items():
        s["metrics"][split].update(vals)
    atomic_write_json(d / "summary.json", s)


def _config_data(d: Path, **data):
    c = read_json(d / "config.json")
    c["data"].update(data)
    atomic_write_json(d / "config.json", c)


def _quantiles(d: Path, per_epoch: list[tuple[float, float, float, float]]):
    lines = [json.loads(l) for l in (d / "metrics.jsonl").read_text().splitlines()]
    for rec, q in zip(lines, per_epoch):
        rec["quantiles"] = dict(zip(("q01", "q20", "q80", "q99"), q))
    (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))


def _study_json(root: Path, kind: str, **settings):
    s = StudySettings(kind=kind, out=str(root), **settings)  # an absolute out: the report must not print it
    grid = variants_for(kind)
    atomic_write_json(root / "study.json", {
        "kind": kind, "settings": s.to_dict(),
        "grid": [{"name": v.name, "label": v.label, "args": list(v.args), **v.settings} for v in grid],
        "variants_requested": [v.name for v in grid], "seeds": s.seed_list(), "left_out": {},
        "shortened": s.shortened()})
    return s


def _no_absolute_path(root: Path, *texts: str):
    for t in texts:
        t = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", t)
        assert str(root) not in t and str(root.parent) not in t
        assert not re.search(r"(?<![\w.])/(tmp|work|home|root|abs|Users)/", t), re.findall(r"/(?:tmp|work|home|abs)/\S*", t)


def test_resnet_report_end_to_end_answers_every_question(tmp_path):
    root = tmp_path / "study"
    rng = np.random.default_rng(1)
    settings = _study_json(root, "resnet", data="/abs/data/cifar10-jpeg.zip", budget="cpu",
                           epochs=get_budget("resnet", "cpu").epochs,
                           sanity_seeds=3)
    test_acc = {"torch_bn": [0.900, 0.910, 0.920], "bn": [0.905, 0.915, 0.925], "in": [0.88], "bin": [0.912],
                "ln": [0.89], "gn": [0.9155], "nn": [0.80], "bn_b8": [0.92], "gn_b8": [0.98]}
    ranges = {"bn": [(0, 0, 1, 1.0), (0, 0, 2, 2.5), (0, 0, 2, 3.0)], "nn": [(-1, 0, 2, 4.0), (-1, 0, 1, 3.0),
                                                                           (0, 0, 1, 2.0)]}
    for v in variants_for("resnet"):
        for seed in settings.seed_list(v.name):
            d = make_run(root, "resnet", v.name, seed, rng, epochs=3)
            _summary(d, test={"accuracy": test_acc[v.name][seed]})
            atomic_write_json(d / "summary.json", {**read_json(d / "summary.json"), "seconds": 60.0})
            _config_data(d, file={"path": "/abs/data/cifar10-jpeg.zip", "bytes": 123456, "sha256": SHA})
            if v.name in ranges:
                _quantiles(d, ranges[v.name])
            if v.name == "gn":
                _quantiles(d, [(0, 0, 1, 2.0)] * 3)
    (root / "events.jsonl").write_text(
        json.dumps({"run": "bn", "seed": 0, "seconds": 600.0, "started": "2026-01-02T10:00:00Z",
                    "finished": "2026-01-02T10:10:00Z"}) + "\n"
        + json.dumps({"run": "gn", "seed": 0, "seconds": 1200.0, "started": "2026-01-02T10:05:00Z",
                      "finished": "2026-01-02T12:05:00Z"}) + "\n")
    md_path, html_path = write_report(root)
    md, page = md_path.read_text(), html_path.read_text()
    for title in (SANITY_TITLE, SIX_TITLE, BATCH_TITLE, PERCENTILE_TITLE):
        assert f"## {title}" in md
    sec = lambda t: md[md.index("## " + t): md.index("\n## ", md.index("## " + t) + 3)]
    # each question opens with its figure
    for t, png in ((SANITY_TITLE, "report-sanity.png"), (SIX_TITLE, "report-six.png"),
                   (BATCH_TITLE, "report-batch.png"), (PERCENTILE_TITLE, "report-quantiles.png")):
        assert sec(t).split("\n\n")[1].endswith(f"({png})")
    sanity = sec(SANITY_TITLE)
    assert "| seed 1 | 91.00 | 91.50 |" in sanity
    assert "Test accuracy: `torch_bn` 91.00 ± 1.00% over 3 seeds (90.00, 91.00, 92.00)" in sanity
    assert "is within one standard deviation of both variants' seeds" in sanity
    six = sec(SIX_TITLE)
    assert "Ranked by mean test accuracy: 1. `gn` 91.55% = `bn` 91.50 ± 1.00% = `bin` 91.20% (tied within 0.1 " \
           "points)" not in six  # bin is 0.35 below gn: not tied
    assert "1. `gn` 91.55% = `bn` 91.50 ± 1.00% (tied within 0.1 points); 3. `bin` 91.20%; 4. `ln` 89.00%; " \
           "5. `in` 88.00%; 6. `nn` 80.00%." in six
    assert "`bin` (-0.30), `gn` (+0.05) are within the seed spread of `bn`" in six
    batch = sec(BATCH_TITLE)
    assert "`bn` is less sensitive to the batch size than `gn`: going from batch 128 to 8 its test accuracy " \
           "changes by 0.50 points (up), `gn`'s by 6.45 points (up), 5.95 points less." in batch
    assert "Both gained accuracy at batch 8" in batch and "does not bear out Wu & He's claim" in batch
    perc = md[md.index("## " + PERCENTILE_TITLE): md.index("## Appendix")]
    answer = next(l for l in perc.splitlines() if l.startswith("**Answer.**")).rstrip(".")
    clauses = {next(w for w in ("grew", "shrank", "same") if w in c.split(" for ")[0]): c for c in answer.split("; ")}
    assert "`bn` (1 → 3, 3.00×)" in clauses["grew"] and "`nn`" not in clauses["grew"]
    assert "`nn` (5 → 2, 0.40×)" in clauses["shrank"] and "`bn` (" not in clauses["shrank"]
    assert "`gn` (2 → 2, 1.00×)" in clauses["same"] and "stayed the same (within 1%)" in clauses["same"]
    # the shortened-budget caveat in every section, and the glance list links to each section
    assert md.count("**Caveat.**") == 4 and md.count("Shortened study (the 'cpu' budget") == 4
    assert "- [Batch size: is GN less sensitive than BN to batch 8 instead of 128?](#batch-size-is-gn-less-sensitive-" \
           "than-bn-to-batch-8-instead-of-128) `bn` is less sensitive" in md
    assert 'id="batch-size-is-gn-less-sensitive-than-bn-to-batch-8-instead-of-128"' in page
    assert '<a href="#batch-size-is-gn-less-sensitive-than-bn-to-batch-8-instead-of-128">' in page
    # header: budget, command, wall time, data files with size and hash, by file name only
    assert "**Budget:** `cpu`: every run on the full data" in md
    assert "**Command:** `normlab study resnet --data cifar10-jpeg.zip --out study --budget cpu`" in md
    assert "**Wall time:** 13 min (sum of the runs' times); 2 h 05 min from the first start to the last finish " \
           "(2026-01-02 10:00 to 2026-01-02 12:05 UTC)" in md
    assert f"**Data files:** `cifar10-jpeg.zip` (123,456 bytes, SHA-256 `{SHA}`)" in md
    assert "(torch_bn and bn: 0, 1, 2)" in md
    # the wide tables are in the appendix, after every answer
    assert md.index("## Appendix") < md.index("| variant | status |") and md.index("| run | train acc |") > 0
    _no_absolute_path(root, md, page)


def test_ner_report_end_to_end_answers_every_question(tmp_path):
    root = tmp_path / "study"
    rng = np.random.default_rng(2)
    settings = _study_json(root, "ner", data="/abs/gmb/ner_dataset.csv.zip", budget="cpu",
                           epochs=get_budget("ner", "cpu").epochs,
                           extra_args=["--patience", "3"])
    ent = {"random": 0.70, "random50": 0.72, "glove": 0.78, "glove_char": 0.82, "glove_char_ln": 0.8205,
           "crf": 0.85, "crf_ln": 0.84, "crf_free": 0.83}
    invalid = {"crf": 0, "crf_ln": 0, "crf_free": 11, "glove_char": 250}
    for v in variants_for("ner"):
        old = v.name == "random"  # an older run directory: no type F1, no invalid count
        d = make_run(root, "ner", v.name, 0, rng, epochs=3, old_ner=old,
                     config_extra={"crf": v.settings["crf"], "crf_constraints": v.settings.get("crf_constraints", True)})
        vals = {"entity_f1": ent[v.name]}
        if not old:
            vals.update(type_micro_f1=ent[v.name] + 0.02, invalid_transitions=invalid.get(v.name, 100))
        _summary(d, test=vals)
        _config_data(d, files=[{"path": "/abs/gmb/ner_dataset.csv.zip", "bytes": 3319491, "sha256": SHA}],
                     embeddings={"source": "glove-6b-50d", "dim": 50, "file": "/abs/emb/glove_6B_50d.npy"})
    md_path, html_path = write_report(root)
    md, page = md_path.read_text(), html_path.read_text()
    sec = lambda t: md[md.index("## " + t): md.index("\n## ", md.index("## " + t) + 3)]
    pre = sec("Pretrained against random embeddings")
    assert "`glove` beats `random50` by 6.00 points on test entity F1 (78.00% against 72.00%). On test type-token " \
           "micro F1, `glove` beats `random50` by 6.00 points (80.00% against 74.00%)." in pre
    assert "`glove` beats `random` by 8.00 points on test entity F1" in pre
    assert "Test type-token micro F1: n/a (not recorded by these runs)." in pre  # glove vs the old random run
    assert "n/a" in next(l for l in pre.splitlines() if l.startswith("| random | 1 |"))
    assert "`glove_char` beats `glove` by 4.00 points on test entity F1" in sec("Characters")
    ln = sec("Layer norm")
    assert "`glove_char_ln` and `glove_char` tie on test entity F1" in ln
    assert "`crf_ln` trails `crf` by 1.00 points on test entity F1" in ln
    assert "`crf` beats `glove_char` by 3.00 points on test entity F1" in sec("CRF against softmax")
    init = md[md.index("## " + INIT_TITLE): md.index("## Appendix")]
    assert "Invalid BIO transitions in the test predictions: `crf` 0, `crf_free` 11, the softmax tagger " \
           "`glove_char` 250." in init
    assert "| crf | CRF | yes | 0 |" in init and "| crf_free | CRF | no | 11 |" in init
    assert "| glove_char | softmax | – | 250 |" in init
    assert "Chosen initialization (`crf`, `crf_ln`)" in init and "`crf_free` starts every transition at 0" in init
    assert "`crf` beats `crf_free` by 2.00 points on test entity F1" in init
    assert md.count("**Caveat.**") == 5
    assert "**Command:** `normlab study ner --data ner_dataset.csv.zip --out study --budget cpu`" in md
    assert f"`ner_dataset.csv.zip` (3,319,491 bytes, SHA-256 `{SHA}`)" in md
    assert "glove_6B_50d.npy" in md and "/abs/emb" not in md
    # the wide table shows n/a for the old run's missing metrics, numbers for the others
    row = next(l for l in md.splitlines() if l.startswith("| random | finished"))
    assert row.count("n/a") == 2
    _no_absolute_path(root, md, page)


def test_runner_times_are_read_back_as_the_span():
    from normlab.study.report_header import _time
    from normlab.study.backends import utc as _utc

    assert _utc(0) == "1970-01-01T00:00:00Z"
    assert _time(_utc(1_700_000_000)).timestamp() == 1_700_000_000
    assert _time("garbage") is None and _time(None) is None


def test_wall_time_and_data_files_without_runner_times(tmp_path):
    root = tmp_path / "s"
    rng = np.random.default_rng(0)
    d = make_run(root, "resnet", "bn", 0, rng)
    _config_data(d, file={"path": "data/cifar.zip", "bytes": 10, "sha256": SHA})
    study = load_study(root)
    assert wall_time_line(study).startswith("**Wall time:**") and "first start" not in wall_time_line(study)
    assert data_files(study) == [f"`data/cifar.zip` (10 bytes, SHA-256 `{SHA}`)"]


def test_header_command_names_every_variant_requested_over_all_invocations(tmp_path):
    """--variants may change between invocations: the header shows the union, or none once it is the grid."""
    root = tmp_path / "study"
    _study_json(root, "resnet", data="cifar10-jpeg.zip", budget="cpu", epochs=20, variants=["bn", "gn"])
    saved = read_json(root / "study.json")
    assert load_study(root).settings.variants is None  # variants_requested is the whole grid
    saved["variants_requested"] = ["torch_bn", "bn", "gn"]
    atomic_write_json(root / "study.json", saved)
    assert study_command(load_study(root).settings).endswith("--variants torch_bn bn gn")


def test_percentile_answer_counts_finished_runs_only(tmp_path):
    """A run in progress shows in the table with its epochs so far, but the answer is about whole runs."""
    root = tmp_path / "study"
    rng = np.random.default_rng(2)
    _study_json(root, "resnet", data="cifar10-jpeg.zip", budget="cpu", epochs=3, sanity_seeds=1)
    done = make_run(root, "resnet", "bn", 0, rng, epochs=3)
    _quantiles(done, [(0, 0, 1, 1.0), (0, 0, 1, 2.0), (0, 0, 1, 3.0)])  # grew
    running = make_run(root, "resnet", "gn", 0, rng, epochs=2, finished=False)
    _quantiles(running, [(0, 0, 1, 4.0), (0, 0, 1, 1.0)])  # shrinking so far
    from normlab.study.answers_resnet import percentile_ranges
    study = load_study(root)
    _, rows, ranges = percentile_ranges(study, ["bn", "gn"])
    assert set(ranges) == {"bn"} and ranges["bn"] == (1.0, 3.0)
    gn_row = next(r for r in rows if r[0] == "gn")
    assert gn_row[1] == "1–2 (not finished)" and gn_row[-1] == "–"
    assert "`gn`" not in " ".join(percentile_verdict(ranges).answer) and "`bn` (1 → 3" in percentile_verdict(ranges).answer[0]
