"""The CUDA path's logic, checked without a GPU (issue 18): RNG restore after map_location,
statistics under bf16 autocast, the data generator's device. tests/test_gpu.py runs the
same on a real GPU when one is there."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from torch import nn

from normlab.norms import make_norm
from normlab.train import rundir
from normlab.train.resnet_data import data_generator


class _DeviceTensor(torch.Tensor):
    """A tensor that, like a CUDA tensor, refuses ``.numpy()`` and RNG setters until moved with ``.cpu()``."""

    def numpy(self, *a, **k):  # noqa: D102
        raise TypeError("can't convert cuda:0 device type tensor to numpy. Use Tensor.cpu() first")

    def cpu(self, *a, **k):  # noqa: D102
        return torch.Tensor(self.as_subclass(torch.Tensor).clone())


def _on_device(obj):
    """What torch.load(map_location=cuda) does to a saved RNG state: every nested tensor moves."""
    if torch.is_tensor(obj):
        return obj.as_subclass(_DeviceTensor)
    if isinstance(obj, dict):
        return {k: _on_device(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_on_device(v) for v in obj)
    return obj


def test_rng_state_loaded_onto_a_device_restores_every_generator(tmp_path):
    rundir.seed_everything(3)
    rundir.atomic_torch_save({"rng": rundir.rng_state_for_checkpoint()}, tmp_path / "c.pt")
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    state = _on_device(rundir.load_checkpoint(tmp_path / "c.pt")["rng"])
    with pytest.raises(TypeError, match="cpu"):  # the failure of issue 18 finding 1
        state["numpy"][1].numpy()
    random.seed(99), np.random.seed(99), torch.manual_seed(99)
    rundir.restore_rng_state(state)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


def test_rng_state_with_more_gpus_than_visible_restores_the_visible_ones(monkeypatch):
    calls = []
    state = rundir.rng_state_for_checkpoint()
    state["cuda"] = [torch.zeros(16, dtype=torch.uint8) + i for i in range(4)]  # saved on 4 GPUs
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda s, i: calls.append((int(s[0]), i)))
    rundir.restore_rng_state(state)
    assert calls == [(0, 0), (1, 1)]


@pytest.mark.parametrize("name,ref", [("bn", lambda: nn.BatchNorm2d(16)), ("gn", lambda: nn.GroupNorm(8, 16)),
                                      ("ln", lambda: nn.GroupNorm(1, 16)), ("in", lambda: nn.GroupNorm(16, 16))])
@pytest.mark.parametrize("compiled", [False, True])
def test_bf16_autocast_takes_statistics_in_float32(name, ref, compiled):
    """Under bf16 autocast our norms are as exact as PyTorch's own (whose statistics are float32):
    at |mean| / sigma = 40 bf16 statistics put every output off by about 0.15."""
    torch.manual_seed(0)
    ours, theirs = make_norm(name, 16), ref()
    x = (torch.randn(8, 16, 8, 8) * 0.5 + 20.0).bfloat16()
    exact = theirs(x.float())  # float32 throughout
    layer = torch.compile(ours) if compiled else ours
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = layer(x)
        y_ref = theirs(x)
    assert y.dtype == x.dtype
    err, err_ref = (y.float() - exact).abs().max().item(), (y_ref.float() - exact).abs().max().item()
    assert err <= err_ref + 1e-3 and err < 0.03, (err, err_ref)


def test_bf16_autocast_gradients_match_float32():
    torch.manual_seed(0)
    ours = make_norm("gn", 16)
    x = (torch.randn(4, 16, 8, 8) * 0.5 + 20.0).bfloat16().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ours(x).float().square().sum().backward()
    xf = x.detach().float().requires_grad_()
    ref = nn.GroupNorm(8, 16)
    ref(xf).square().sum().backward()
    assert torch.allclose(ours.weight.grad, ref.weight.grad, rtol=0.02, atol=0.5)


def test_data_generator_keeps_the_device_index():
    gen = data_generator(torch.device("cpu"), 5)
    assert gen.device == torch.device("cpu") and gen.initial_seed() == 5
    seen = []

    class FakeGenerator:
        def __init__(self, device):
            seen.append(device)

        def manual_seed(self, s):
            return self

    import normlab.train.resnet as r

    real = r.torch.Generator
    try:
        r.torch.Generator = FakeGenerator
        data_generator(torch.device("cuda", 3), 0)
        data_generator(torch.device("mps"), 0)
    finally:
        r.torch.Generator = real
    assert seen == [torch.device("cuda", 3), "cpu"]


@pytest.mark.parametrize("device, batch, mode", [("cuda", 8, "reduce-overhead"), ("cuda:1", 32, "reduce-overhead"),
                                                 ("cuda", 128, "default"), ("cpu", 8, "default"),
                                                 ("mps", 8, "default")])
def test_small_batches_train_under_cuda_graphs_on_a_gpu_only(device, batch, mode):
    from normlab.train.compiled import compile_mode

    assert compile_mode(torch.device(device), batch) == mode


def test_a_cpu_run_records_that_it_used_no_cuda_graphs(tmp_path):
    from PIL import Image

    from normlab.train.resnet import ResNetConfig, fit

    rng = np.random.default_rng(0)
    for split, n in (("train", 24), ("test", 6)):
        for k in range(2):
            d = tmp_path / "img" / split / f"c{k}"
            d.mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(d / f"{i}.png")
    s = fit(ResNetConfig(n=1, data=str(tmp_path / "img"), val_size=8, batch_size=8, epochs=1, compile="off",
                         out=str(tmp_path / "run"), device="cpu"), progress=False)
    assert s["cuda_graphs"] is False and s["compiled"] is False


def test_the_taggers_crf_reads_nothing_back_to_the_host(monkeypatch):
    """On a GPU each host read (.tolist(), .item(), nonzero(), bool()) stalls the queue: the
    tagger's CRF skips the value checks of masks and tags it built itself; a CRF used on its own
    keeps them."""
    from normlab.models.crf import LinearChainCRF
    from normlab.models.tagger import BiLSTMTagger

    tags = ["O", "B-per", "I-per"]
    tagger = BiLSTMTagger(num_words=20, num_tags=3, num_chars=0, word_dim=4, hidden=3, char_dim=2,
                          char_hidden=2, dropout=0.0, layer_norm=False, crf=True, tag_names=tags)
    em = torch.randn(2, 4, 3)
    mask = torch.tensor([[True] * 4, [True, True, False, False]])
    gold = torch.tensor([[0, 1, 2, 0], [1, 2, 0, 0]])

    def no_host_read(*a, **k):
        raise AssertionError("a host read")

    import normlab.models.crf as crf_module

    on_cpu = tagger.crf.nll(em, gold, mask)
    tiny = torch.zeros(2, 4, 3)
    tiny[:, 0, 1:] = -300.0  # I-per's allowed predecessors start 300 below O: its sum underflows, exact path
    tiny_cpu = tagger.crf.log_partition(tiny, mask)
    with monkeypatch.context() as m:
        m.setattr(crf_module, "_host_reads_are_cheap", lambda t: False)  # as on a GPU
        for name in ("tolist", "item", "nonzero", "__bool__"):
            m.setattr(torch.Tensor, name, no_host_read)
        as_on_gpu = tagger.crf.nll(em, gold, mask)
        tagger.crf.decode(em, mask)
        tiny_gpu = tagger.crf.log_partition(tiny, mask)
    assert torch.allclose(on_cpu, as_on_gpu, atol=1e-5) and torch.allclose(tiny_cpu, tiny_gpu, atol=1e-4)
    plain = LinearChainCRF(3)
    assert plain.check_values is True
    with pytest.raises(ValueError, match="left-aligned"):
        plain.nll(em, gold, torch.tensor([[True, False, True, True], [True] * 4]))
