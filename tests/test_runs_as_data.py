"""A run is its config: `train --config FILE`, study overrides (--run-arg, --set), and grids as TOML files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from normlab.files import atomic_write_json, read_json
from normlab.cli import build_parser, main
from normlab.cli.study import run_arg_overrides
from normlab.study.grids import load_grid
from normlab.study.runner import plan
from normlab.study.settings import StudySettings, parse_set, show_set

from test_train_ner import tiny_data  # noqa: F401 (a fixture)


def _resnet_args(*argv):
    from normlab.cli.resnet import config_from_args

    return config_from_args(build_parser().parse_args(["resnet", "train", *argv]))


# ----------------------------------------------------------------------------- train --config


def test_resnet_config_file_gives_every_setting_and_flags_beside_it_win(tmp_path):
    f = tmp_path / "config.json"
    atomic_write_json(f, {"kind": "resnet", "config": {"norm": "gn", "gn_groups": 4, "lr": 0.05, "epochs": 7,
                                                       "out": "somewhere"}, "env": {"torch": "x"}})
    cfg = _resnet_args("--config", str(f))
    assert (cfg.norm, cfg.gn_groups, cfg.lr, cfg.epochs, cfg.out) == ("gn", 4, 0.05, 7, "somewhere")
    # a flag given beside the file overrides it, even when it names the flag's default value
    cfg = _resnet_args("--config", str(f), "--lr", "0.1", "--out", str(tmp_path / "r"), "--resume")
    assert (cfg.lr, cfg.out, cfg.resume, cfg.norm) == (0.1, str(tmp_path / "r"), True, "gn")
    # a plain JSON object of settings works too
    atomic_write_json(f, {"norm": "ln"})
    assert _resnet_args("--config", str(f)).norm == "ln"


@pytest.mark.parametrize("content, msg", [
    ({"kind": "resnet", "config": {"nrom": "bn"}}, "--config .*config.json: expected ResNetConfig keys .*got unknown nrom"),
    ({"kind": "ner", "config": {}}, "expected a resnet run's config, got a ner one"),
    ({"kind": "resnet", "config": {"lr": -1}}, "expected --lr to be a finite number > 0"),
    ([1, 2], "expected a JSON object of settings, got list"),
])
def test_a_bad_config_file_is_refused_in_one_line(tmp_path, content, msg):
    f = tmp_path / "config.json"
    atomic_write_json(f, content)
    with pytest.raises(ValueError, match=msg):
        _resnet_args("--config", str(f))


def test_ner_trains_from_a_config_file_and_resumes_from_it(tiny_data, tmp_path, capsys):  # noqa: F811
    f = tmp_path / "run.json"
    atomic_write_json(f, {"kind": "ner", "config": {"data": tiny_data, "word_dim": 12, "hidden": 10, "epochs": 1,
                                                    "batch_size": 16, "eval_every": 0, "train_eval_size": 20}})
    out = tmp_path / "run"
    assert main(["ner", "train", "--config", str(f), "--out", str(out), "--no-progress"]) == 0
    saved = read_json(out / "config.json")["config"]
    assert saved["word_dim"] == 12 and saved["epochs"] == 1 and saved["out"] == str(out) and saved["data"] == tiny_data
    # its own config.json continues it (a finished run refuses --resume with no last.pt to continue... or resumes)
    (out / "summary.json").unlink()
    assert main(["ner", "train", "--config", str(out / "config.json"), "--out", str(out), "--resume",
                 "--no-progress"]) == 0
    assert "resumed from" in (out / "train.log").read_text()
    assert main(["ner", "train", "--out", str(tmp_path / "x")]) == 2
    assert "expected --data FILE (or --config FILE with the data), got none" in capsys.readouterr().err


# ----------------------------------------------------------------------------- study overrides


def test_run_args_become_config_overrides_in_the_cli():
    assert run_arg_overrides("resnet", ["--patience=5", "--compile", "off", "--lr", "0.1"]) == \
        {"patience": 5, "compile": "off", "lr": 0.1}
    assert run_arg_overrides("ner", ["--no-crf-constraints", "--eval-every=5", "--no-progress"]) == \
        {"crf_constraints": False, "eval_every": 5}
    assert run_arg_overrides("ner", []) == {}
    with pytest.raises(ValueError, match="--run-arg: .*unrecognized arguments: --nope"):
        run_arg_overrides("resnet", ["--nope"])


@pytest.mark.parametrize("overrides, msg", [
    ({"seed": 3}, "expected settings the study does not set itself, got --seed: the study sets it for every run "
                  r"\(use the study's --first-seed"),
    ({"resume": True}, "the study resumes interrupted runs itself"),
    ({"embeddings": "x"}, r"got --embeddings: the study sets it for every run \(use the study's --embeddings"),
    ({"patiense": 3}, "--run-arg/--set: unknown key 'patiense'"),
    ({"patience": "3"}, "--run-arg/--set: key 'patience': expected int, got '3'"),
])
def test_study_overrides_are_checked(overrides, msg):
    with pytest.raises(ValueError, match=msg):
        StudySettings(kind="ner", out="o", data="d", overrides=overrides).validate()


def test_an_override_may_not_replace_what_a_variant_sets(tmp_path):
    from normlab.study.checks import check_study_inputs

    s = StudySettings(kind="resnet", out=str(tmp_path / "s"), data="cifar10", overrides={"lr": 0.05},
                      variants=["bn"])
    with pytest.raises(ValueError, match="got --lr: it would replace --lr 0.1 of variant bn"):
        check_study_inputs(s)


@pytest.mark.parametrize("item, key, value", [
    ("lr=0.05", "lr", 0.05), ("patience=5", "patience", 5), ("char=true", "char", True),
    ("schedule=step", "schedule", "step"), ('tag="1"', "tag", "1"), ("data=a=b", "data", "a=b"),
])
def test_set_reads_toml_values_and_show_set_writes_them_back(item, key, value):
    assert parse_set(item) == (key, value)
    assert parse_set(show_set(key, value)) == (key, value)


def test_set_without_a_value_is_refused():
    with pytest.raises(ValueError, match="--set: expected KEY=VALUE, got 'lr'"):
        parse_set("lr")


# ----------------------------------------------------------------------------- grids as TOML files

GRID = """
[variants.gn_g4]
label = "GN, 4 groups"
norm = "gn"
gn_groups = 4

