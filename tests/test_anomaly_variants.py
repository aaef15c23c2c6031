"""The anomaly experiments: grid entries run only when named, their run commands, and --embedding-std."""

from __future__ import annotations

import pytest
import torch

from normlab import files
from normlab.cli import main
from normlab.study.runs import run_config
from normlab.study.settings import StudySettings
from normlab.study.grids import (GLOVE_6B_50D_STD, RANDOM_50D_STD, anomaly_variants,
                                 select_variants, variants_for)
from normlab.train import ner, rundir

from test_train_ner import tiny_cfg, tiny_data  # noqa: F401 (a fixture)


def test_anomaly_variants_are_not_in_the_default_grid_but_can_be_named():
    for kind in ("resnet", "ner"):
        default = {v.name for v in variants_for(kind)}
        extra = {v.name for v in anomaly_variants(kind)}
        assert extra and not extra & default
        assert {v.name for v in select_variants(kind, None)} == default
        assert [v.name for v in select_variants(kind, sorted(extra))] == [v.name for v in anomaly_variants(kind)]
    assert {v.name for v in anomaly_variants("resnet")} == {"gn_g2", "gn_g4", "gn_g16", "ln_lr05", "gn_lr05",
                                                            "in_lr05", "gn_long"}
    with pytest.raises(ValueError, match="expected variants among .*gn_g16.*, got gn_g3"):
        select_variants("resnet", ["gn_g3"])


def test_anomaly_run_configs_carry_their_own_settings():
    s = StudySettings(kind="resnet", out="o", data="cifar.zip", epochs=20, variants=["gn_g2", "ln_lr05"])
    s.validate()
    g2, lr = select_variants("resnet", s.variants)
    assert (run_config(s, g2, 0).gn_groups, run_config(s, g2, 0).norm) == (2, "gn")
    assert run_config(s, lr, 0).lr == 0.05
    n = StudySettings(kind="ner", out="o", data="gmb.csv", embeddings="glove-6b-50d",
                      variants=["glove_small", "random50_large", "glove_few", "random50_few"])
    n.validate()
    small, large, few, few_r = (run_config(n, v, 0, check_files=False) for v in select_variants("ner", n.variants))
    assert small.embedding_std == RANDOM_50D_STD and small.embeddings == "glove-6b-50d"
    assert large.embedding_std == GLOVE_6B_50D_STD and large.embeddings is None
    assert few.limit_train == 3000 and few_r.embeddings is None


def test_gn_long_trains_twice_the_study_epochs_and_keeps_its_factor_in_study_json(tmp_path):
    s = StudySettings(kind="resnet", out="o", data="cifar.zip", epochs=20, variants=["gn", "gn_long"])
    gn, long = select_variants("resnet", s.variants)
    assert (run_config(s, gn, 0).epochs, run_config(s, long, 0).epochs) == (20, 40)
    assert run_config(s, long, 0).norm == "gn" and run_config(s, long, 0).batch_size == 128
    full = StudySettings(kind="resnet", out="o", data="cifar.zip", variants=["gn_long"])  # the config's own 100
    assert run_config(full, long, 0).epochs == 200
    assert long.record()["epochs_factor"] == 2 and "epochs_factor" not in gn.record()
    # a saved grid whose gn_long trained another length is another experiment: refused, naming the variant
    from normlab.study.runner import _check_grid

    _check_grid(tmp_path / "study.json", [long.record(), gn.record()], s)
    with pytest.raises(ValueError, match="variant gn_long ran with"):
        _check_grid(tmp_path / "study.json", [{**long.record(), "epochs_factor": 3}], s)


