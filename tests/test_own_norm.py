"""A user's own normalization layer, ``--norm module:Class`` (issue 15, item 5): it is imported
only when named, checked (imports, takes ``num_channels``, keeps the shape) with one clear line
for each way it can be wrong, recorded in the config and checkpoints, trained, and resumed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from normlab import files
from normlab.models.resnet import ResNet
from normlab.norms import NORM_NAMES, check_norm, import_norm, is_norm_spec, make_norm
from normlab.train import resnet as T
from normlab.train import rundir
from normlab.train.resnet import ResNetConfig, fit

from test_train_resnet import tiny_cfg, tiny_folder  # noqa: F401 - tiny_folder is a fixture

ROOT = Path(__file__).resolve().parents[1]

# The user's package: one good layer and one of each mistake.
LAYERS = '''
import torch
from torch import nn


class RMSNorm2d(nn.Module):
    def __init__(self, num_channels, eps=1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(num_channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(num_channels, 1, 1))

    def forward(self, x):
        ms = x.square().mean(dim=(1, 2, 3), keepdim=True)
        return x * torch.rsqrt(ms + self.eps) * self.weight + self.bias


class HalvesChannels(nn.Module):
    def __init__(self, num_channels):
        super().__init__()

    def forward(self, x):
        return x[:, : x.shape[1] // 2]


class TakesDim(nn.Module):
    def __init__(self, dim):
        super().__init__()


class NeedsGroups(nn.Module):
    def __init__(self, num_channels, groups):
        super().__init__()


class FailsForward(nn.Module):
    def __init__(self, num_channels):
        super().__init__()

    def forward(self, x):
        raise RuntimeError("forward is not written yet")


class ReturnsTuple(nn.Module):
    def __init__(self, num_channels):
        super().__init__()

    def forward(self, x):
        return x, x


class NotAModule:
    def __init__(self, num_channels):
        pass


def rms_norm(num_channels):
    return nn.Identity()


DRAWS = torch.rand(1)  # a draw at import: the check must not move the global RNG either
'''


def write_norm_package(root: Path, name: str) -> Path:
    """A package ``name`` under ``root``: ``name.layers`` (LAYERS), ``name.broken`` (raises at import),
    ``name.needs_dep`` (imports a missing dependency). Returns ``root``, the folder for sys.path."""
    pkg = root / name
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "layers.py").write_text(LAYERS)
    (pkg / "broken.py").write_text("raise RuntimeError('the module is broken')\n")
    (pkg / "needs_dep.py").write_text("import a_dependency_that_is_not_installed\n")
    return root


PKG = "usernorms_own"


@pytest.fixture(scope="module")
def pkg_root(tmp_path_factory):
    return write_norm_package(tmp_path_factory.mktemp("user"), PKG)


@pytest.fixture
def on_path(pkg_root, monkeypatch):
    monkeypatch.syspath_prepend(str(pkg_root))
    return pkg_root


GOOD = f"{PKG}.layers:RMSNorm2d"


# --------------------------------------------------------------------------- the spec and the config


@pytest.mark.parametrize("spec, ok", [
    ("mypkg.norms:RMSNorm2d", True), ("m:C", True), ("a.b.c:Outer.Inner", True), ("_p:_C", True),
    ("bn", False), ("mypkg.norms", False), (":C", False), ("m:", False), ("m::C", False), ("m:C:D", False),
    ("my-pkg:C", False), ("m.:C", False), ("1m:C", False), (" m:C", False), (None, False), (3, False),
])
def test_spec_spelling(spec, ok):
    assert is_norm_spec(spec) is ok


def test_config_accepts_a_spec_without_importing_it():
    # Construction checks the spelling only: a config read back elsewhere (a report) needs no import.
    assert ResNetConfig(norm="not_installed_anywhere.x:Y").norm == "not_installed_anywhere.x:Y"
    assert "not_installed_anywhere" not in sys.modules
    for name in NORM_NAMES:
        assert ResNetConfig(norm=name).norm == name


@pytest.mark.parametrize("norm", ["batchnorm", "mypkg.norms", "mypkg.norms:", ""])
def test_config_refuses_a_name_that_is_neither(norm):
    with pytest.raises(ValueError, match=rf"^expected --norm to be one of bn, in, bin, ln, gn, nn, torch_bn, or a "
                                         rf"'module:Class' import path of your own layer, got '{norm}'$"):
        ResNetConfig(norm=norm)


# --------------------------------------------------------------------------- the check, one line per mistake


@pytest.mark.parametrize("spec, message", [
    ("usernorms_nowhere.layers:RMSNorm2d",
     r"--norm usernorms_nowhere\.layers:RMSNorm2d: cannot import module 'usernorms_nowhere\.layers' "
     r"\(no module named 'usernorms_nowhere' on sys\.path\); install it or put its folder on PYTHONPATH"),
    (f"{PKG}.nowhere:RMSNorm2d", rf"cannot import module '{PKG}\.nowhere' \(no module named '{PKG}\.nowhere'"),
    (f"{PKG}.broken:X", rf"--norm {PKG}\.broken:X: importing module '{PKG}\.broken' failed: "
                        r"RuntimeError: the module is broken$"),
    (f"{PKG}.needs_dep:X", rf"importing module '{PKG}\.needs_dep' failed: ModuleNotFoundError: "
                           r"No module named 'a_dependency_that_is_not_installed'$"),
    (f"{PKG}.layers:RMSNorm", rf"--norm {PKG}\.layers:RMSNorm: module '{PKG}\.layers' has no attribute 'RMSNorm' "
                              r"\(its nn\.Module classes: FailsForward, HalvesChannels, NeedsGroups, RMSNorm2d, "
                              r"ReturnsTuple, TakesDim\)$"),
    (f"{PKG}.layers:NotAModule", r"expected a torch\.nn\.Module subclass, got a class NotAModule$"),
    (f"{PKG}.layers:rms_norm", r"expected a torch\.nn\.Module subclass, got a function$"),
    (f"{PKG}.layers:DRAWS", r"expected a torch\.nn\.Module subclass, got a Tensor$"),
    (f"{PKG}.layers:TakesDim", rf"--norm {PKG}\.layers:TakesDim: expected a class built as "
                               r"TakesDim\(num_channels=C\), but it takes \(dim\)$"),
    (f"{PKG}.layers:NeedsGroups", r"NeedsGroups\(num_channels=16\) failed: TypeError: .*groups"),
    (f"{PKG}.layers:HalvesChannels", rf"--norm {PKG}\.layers:HalvesChannels: expected HalvesChannels to keep "
                                     r"the activation's shape \(2, 16, 4, 4\), got \(2, 8, 4, 4\)$"),
    (f"{PKG}.layers:FailsForward", r"FailsForward\(num_channels=16\) failed on a \(2, 16, 4, 4\) tensor: "
                                   r"RuntimeError: forward is not written yet$"),
    (f"{PKG}.layers:ReturnsTuple", r"expected ReturnsTuple to return a tensor, got tuple$"),
])
def test_each_mistake_is_one_clear_line(on_path, spec, message):
    with pytest.raises(ValueError, match=message) as e:
        check_norm(spec)
    assert "\n" not in str(e.value)


def test_the_check_leaves_the_global_rng_alone(on_path):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    assert check_norm(GOOD).__name__ == "RMSNorm2d"
    assert torch.equal(torch.rand(3), expected)


def test_registry_and_model_build_the_users_layer(on_path):
    cls = import_norm(GOOD)
    layer = make_norm(GOOD, 32)
    assert type(layer) is cls and layer.weight.shape == (32, 1, 1)
    assert make_norm(GOOD, 32, eps=0.5).eps == 0.5
    model = ResNet(1, 10, norm=GOOD)
    assert sum(isinstance(m, cls) for m in model.modules()) == 1 + 2 * 3  # stem + two per block
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


# --------------------------------------------------------------------------- training, records, resume


def test_fit_trains_records_the_spec_and_resumes(on_path, tiny_folder, tmp_path, monkeypatch):  # noqa: F811
    whole = fit(tiny_cfg(tiny_folder, tmp_path / "whole", norm=GOOD), progress=False)
    run = tmp_path / "whole"
    assert whole["status"] == "finished" and whole["epochs_run"] == 2
    assert whole["metrics"]["train"]["loss"] < 1.1  # learned something: ln(3) = 1.0986 is chance
    assert files.read_json(run / "config.json")["config"]["norm"] == GOOD
    for name in ("best.pt", "last.pt"):
        assert rundir.load_checkpoint(run / name)["config"]["norm"] == GOOD
    assert "norm=usernorms_own.layers:RMSNorm2d" in (run / "train.log").read_text()
    last = rundir.load_checkpoint(run / "last.pt")["model"]
    assert "norm.weight" in last and not torch.equal(last["norm.weight"], torch.ones(16, 1, 1))  # it trained

    # Interrupted after epoch 1's checkpoint, then resumed: the uninterrupted result.
    def interrupt(out, records, cfg):
        raise KeyboardInterrupt

    cut = tmp_path / "cut"
    with monkeypatch.context() as m:
        m.setattr(T, "_plots", interrupt)
        with pytest.raises(KeyboardInterrupt):
            fit(tiny_cfg(tiny_folder, cut, norm=GOOD), progress=False)
    with pytest.raises(ValueError, match=r"settings differ .*--norm: saved 'usernorms_own\.layers:RMSNorm2d', now 'ln'"):
        fit(tiny_cfg(tiny_folder, cut, norm="ln", resume=True), progress=False)
    resumed = fit(tiny_cfg(tiny_folder, cut, norm=GOOD, resume=True), progress=False)
    b = rundir.load_checkpoint(cut / "last.pt")["model"]
    for k, v in last.items():
        assert torch.equal(v, b[k]), k
    assert resumed["metrics"] == whole["metrics"]


def test_fit_refuses_a_bad_layer_before_writing_anything(on_path, tiny_folder, tmp_path):  # noqa: F811
    out = tmp_path / "run"
    with pytest.raises(ValueError, match="expected HalvesChannels to keep the activation's shape"):
        fit(tiny_cfg(tiny_folder, out, norm=f"{PKG}.layers:HalvesChannels"), progress=False)
    assert not out.exists()


# --------------------------------------------------------------------------- the command line


def _cli(args: list[str], pythonpath: list[Path], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(p) for p in [ROOT / "src", *pythonpath])}
    return subprocess.run([sys.executable, "-m", "normlab", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


def test_cli_imports_the_module_from_pythonpath(pkg_root, tiny_folder, tmp_path):  # noqa: F811
    train = ["resnet", "train", "--data", str(tiny_folder), "--n", "1", "--val-size", "24", "--batch-size", "16",
             "--epochs", "1", "--compile", "off", "--device", "cpu", "--no-progress", "--out", str(tmp_path / "run")]
    # Not on PYTHONPATH (and not in the working directory): one line, exit 2, nothing written.
    missing = _cli([*train, "--norm", GOOD], [], tmp_path)
    assert missing.returncode == 2, missing.stderr
    assert missing.stderr.strip() == (f"normlab: error: --norm {GOOD}: cannot import module '{PKG}.layers' (no module "
                                       f"named '{PKG}' on sys.path); install it or put its folder on PYTHONPATH")
    assert not (tmp_path / "run").exists()

    done = _cli([*train, "--norm", GOOD], [pkg_root], tmp_path)
    assert done.returncode == 0, done.stderr
    assert files.read_json(tmp_path / "run" / "config.json")["config"]["norm"] == GOOD
    summary = files.read_json(tmp_path / "run" / "summary.json")
    assert summary["status"] == "finished" and summary["metrics"]["test"]["accuracy"] is not None

    # --resume of the finished run (the module imported again, from the saved spec): the same summary.
    again = _cli([*train, "--norm", GOOD, "--resume"], [pkg_root], tmp_path)
    assert again.returncode == 0, again.stderr
    assert files.read_json(tmp_path / "run" / "summary.json")["metrics"] == summary["metrics"]


def test_the_documented_example_layer(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT))
    cls = check_norm("examples.rmsnorm:RMSNorm2d")
    layer = cls(num_channels=4)
    x = torch.randn(3, 4, 5, 5)
    rms = x.square().mean(dim=(1, 2, 3), keepdim=True).add(1e-5).sqrt()
    torch.testing.assert_close(layer(x), x / rms)
    assert isinstance(layer, nn.Module) and sum(p.numel() for p in layer.parameters()) == 8
