"""``normlab.train.resnet``: the config, the schedule, the run directory, resume, divergence,
and (integration) a short real training run on CIFAR-10."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from normlab import files
from normlab.train import resnet as T
from normlab.train import rundir
from normlab.train.resnet import ResNetConfig, fit
from normlab.train.resnet_optim import build_optimizer, lr_factor

RUN_FILES = ("config.json", "metrics.jsonl", "train.log", "best.pt", "last.pt", "curves.png",
             "quantiles.png", "summary.json")


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    """An image-folder data set: 3 classes told apart by colour, 40 train and 8 test images each."""
    root = tmp_path_factory.mktemp("tiny") / "tiny"
    rng = np.random.default_rng(0)
    colours = [(200, 40, 40), (40, 200, 40), (40, 40, 200)]
    for split, per_class in (("train", 40), ("test", 8)):
        for k, colour in enumerate(colours):
            folder = root / split / f"class{k}"
            folder.mkdir(parents=True)
            for i in range(per_class):
                noise = rng.integers(-40, 40, size=(32, 32, 3))
                pixels = np.clip(np.array(colour) + noise, 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


def tiny_cfg(folder, out, **kw) -> ResNetConfig:
    base = dict(n=1, data=str(folder), val_size=24, batch_size=16, epochs=2, compile="off",
                eval_batch_size=64, patience=0, out=str(out), lr=0.05)
    base.update(kw)
    return ResNetConfig(**base)


def without_seconds(records):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in records]


# --------------------------------------------------------------------------- config


@pytest.mark.parametrize("changes, message", [
    (dict(n=0), "expected --n to be an integer >= 1, got 0"),
    (dict(norm="batchnorm"), "expected --norm to be one of bn, in, bin, ln, gn, nn, torch_bn, or a 'module:Class' "
                             "import path of your own layer, got 'batchnorm'"),
    (dict(gn_groups=0), "expected --gn-groups to be an integer >= 1, got 0"),
    (dict(norm="gn", gn_groups=3), r"expected --gn-groups to divide the 16, 32 and 64 channels of the network "
                                    r"\(1, 2, 4, 8 or 16\), got 3"),
    (dict(shortcut="B"), "expected --shortcut to be one of A, projection, got 'B'"),
    (dict(data=""), "expected --data to be 'cifar10' or a path, got ''"),
    (dict(val_size=0), "expected --val-size to be an integer >= 1, got 0"),
    (dict(limit_train=0), "expected --limit-train to be an integer >= 1, got 0"),
    (dict(epochs=0), "expected --epochs to be an integer >= 1, got 0"),
    (dict(batch_size=True), "expected --batch-size to be an integer >= 1, got True"),
    (dict(lr=0.0), "expected --lr to be a finite number > 0.0, got 0.0"),
    (dict(lr=float("nan")), "expected --lr to be a finite number > 0.0, got nan"),
    (dict(lr_scaling="sqrt"), "expected --lr-scaling to be one of none, linear, got 'sqrt'"),
    (dict(momentum=1.0), r"expected --momentum to be in \[0, 1\), got 1.0"),
    (dict(weight_decay=-1e-4), "expected --weight-decay to be a finite number >= 0.0, got -0.0001"),
    (dict(schedule="linear"), "expected --schedule to be one of cosine, step, got 'linear'"),
    (dict(warmup_epochs=100), r"expected --warmup-epochs below --epochs \(100\), got 100"),
    (dict(patience=-1), "expected --patience to be an integer >= 0, got -1"),
    (dict(bin_gate_lr_mult=0), "expected --bin-gate-lr-mult to be a finite number > 0.0, got 0"),
    (dict(seed=-1), "expected --seed to be an integer >= 0, got -1"),
    (dict(compile="yes"), "expected --compile to be one of auto, on, off, got 'yes'"),
    (dict(channels_last=1), "expected --channels-last to be True or False, got 1"),
    (dict(bf16="no"), "expected --bf16 to be True or False, got 'no'"),
    (dict(eval_batch_size=0), "expected --eval-batch-size to be an integer >= 1, got 0"),
    (dict(out=""), "expected --out to be a folder path, got ''"),
])
def test_bad_settings_are_refused_by_name(changes, message):
    with pytest.raises(ValueError, match=message):
        ResNetConfig(**changes)


def test_unknown_keys_are_refused_by_name():
    with pytest.raises(ValueError, match="got unknown bogus, lr_decay"):
        ResNetConfig.from_dict({"n": 2, "bogus": 1, "lr_decay": 0.1})
    assert ResNetConfig.from_dict({"n": 3}).n == 3


def test_defaults_follow_the_study():
    cfg = ResNetConfig()
    assert (cfg.n, cfg.batch_size, cfg.epochs, cfg.lr, cfg.momentum) == (2, 128, 100, 0.1, 0.9)
    assert cfg.val_size == 10000 and cfg.compile == "auto" and cfg.effective_lr == 0.1


def test_linear_lr_scaling_for_small_batches():
    assert ResNetConfig(batch_size=8, lr_scaling="linear").effective_lr == pytest.approx(0.1 * 8 / 128)
    assert ResNetConfig(batch_size=8).effective_lr == 0.1


def test_cosine_schedule_decays_to_zero_over_the_budget():
    f = lr_factor(ResNetConfig(epochs=10), steps_per_epoch=100)
    assert f(0) == 1.0 and f(500) == pytest.approx(0.5) and f(999) == pytest.approx(0.0, abs=1e-4)
    assert all(f(s) >= f(s + 1) for s in range(999))


def test_step_schedule_and_warmup():
    f = lr_factor(ResNetConfig(epochs=8, schedule="step"), steps_per_epoch=10)
    assert [f(s) for s in (0, 39, 40, 59, 60, 79)] == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])
    g = lr_factor(ResNetConfig(epochs=10, warmup_epochs=1), steps_per_epoch=10)
    assert [g(s) for s in (0, 4, 9)] == pytest.approx([0.1, 0.5, 1.0])
    assert g(10) == pytest.approx(1.0) and g(99) < 0.01


def test_bin_gates_get_no_weight_decay_and_a_larger_lr():
    from normlab.norms import gate_parameters

    cfg = ResNetConfig(norm="bin", weight_decay=5e-4, bin_gate_lr_mult=10)
    model = T.build_model(cfg, num_classes=10)
    opt = build_optimizer(cfg, model)
    assert len(opt.param_groups) == 2
    main, gates = opt.param_groups
    assert {id(p) for p in gates["params"]} == {id(p) for p in gate_parameters(model)}
    assert len(gates["params"]) == 13
    assert gates["weight_decay"] == 0.0 and gates["lr"] == pytest.approx(1.0)
    assert main["weight_decay"] == 5e-4 and main["lr"] == pytest.approx(0.1)
    assert len(build_optimizer(ResNetConfig(norm="bn"), T.build_model(ResNetConfig(), 10)).param_groups) == 1


def test_gn_groups_reach_the_layers():
    from normlab.norms import GroupNorm2d

    model = T.build_model(ResNetConfig(norm="gn", gn_groups=4), num_classes=10)
    assert {m.num_groups for m in model.modules() if isinstance(m, GroupNorm2d)} == {4}


# --------------------------------------------------------------------------- runs on a tiny data set


def test_run_directory_and_resume_give_the_uninterrupted_result(tiny_folder, tmp_path, monkeypatch):
    whole = fit(tiny_cfg(tiny_folder, tmp_path / "whole"), progress=False)
    run = tmp_path / "whole"
    for name in RUN_FILES:
        assert (run / name).stat().st_size > 0, name
    config = files.read_json(run / "config.json")
    assert config["kind"] == "resnet" and config["config"]["n"] == 1 and config["config"]["seed"] == 0
    assert config["env"]["torch"] == torch.__version__ and config["env"]["device"] == "cpu"
    assert config["data"]["sizes"] == {"train": 96, "val": 24, "test": 24}
    assert config["data"]["classes"] == ["class0", "class1", "class2"] and len(config["data"]["mean"]) == 3
    records = files.read_jsonl(run / "metrics.jsonl")
    assert [r["epoch"] for r in records] == [1, 2] and [r["step"] for r in records] == [6, 12]
    assert all(list(r) == list(T.METRIC_KEYS) for r in records)
    assert all(set(r["quantiles"]) == {"q01", "q20", "q80", "q99"} for r in records)
    assert all(r["quantiles"]["q01"] <= r["quantiles"]["q20"] <= r["quantiles"]["q80"] <= r["quantiles"]["q99"]
               for r in records)
    assert records[1]["lr"] == pytest.approx(0.05 * 0.5)  # cosine, halfway through the budget
    assert whole == files.read_json(run / "summary.json")
    assert whole["status"] == "finished" and not whole["diverged"] and whole["epochs_run"] == 2
    assert set(whole["metrics"]) == {"train", "val", "test"}
    assert set(whole["metrics"]["test"]) == {"accuracy", "micro_f1", "macro_f1", "loss"}
    best = rundir.load_checkpoint(run / "best.pt")
    assert whole["metrics"]["val"]["accuracy"] == whole["best_val_accuracy"] == best["best_val_accuracy"]
    assert best["epoch"] == whole["best_epoch"]
    log = (run / "train.log").read_text()
    assert T.HEADER in log and "finished" in log
    with open(run / "curves.png", "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"

    # Interrupt a second run right after epoch 1's checkpoint, leave a stray newer metrics line,
    # then resume it.
    def interrupt(out, records, cfg):
        raise KeyboardInterrupt

    cut = tmp_path / "cut"
    with monkeypatch.context() as m:
        m.setattr(T, "_plots", interrupt)
        with pytest.raises(KeyboardInterrupt):
            fit(tiny_cfg(tiny_folder, cut), progress=False)
    assert rundir.load_checkpoint(cut / "last.pt")["epoch"] == 1 and not (cut / "summary.json").exists()
    files.append_jsonl(cut / "metrics.jsonl", {**records[1], "epoch": 2})
    files.append_jsonl(cut / "metrics.jsonl", {**records[1], "epoch": 3})
    with pytest.raises(ValueError, match="already holds a run"):
        fit(tiny_cfg(tiny_folder, cut), progress=False)
    with pytest.raises(ValueError, match="settings differ"):
        fit(tiny_cfg(tiny_folder, cut, resume=True, lr=0.1), progress=False)
    resumed = fit(tiny_cfg(tiny_folder, cut, resume=True), progress=False)

    assert without_seconds(files.read_jsonl(cut / "metrics.jsonl")) == without_seconds(records)
    a, b = rundir.load_checkpoint(run / "last.pt"), rundir.load_checkpoint(cut / "last.pt")
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), k
    assert torch.equal(a["data_rng"], b["data_rng"])
    strip = lambda s: {k: v for k, v in s.items() if k != "seconds_per_epoch"}  # noqa: E731
    assert strip(resumed) == strip(whole)
    assert "resumed from" in (cut / "train.log").read_text()


def test_huge_learning_rate_diverges_with_a_clear_message(tiny_folder, tmp_path):
    summary = fit(tiny_cfg(tiny_folder, tmp_path / "nan", norm="nn", lr=1e6, epochs=2), progress=False)
    assert summary["status"] == "diverged" and summary["diverged"] is True
    assert "non-finite" in summary["message"] and "epoch 1" in summary["message"]
    assert summary["metrics"] is None and summary["best_epoch"] is None and summary["epochs_run"] == 0
    assert files.read_json(tmp_path / "nan" / "summary.json") == summary
    assert not (tmp_path / "nan" / "best.pt").exists()
    assert "diverged" in (tmp_path / "nan" / "train.log").read_text()


def test_divergence_after_a_good_epoch_keeps_the_best_checkpoint(tiny_folder, tmp_path, monkeypatch):
    real = lr_factor

    def explode_in_epoch_2(cfg, steps_per_epoch):
        f = real(cfg, steps_per_epoch)
        return lambda step: f(step) if step < steps_per_epoch else 1e8

    monkeypatch.setattr(T, "lr_factor", explode_in_epoch_2)  # where fit looks it up
    summary = fit(tiny_cfg(tiny_folder, tmp_path / "late", norm="nn", epochs=3), progress=False)
    assert summary["status"] == "diverged" and "epoch 2" in summary["message"]
    assert summary["best_epoch"] == 1 and summary["epochs_run"] == 1
    assert summary["metrics"]["val"]["accuracy"] == summary["best_val_accuracy"]
    assert all(math.isfinite(v["loss"]) for v in summary["metrics"].values())
    assert rundir.load_checkpoint(tmp_path / "late" / "best.pt")["epoch"] == 1


def test_early_stopping_on_validation_accuracy(tiny_folder, tmp_path):
    # A vanishing lr and a norm without running statistics: val accuracy cannot improve.
    summary = fit(tiny_cfg(tiny_folder, tmp_path / "es", norm="in", lr=1e-12, epochs=5, patience=2),
                  progress=False)
    assert summary["status"] == "early_stopped" and summary["epochs_run"] == 3 and summary["best_epoch"] == 1
    assert "early stopped" in summary["message"]
    assert len(files.read_jsonl(tmp_path / "es" / "metrics.jsonl")) == 3


def test_compile_auto_falls_back_to_eager(tiny_folder, tmp_path, monkeypatch):
    class Broken(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.inner = model

        def forward(self, *a, **k):
            raise RuntimeError("no C++ compiler found")

    monkeypatch.setattr(torch, "compile", lambda model, **kw: Broken(model))
    with pytest.warns(RuntimeWarning, match="torch.compile is not usable"):
        summary = fit(tiny_cfg(tiny_folder, tmp_path / "auto", compile="auto", epochs=1), progress=False)
    assert summary["status"] == "finished" and summary["compiled"] is False
    assert "training in eager mode" in (tmp_path / "auto" / "train.log").read_text()
    with pytest.raises(ValueError, match="--compile on: torch.compile failed"):
        fit(tiny_cfg(tiny_folder, tmp_path / "on", compile="on", epochs=1), progress=False)


def test_data_limits_are_checked(tiny_folder, tmp_path):
    with pytest.raises(ValueError, match="expected --limit-train at most the 96"):
        fit(tiny_cfg(tiny_folder, tmp_path / "a", limit_train=97), progress=False)
    with pytest.raises(ValueError, match="expected --val-size below the 120"):
        fit(tiny_cfg(tiny_folder, tmp_path / "b", val_size=120), progress=False)
    with pytest.raises(FileNotFoundError, match="no such file"):
        fit(tiny_cfg(tmp_path / "missing", tmp_path / "c"), progress=False)


# --------------------------------------------------------------------------- the real data


@pytest.mark.integration
def test_short_real_run_learns(cifar_zip, tmp_path):
    out = tmp_path / "real"
    cfg = ResNetConfig(n=2, data=str(cifar_zip), limit_train=3000, val_size=1000, batch_size=32, epochs=3,
                       lr=0.05, compile="off", out=str(out), seed=0)
    summary = fit(cfg, progress=False)  # 3 x 93 = 279 steps (the last short batch is dropped)
    records = files.read_jsonl(out / "metrics.jsonl")
    assert summary["status"] == "finished" and summary["epochs_run"] == 3
    assert records[-1]["step"] == 279
    assert records[-1]["train_loss"] < records[0]["train_loss"] < math.log(10)
    assert summary["best_val_accuracy"] > 0.3  # chance is 0.1
    assert summary["metrics"]["test"]["accuracy"] > 0.3
    for name in RUN_FILES:
        assert (out / name).stat().st_size > 0, name
    config = json.loads((out / "config.json").read_text())
    assert config["data"]["sizes"] == {"train": 3000, "val": 1000, "test": 10000}
    assert config["data"]["classes"][:2] == ["airplane", "automobile"]
    assert dataclasses.asdict(cfg) == config["config"]


# --------------------------------------------------------------------------- plots (shared with the NER trainer)


def test_plot_curves_writes_a_png_and_tolerates_gaps(tmp_path):
    from normlab.train.plots import plot_curves, plot_quantiles

    plot_curves(tmp_path / "c.png", [1, 2, 3], {"a": [0.5, None, 0.2], "b": [float("nan"), 1.0, float("inf")]},
                ylabel="error")
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"
    plot_quantiles(tmp_path / "q.png", [{"epoch": 1, "quantiles": {"q01": 0, "q20": 1, "q80": 2, "q99": 3}},
                                        {"epoch": 2, "quantiles": None}])
    assert (tmp_path / "q.png").stat().st_size > 1000
    with pytest.raises(ValueError, match="expected 3 values for 'a' \\(one per x\\), got 2"):
        plot_curves(tmp_path / "bad.png", [1, 2, 3], {"a": [1, 2]})
    assert not (tmp_path / "bad.png").exists()