def test_embedding_std_rescales_the_initial_vectors(tiny_data, tmp_path, monkeypatch):  # noqa: F811
    seen = {}
    real = ner.BiLSTMTagger

    class Spy(real):
        def __init__(self, **kw):
            super().__init__(**kw)
            seen["model"] = self

    monkeypatch.setattr(ner, "BiLSTMTagger", Spy)
    init = {}
    orig_save = rundir.atomic_torch_save

    def save(obj, path):  # the first checkpoint holds the weights after at most a few updates; keep the config
        init.setdefault("cfg", files.read_json(tmp_path / "r" / files.CONFIG))
        return orig_save(obj, path)

    monkeypatch.setattr(rundir, "atomic_torch_save", save)
    ner.fit(tiny_cfg(tiny_data, tmp_path / "r", epochs=1, embedding_std=0.5, lr=1e-12, dropout=0.0), progress=False)
    w = seen["model"].word_embed.weight.detach()
    pad = 0  # <pad> is the first entry of the word vocabulary
    assert float(w[1:].std()) == pytest.approx(0.5, rel=1e-3)  # lr 1e-12: the weights are the initial ones
    assert torch.all(w[pad] == 0) or float(w[pad].abs().max()) < 1
    emb = init["cfg"]["data"]["embeddings"]
    assert emb["std_before_rescaling"] == pytest.approx(1 / 12 ** 0.5, rel=0.1)  # uniform +-sqrt(3/12)
    assert init["cfg"]["config"]["embedding_std"] == 0.5


@pytest.mark.parametrize("value", ["0", "-1", "nan"])
def test_embedding_std_refuses_bad_values(tiny_data, tmp_path, value, capsys):  # noqa: F811
    try:
        rc = main(["ner", "train", "--data", *tiny_data, "--embedding-std", value, "--out", str(tmp_path / "r")])
    except SystemExit as e:  # argparse refuses a non-finite number itself
        rc = e.code
    assert rc == 2
    assert "--embedding-std" in capsys.readouterr().err


# ----------------------------------------------------------------------------- the report's sections

import numpy as np  # noqa: E402

from normlab.files import atomic_write_json, read_json  # noqa: E402
from normlab.report.anomalies import (GLOVE_TITLE, GN_TITLE, Test, glove_section, gn_section,  # noqa: E402
                                             hypothesis_verdict)
from normlab.report.common import Measured  # noqa: E402
from normlab.report.stats import difference, spread_note  # noqa: E402
from normlab.report.write import load_study, write_report  # noqa: E402

from test_report import make_run  # noqa: E402


def M(name, *vals):
    return Measured.of(name, vals)


def test_hypothesis_verdict_for_every_outcome():
    up = difference(M("a", 0.80, 0.81, 0.82), M("b", 0.75, 0.76, 0.77))
    down = difference(M("a", 0.75, 0.76, 0.77), M("b", 0.80, 0.81, 0.82))
    flat = difference(M("a", 0.80, 0.81, 0.82), M("b", 0.805, 0.815, 0.825))
    unknown = difference(M("a", 0.8), M("b", 0.7))
    hi, lo = Test("a", "b", "higher"), Test("a", "b", "lower")
    assert hypothesis_verdict([up], [hi]) == "supported"
    assert hypothesis_verdict([up, down], [hi, lo]) == "supported"
    assert hypothesis_verdict([down], [hi]) == "contradicted"
    assert hypothesis_verdict([up, up], [hi, lo]) == "contradicted"
    assert hypothesis_verdict([flat], [hi]) == "not supported at this budget"
    assert hypothesis_verdict([up, flat], [hi, hi]) == "not supported at this budget"
    assert hypothesis_verdict([unknown], [hi]) == "undetermined"
    assert hypothesis_verdict([None], [hi]) == "not run" and hypothesis_verdict([], []) == "not run"


def _run(root, variant, seed, test_acc=None, train_acc=None, entity=None, kind="resnet"):
    d = make_run(root, kind, variant, seed, np.random.default_rng(seed), epochs=2)
    s = read_json(d / "summary.json")
    if test_acc is not None:
        s["metrics"]["test"]["accuracy"] = test_acc
    if train_acc is not None:
        s["metrics"]["train"]["accuracy"] = train_acc
    if entity is not None:
        s["metrics"]["test"]["entity_f1"] = entity
    atomic_write_json(d / "summary.json", s)


