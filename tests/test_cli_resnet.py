"""`normlab resnet train`: flags reach the config, bad input is one clear line and exit code 2."""

from __future__ import annotations

import pytest

from normlab.cli import main
from normlab.cli.resnet import NORM_HELP
from normlab.norms import NORM_NAMES
from normlab.train import resnet as T


def test_help_explains_every_norm_and_choice(capsys):
    with pytest.raises(SystemExit) as e:
        main(["resnet", "train", "--help"])
    assert e.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert set(NORM_HELP) == set(NORM_NAMES)
    for name in NORM_NAMES:
        assert f"{name}: {NORM_HELP[name]}" in text
    for flag in ("--n", "--gn-groups", "--shortcut", "--batch-size", "--epochs", "--lr", "--lr-scaling",
                 "--weight-decay", "--schedule", "--patience", "--data", "--data-dir", "--limit-train",
                 "--val-size", "--seed", "--device", "--compile", "--channels-last", "--bf16", "--out",
                 "--resume", "--no-progress"):
        assert flag in text, flag
    assert "(default 0.1)" in text and "(default 128)" in text and "(default cosine)" in text
    assert "or MODULE:CLASS, your own layer" in text and "a folder on PYTHONPATH" in text


@pytest.mark.parametrize("argv, message", [
    (["resnet", "train", "--bogus"], "unrecognized arguments: --bogus"),
    (["resnet", "train", "--compile", "yes"], "argument --compile: invalid choice: 'yes'"),
    (["resnet", "train", "--epochs", "ten"], "argument --epochs: invalid int value: 'ten'"),
    (["resnet"], "required: SUBCOMMAND"),
])
def test_bad_flags_exit_2(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    assert message in capsys.readouterr().err


def test_missing_data_is_a_clear_error(tmp_path, capsys):
    missing = tmp_path / "nowhere.zip"
    code = main(["resnet", "train", "--data", str(missing), "--out", str(tmp_path / "run"), "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("normlab: error: ") and str(missing) in err and "no such file" in err


def test_bad_values_are_clear_errors(tmp_path, capsys):
    assert main(["resnet", "train", "--lr", "-1", "--out", str(tmp_path / "a")]) == 2
    assert "normlab: error: expected --lr to be a finite number > 0.0, got -1.0" in capsys.readouterr().err
    assert main(["resnet", "train", "--norm", "gn", "--gn-groups", "5", "--out", str(tmp_path / "b")]) == 2
    assert "expected --gn-groups to divide" in capsys.readouterr().err
    assert main(["resnet", "train", "--norm", "batchnorm", "--out", str(tmp_path / "d")]) == 2
    assert ("normlab: error: expected --norm to be one of bn, in, bin, ln, gn, nn, torch_bn, or a 'module:Class' "
            "import path of your own layer, got 'batchnorm'") in capsys.readouterr().err
    assert main(["resnet", "train", "--resume", "--out", str(tmp_path / "c")]) == 2
    assert "holds no config.json" in capsys.readouterr().err


def test_flags_reach_the_config(monkeypatch, tmp_path, capsys):
    seen = {}

    def fake_fit(cfg, progress=True):
        seen["cfg"], seen["progress"] = cfg, progress
        return {"status": "finished", "message": "ok"}

    monkeypatch.setattr(T, "fit", fake_fit)
    argv = ["resnet", "train", "--n", "3", "--norm", "gn", "--gn-groups", "4", "--shortcut", "projection",
            "--batch-size", "8", "--epochs", "7", "--lr", "0.2", "--lr-scaling", "linear", "--weight-decay", "1e-4",
            "--schedule", "step", "--warmup-epochs", "1", "--patience", "3", "--data", "x.zip", "--data-dir", "d",
            "--limit-train", "500", "--val-size", "100", "--split-seed", "2", "--seed", "5", "--device", "cpu",
            "--compile", "off", "--channels-last", "--bf16", "--eval-batch-size", "50", "--out", str(tmp_path),
            "--resume", "--no-progress", "--momentum", "0.8", "--bin-gate-lr-mult", "5"]
    assert main(argv) == 0
    cfg = seen["cfg"]
    assert (cfg.n, cfg.norm, cfg.gn_groups, cfg.shortcut, cfg.batch_size, cfg.epochs) == (3, "gn", 4, "projection", 8, 7)
    assert (cfg.lr, cfg.lr_scaling, cfg.weight_decay, cfg.schedule, cfg.warmup_epochs) == (0.2, "linear", 1e-4, "step", 1)
    assert (cfg.patience, cfg.data, cfg.data_dir, cfg.limit_train, cfg.val_size) == (3, "x.zip", "d", 500, 100)
    assert (cfg.split_seed, cfg.seed, cfg.device, cfg.compile, cfg.channels_last, cfg.bf16) == (2, 5, "cpu", "off", True, True)
    assert (cfg.eval_batch_size, cfg.out, cfg.resume, cfg.momentum, cfg.bin_gate_lr_mult) == (50, str(tmp_path), True, 0.8, 5)
    assert seen["progress"] is False
    out = capsys.readouterr().out
    assert f"run directory: {tmp_path}" in out


def test_a_diverged_run_is_a_result_not_a_failure(monkeypatch, tmp_path):
    monkeypatch.setattr(T, "fit", lambda cfg, progress=True: {"status": "diverged", "message": "nan"})
    assert main(["resnet", "train", "--out", str(tmp_path)]) == 0


def test_defaults_are_the_config_defaults(monkeypatch):
    seen = {}
    monkeypatch.setattr(T, "fit", lambda cfg, progress=True: seen.setdefault("cfg", cfg) and {"status": "s", "message": "m"})
    assert main(["resnet", "train"]) == 0
    assert seen["cfg"] == T.ResNetConfig()
