"""Your own norm in a study (issue 15, item 5): ``normlab study resnet --add-norm NAME=module:Class`` adds
the variants NAME (batch 128) and NAME_b8 (batch 8) to the grid, keeps them in study.json for reruns,
checks the class once before any run, and the report compares NAME with the built-in norms."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from normlab.files import atomic_write_json, read_json
from normlab.report.answers_resnet import own_batch_sentence
from normlab.report.common import Measured
from normlab.study.grids import variants_for
from normlab.study.runner import plan, run_study
from normlab.study.settings import StudySettings, parse_add_norms

from test_own_norm import LAYERS
from test_report import parse_md_table

ROOT = Path(__file__).resolve().parents[1]
SPEC = "mynorms:RMSNorm2d"

# The user's module: test_own_norm's good layer (RMSNorm2d) and its mistakes (TakesDim, ...).
NORMS = LAYERS



@pytest.fixture
def norms_dir(tmp_path, monkeypatch):
    """A folder holding the user's module ``mynorms``, on sys.path here and on PYTHONPATH for subprocesses."""
    d = tmp_path / "mine"
    d.mkdir()
    (d / "mynorms.py").write_text(NORMS)
    monkeypatch.syspath_prepend(str(d))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(d), str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]))
    return d


def _images(root: Path, per_class: int = 60, test_per_class: int = 8) -> Path:
    """An image folder of 3 colour classes: enough training images for one batch of 128."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", per_class), ("test", test_per_class)):
        for k, colour in enumerate([(200, 40, 40), (40, 200, 40), (40, 40, 200)]):
            folder = root / split / f"class{k}"
            folder.mkdir(parents=True)
            for i in range(n):
                pixels = np.clip(np.array(colour) + rng.integers(-40, 40, size=(32, 32, 3)), 0, 255)
                Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{i}.png")
    return root


# ----------------------------------------------------------------------------- the grid


def test_added_norm_joins_the_grid_at_both_batch_sizes():
    grid = variants_for("resnet", add_norms={"rms": SPEC})
    names = [v.name for v in grid]
    assert names == ["torch_bn", "bn", "in", "bin", "ln", "gn", "nn", "rms", "bn_b8", "gn_b8", "rms_b8"]
    by = {v.name: v.overrides for v in grid}
    assert by["rms"] == {"norm": SPEC, "batch_size": 128, "lr": 0.1}
    assert by["rms_b8"] == {"norm": SPEC, "batch_size": 8, "lr": by["gn_b8"]["lr"]} and by["rms_b8"]["lr"] == 0.00625
    same = {v.name: v.overrides for v in variants_for("resnet", "same", add_norms={"rms": SPEC})}
    assert same["rms_b8"]["lr"] == 0.1  # --lr-scaling none: the grid's own small-batch lr


def test_a_grid_file_without_batch_8_gets_no_b8_variant(tmp_path):
    f = tmp_path / "g.toml"
    f.write_text('[variants.ln]\nnorm = "ln"\nlr = 0.05\n[variants.gn]\nnorm = "gn"\n')
    grid = variants_for("resnet", grid_file=str(f), add_norms={"rms": SPEC})
    assert [(v.name, v.overrides.get("lr")) for v in grid] == [("ln", 0.05), ("gn", None), ("rms", 0.05)]


@pytest.mark.parametrize("items, msg", [
    (["gn=mynorms:RMSNorm2d"], "--add-norm gn=mynorms:RMSNorm2d: the name 'gn' is taken by a variant of the grid"),
    (["gn_g4=mynorms:RMSNorm2d"], "--add-norm gn_g4=mynorms:RMSNorm2d: the name 'gn_g4' is taken"),  # anomaly
    (["a/b=mynorms:RMSNorm2d"], "--add-norm a/b=mynorms:RMSNorm2d: expected a NAME of letters, digits, - and _"),
    (["rms=mynorms.RMSNorm2d"], "--add-norm rms=mynorms.RMSNorm2d: expected NAME=module:Class"),
])
def test_bad_names_are_refused_in_one_line(items, msg):
    s = StudySettings(kind="resnet", out="o", data="cifar10", add_norms=parse_add_norms(items))
    with pytest.raises(ValueError) as e:
        s.validate()
    assert str(e.value).startswith(msg) and "\n" not in str(e.value)
    with pytest.raises(ValueError, match="the NAME 'rms' is given twice"):
        parse_add_norms(["rms=a:B", "rms=c:D"])


def test_refusals_from_the_command_line(tmp_path, norms_dir, capsys):
    """Each refusal is one line before anything starts: a module that does not import, a class without
    num_channels, a clash, and the NER study."""
    from normlab.cli import main

    data = _images(tmp_path / "imgs", per_class=4, test_per_class=1)
    base = ["study", "resnet", "--out", str(tmp_path / "s"), "--data", str(data), "--val-size", "3",
            "--variants", "bn", "rms", "--no-estimate"]
    cases = [("rms=nosuchmod:Norm", "normlab: error: --add-norm rms=nosuchmod:Norm: cannot import module "
                                    "'nosuchmod'"),
             ("rms=mynorms:TakesDim", "normlab: error: --add-norm rms=mynorms:TakesDim: "),
             ("bn=mynorms:RMSNorm2d", "normlab: error: --add-norm bn=mynorms:RMSNorm2d: the name 'bn' is taken")]
    for item, msg in cases:
        assert main(base + ["--add-norm", item]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(msg) and "\n" not in err, err
    assert main(base + ["--add-norm", "rms=mynorms:TakesDim"]) == 2
    assert "num_channels" in capsys.readouterr().err
    assert main(["study", "ner", "--out", str(tmp_path / "n"), "--data", "g.csv", "--add-norm", f"rms={SPEC}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("normlab: error: --add-norm: expected a resnet study (a norm layer replaces the ResNet's "
                   "normalization layers), got a ner study")
    assert not (tmp_path / "s").exists() and not (tmp_path / "n").exists()


def test_a_rerun_keeps_the_added_norms_and_refuses_another_class_under_a_saved_name(tmp_path):
    s = StudySettings(kind="resnet", out=str(tmp_path), data="cifar10", variants=["rms"], add_norms={"rms": SPEC})
    atomic_write_json(tmp_path / "runs/rms/seed0/config.json", {})  # as if it had finished
    atomic_write_json(tmp_path / "runs/rms/seed0/summary.json", {})
    assert run_study(s, report=False, estimate=False) == 0
    saved = read_json(tmp_path / "study.json")
    assert saved["settings"]["add_norms"] == {"rms": SPEC}
    assert "rms" in [g["name"] for g in saved["grid"]] and "rms_b8" in [g["name"] for g in saved["grid"]]
    again = dataclasses.replace(s, add_norms={})  # a rerun without --add-norm: rms is still the study's
    assert [t.variant.name for t in plan(again.keep_saved_norms(saved["settings"]))] == []
    assert run_study(again, report=False, estimate=False) == 0
    assert read_json(tmp_path / "study.json")["settings"]["add_norms"] == {"rms": SPEC}
    other = dataclasses.replace(s, add_norms={"rms": "mynorms:Other"})
    with pytest.raises(ValueError, match=r"--add-norm rms=mynorms:Other: .*study.json ran rms with "
                                         r"mynorms:RMSNorm2d; choose another NAME"):
        run_study(other, report=False, estimate=False)


def test_own_batch_sentence_compares_with_bn_and_gn():
    m = lambda name, *v: Measured.of(name, list(v))  # noqa: E731
    ms = {"rms": m("rms", 0.80, 0.81, 0.79), "rms_b8": m("rms_b8", 0.80, 0.805, 0.795),
          "bn": m("bn", 0.90, 0.91, 0.89), "bn_b8": m("bn_b8", 0.60, 0.61, 0.59),
          "gn": m("gn", 0.85, 0.86, 0.84), "gn_b8": m("gn_b8", 0.85, 0.855, 0.845)}
    s = own_batch_sentence("rms", ms)
    assert s.startswith("Your own norm `rms`: 80.00 ± 1.00% at batch 128, 80.00 ± 0.50% at batch 8, a change of "
                        "+0.00 points"), s
    assert "against `bn`, `rms` is less sensitive" in s
    assert "against `gn`, the runs do not tell which is less sensitive" in s
    ms["rms_b8"] = Measured("rms_b8")
    assert "`rms`: no finished run at batch 8" in own_batch_sentence("rms", ms)


# ----------------------------------------------------------------------------- a real mini study


@pytest.mark.integration
@pytest.mark.timeout(900)
def test_mini_study_runs_your_norm_and_reports_it(tmp_path, norms_dir):
    """bn, rms and rms_b8 for one epoch on a tiny image folder, each run a subprocess that imports the
    user's module from PYTHONPATH; the report ranks rms with the built-in norms and adds it to the
    batch-size answer."""
    data = _images(tmp_path / "imgs")
    out = tmp_path / "study"
    cmd = [sys.executable, "-m", "normlab", "study", "resnet", "--data", str(data), "--val-size", "24",
           "--limit-train", "140", "--out", str(out), "--add-norm", f"rms={SPEC}",
           "--variants", "bn", "rms", "rms_b8", "--epochs", "1", "--budget", "full", "--sanity-seeds", "1",
           "--set", "compile=off", "--no-estimate"]
    p = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=800)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    for name, batch in (("rms", 128), ("rms_b8", 8)):
        cfg = read_json(out / f"runs/{name}/seed0/config.json")["config"]
        assert cfg["norm"] == SPEC and cfg["batch_size"] == batch
        assert (out / f"runs/{name}/seed0/summary.json").is_file()
    md = (out / "report.md").read_text()
    acc = {n: read_json(out / f"runs/{n}/seed0/summary.json")["metrics"]["test"]["accuracy"] * 100
           for n in ("bn", "rms", "rms_b8")}
    six = next(line for line in md.splitlines() if line.startswith("**Answer.** Ranked by mean test accuracy"))
    assert f"`rms` {acc['rms']:.2f}%" in six and f"`bn` {acc['bn']:.2f}%" in six
    assert f"`rms` is your own layer (`{SPEC}`, `--add-norm`), run as the six are: batch 128, lr 0.1." in md
    assert (f"Your own norm `rms`: {acc['rms']:.2f}% at batch 128, {acc['rms_b8']:.2f}% at batch 8, a change of "
            f"{acc['rms_b8'] - acc['rms']:+.2f} points") in md
    assert f"--add-norm rms={SPEC}" in md  # the header's command line
    tables = parse_md_table(md)
    assert any("rms_b8" in t for t in tables) and any("rms" in t for t in tables)