def test_gn_section_says_not_run_without_the_anomaly_runs(tmp_path):
    for n, (te, tr) in {"bn": (0.83, 0.88), "nn": (0.80, 0.83), "in": (0.78, 0.81), "gn": (0.77, 0.81),
                        "ln": (0.76, 0.79)}.items():
        _run(tmp_path, n, 0, te, tr)
    sec = gn_section(load_study(tmp_path), tmp_path, "CMD")
    # the study's own ln (G = 1) and in (G = C) are the sweep's ends: one seed each, no measured spread
    assert sec.verdict.headline == ("Explanations tested: group size undetermined; learning rate not run; training "
                                    "length not run.")
    assert "`in`, `gn`, `ln` fit the training set less than `bn` and `nn`." in " ".join(sec.verdict.answer)
    assert "none of them overfits more than `bn`." in " ".join(sec.verdict.answer)
    # one explanation per bullet; with no repeated seed there is no spread to judge one-seed differences by
    assert [p.split(":")[0] for p in sec.verdict.points] == ["Group size (another G fits better than G = 8)",
                                                            "Learning rate (lr 0.05 fits LN, GN and IN better than 0.1)",
                                                            "Training length (GN fits slowly"]
    assert sec.verdict.answer[-1] == spread_note(None)
    assert sec.notes[0] == ("Not run in this study: `gn_g2`, `gn_g4`, `gn_g16`, `ln_lr05`, `gn_lr05`, `in_lr05`, "
                            "`gn_long`. They run with `CMD`.")
    rows = sec.tables[0][1]
    assert sec.title == GN_TITLE and rows[3][:3] == ["`gn`", "8", "2 / 4 / 8"]
    assert rows[0][:3] == ["`ln`", "1", "16 / 32 / 64"] and rows[-1][:3] == ["`in`", "C (one per channel)", "1 / 1 / 1"]


@pytest.mark.parametrize("ln_lr05, verdict", [
    (0.7440, "contradicted so far (1 of 3 comparisons run)"),  # lr 0.05 lowers LN: already against the explanation
    (0.7650, "not supported at this budget so far (1 of 3 comparisons run)"),  # within the seed noise
    (0.7800, "supported so far (1 of 3 comparisons run)"),  # above it; the other two may still fall
])
def test_gn_section_judges_a_partly_run_learning_rate_point_on_what_ran(tmp_path, ln_lr05, verdict):
    for seed, c in enumerate((-0.001, 0.0, 0.001)):
        _run(tmp_path, "gn", seed, 0.7766 + c, 0.81)  # 3 seeds: the measured spread
    for n, acc in (("ln", 0.7656), ("in", 0.7784), ("ln_lr05", ln_lr05)):
        _run(tmp_path, n, 0, acc, 0.79)
    sec = gn_section(load_study(tmp_path), tmp_path, "CMD")
    assert f"learning rate {verdict};" in sec.verdict.headline
    lr = sec.verdict.points[1]
    assert lr.startswith(f"Learning rate (lr 0.05 fits LN, GN and IN better than 0.1): **{verdict}**. `ln_lr05` "
                         "against `ln` on test accuracy")
    assert "`gn_lr05`" not in lr and "`in_lr05`" not in lr
    assert "`gn_lr05`, `in_lr05`" in next(n for n in sec.notes if n.startswith("Not run"))


def test_gn_section_without_ln_in_or_the_sweep_says_not_run(tmp_path):
    _run(tmp_path, "gn", 0, 0.77, 0.81)
    sec = gn_section(load_study(tmp_path), tmp_path, "CMD")
    assert sec.verdict.headline == ("Explanations tested: group size not run; learning rate not run; training length "
                                    "not run.")


