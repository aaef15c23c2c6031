"""On a CUDA GPU: both trainers run, resume exactly after an interruption, and our norms
match PyTorch's under bf16 autocast. Marked ``gpu``: skipped with the reason where torch sees
no GPU (the same logic is checked without one in tests/test_gpu_ready.py).

    pytest -m gpu
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from normlab import files
from normlab.norms import make_norm
from normlab.train import ner
from normlab.train import resnet as T
from normlab.train.resnet import fit
from normlab.train.resnet_data import data_generator

from test_train_ner import tiny_cfg as ner_cfg
from test_train_ner import tiny_data  # noqa: F401 - a fixture
from test_train_resnet import tiny_cfg as resnet_cfg
from test_train_resnet import tiny_folder  # noqa: F401 - a fixture

pytestmark = pytest.mark.gpu


def test_resnet_on_cuda_resumes_to_the_uninterrupted_run(tiny_folder, tmp_path, monkeypatch):  # noqa: F811
    whole = fit(resnet_cfg(tiny_folder, tmp_path / "whole", device="cuda"), progress=False)
    cfg = files.read_json(tmp_path / "whole" / "config.json")
    assert cfg["env"]["device"].startswith("cuda") and whole["status"] == "finished"

    def interrupt(out, records, cfg):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(T, "_plots", interrupt)
        with pytest.raises(KeyboardInterrupt):
            fit(resnet_cfg(tiny_folder, tmp_path / "cut", device="cuda"), progress=False)
    resumed = fit(resnet_cfg(tiny_folder, tmp_path / "cut", device="cuda", resume=True), progress=False)
    a = files.read_jsonl(tmp_path / "whole" / "metrics.jsonl")
    b = files.read_jsonl(tmp_path / "cut" / "metrics.jsonl")
    assert [r["epoch"] for r in a] == [r["epoch"] for r in b] == [1, 2]
    # cuDNN may pick other kernels after a restart: equal up to float noise, not bit for bit
    assert b[-1]["val_loss"] == pytest.approx(a[-1]["val_loss"], rel=1e-3)
    assert resumed["metrics"]["test"]["accuracy"] == pytest.approx(whole["metrics"]["test"]["accuracy"], abs=0.05)


def test_resnet_on_cuda_compiled_bf16_channels_last(tiny_folder, tmp_path):  # noqa: F811
    s = fit(resnet_cfg(tiny_folder, tmp_path / "r", device="cuda", compile="on", bf16=True, norm="gn",
                       channels_last=True), progress=False)
    assert s["status"] == "finished" and s["compiled"] and s["channels_last"]


def test_ner_on_cuda_resumes_to_the_uninterrupted_run(tiny_data, tmp_path):  # noqa: F811
    straight = ner.fit(ner_cfg(tiny_data, tmp_path / "a", epochs=3, device="cuda"), progress=False)

    def interrupt(step):
        if step == 7:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ner.fit(ner_cfg(tiny_data, tmp_path / "b", epochs=3, device="cuda"), progress=False, on_update=interrupt)
    resumed = ner.fit(ner_cfg(tiny_data, tmp_path / "b", epochs=3, device="cuda", resume=True), progress=False)
    for k in ("status", "updates", "epochs_run"):
        assert straight[k] == resumed[k], k
    assert resumed["metrics"]["test"]["accuracy"] == pytest.approx(straight["metrics"]["test"]["accuracy"], abs=0.02)


@pytest.mark.parametrize("name,ref", [("bn", lambda: nn.BatchNorm2d(16)), ("gn", lambda: nn.GroupNorm(8, 16))])
def test_norms_under_cuda_bf16_autocast_match_pytorch(name, ref):
    torch.manual_seed(0)
    ours, theirs = make_norm(name, 16).cuda(), ref().cuda()
    x = (torch.randn(8, 16, 8, 8, device="cuda") * 0.5 + 20.0).bfloat16()
    exact = theirs(x.float())
    with torch.autocast("cuda", dtype=torch.bfloat16):
        y, y_ref = ours(x), theirs(x)
    err, err_ref = (y.float() - exact).abs().max().item(), (y_ref.float() - exact).abs().max().item()
    assert err <= err_ref + 0.02 and err < 0.03, (err, err_ref)


def test_data_generator_on_the_runs_gpu():
    dev = torch.device("cuda", torch.cuda.device_count() - 1)
    gen = data_generator(dev, 1)
    assert gen.device == dev