[variants.gn_g2]
norm = "gn"
gn_groups = 2
lr = 0.05
"""


def test_a_grid_file_gives_named_variants_of_config_overrides(tmp_path):
    f = tmp_path / "my.toml"
    f.write_text(GRID)
    g = load_grid("resnet", f)
    assert [(v.name, v.label) for v in g] == [("gn_g4", "GN, 4 groups"), ("gn_g2", "gn_g2")]
    assert g[1].overrides == {"norm": "gn", "gn_groups": 2, "lr": 0.05}
    s = StudySettings(kind="resnet", out=str(tmp_path / "s"), data="cifar10", grid=str(f))
    s.validate()
    assert [t.variant.name for t in plan(s)] == ["gn_g4", "gn_g2"]
    assert [v.name for v in StudySettings(kind="resnet", out="o", data="c", grid=str(f),
                                          variants=["gn_g2"]).selected_variants()] == ["gn_g2"]


@pytest.mark.parametrize("text, msg", [
    ('[variants.a]\nnrom = "gn"\n', r"\[variants.a\]: unknown key 'nrom': expected label or a ResNetConfig field"),
    ('[variants.a]\ngn_groups = "4"\n', r"\[variants.a\]: key 'gn_groups': expected .*, got '4'"),
    ('[variants.a]\nlr = true\n', r"key 'lr': expected float, got True"),
    ('[variants.a]\nnorm = "gn"\ngn_groups = 3\n', r"keys norm, gn_groups: expected --gn-groups to divide"),
    ('[variants.a]\nnorm = "xn"\n', r"expected --norm to be one of"),
    ('[variants.a]\nseed = 3\n', r"key 'seed': the study sets it for every run"),
    ('[variants.a]\nlabel = 3\n', r"key 'label': expected a string, got 3"),
    ('[variant.a]\nnorm = "gn"\n', r"unknown key 'variant': expected only \[variants.NAME\] tables"),
    ('norm = "gn"\n', r"unknown key 'norm'"),
    ('[variants]\n', r"expected at least one \[variants.NAME\] table"),
    ('[variants.a\n', r"not a TOML file"),
    ('[variants."a b"]\nnorm = "gn"\n', r"expected a name of letters, digits"),
])
def test_a_bad_grid_file_is_refused_naming_the_key_and_the_file(tmp_path, text, msg):
    f = tmp_path / "bad.toml"
    f.write_text(text)
    with pytest.raises(ValueError, match=msg) as e:
        load_grid("resnet", f)
    assert str(e.value).startswith(str(f)) and "\n" not in str(e.value)


def test_a_ner_grid_file_checks_ner_fields(tmp_path):
    f = tmp_path / "ner.toml"
    f.write_text('[variants.scaled]\nembeddings = "glove"\nembedding_std = 0.3\nchar = true\n')
    (v,) = load_grid("ner", f)
    assert v.overrides == {"embeddings": "glove", "embedding_std": 0.3, "char": True}
    f.write_text('[variants.x]\nnorm = "gn"\n')
    with pytest.raises(ValueError, match="unknown key 'norm': expected label or a NERConfig field"):
        load_grid("ner", f)


def test_a_study_of_a_grid_file_is_saved_and_reported(tmp_path):
    """The grid's variants land in study.json (as overrides), and the report reads them."""
    from normlab.report.write import write_report
    from test_report import make_run

    f = tmp_path / "my.toml"
    f.write_text(GRID)
    root = tmp_path / "study"
    s = StudySettings(kind="resnet", out=str(root), data="cifar10", grid=str(f), epochs=3)
    from normlab.study.runner import run_study

    rng = np.random.default_rng(0)
    for name in ("gn_g4", "gn_g2"):
        make_run(root, "resnet", name, 0, rng)
    assert run_study(s, report=False, estimate=False) == 0
    saved = read_json(root / "study.json")
    assert saved["grid"] == [{"name": "gn_g4", "label": "GN, 4 groups", "norm": "gn", "gn_groups": 4},
                             {"name": "gn_g2", "label": "gn_g2", "norm": "gn", "gn_groups": 2, "lr": 0.05}]
    assert saved["settings"]["grid"] == str(f)
    md = write_report(root)[0].read_text()
    assert "--grid my.toml" in md  # the command that reproduces it (the file by its name only)
    assert "| gn_g2/seed0 | finished |" in md and "| gn_g4/seed0 | finished |" in md  # the Runs table
    assert json.dumps(saved)