def test_gn_section_reads_the_sweep_and_the_lr_point(tmp_path):
    for seed, c in enumerate((-0.001, 0.0, 0.001)):
        _run(tmp_path, "gn", seed, 0.77 + c, 0.81)
        _run(tmp_path, "gn_g2", seed, 0.80 + c)  # better than G = 8
        _run(tmp_path, "gn_g4", seed, 0.7702 + c)  # no detectable difference
        _run(tmp_path, "gn_g16", seed, 0.75 + c)  # worse
        for n in ("ln", "in"):
            _run(tmp_path, n, seed, 0.76 + c)
            _run(tmp_path, f"{n}_lr05", seed, 0.76 + c)  # no gain from lr 0.05
        _run(tmp_path, "gn_lr05", seed, 0.77 + c)
    sec = gn_section(load_study(tmp_path), tmp_path, "CMD")
    assert sec.verdict.headline == ("Explanations tested: group size supported; learning rate not supported at this "
                                    "budget; training length not run.")
    size, lr, length = sec.verdict.points
    assert size.startswith("Group size (another G fits better than G = 8): **supported**. Against `gn` on test accuracy")
    assert "detectably above `gn`: `gn_g2` +3.00 [" in size
    assert "detectably below `gn`: `ln` -1.00 [" in size and "`gn_g16` -2.00 [" in size and "`in` -1.00 [" in size
    assert "no detectable difference: `gn_g4` +0.02 [" in size
    assert lr.startswith("Learning rate (lr 0.05 fits LN, GN and IN better than 0.1): **not supported at this budget**.")
    assert "`ln_lr05` against `ln` on test accuracy: 76.00 ± 0.10% against 76.00 ± 0.10%, a difference of +0.00 " \
           "points, 95% interval" in lr
    assert length == "Training length (GN fits slowly: 2x the epochs at batch 128 raise it): **not run**."
    assert not any(a.startswith("A difference with a one-seed side") for a in sec.verdict.answer)  # 3 seeds each
    assert [n for n in sec.notes if n.startswith("Not run")] == ["Not run in this study: `gn_long`. It runs with `CMD`."]
    for seed, c in enumerate((-0.001, 0.0, 0.001)):
        _run(tmp_path, "gn_long", seed, 0.80 + c)  # twice the epochs: +3 points
        _run(tmp_path, "bn", seed, 0.83 + c)
    sec = gn_section(load_study(tmp_path), tmp_path, "CMD")
    text = " ".join(sec.verdict.points)
    assert sec.verdict.headline.endswith("training length supported.")
    assert "Against BN at the study's length: `gn_long` against `bn` on test accuracy: 80.00 ± 0.10% against " \
           "83.00 ± 0.10%, a difference of -3.00" in text
    assert not [n for n in sec.notes if n.startswith("Not run")]


def _ner(root, variant, entity, train_micro=None):
    d = make_run(root, "ner", variant, 0, np.random.default_rng(0), epochs=2)
    s = read_json(d / "summary.json")
    s["metrics"]["test"]["entity_f1"] = entity
    if train_micro is not None:
        s["metrics"]["train"]["micro_f1"] = train_micro
    atomic_write_json(d / "summary.json", s)


def test_glove_section_with_one_seed_is_undetermined_and_names_what_is_missing(tmp_path):
    _ner(tmp_path, "glove", 0.79, 0.82)
    _ner(tmp_path, "random50", 0.80, 0.87)
    _ner(tmp_path, "random", 0.81, 0.89)
    _ner(tmp_path, "glove_small", 0.81)
    _ner(tmp_path, "random50_large", 0.78)
    sec = glove_section(load_study(tmp_path), tmp_path, "CMD")
    text = " ".join(sec.verdict.answer + sec.verdict.points)
    assert sec.title == GLOVE_TITLE
    assert sec.verdict.headline == "Explanations tested: scale undetermined; coverage not run."
    assert sec.verdict.points[0].startswith("Scale (GloVe's spread") and "**undetermined**" in sec.verdict.points[0]
    assert sec.verdict.points[1].startswith("Coverage (") and sec.verdict.points[1].endswith("**not run**.")
    # one seed each: the section says once that the seed noise is unmeasured, and each comparison says so
    assert sec.verdict.answer[-1] == spread_note(None)
    assert "`random50_large` and `random50` have one seed (n = 1): undetermined (seed noise unmeasured)." in text
    assert "The GloVe run fits the training set less (train micro F1 at the best checkpoint: `glove` 82.00%" in text
    assert "`glove_small` against `glove` on test entity F1: 81.00% against 79.00%" in text
    assert sec.notes[0].startswith("The study's grid runs every GloVe variant twice")  # today's grid has both
    assert sec.notes[1] == "Not run in this study: `glove_few`, `random50_few`. They run with `CMD`."


