"""The anomaly experiments: grid entries run only when named, their run commands, and --embedding-std."""

from __future__ import annotations

import pytest
import torch

from normlab.cli import main
from normlab.study.grids import (GLOVE_6B_50D_STD, RANDOM_50D_STD, StudySettings, anomaly_variants, run_command,
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
                                                            "in_lr05"}
    with pytest.raises(ValueError, match="expected variants among .*gn_g16.*, got gn_g3"):
        select_variants("resnet", ["gn_g3"])


def test_anomaly_run_commands_carry_their_own_settings():
    s = StudySettings(kind="resnet", out="o", data="cifar.zip", epochs=20, variants=["gn_g2", "ln_lr05"])
    s.validate()
    g2, lr = select_variants("resnet", s.variants)
    argv = run_command(s, g2, 0, False)
    assert argv[argv.index("--gn-groups") + 1] == "2" and argv[argv.index("--norm") + 1] == "gn"
    assert run_command(s, lr, 0, False)[run_command(s, lr, 0, False).index("--lr") + 1] == "0.05"
    n = StudySettings(kind="ner", out="o", data="gmb.csv", embeddings="glove-6b-50d",
                      variants=["glove_small", "random50_large", "glove_few", "random50_few"])
    n.validate()
    small, large, few, few_r = select_variants("ner", n.variants)
    a = run_command(n, small, 0, False)
    assert a[a.index("--embedding-std") + 1] == repr(RANDOM_50D_STD) and "glove-6b-50d" in a
    b = run_command(n, large, 0, False)
    assert b[b.index("--embedding-std") + 1] == repr(GLOVE_6B_50D_STD) and "--embeddings" not in b
    assert run_command(n, few, 0, False)[run_command(n, few, 0, False).index("--limit-train") + 1] == "3000"
    assert "--embeddings" not in run_command(n, few_r, 0, False)


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
        init.setdefault("cfg", rundir.read_json(tmp_path / "r" / rundir.CONFIG))
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