def test_a_rerun_with_an_edited_grid_file_is_refused(tmp_path):
    from normlab.study.runner import run_study

    f = tmp_path / "my.toml"
    f.write_text(GRID)
    s = StudySettings(kind="resnet", out=str(tmp_path / "s"), data="cifar10", grid=str(f), epochs=3,
                      variants=["gn_g4"])
    from test_report import make_run

    make_run(tmp_path / "s", "resnet", "gn_g4", 0, np.random.default_rng(0))
    assert run_study(s, report=False, estimate=False) == 0
    f.write_text(GRID.replace("gn_groups = 4", "gn_groups = 8"))
    with pytest.raises(ValueError, match=r"variant gn_g4 ran with \{'norm': 'gn', 'gn_groups': 4\}, the grid now "
                                         r"gives \{'norm': 'gn', 'gn_groups': 8\}; rerun with the saved grid"):
        run_study(s, report=False, estimate=False)


def test_the_shipped_study_folders_match_the_built_in_grids():
    """Old study.json grids (flags and settings) hold the overrides the built-in variants give now:
    the shipped studies can be continued."""
    from normlab.study.runner import _check_grid

    root = Path(__file__).resolve().parents[1] / "docs" / "results"
    for folder in ("resnet", "ner", "ner-plateau"):
        saved = read_json(root / folder / "study.json")
        _check_grid(root / folder / "study.json", saved["grid"], StudySettings.from_dict(saved["settings"]))
    # docs/results/ner was never rerun: its grid is still in the old format (flags), read as it is
    assert all("args" in g for g in read_json(root / "ner" / "study.json")["grid"])


def test_a_grid_variant_may_name_your_own_norm(tmp_path):
    """A grid file's `norm` takes what `--norm` takes, a layer of your own included (checked for its
    spelling here; imported and tried by the run)."""
    f = tmp_path / "rms.toml"
    f.write_text('[variants.rms]\nlabel = "RMSNorm"\nnorm = "examples.rmsnorm:RMSNorm2d"\n'
                 '[variants.ln]\nnorm = "ln"\n')
    from normlab.study.runs import run_config

    s = StudySettings(kind="resnet", out="o", data="cifar10", grid=str(f))
    s.validate()
    assert [run_config(s, v, 0).norm for v in s.selected_variants()] == ["examples.rmsnorm:RMSNorm2d", "ln"]
    f.write_text('[variants.rms]\nnorm = "examples.rmsnorm"\n')
    with pytest.raises(ValueError, match=r"rms.toml \[variants.rms\]: keys norm: .*examples.rmsnorm"):
        load_grid("resnet", f)
