"""The report's answers: every computed sentence for every sign, tie and missing run, with hand-made numbers,
and whole reports built from hand-made run directories whose right answers are known."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from normlab.files import atomic_write_json, read_json
from normlab.report.common import Measured, ranking, ranking_sentence
from normlab.report.stats import pooled_spread
from normlab.report.answers_ner import (INIT_TITLE, crf_init_statement, invalid_transition_sentences,
                                       ner_pair_sentences)
from normlab.report.answers_resnet import (BATCH_TITLE, PERCENTILE_TITLE, SANITY_TITLE, SIX_TITLE, gn_claim_sentence,
                                          inner_extremes, less_sensitive, percentile_verdict, range_change,
                                          sanity_verdict, sensitivity_verdict, six_way_verdict, trajectory_phrase)
from normlab.study.budgets import get_budget
from normlab.study.grids import NER_RESCALED, variants_for
from normlab.study.settings import StudySettings
from normlab.report.write import load_study, write_report
from normlab.report.header import data_files, study_command, wall_time_line

from test_report import make_run


def M(name, *vals):
    return Measured.of(name, vals)


# ----------------------------------------------------------------------------- comparisons


def test_ranking_shares_a_rank_only_for_means_equal_as_shown():
    items = [M("c", 0.85), M("a", 0.90), M("e", 0.80), M("b", 0.90001), M("d", 0.8502), M("x")]
    groups = ranking(items)
    assert [(r, [m.name for m in ms]) for r, ms in groups] == [(1, ["b", "a"]), (3, ["d"]), (4, ["c"]), (5, ["e"])]
    s = ranking_sentence(items, "accuracy")
    assert s.startswith("Ranked by mean test accuracy: 1. `b` 90.00% = `a` 90.00% (equal as shown); 3. `d` 85.02%; "
                        "4. `c` 85.00%; 5. `e` 80.00%.")
    assert s.endswith("No value for `x`.")
    assert ranking_sentence([M("a")], "accuracy") == "No variant has a test accuracy yet."


# ----------------------------------------------------------------------------- sanity check


def test_sanity_interval_covering_0_and_within_the_margin_is_a_match():
    v = sanity_verdict(M("torch_bn", 0.900, 0.910, 0.920), M("bn", 0.9005, 0.9105, 0.9205))
    assert v.answer[0] == ("Test accuracy: `torch_bn` 91.00 ± 1.00% over 3 seeds (90.00, 91.00, 92.00); "
                           "`bn` 91.05 ± 1.00% over 3 seeds (90.05, 91.05, 92.05).")
    assert "a difference of +0.05 points, 95% interval -2.22 to +2.32 points (Welch t-interval, n = 3 and 3 seeds" \
           in v.answer[1] and v.answer[1].endswith("no detectable difference (the interval covers 0).")
    # covers 0 but reaches past 1 point: no detectable difference, and no shown agreement either
    assert "cannot show agreement to 1 point" in v.headline
    tight = sanity_verdict(M("torch_bn", 0.910, 0.911, 0.912), M("bn", 0.9105, 0.9115, 0.9125))
    assert tight.headline == ("`bn` matches `torch_bn` within seed noise, and the interval lies within ±1 point, the "
                              "agreement the sanity check asks for.")


def test_sanity_interval_above_or_below_0_fails_the_check():
    below = sanity_verdict(M("torch_bn", 0.91, 0.912, 0.914), M("bn", 0.88, 0.882, 0.884))
    assert below.answer[1].endswith("`bn` is lower.")
    assert below.headline == "`bn` and `torch_bn` differ by more than seed noise (`bn` is lower): the sanity check " \
                             "is not met."
    above = sanity_verdict(M("torch_bn", 0.88, 0.882, 0.884), M("bn", 0.91, 0.912, 0.914))
    assert "(`bn` is higher)" in above.headline


def test_sanity_one_seed_has_no_interval_and_uses_the_study_spread():
    v = sanity_verdict(M("torch_bn", 0.91), M("bn", 0.905))
    assert "no interval exists: `bn` and `torch_bn` have one seed (n = 1)" in v.answer[1]
    assert "This study has no variant with repeated seeds, so its seed noise is unmeasured" in v.answer[1]
    assert "cannot be told" in v.headline
    spread = pooled_spread([M("x", 0.90, 0.91, 0.92)])  # 1.00 points, 2 df
    near = sanity_verdict(M("torch_bn", 0.90, 0.91, 0.92), M("bn", 0.915), spread)
    assert "no interval exists: `bn` has one seed (n = 1)" in near.answer[1]
    assert "judged against the study's seed spread" in near.headline
    far = sanity_verdict(M("torch_bn", 0.90, 0.91, 0.92), M("bn", 0.99), spread)
    assert "is larger than that" in far.answer[1] and "the sanity check is not met" in far.headline
    assert sanity_verdict(M("torch_bn", 0.9), M("bn")).answer == [
        "Cannot compare `bn` with `torch_bn` on test accuracy: `bn` has no value."]


def test_six_way_verdict_ranks_and_sets_each_variant_against_bn_with_its_interval():
    items = [M("bn", 0.90, 0.91, 0.92), M("in", 0.905), M("bin", 0.90, 0.901, 0.902), M("ln", 0.87),
             M("gn", 0.913), M("nn", 0.80)]
    spread = pooled_spread(items)
    v = six_way_verdict(items, spread=spread)
    assert v.answer[0].startswith("Ranked by mean test accuracy: 1. `gn` 91.30%; 2. `bn` 91.00 ± 1.00%; 3. `in` 90.50%")
    assert "no detectable difference: `in` -0.50 (one seed: no interval; seed noise ±" in v.answer[1]
    assert "`bin` -0.90 [" in v.answer[1]  # both sides with seeds: the interval itself
    assert "detectably below `bn`: `ln` -4.00 (one seed" in v.answer[1] and "`nn` -11.00" in v.answer[1]
    assert "detectably above" not in v.answer[1]
    unmeasured = six_way_verdict([M("bn", 0.9), M("gn", 0.95)])
    assert "undetermined (seed noise unmeasured): `gn` +5.00 (one seed: no interval)" in unmeasured.answer[1]


# ----------------------------------------------------------------------------- batch size

B3 = lambda name, c: M(name, c - 0.001, c, c + 0.001)  # three seeds, std 0.10 points


def test_sensitivity_bn_degrades_gn_holds_agrees_with_wu_and_he():
    v = sensitivity_verdict("bn", B3("bn", 0.90), B3("bn_b8", 0.85), "gn", B3("gn", 0.88), B3("gn_b8", 0.8801))
    assert v.answer[0].startswith("Going from batch 128 to 8: `bn`: 90.00 ± 0.10% at batch 128, 85.00 ± 0.10% at "
                                  "batch 8, a change of -5.00 points (95% interval")
    assert "; down)" in v.answer[0] and "no detectable change)" in v.answer[0]
    assert v.headline == "`gn` is less sensitive to the batch size than `bn`: its change is not detectable, `bn`'s " \
                         "(-5.00 points) is."
    w = less_sensitive("bn", B3("bn", 0.90), B3("bn_b8", 0.85), "gn", B3("gn", 0.88), B3("gn_b8", 0.8801))
    assert w == "gn" and gn_claim_sentence(w).startswith("This agrees with Wu & He's claim")


def test_sensitivity_both_change_the_smaller_change_wins_whatever_its_sign():
    # both moved up, GN more: BN is the less sensitive one (the bug of issue 7)
    v = sensitivity_verdict("bn", B3("bn", 0.85), B3("bn_b8", 0.86), "gn", B3("gn", 0.88), B3("gn_b8", 0.95))
    assert v.headline.startswith("`bn` is less sensitive to the batch size than `gn`: its change (+1.00 points) is "
                                 "smaller in size than `gn`'s (+7.00), by 6.00 points (95% interval")
    # one up, one down: sizes compared
    mixed = sensitivity_verdict("bn", B3("bn", 0.90), B3("bn_b8", 0.85), "gn", B3("gn", 0.88), B3("gn_b8", 0.90))
    assert mixed.headline.startswith("`gn` is less sensitive") and \
        "`gn` gained and `bn` lost accuracy at batch 8" in mixed.answer[2]
    assert gn_claim_sentence("bn").startswith("This does not bear out Wu & He's claim")
    assert gn_claim_sentence("gn").startswith("This agrees with Wu & He's claim")
    assert gn_claim_sentence("").startswith("Neither supports nor contradicts")
    assert gn_claim_sentence(None) is None
    # a run with one seed: the sentence is provisional, as the claims table's "inconclusive" is
    one = gn_claim_sentence("bn", ["gn_b8"])
    assert one.startswith("Judged against the seed spread, this does not bear out Wu & He's claim") and \
        "`gn_b8` has one seed, so no interval exists and the claim stays inconclusive" in one
    assert "`bn_b8`, `gn_b8` have one seed" in gn_claim_sentence("gn", ["bn_b8", "gn_b8"])


def test_sensitivity_ties_and_undetectable_changes_tell_nothing():
    same = sensitivity_verdict("bn", B3("bn", 0.90), B3("bn_b8", 0.88), "gn", B3("gn", 0.88), B3("gn_b8", 0.90))
    assert same.headline.startswith("Both changed, by sizes that do not differ detectably") or \
        "equally sensitive" in same.headline
    assert less_sensitive("bn", B3("bn", 0.90), B3("bn_b8", 0.88), "gn", B3("gn", 0.88), B3("gn_b8", 0.90)) == ""
    flat = sensitivity_verdict("bn", B3("bn", 0.90), B3("bn_b8", 0.9001), "gn", B3("gn", 0.88), B3("gn_b8", 0.8801))
    assert flat.headline.startswith("Neither `bn` nor `gn` changed detectably")
    assert gn_claim_sentence("").startswith("Neither supports nor contradicts")


def test_sensitivity_missing_runs_and_one_seed():
    v = sensitivity_verdict("bn", M("bn", 0.90), M("bn_b8", 0.80), "gn", M("gn", 0.88), M("gn_b8"))
    assert v.answer[1] == "Cannot say which is less sensitive to the batch size: a run is missing."
    assert "`gn`: no finished run at batch 8" in v.answer[0]
    one = sensitivity_verdict("bn", M("bn", 0.90), M("bn_b8", 0.80), "gn", M("gn", 0.88), M("gn_b8", 0.87))
    assert one.answer[1] == "Cannot say which is less sensitive to the batch size: one seed per run and no measured " \
                            "seed spread."
    assert less_sensitive("bn", M("bn", 0.9), M("bn_b8", 0.8), "gn", M("gn", 0.9), M("gn_b8", 0.9)) is None
    assert gn_claim_sentence(None) is None
    spread = pooled_spread([B3("torch_bn", 0.9)])
    judged = sensitivity_verdict("bn", B3("bn", 0.90), M("bn_b8", 0.80), "gn", B3("gn", 0.88), M("gn_b8", 0.8805),
                                 spread)
    assert judged.headline.startswith("`gn` is less sensitive") and "seed noise ±" in judged.answer[0]
    assert judged.caveats == ["A side with one seed has no interval; its change is judged against the study's "
                              "measured seed spread."]


# ----------------------------------------------------------------------------- percentiles


def test_range_change_grew_shrank_unchanged():
    assert range_change(1.0, 2.0) == "grew"
    assert range_change(2.0, 1.0) == "shrank"
    assert range_change(1.0, 1.005) == "unchanged" and range_change(1.005, 1.0) == "unchanged"
    assert range_change(0.0, 0.0) == "unchanged"


def test_percentile_verdict_describes_each_trajectory():
    v = percentile_verdict({"bn": [(1, 1.0), (2, 2.0), (3, 3.0)], "ln": [(1, 1.87), (5, 1.24), (20, 1.80)],
                            "nn": [(1, 1.0), (2, 2.5), (3, 2.0)], "gn": [(1, 2.0), (2, 2.01)]})
    assert v.answer[0] == ("From the first to the last epoch, the range between the 1st and 99th percentiles of the "
                           "penultimate features grew for `bn`, `nn`; shrank for `ln`; stayed the same (within 1%) "
                           "for `gn`.")
    assert v.answer[1].startswith("Not monotonically: `ln`, `nn` turned on the way")
    assert "`ln` 1.87 at epoch 1, down to 1.24 at epoch 5, back up to 1.8 at epoch 20 (0.96× the start)" in v.answer[2]
    assert "`nn` 1 at epoch 1, up to 2.5 at epoch 2, back down to 2 at epoch 3 (2.00× the start)" in v.answer[2]
    assert "`bn` 1 at epoch 1, up to 3 at epoch 3 (3.00× the start)" in v.answer[2]
    only_shrink = percentile_verdict({"in": [(1, 5.0), (2, 1.0)]})
    assert "shrank for `in`" in only_shrink.answer[0] and "grew" not in only_shrink.answer[0]
    assert "Not monotonically" not in " ".join(only_shrink.answer)
    assert percentile_verdict({}).answer == ["No variant has logged feature percentiles yet."]


def test_trajectory_names_both_inner_extremes_in_epoch_order():
    assert trajectory_phrase("x", [(1, 2.0), (2, 3.0), (3, 1.0), (4, 2.0)]) == \
        "`x` 2 at epoch 1, up to 3 at epoch 2, down to 1 at epoch 3, back up to 2 at epoch 4 (1.00× the start)"
    assert inner_extremes([(1, 2.0), (2, 2.01), (3, 2.0)]) == []  # within 1% of the ends: no turn
    assert trajectory_phrase("y", [(1, 0.0), (2, 1.0)]) == "`y` 0 at epoch 1, up to 1 at epoch 2"


# ----------------------------------------------------------------------------- NER


def test_ner_pair_intervals_above_below_covering_and_one_seed():
    up = ner_pair_sentences(M("glove", 0.80, 0.81, 0.82), M("random50", 0.75, 0.76, 0.77),
                            M("glove", 0.85, 0.86, 0.87), M("random50", 0.84, 0.85, 0.86))
    assert up.answer[0] == ("`glove` against `random50` on test entity F1: 81.00 ± 1.00% against 76.00 ± 1.00%, a "
                            "difference of +5.00 points, 95% interval +2.73 to +7.27 points (Welch t-interval, n = 3 "
                            "and 3 seeds, 4.0 degrees of freedom): `glove` is higher.")
    assert up.answer[1].endswith("no detectable difference (the interval covers 0).")
    down = ner_pair_sentences(M("a", 0.75, 0.76, 0.77), M("b", 0.80, 0.81, 0.82), M("a"), M("b"))
    assert down.answer[0].endswith("`a` is lower.")
    assert down.answer[1] == "Test type-token micro F1: n/a (not recorded by these runs)."
    one = ner_pair_sentences(M("a", 0.80), M("b", 0.75), M("a", 0.8), M("b", 0.7))
    assert "no interval exists: `a` and `b` have one seed (n = 1). This study has no variant with repeated seeds" \
           in one.answer[0]
    assert "This study" not in one.answer[1]  # said once
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
                      overrides={**get_budget("ner", "cpu").overrides, "eval_every": 50, "device_name": "1", "tag": "x y"})
    assert study_command(s) == ("normlab study ner --data ../shared/data/gmb/ner.csv.zip --out ner --budget cpu "
                                "--jobs 2 --set eval_every=50 --set 'device_name=\"1\"' --set 'tag=x y'")
    # a study saved before runs were data: its flags beyond the budget's, as they were given
    old = StudySettings.from_dict({**s.to_dict(), "overrides": {}, "legacy_run_args": [],
                                   "extra_args": ["--patience", "5", "--min-delta", "0.002", "--eval-every=50"]})
    assert study_command(old).endswith("--budget cpu --jobs 2 --run-arg=--eval-every=50")
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
        "grid": [v.record() for v in grid],
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
    assert "a difference of +0.50 points, 95% interval -1.77 to +2.77 points (Welch t-interval, n = 3 and 3 seeds" \
           in sanity and "these seeds cannot show agreement to 1 point" in sanity
    six = sec(SIX_TITLE)
    assert "1. `gn` 91.55%; 2. `bn` 91.50 ± 1.00%; 3. `bin` 91.20%; 4. `ln` 89.00%; 5. `in` 88.00%; 6. `nn` 80.00%." in six
    # pooled spread of torch_bn and bn: 1.00 points, 4 df; one seed against three: ±2.776 * sqrt(4/3) = ±3.21
    assert "detectably below `bn`: `in` -3.50 (one seed: no interval; seed noise ±3.21), `nn` -11.50" in six
    assert "no detectable difference: `bin` -0.30 (one seed: no interval; seed noise ±3.21), `ln` -2.50" in six
    assert "standard deviation 1.00 points pooled over `torch_bn`, `bn`; 4 degrees of freedom" in six
    batch = sec(BATCH_TITLE)
    assert "`bn` is less sensitive to the batch size than `gn`: its change is not detectable, `gn`'s (+6.45 points) " \
           "is." in batch
    assert "does not bear out Wu & He's claim" in batch
    perc = md[md.index("## " + PERCENTILE_TITLE): md.index("## Appendix")]
    answer = next(l for l in perc.splitlines() if l.startswith("**Answer.**"))
    assert "grew for `bn`," in answer and "shrank for `torch_bn`, `in`, `bin`, `nn`;" in answer
    assert "stayed the same (within 1%) for `gn`." in answer
    assert "`bn` 1 at epoch 1, up to 3 at epoch 3 (3.00× the start)" in answer
    assert "`nn` 5 at epoch 1, down to 2 at epoch 3 (0.40× the start)" in answer
    assert "`gn` 2 at epoch 1, 2 at epoch 3 (1.00× the start)" in answer
    # the shortened-budget caveat in every section, and the glance list links to each section
    assert md.count("Shortened study (the 'cpu' budget") == 6  # the four questions and the two GN anomaly sections
    assert "- [Batch size: is GN less sensitive than BN to batch 8 instead of 128?](#batch-size-is-gn-less-sensitive-" \
           "than-bn-to-batch-8-instead-of-128) `bn` is less sensitive" in md
    assert 'id="batch-size-is-gn-less-sensitive-than-bn-to-batch-8-instead-of-128"' in page
    assert '<a href="#batch-size-is-gn-less-sensitive-than-bn-to-batch-8-instead-of-128">' in page
    # header: budget, command, wall time, data files with size and hash, by file name only
    assert "**Budget:** `cpu`: every run on the full data" in md
    assert "**Command:** `normlab study resnet --data cifar10-jpeg.zip --out study --budget cpu`" in md
    # 11 runs by their own summary times (60 s each), two by the runner's: 11 min + 10 min + 20 min
    assert "**Wall time:** 41 min summed over the runs and all their attempts (2 attempts of 13 runs); the longest " \
           "run, `gn/seed0`, took 20 min (its first epoch 2 s); 2 h 05 min from the first start to the last finish " \
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
                           overrides=dict(get_budget("ner", "cpu").overrides))
    ent = {"random": 0.70, "random50": 0.72, "glove": 0.78, "glove_char": 0.82, "glove_char_ln": 0.8205,
           "crf": 0.85, "crf_ln": 0.84, "crf_free": 0.83}
    invalid = {"crf": 0, "crf_ln": 0, "crf_free": 11, "glove_char": 250}
    # the rescaled-GloVe setup: one point above each raw variant, its own invalid counts
    ent.update({NER_RESCALED[n]: ent[n] + 0.01 for n in NER_RESCALED})
    invalid.update(crf_small=0, crf_ln_small=0, crf_free_small=5, glove_char_small=200)
    for v in variants_for("ner"):
        old = v.name == "random"  # an older run directory: no type F1, no invalid count
        d = make_run(root, "ner", v.name, 0, rng, epochs=3, old_ner=old,
                     config_extra={"crf": v.overrides["crf"], "crf_constraints": v.overrides.get("crf_constraints", True)})
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
    assert "`glove` against `random50` on test entity F1: 78.00% against 72.00%, a difference of +6.00 points; no " \
           "interval exists: `glove` and `random50` have one seed (n = 1). This study has no variant with repeated " \
           "seeds, so its seed noise is unmeasured and this difference cannot be told from it." in pre
    assert "`glove` against `random` on test entity F1: 78.00% against 70.00%, a difference of +8.00 points" in pre
    assert "Equal training: every run compared stopped at the same point (`glove` cap (150 updates); `random50` cap " \
           "(150 updates))." in pre
    assert "Test type-token micro F1: n/a (not recorded by these runs)." in pre  # glove vs the old random run
    assert "n/a" in next(l for l in pre.splitlines() if l.startswith("| random | 1 |"))
    assert "`glove_char` against `glove` on test entity F1: 82.00% against 78.00%, a difference of +4.00 points" \
           in sec("Characters")
    ln = sec("Layer norm")
    assert "`glove_char_ln` against `glove_char` on test entity F1: 82.05% against 82.00%, a difference of +0.05" in ln
    assert "`crf_ln` against `crf` on test entity F1: 84.00% against 85.00%, a difference of -1.00 points" in ln
    assert "`crf` against `glove_char` on test entity F1: 85.00% against 82.00%, a difference of +3.00" \
           in sec("CRF against softmax")
    # each question on both setups, the rescaled one first
    pre_first = pre.index("`glove_small` against `random50` on test entity F1: 79.00% against 72.00%, a difference "
                          "of +7.00 points")
    assert pre_first < pre.index("`glove` against `random50` on test entity F1") and "Two setups: GloVe rescaled" in pre
    # the first pair is the answer's paragraph, each further pair one bullet below it
    answer = next(l for l in pre.splitlines() if l.startswith("**Answer.**"))
    assert answer.startswith("**Answer.** `glove_small` against `random50` on test entity F1") and " `glove` " not in answer
    bullets = [l for l in pre.splitlines() if l.startswith("- ")]
    assert [b.split(" on test")[0] for b in bullets] == ["- `glove_small` against `random`", "- `glove` against `random50`",
                                                          "- `glove` against `random`"]
    assert "`crf_small` against `glove_char_small` on test entity F1: 86.00% against 83.00%" in sec("CRF against")
    assert "| A CRF layer helps, on GloVe rescaled | Lample et al. 2016 | `crf_small` − `glove_char_small` test " \
           "entity F1: +3.00" in md
    assert "| A CRF layer helps, on GloVe as published | Lample et al. 2016 | `crf` − `glove_char` test entity F1: " \
           "+3.00" in md
    init = md[md.index("## " + INIT_TITLE): md.index("## Appendix")]
    assert "Invalid BIO transitions in the test predictions: `crf_small` 0, `crf_free_small` 5, the softmax tagger " \
           "`glove_char_small` 200." in init
    assert "`crf_small` against `crf_free_small` on test entity F1: 86.00% against 84.00%" in init
    assert "Invalid BIO transitions in the test predictions: `crf` 0, `crf_free` 11, the softmax tagger " \
           "`glove_char` 250." in init
    assert "| crf | CRF | yes | 0 |" in init and "| crf_free | CRF | no | 11 |" in init
    assert "| glove_char | softmax | – | 250 |" in init
    assert "Chosen initialization (`crf`, `crf_ln`, `crf_small`, `crf_ln_small`)" in init and "`crf_free`, `crf_free_small` start every transition at 0 with no mask: they must" in init
    assert "`crf` against `crf_free` on test entity F1: 85.00% against 83.00%, a difference of +2.00 points" in init
    # the counts are the answer; the entity-F1 cost of the constraint, one bullet per setup
    assert [l.split(" on test")[0] for l in sec(INIT_TITLE).splitlines() if l.startswith("- ")] == [
        "- `crf_small` against `crf_free_small`", "- `crf` against `crf_free`"]
    # the cpu budget trains NER to a plateau, the study's own length: no shortened-study caveat or banner
    assert "**Caveat.**" not in md and "SHORTENED" not in md
    assert "**Command:** `normlab study ner --data ner_dataset.csv.zip --out study --budget cpu`" in md
    assert f"`ner_dataset.csv.zip` (3,319,491 bytes, SHA-256 `{SHA}`)" in md
    assert "glove_6B_50d.npy" in md and "/abs/emb" not in md
    # the wide table shows n/a for the old run's missing metrics, numbers for the others
    row = next(l for l in md.splitlines() if l.startswith("| random | finished"))
    assert row.count("n/a") == 2
    _no_absolute_path(root, md, page)


def test_runner_times_are_read_back_as_the_span():
    from normlab.report.header import _time
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
    from normlab.report.answers_resnet import percentile_ranges
    study = load_study(root)
    _, rows, ranges = percentile_ranges(study, ["bn", "gn"])
    assert set(ranges) == {"bn"} and ranges["bn"] == [(1.0, 1.0), (2.0, 2.0), (3.0, 3.0)]
    gn_row = next(r for r in rows if r[0] == "gn")
    assert gn_row[1] == "1–2 (not finished)" and gn_row[-1] == "–"
    assert "`gn`" not in " ".join(percentile_verdict(ranges).answer) and "`bn` 1 at epoch 1, up to 3 at epoch 3" in percentile_verdict(ranges).answer[-1]


def test_a_question_answers_on_the_rescaled_setup_first_only_once_its_runs_exist(tmp_path):
    from normlab.report.answers_ner import RESCALED_LATER_NOTE, RESCALED_NOTE, with_rescaled

    rng = np.random.default_rng(0)
    for name in ("glove", "random50", "glove_small"):
        make_run(tmp_path, "ner", name, 0, rng, epochs=2)
    study = load_study(tmp_path)  # no study.json: today's grid, which has the rescaled variants
    pairs, names, notes = with_rescaled(study, [("glove", "random50")], ["random50", "glove"])
    assert pairs == [("glove_small", "random50"), ("glove", "random50")] and notes == [RESCALED_NOTE]
    assert names == ["random50", "glove", "glove_small"]
    pairs, _, notes = with_rescaled(study, [("glove_char", "glove")], ["glove", "glove_char"])
    assert pairs == [("glove_char", "glove"), ("glove_char_small", "glove_small")]  # glove_char_small never ran
    assert notes == [RESCALED_LATER_NOTE]