def test_report_has_both_anomaly_sections(tmp_path):
    for kind, root in (("resnet", tmp_path / "r"), ("ner", tmp_path / "n")):
        make_run(root, kind, "bn" if kind == "resnet" else "glove", 0, np.random.default_rng(0))
        md = write_report(root)[0].read_text()
        title = GN_TITLE if kind == "resnet" else GLOVE_TITLE
        assert f"## {title}" in md and "Not run in this study" in md


# ----------------------------------------------------------------------------- why GN gains at batch 8

from normlab.report.anomalies import GN_BATCH_TITLE, gn_batch_section  # noqa: E402


def _gn_batch_study(root, gn_b8_train, gn_long_test=None):
    """gn at 77 (train 81), gn_b8 at 79 with train ``gn_b8_train``, gn_long at ``gn_long_test``; 3 seeds each."""
    for seed, c in enumerate((-0.001, 0.0, 0.001)):
        _run(root, "gn", seed, 0.77 + c, 0.81 + c)
        _run(root, "gn_b8", seed, 0.79 + c, gn_b8_train + c)
        _run(root, "bn", seed, 0.83 + c, 0.88 + c)
        _run(root, "bn_b8", seed, 0.83 + c, 0.87 + c)
        if gn_long_test is not None:
            _run(root, "gn_long", seed, gn_long_test + c, 0.84 + c)
    return gn_batch_section(load_study(root), root, "CMD")


@pytest.mark.parametrize("gn_b8_train, gn_long_test, verdict", [
    (0.83, 0.80, "supported"),  # fits better at batch 8, and longer training helps at batch 128
    (0.79, 0.80, "contradicted"),  # fits worse at batch 8 while testing better: regularization, not training
    (0.83, 0.7702, "not supported at this budget"),  # twice the epochs change nothing detectable
    (0.83, 0.75, "contradicted"),  # longer training hurts
    (0.83, None, "not run"),  # no gn_long
])
def test_gn_batch_section_verdict_for_every_outcome(tmp_path, gn_b8_train, gn_long_test, verdict):
    sec = _gn_batch_study(tmp_path, gn_b8_train, gn_long_test)
    assert sec.title == GN_BATCH_TITLE
    assert sec.verdict.headline.endswith(f"train it further: **{verdict}**.")
    assert sec.verdict.points[0].startswith("Fit: ") and sec.verdict.points[-1].startswith("BN for contrast: ")
    assert not any(a.startswith("A difference with a one-seed side") for a in sec.verdict.answer)  # 3 seeds each
    text = " ".join(sec.verdict.answer + sec.verdict.points)
    assert "`gn_b8` against `gn` on test accuracy: 79.00 ± 0.10% against 77.00 ± 0.10%, a difference of +2.00" in text
    assert f"Fit: `gn_b8` against `gn` on train accuracy at the best checkpoint: {gn_b8_train * 100:.2f}" in text
    assert "BN for contrast: `bn_b8` against `bn` on train accuracy" in text
    not_run = [n for n in sec.notes if n.startswith("Not run")]
    assert (not_run == ["Not run in this study: `gn_long`. It runs with `CMD`."]) == (gn_long_test is None)
    rows = {r[0]: r for r in sec.tables[0][1]}
    assert rows["`gn_b8`"][1:3] == ["8", "2"] and rows["`gn`"][1] == "128"  # make_run's configs: 2 epochs


def test_gn_batch_section_without_the_batch_runs_says_what_is_needed(tmp_path):
    _run(tmp_path, "bn", 0, 0.83, 0.88)
    sec = gn_batch_section(load_study(tmp_path), tmp_path, "CMD")
    assert sec.verdict.headline == ("Explanation tested: under-training at batch 128 **not run** (`gn` and `gn_b8` "
                                    "are needed).")
